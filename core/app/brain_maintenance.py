"""Per-brain upkeep, run by `core.app.maintenance.run` (the MaintenanceFunction and `mnemo
maintain`): decay, retention, conflict detection, consolidation suggestions, vectors of the current
embedding model and the vector cache's image, for each brain.

Each brain is worked on under a lease (core/kernel/leases.py), so two runs at once never both work
on one brain: the second skips it. Every task works in batches of `MaintenanceSettings.batch_size`
rows (core/curation/hygiene.py), and every task run is recorded in `stats` (type, count, timestamp,
the brain, and a detail JSON), as OpenMemory v1.2 records its decay, reflect and consolidate runs.
Brains are visited least recently maintained first, until the time budget is spent; the rest go
first next time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, Engine

from core.app.models import BrainRun, HygieneRecord, OneBrainRecord, RunPageRecord, RunRecord
from core.curation import conflicts, consolidate, hygiene
from core.curation.conflicts import VectorSpace
from core.embeddings import EmbeddingError, get_embedder
from core.kernel import cursor as cursors
from core.kernel import leases
from core.kernel.config import MaintenanceSettings, Settings, get_settings
from core.kernel.db.engine import sql, transaction
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory.policy import BrainPolicy, policy_for
from core.retrieval import reindex, vectors

log = logging.getLogger("mnemo.maintenance")

LEASE_TASK = "hygiene"
TASKS = ("decay", "retention", "conflicts", "consolidate", "vectors", "vector_images")


def record_stat(
    engine: Engine, brain_id: str | None, task: str, count: int, detail: dict[str, Any]
) -> None:
    with transaction(engine) as conn:
        conn.execute(
            sql(
                "INSERT INTO stats (id, type, count, detail, ts, brain_id) "
                "VALUES (:id, :type, :count, :detail, :ts, :brain)"
            ),
            {
                "id": new_id(),
                "type": task,
                "count": count,
                "detail": json.dumps(detail),
                "ts": now_ms(),
                "brain": brain_id,
            },
        )


def _vector_space(app: Settings) -> VectorSpace:
    embedder = get_embedder(app.embedder)
    return VectorSpace(embedder.name, embedder.dims, app.conflicts.neighbours)


# Detection passes one run may make on a brain, and the time they may take: each pass is one
# bounded batch (core/curation/conflicts.py); the watermark takes the next run on from where this
# stopped.
_CONFLICT_PASSES = 10
_CONFLICT_SECONDS = 10.0


def _conflicts(
    engine: Engine, scope: Scope, settings: MaintenanceSettings, app: Settings, dry_run: bool
) -> Any:
    if dry_run:
        return {"count": 0, "skipped": "detection records what it finds; it has no dry run"}
    batch = min(settings.batch_size, app.conflicts.detect_batch)
    space = _vector_space(app)
    started = time.perf_counter()
    totals: dict[str, int] = {"passes": 0, "created": 0, "superseded": 0, "memories_scanned": 0}
    while totals["passes"] < _CONFLICT_PASSES:
        found = conflicts.detect(engine, scope.brain_id, batch_size=batch, space=space)
        totals["passes"] += 1
        for name in ("created", "superseded", "memories_scanned"):
            totals[name] += found[name]
        if found["done"] or time.perf_counter() - started > _CONFLICT_SECONDS:
            break
    return {"count": totals["created"], "batch_size": batch, **totals}


def _consolidate(
    engine: Engine, scope: Scope, settings: MaintenanceSettings, app: Settings, policy: BrainPolicy
) -> Any:
    # Suggestions only (merging is for a person or an agent to decide, POST /v1/consolidate):
    # how many near-duplicate groups the brain's first window of memories holds, at the
    # brain policy's similarity threshold.
    found = consolidate.suggest(
        engine,
        scope.brain_id,
        space=_vector_space(app),
        threshold=policy.consolidate_threshold,
        max_scan=min(settings.batch_size, app.conflicts.consolidate_max_scan),
    )
    return {"count": found["groups"], **found}


# Memories with no vector of the current model: a new embedder (a new package's model) leaves
# every memory so, and semantic search finds none of them until they have one. Each run embeds
# a bounded share, outside any transaction (a remote model is never called under a write lock),
# so search comes back by itself; POST /v1/reindex does it at once.
_REINDEX_BATCH = 64
_REINDEX_SECONDS = 20.0


def _vectors(engine: Engine, scope: Scope, app: Settings, dry_run: bool) -> Any:
    embedder = get_embedder(app.embedder)
    started = time.perf_counter()
    stored = 0
    while True:
        with transaction(engine, write=False) as conn:
            batch = reindex.pending(conn, scope, embedder.name, _REINDEX_BATCH)
        if not batch or dry_run or time.perf_counter() - started > _REINDEX_SECONDS:
            break
        try:
            embedded = embedder.embed([text for _, text in batch])
        except EmbeddingError as error:
            log.warning("maintenance could not embed brain %s: %s", scope.brain_id, error)
            break
        with transaction(engine) as conn:
            added = reindex.store(conn, scope, embedder.name, list(zip(
                [memory_id for memory_id, _ in batch], embedded, strict=True
            )))  # fmt: skip
        stored += added
        if not added:
            break
    # `pending`: memories are left for the next run (or POST /v1/reindex).
    return {"count": stored, "model": embedder.name, "pending": bool(batch)}


def _vector_images(engine: Engine, scope: Scope, app: Settings, dry_run: bool) -> Any:
    # Last, after retention's purges: the image a cold process starts its vector cache from
    # (core/retrieval/vectors.py), saved again when anything changed since it was.
    if dry_run:
        return {"count": 0, "skipped": "a dry run writes nothing"}
    embedder = get_embedder(app.embedder)
    with transaction(engine) as conn:
        return vectors.save_image(conn, scope.brain_id, embedder.name, embedder.dims)


def maintain_brain(
    engine: Engine,
    brain_id: str,
    settings: MaintenanceSettings,
    *,
    now: int | None = None,
    dry_run: bool = False,
    tasks: tuple[str, ...] = TASKS,
    deadline: float | None = None,
    app: Settings | None = None,
) -> BrainRun:
    """Run the hygiene tasks on one brain under its lease; skipped when another run holds it.
    A dry run takes no lease, changes nothing and records no stats. Past the `deadline`
    (time.monotonic()) decay and retention stop between batches. `app`: the settings conflict
    detection and consolidation read (the embedder, their batch bounds)."""
    app = app or get_settings()
    holder = None
    if not dry_run:
        holder = leases.acquire(engine, brain_id, LEASE_TASK, seconds=settings.lease_seconds)
        if holder is None:
            return {"brain_id": brain_id, "skipped": "another maintenance run holds this brain"}
    try:
        scope = hygiene.system_scope(brain_id)
        with transaction(engine, write=False) as conn:
            policy = policy_for(conn, brain_id)
        out: BrainRun = {"brain_id": brain_id}
        runners: dict[str, Callable[[], Any]] = {
            "decay": lambda: hygiene.decay(
                engine, scope, settings, now=now, dry_run=dry_run, policy=policy, deadline=deadline
            ),
            "retention": lambda: hygiene.retention(
                engine, scope, settings, now=now, dry_run=dry_run, policy=policy, deadline=deadline
            ),
            "conflicts": lambda: _conflicts(engine, scope, settings, app, dry_run),
            "consolidate": lambda: _consolidate(engine, scope, settings, app, policy),
            "vectors": lambda: _vectors(engine, scope, app, dry_run),
            "vector_images": lambda: _vector_images(engine, scope, app, dry_run),
        }
        for task in tasks:
            started = time.perf_counter()
            result = runners[task]()
            detail: dict[str, Any] = (
                {**result.to_dict()} if isinstance(result, hygiene.BatchRun) else dict(result)
            )
            detail["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            if not dry_run and not detail.get("skipped"):
                # Without the sample: its ids and previews are memories of every user, and
                # GET /v1/maintenance/runs answers any key of the brain (a purge never
                # reaches this table either).
                kept = {k: v for k, v in detail.items() if k != "sample"}
                record_stat(engine, brain_id, task, int(detail.get("count", 0)), kept)
            out[task] = detail
        return out
    finally:
        if holder is not None:
            leases.release(engine, brain_id, LEASE_TASK, holder)


def _next_brains(conn: Connection, started: int, after: tuple[int, str], limit: int) -> list[Any]:
    """Brains not maintained since this run started, least recently maintained first."""
    return list(
        conn.execute(
            sql(
                "SELECT b.id, coalesce(l.acquired_at, 0) AS last FROM brains b "
                "LEFT JOIN maintenance_leases l ON l.brain_id = b.id AND l.task = :task "
                "WHERE coalesce(l.acquired_at, 0) < :started "
                "AND (coalesce(l.acquired_at, 0) > :last OR "
                "(coalesce(l.acquired_at, 0) = :last AND b.id > :id)) "
                "ORDER BY last, b.id LIMIT :limit"
            ),
            {
                "task": LEASE_TASK,
                "started": started,
                "last": after[0],
                "id": after[1],
                "limit": limit,
            },
        ).all()
    )


def run_all(
    engine: Engine,
    settings: MaintenanceSettings,
    *,
    brain_id: str | None = None,
    now: int | None = None,
    dry_run: bool = False,
    app: Settings | None = None,
) -> HygieneRecord | OneBrainRecord:
    """Every brain (or one), within the time budget."""
    if brain_id is not None:
        one = maintain_brain(engine, brain_id, settings, now=now, dry_run=dry_run, app=app)
        return {"brains": [one]}
    started_ms = now_ms()
    deadline = time.monotonic() + settings.budget_seconds
    after: tuple[int, str] = (-1, "")
    done: list[BrainRun] = []
    out_of_time = False
    while not out_of_time:
        with transaction(engine, write=False) as conn:
            page = _next_brains(conn, started_ms, after, settings.batch_size)
        if not page:
            break
        for row in page:
            if time.monotonic() > deadline:
                out_of_time = True
                break
            try:
                done.append(
                    maintain_brain(
                        engine,
                        row.id,
                        settings,
                        now=now,
                        dry_run=dry_run,
                        deadline=deadline,
                        app=app,
                    )
                )
            except Exception:
                # One brain's failure must not stop the others; its lease is released.
                log.exception("maintenance failed for brain %s", row.id)
                done.append({"brain_id": row.id, "error": "failed; see the log"})
            after = (int(row.last), row.id)
    totals = {
        task: sum(int(b.get(task, {}).get("count", 0)) for b in done if task in b) for task in TASKS
    }
    return {
        "brains": len(done),
        "skipped": sum(1 for b in done if "skipped" in b),
        "out_of_time": out_of_time,
        "totals": totals,
        "dry_run": dry_run,
    }


def list_runs(
    conn: Connection,
    scope: Scope,
    *,
    task: str | None,
    limit: int,
    cursor: str | None = None,
) -> RunPageRecord:
    """The brain's recorded task runs, newest first."""
    params: dict[str, Any] = {"brain": scope.brain_id, "limit": limit + 1}
    where = ["brain_id = :brain"]
    if task is not None:
        where.append("type = :type")
        params["type"] = task
    if past := cursors.keyset(cursor, params, time="ts"):
        where.append(past)
    rows = conn.execute(
        sql(
            f"SELECT id, type, count, detail, ts FROM stats WHERE {' AND '.join(where)} "
            "ORDER BY ts DESC, id DESC LIMIT :limit"
        ),
        params,
    ).all()
    rows, next_cursor = cursors.page(rows, limit, time="ts")
    results = [
        {
            "id": r.id,
            "type": r.type,
            "count": r.count,
            "detail": json.loads(r.detail) if r.detail else None,
            "ts": iso(r.ts),
        }
        for r in rows
    ]
    return {"results": cast(list[RunRecord], results), "next_cursor": next_cursor}
