"""Memory vectors: stored beside each memory, searched with numpy from a per-process cache.

The cache holds one brain's vectors for one model and is refreshed incrementally: each search
loads only the rows whose `updated_at` moved since the last load (memories bump it on every
change, state changes included), and reloads in full every ten minutes. The cache only
proposes candidates: every hit is read back from SQL under the caller's scope and filters, so a
stale entry can cost a candidate, never leak one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.kernel.db.engine import settled_before, sql, tuples
from core.kernel.ids import now_ms
from core.retrieval import pgvector

# Clocks of different processes disagree a little: reload a margin behind the last load.
_SKEW_MS = 5_000
_FULL_RELOAD_SECONDS = 600.0
_STATES = {"active": 0, "archived": 1, "deleted": 2}
_DEAD = 3  # a slot whose memory has a newer vector in a later slot: never matched


def store(conn: Connection, brain_id: str, memory_id: str, model: str, vector: np.ndarray) -> None:
    params = {
        "id": memory_id,
        "brain": brain_id,
        "model": model,
        "dims": int(vector.shape[0]),
        "vector": np.asarray(vector, dtype=np.float32).tobytes(),
        "now": now_ms(),
    }
    conn.execute(
        sql(
            "INSERT INTO memory_vectors (memory_id, brain_id, model, dims, vector, updated_at) "
            "VALUES (:id, :brain, :model, :dims, :vector, :now) ON CONFLICT (memory_id) DO "
            "UPDATE SET model = excluded.model, dims = excluded.dims, "
            "vector = excluded.vector, updated_at = excluded.updated_at"
        ),
        params,
    )
    pgvector.mirror(conn, brain_id, model, [(memory_id, vector)])


def store_many(
    conn: Connection, brain_id: str, model: str, items: Sequence[tuple[str, np.ndarray]]
) -> None:
    """`store` for many memories in one executemany (imports)."""
    if not items:
        return
    now = now_ms()
    conn.execute(
        sql(
            "INSERT INTO memory_vectors (memory_id, brain_id, model, dims, vector, updated_at) "
            "VALUES (:id, :brain, :model, :dims, :vector, :now) ON CONFLICT (memory_id) DO "
            "UPDATE SET model = excluded.model, dims = excluded.dims, "
            "vector = excluded.vector, updated_at = excluded.updated_at"
        ),
        [
            {
                "id": memory_id,
                "brain": brain_id,
                "model": model,
                "dims": int(vector.shape[0]),
                "vector": np.asarray(vector, dtype=np.float32).tobytes(),
                "now": now,
            }
            for memory_id, vector in items
        ],
    )
    pgvector.mirror(conn, brain_id, model, items)


def touch(conn: Connection, brain_id: str, memory_id: str) -> None:
    """Mark a memory's vector row changed so caches pick up its new state or owner."""
    conn.execute(
        sql(
            "UPDATE memory_vectors SET updated_at = :now "
            "WHERE brain_id = :brain AND memory_id = :id"
        ),
        {"now": now_ms(), "brain": brain_id, "id": memory_id},
    )


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One brain's vectors for one model as of one refresh: immutable once published.

    A reader takes one snapshot and works on it alone, so what it reads (count, matrix, owners,
    states, slots) always agrees, whatever writers and refreshes do meanwhile. The arrays are
    views of the cache's storage, which a refresh only ever appends to past `count` (a changed
    vector takes a new slot; owner and state arrays are copied before an existing slot of
    theirs changes), and the id list and slot map are shared the same way: entries at or past
    `count` belong to later snapshots and are never seen through this one."""

    dims: int
    count: int
    ids: Sequence[str]
    matrix: np.ndarray  # (count, dims) float32
    user_of: np.ndarray  # (count,) int32: the owner's code
    state_of: np.ndarray  # (count,) int8: _STATES, or _DEAD for a slot a later vector replaced
    _slots: Mapping[str, int]
    _user_codes: Mapping[str | None, int]

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.user_of.nbytes + self.state_of.nbytes)

    def slot(self, memory_id: str) -> int | None:
        """The memory's slot in this snapshot, None if it has no vector here."""
        slot = self._slots.get(memory_id)
        return slot if slot is not None and slot < self.count else None

    def user_code(self, user_id: str | None) -> int:
        """The owner's code in user_of; a code no slot holds for an owner never seen."""
        return self._user_codes.get(user_id, -2)

    def scope_mask(self, *, user_id: str | None, states: tuple[str, ...] | None) -> np.ndarray:
        """Which memories belong to the user (if any) and are in one of `states` (any if
        None); a replaced slot never."""
        if states is None:
            mask = self.state_of < _DEAD
        else:
            mask = np.isin(self.state_of, [_STATES[s] for s in states])
        if user_id is not None:
            mask &= self.user_of == self.user_code(user_id)
        return mask

    def scores(self, query: np.ndarray) -> np.ndarray:
        """The dot product (the cosine: vectors are unit length) of every slot with `query`."""
        found: np.ndarray = self.matrix @ np.asarray(query, dtype=np.float32)
        return found

    def products(self, slots: np.ndarray) -> np.ndarray:
        """(len(slots), count): the dot products of these slots' vectors with every slot's."""
        found: np.ndarray = self.matrix[slots] @ self.matrix.T
        return found

    def similarities(
        self, query: np.ndarray, *, user_id: str | None, states: tuple[str, ...] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of every cached memory with the query, and the mask of those in scope."""
        return self.scores(query), self.scope_mask(user_id=user_id, states=states)

    def top(self, scores: np.ndarray, mask: np.ndarray, n: int) -> list[tuple[str, float]]:
        masked = np.where(mask, scores, -np.inf)
        n = min(n, int(mask.sum()))
        if n <= 0:
            return []
        best = np.argpartition(-masked, n - 1)[:n]
        best = best[np.argsort(-masked[best])]
        return [(self.ids[i], float(scores[i])) for i in best]

    def cosines(self, scores: np.ndarray, ids: list[str], *, missing: float) -> np.ndarray:
        """The scores of these memories; `missing` for those without a vector here."""
        slots = np.fromiter(
            (s if (s := self.slot(i)) is not None else -1 for i in ids), np.int64, len(ids)
        )
        found: np.ndarray = np.where(slots >= 0, scores[slots].astype(np.float64), missing)
        return found


def _empty(dims: int) -> Snapshot:
    return Snapshot(
        dims,
        0,
        [],
        np.zeros((0, dims), np.float32),
        np.zeros(0, np.int32),
        np.zeros(0, np.int8),
        {},
        {},
    )


class _Entry:
    """The storage behind one (database, brain, model)'s snapshots, and the current one.

    Only a refresh (under `lock`) changes it; readers only ever read `snapshot`, one attribute
    read, atomic in Python."""

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.lock = threading.Lock()
        self.snapshot = _empty(dims)
        self.reset()

    def reset(self) -> None:
        """Empty storage, to be loaded in full (the published snapshot stays until then)."""
        self.ids: list[str] = []
        self.slots: dict[str, int] = {}
        self.user_codes: dict[str | None, int] = {}
        self.matrix = np.zeros((0, self.dims), np.float32)
        self.user_of = np.zeros(0, np.int32)
        self.state_of = np.zeros(0, np.int8)
        self.dead = 0
        self.loaded_until = 0
        self.loaded_at = time.monotonic()

    def _grow(self, need: int) -> None:
        """Room for `need` slots: new arrays (published snapshots keep the old ones)."""
        if need <= self.matrix.shape[0]:
            return
        count = len(self.ids)
        capacity = max(need, 2 * self.matrix.shape[0], 256)
        matrix = np.zeros((capacity, self.dims), np.float32)
        matrix[:count] = self.matrix[:count]
        self.matrix = matrix
        self._copy_owners(capacity)

    def _copy_owners(self, capacity: int) -> None:
        count = len(self.ids)
        user_of = np.full(capacity, -1, np.int32)
        user_of[:count] = self.user_of[:count]
        state_of = np.full(capacity, _DEAD, np.int8)
        state_of[:count] = self.state_of[:count]
        self.user_of, self.state_of = user_of, state_of

    def apply(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Take (memory_id, user_id, state, vector bytes) rows in, then publish a snapshot."""
        published = self.snapshot.count
        vectors = [np.frombuffer(blob, dtype=np.float32) for *_, blob in rows]
        self._grow(len(self.ids) + len(rows))
        owners_copied = slots_copied = False
        for (memory_id, user_id, state, _), vector in zip(rows, vectors, strict=True):
            code = self.user_codes.setdefault(user_id, len(self.user_codes))
            slot = self.slots.get(memory_id)
            if slot is not None and not np.array_equal(self.matrix[slot], vector):
                # A new vector takes a new slot: published rows never change under a reader.
                if slot < published and not owners_copied:
                    self._copy_owners(self.matrix.shape[0])
                    owners_copied = True
                self.state_of[slot] = _DEAD
                self.dead += 1
                slot = None
                if not slots_copied:
                    self.slots = dict(self.slots)
                    slots_copied = True
            if slot is None:
                slot = len(self.ids)
                self.ids.append(memory_id)
                self.slots[memory_id] = slot
                self.matrix[slot] = vector
            elif slot < published and not owners_copied:
                self._copy_owners(self.matrix.shape[0])
                owners_copied = True
            self.user_of[slot] = code
            self.state_of[slot] = _STATES.get(state, _DEAD)
        if self.dead > max(1024, (len(self.ids) - self.dead) // 4):
            self._compact()
        self._publish()

    def _compact(self) -> None:
        """Drop replaced slots into fresh storage (published snapshots keep the old)."""
        live = np.flatnonzero(self.state_of[: len(self.ids)] < _DEAD)
        ids = [self.ids[i] for i in live.tolist()]
        self.matrix = self.matrix[live].copy()
        self.user_of = self.user_of[live].copy()
        self.state_of = self.state_of[live].copy()
        self.ids = ids
        self.slots = {memory_id: slot for slot, memory_id in enumerate(ids)}
        self.dead = 0

    def _publish(self) -> None:
        count = len(self.ids)
        self.snapshot = Snapshot(
            self.dims,
            count,
            self.ids,
            self.matrix[:count],
            self.user_of[:count],
            self.state_of[:count],
            self.slots,
            self.user_codes,
        )


_cache: dict[tuple[str, str, str], _Entry] = {}
_cache_lock = threading.Lock()


def cached(conn: Connection, brain_id: str, model: str, dims: int) -> Snapshot:
    """The brain's vectors for `model`, brought up to date with what is in the table: one
    snapshot, for the caller to read everything it needs from (never the cache again)."""
    key = (str(conn.engine.url), brain_id, model)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None or entry.dims != dims:
            entry = _cache[key] = _Entry(dims)
    with entry.lock:
        _refresh(conn, entry, brain_id, model)
        return entry.snapshot


def _refresh(conn: Connection, entry: _Entry, brain_id: str, model: str) -> None:
    params = {"brain": brain_id, "model": model}
    if time.monotonic() - entry.loaded_at > _FULL_RELOAD_SECONDS:
        # Purged memories leave their vectors behind in a warm cache: harmless, since every
        # candidate is read back from SQL, but reload now and then so they do not pile up.
        entry.reset()
    since = entry.loaded_until - _SKEW_MS if entry.loaded_until else -1
    started = now_ms()
    # Asked before reading: not past a vector a transaction still holds (PostgreSQL), so the
    # next refresh reads from there again and a late commit is not missed until the full
    # reload (see settled_before).
    settled = settled_before(conn)
    rows = tuples(
        conn,
        "SELECT v.memory_id, m.user_id, m.state, v.vector FROM memory_vectors v "
        "JOIN memories m ON m.id = v.memory_id "
        "WHERE v.brain_id = :brain AND v.model = :model AND v.updated_at > :since "
        "AND v.dims = :dims",
        {**params, "since": since, "dims": entry.dims},
    )
    if rows or entry.snapshot.count != len(entry.ids):
        entry.apply(rows)
    entry.loaded_until = started if settled is None else min(started, settled)


def forget_all() -> None:
    with _cache_lock:
        _cache.clear()


def of(
    conn: Connection, brain_id: str, model: str, memory_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """These memories' stored vectors of `model`, by id (those that have one)."""
    if not memory_ids:
        return {}
    names = {f"v{i}": memory_id for i, memory_id in enumerate(memory_ids)}
    brain = "+brain_id" if conn.dialect.name == "sqlite" else "brain_id"
    rows = tuples(
        conn,
        # By primary key: `+` keeps SQLite's planner off the (brain, model) index, which
        # would read every vector of the brain.
        f"SELECT memory_id, vector FROM memory_vectors WHERE {brain} = :brain "
        f"AND model = :model AND memory_id IN ({', '.join(':' + n for n in names)})",
        {"brain": brain_id, "model": model, **names},
    )
    return {str(r[0]): np.frombuffer(r[1], dtype=np.float32) for r in rows}


def drop_brain(brain_id: str) -> None:
    """Forget a brain's cached vectors in this process (a user's erasure: their vectors must
    not outlive the rows, even in memory, until the next full reload)."""
    with _cache_lock:
        for key in [k for k in _cache if k[1] == brain_id]:
            del _cache[key]
