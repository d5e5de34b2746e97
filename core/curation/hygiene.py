"""Memory hygiene: reinforce, decay, retention and forget.

- Reinforce raises a memory's importance by the policy's step (or a smaller one asked for),
  capped at 1. It is an explicit signal, so it counts as an update and an access: the memory's
  decay and retention clocks start again.
- Decay lowers the importance of active memories neither updated nor accessed for longer than the
  policy's `decay_days`, by one multiplicative step (core/memory/policy.py), never below the floor.
  A memory decays at most once per period of `decay_days`: `decayed_at` records when it last did,
  and both the candidate query and the UPDATE require it to be at least a period old, so a second
  run in the same period (or a concurrent one) changes nothing. Decay leaves `updated_at` alone:
  it is drift, not an edit, and bumping it would restart the very clock decay measures.
- Retention archives active memories neither updated nor accessed for longer than the policy's
  `retention_days` (never, when it is null).
- Forget archives or purges memories by ids or by filters, at most `forget_max` per call, with a
  dry run that lists what would be affected.

Decay and retention run in batches of `MaintenanceSettings.batch_size` rows, each batch its own
transaction (a run over a large brain never holds the write lock for long), walking the brain's
(updated_at, id) index with a keyset so every statement is bounded. Each memory touched gets its
history row (decay: UPDATE with the importance change in `detail`; retention: ARCHIVE). The feed
gets one changelog row per archived memory (a state change a sync consumer must see) but one per
decay batch (a drift in importance, listed by id in the payload, would otherwise flood it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row

from core.curation.models import (
    BatchRunRecord,
    DecaySample,
    ForgetFilters,
    ForgetIn,
    ForgetRecord,
    ReinforceIn,
    RetentionSample,
)
from core.events import changelog, history
from core.kernel.config import MaintenanceSettings
from core.kernel.db.engine import sql, transaction
from core.kernel.db.id_lists import id_in
from core.kernel.errors import Conflict, InvalidInput
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.memory import importance, lifecycle
from core.memory import store as memories
from core.memory.indexing import Indexer
from core.memory.models import MemoryRecord
from core.memory.policy import BrainPolicy, policy_for
from core.retrieval import vectors

# How many of the memories a dry run would change it describes one by one.
SAMPLE = 50

MAINTENANCE_PRINCIPAL = "maintenance"


def system_scope(brain_id: str) -> Scope:
    """The scope maintenance acts under: the whole brain, recorded as `maintenance`."""
    return Scope(brain_id=brain_id, principal=MAINTENANCE_PRINCIPAL, role="owner")


@dataclass
class BatchRun:
    """What a batched task did: rows per batch (each <= the batch size) and a sample."""

    task: str
    dry_run: bool
    batch_size: int
    batches: list[int] = field(default_factory=list)
    sample: list[DecaySample | RetentionSample] = field(default_factory=list)
    skipped: str | None = None
    # Set when the run's deadline passed between batches: what is left is done next time (the
    # memories already done no longer match, so the next run simply starts over).
    stopped_early: bool = False

    @property
    def count(self) -> int:
        return sum(self.batches)

    def to_dict(self) -> BatchRunRecord:
        out: BatchRunRecord = {
            "task": self.task,
            "dry_run": self.dry_run,
            "count": self.count,
            "batches": len(self.batches),
            "batch_size": self.batch_size,
            "largest_batch": max(self.batches, default=0),
            "sample": self.sample,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        if self.stopped_early:
            out["stopped_early"] = True
        return out


def _lock(conn: Connection) -> str:
    return " FOR UPDATE" if conn.dialect.name == "postgresql" else ""


# -- reinforce -------------------------------------------------------------------------------


def reinforce(
    conn: Connection, scope: Scope, memory_id: str, data: ReinforceIn | None = None
) -> MemoryRecord:
    scope.require_write()
    data = data or ReinforceIn()
    policy = policy_for(conn, scope.brain_id)
    step = min(data.step or policy.reinforce_step, policy.reinforce_step)
    row = memories._fetch(conn, scope, memory_id, lock=True)
    if row.state != "active":
        raise Conflict(
            f"this memory is {row.state}: restore it before reinforcing", code="memory_not_active"
        )
    before = round(float(row.importance), 6)
    after = min(1.0, round(before + step, 6))
    now = now_ms()
    importance.reinforce(conn, scope.brain_id, memory_id, after, now)
    change = {"importance": {"from": before, "to": after}, "step": step}
    history.record(
        conn,
        history.entry(
            scope,
            memory_id=memory_id,
            user_id=row.user_id,
            event="UPDATE",
            old=row.content,
            new=row.content,
            detail={"reinforced": change},
            actor_id=data.actor_id,
            role=data.role,
            at=now,
        ),
    )
    changelog.record(
        conn,
        scope,
        event_type="memory.reinforced",
        entity_type="memory",
        entity_id=memory_id,
        summary=f"Reinforced ({before:g} -> {after:g}): {changelog.preview(row.content)}",
        user_id=row.user_id,
        actor_id=data.actor_id,
        payload=change,
        at=now,
    )
    return memories.get(conn, scope, memory_id)


# -- batched tasks: decay and retention -------------------------------------------------------


@dataclass(frozen=True)
class _Keyset:
    updated_at: int
    id: str


_START = _Keyset(-1, "")


def _stale_rows(
    conn: Connection,
    scope: Scope,
    *,
    columns: str,
    before: int,
    extra: str,
    params: dict[str, Any],
    after: _Keyset,
    limit: int,
    lock: bool,
) -> list[Row[Any]]:
    """Active memories neither updated nor accessed since `before`, in (updated_at, id) order
    after `after`: at most `limit`, served by the (brain_id, updated_at) index."""
    p = dict(params)
    where = scope.where(p)
    p.update(before=before, au=after.updated_at, ai=after.id, limit=limit)
    return list(
        conn.execute(
            sql(
                f"SELECT {columns} FROM memories WHERE {where} AND state = 'active' "
                "AND updated_at < :before "
                "AND (last_accessed_at IS NULL OR last_accessed_at < :before) "
                # The keyset as a range on the index (>=) plus the tie-break: with the OR
                # alone, each batch would walk the index from the brain's first memory.
                "AND updated_at >= :au AND (updated_at > :au OR id > :ai)"
                f"{extra} "
                f"ORDER BY updated_at, id LIMIT :limit{_lock(conn) if lock else ''}"
            ),
            p,
        ).all()
    )


def _batches(
    engine: Engine,
    run: BatchRun,
    step: Callable[[Connection, _Keyset], tuple[int, _Keyset | None]],
    deadline: float | None = None,
) -> BatchRun:
    """Runs `step` once per batch, each in its own transaction, until it reports no next key
    or the `deadline` (time.monotonic()) passes."""
    after: _Keyset | None = _START
    while after is not None:
        if deadline is not None and time.monotonic() > deadline:
            run.stopped_early = True
            break
        with transaction(engine, write=not run.dry_run) as conn:
            done, after = step(conn, after)
        if done:
            run.batches.append(done)
    return run


def decay(
    engine: Engine,
    scope: Scope,
    settings: MaintenanceSettings,
    *,
    now: int | None = None,
    dry_run: bool = False,
    policy: BrainPolicy | None = None,
    deadline: float | None = None,
) -> BatchRun:
    """One decay step for every memory in scope due one; see the module's docstring."""
    if not dry_run:
        scope.require_write()
    now = now_ms() if now is None else now
    if policy is None:
        with transaction(engine, write=False) as conn:
            policy = policy_for(conn, scope.brain_id)
    run = BatchRun("decay", dry_run, settings.batch_size)
    if policy.decay_rate <= 0:
        run.skipped = "decay_rate is 0"
        return run
    stale = now - policy.decay_ms
    keep = policy

    def step(conn: Connection, after: _Keyset) -> tuple[int, _Keyset | None]:
        rows = _stale_rows(
            conn,
            scope,
            columns="id, user_id, importance, updated_at",
            before=stale,
            extra=" AND importance > :floor AND (decayed_at IS NULL OR decayed_at <= :before)",
            params={"floor": keep.importance_floor},
            after=after,
            limit=settings.batch_size,
            lock=not dry_run,
        )
        if not rows:
            return 0, None
        changes = [
            (r, round(float(r.importance), 6), round(keep.decayed(float(r.importance)), 6))
            for r in rows
        ]
        for r, before, after_value in changes[: max(0, SAMPLE - len(run.sample))]:
            run.sample.append({"id": r.id, "from": before, "to": after_value})
        if not dry_run:
            _apply_decay(conn, scope, keep, changes, now=now, stale=stale)
        last = rows[-1]
        more = len(rows) == settings.batch_size
        return len(rows), _Keyset(last.updated_at, last.id) if more else None

    return _batches(engine, run, step, deadline)


def _apply_decay(
    conn: Connection,
    scope: Scope,
    policy: BrainPolicy,
    changes: list[tuple[Row[Any], float, float]],
    *,
    now: int,
    stale: int,
) -> None:
    # One statement for the batch, the step computed in SQL as BrainPolicy.decayed computes it
    # (the rows are locked, so the history below records what it did). The decayed_at guard
    # again: a concurrent run that read the same rows changes nothing.
    importance.decay(
        conn,
        scope.brain_id,
        [r.id for r, _, _ in changes],
        keep=policy.decay_keep,
        floor=policy.importance_floor,
        now=now,
        stale=stale,
    )
    history.record_many(
        conn,
        scope,
        [
            {
                "memory_id": r.id,
                "user_id": r.user_id,
                "event": "UPDATE",
                "old": None,
                "new": None,
                "detail": {
                    "decayed": {"importance": {"from": before, "to": to}},
                    "decay_days": policy.decay_days,
                    "decay_rate": policy.decay_rate,
                },
                "actor_id": None,
                "role": None,
                "at": now,
            }
            for r, before, to in changes
        ],
    )
    changelog.record(
        conn,
        scope,
        event_type="memory.decayed",
        entity_type="brain",
        entity_id=scope.brain_id,
        # A user-scoped key's run touched only that user's memories: its feed shows the entry.
        user_id=scope.user_id,
        summary=f"Decayed the importance of {len(changes)} memories idle over "
        f"{policy.decay_days} days",
        payload={
            "count": len(changes),
            "decay_rate": policy.decay_rate,
            "importance_floor": policy.importance_floor,
            "ids": [r.id for r, _, _ in changes],
        },
        at=now,
    )


def retention(
    engine: Engine,
    scope: Scope,
    settings: MaintenanceSettings,
    *,
    now: int | None = None,
    dry_run: bool = False,
    policy: BrainPolicy | None = None,
    index: Indexer | None = None,
    deadline: float | None = None,
) -> BatchRun:
    """Archive every active memory in scope idle for longer than `retention_days`."""
    if not dry_run:
        scope.require_write()
    now = now_ms() if now is None else now
    if policy is None:
        with transaction(engine, write=False) as conn:
            policy = policy_for(conn, scope.brain_id)
    run = BatchRun("retention", dry_run, settings.batch_size)
    retention_ms = policy.retention_ms
    if retention_ms is None:
        run.skipped = "retention_days is null: memories are kept forever"
        return run
    cutoff = now - retention_ms

    def step(conn: Connection, after: _Keyset) -> tuple[int, _Keyset | None]:
        rows = _stale_rows(
            conn,
            scope,
            columns="id, user_id, type, content, updated_at",
            before=cutoff,
            extra="",
            params={},
            after=after,
            limit=settings.batch_size,
            lock=not dry_run,
        )
        if not rows:
            return 0, None
        for r in rows[: max(0, SAMPLE - len(run.sample))]:
            run.sample.append({"id": r.id, "preview": changelog.preview(r.content)})
        if not dry_run:
            done = lifecycle.archive(
                conn,
                scope,
                rows,
                now=now,
                reason={"retention_days": policy.retention_days},
                index=index,
            )
            if index is None:
                # What Indexer.on_state does, for the whole batch: vector caches see the state.
                vectors.touch_many(conn, scope.brain_id, done)
        last = rows[-1]
        more = len(rows) == settings.batch_size
        return len(rows), _Keyset(last.updated_at, last.id) if more else None

    return _batches(engine, run, step, deadline)


# -- forget ----------------------------------------------------------------------------------


def _has_criterion(filters: ForgetFilters) -> bool:
    chosen = filters.model_dump(exclude_defaults=True)
    chosen.pop("tag_mode", None)
    chosen.pop("state", None)
    return bool(chosen)


def forget(
    conn: Connection,
    scope: Scope,
    data: ForgetIn,
    settings: MaintenanceSettings,
    index: Indexer,
) -> ForgetRecord:
    """Archive or purge the memories chosen by ids and/or filters, at most the limit, in the
    caller's transaction. A dry run changes nothing and lists what would be affected."""
    if not data.dry_run:
        scope.require_write()
    if data.mode == "purge" and not data.dry_run and data.confirm is not True:
        raise InvalidInput(
            "set confirm to true to purge: a purge cannot be undone", details={"field": "confirm"}
        )
    filters = data.filters or ForgetFilters(state="all" if data.ids else "active")
    if data.filters is not None and not data.ids and not _has_criterion(data.filters):
        raise InvalidInput(
            "forget needs at least one filter (idle_days, importance_below, tag, user_id, type, "
            "source, created_before...) or a list of ids: it never picks a whole brain",
            code="forget_needs_filter",
            details={"field": "filters"},
        )
    limit = min(data.limit or settings.forget_max, settings.forget_max)
    params: dict[str, Any] = {}
    where = memories.filter_sql(scope, filters, params)
    now = now_ms()
    if filters.idle_days is not None:
        params["idle_before"] = now - filters.idle_days * 86_400_000
        where.append(
            "updated_at < :idle_before "
            "AND (last_accessed_at IS NULL OR last_accessed_at < :idle_before)"
        )
    if filters.importance_below is not None:
        params["importance_below"] = filters.importance_below
        where.append("importance < :importance_below")
    if data.ids:
        among, value = id_in(conn, list(dict.fromkeys(data.ids)))
        where.append(f"id {among}")
        params["ids"] = value
    if data.mode == "archive":
        where.append("state = 'active'")
    params["limit"] = limit + 1
    lock = "" if data.dry_run else _lock(conn)
    rows = conn.execute(
        sql(
            f"SELECT id, user_id, type, state, content, importance, updated_at FROM memories "
            f"WHERE {' AND '.join(where)} ORDER BY created_at, id LIMIT :limit{lock}"
        ),
        params,
    ).all()
    truncated = len(rows) > limit
    rows = rows[:limit]
    result: ForgetRecord = {
        "mode": data.mode,
        "dry_run": data.dry_run,
        "matched": len(rows),
        "truncated": truncated,
        "limit": limit,
        "affected": 0,
    }
    if data.dry_run:
        result["memories"] = [
            {
                "id": r.id,
                "user_id": r.user_id,
                "type": r.type,
                "state": r.state,
                "importance": round(float(r.importance), 6),
                "preview": changelog.preview(r.content),
            }
            for r in rows
        ]
        return result
    if data.mode == "archive":
        done = lifecycle.archive(
            conn,
            scope,
            list(rows),
            now=now,
            reason={"forget": True},
            index=index,
            actor_id=data.actor_id,
            role=data.role,
        )
    else:
        done = []
        for r in rows:
            memories.purge(conn, scope, r.id, index, confirm=True, actor_id=data.actor_id)
            done.append(r.id)
    result["ids"] = done
    result["affected"] = len(done)
    return result
