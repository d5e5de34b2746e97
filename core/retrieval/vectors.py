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
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass
class BrainVectors:
    """One brain's vectors for one model, as numpy arrays kept in step with the table."""

    dims: int
    ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    user_codes: dict[str | None, int] = field(default_factory=dict)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    user_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    state_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    loaded_until: int = 0
    loaded_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((0, self.dims), np.float32)

    def _grow(self, extra: int) -> None:
        need = len(self.ids) + extra
        if need <= self.matrix.shape[0]:
            return
        capacity = max(need, 2 * self.matrix.shape[0], 256)
        matrix = np.zeros((capacity, self.dims), np.float32)
        if self.ids:
            matrix[: len(self.ids)] = self.matrix[: len(self.ids)]
        user_of = np.full(capacity, -1, np.int32)
        user_of[: len(self.ids)] = self.user_of[: len(self.ids)]
        state_of = np.full(capacity, 3, np.int8)  # 3: an empty slot, never matched
        state_of[: len(self.ids)] = self.state_of[: len(self.ids)]
        self.matrix, self.user_of, self.state_of = matrix, user_of, state_of

    def upsert(self, rows: list[Any]) -> None:
        self._grow(len(rows))
        for memory_id, user_id, state, blob in rows:
            slot = self.rows.get(memory_id)
            if slot is None:
                slot = len(self.ids)
                self.rows[memory_id] = slot
                self.ids.append(memory_id)
            code = self.user_codes.setdefault(user_id, len(self.user_codes))
            self.matrix[slot] = np.frombuffer(blob, dtype=np.float32)
            self.user_of[slot] = code
            self.state_of[slot] = _STATES.get(state, 3)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.user_of.nbytes + self.state_of.nbytes)

    def scope_mask(self, *, user_id: str | None, states: tuple[str, ...] | None) -> np.ndarray:
        """Which cached memories belong to the user (if any) and are in one of `states`."""
        count = len(self.ids)
        mask = np.ones(count, bool)
        if user_id is not None:
            code = self.user_codes.get(user_id)
            mask &= self.user_of[:count] == (code if code is not None else -2)
        if states is not None:
            mask &= np.isin(self.state_of[:count], [_STATES[s] for s in states])
        return mask

    def similarities(
        self, query: np.ndarray, *, user_id: str | None, states: tuple[str, ...] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of every cached memory with the query, and the mask of those in scope."""
        scores = self.matrix[: len(self.ids)] @ query.astype(np.float32)
        return scores, self.scope_mask(user_id=user_id, states=states)

    def top(self, scores: np.ndarray, mask: np.ndarray, n: int) -> list[tuple[str, float]]:
        masked = np.where(mask, scores, -np.inf)
        n = min(n, int(mask.sum()))
        if n <= 0:
            return []
        best = np.argpartition(-masked, n - 1)[:n]
        best = best[np.argsort(-masked[best])]
        return [(self.ids[i], float(scores[i])) for i in best]

    def cosines(self, scores: np.ndarray, ids: list[str], *, missing: float) -> np.ndarray:
        """The scores of these memories; `missing` for those not in the cache."""
        slots = np.fromiter((self.rows.get(i, -1) for i in ids), np.int64, len(ids))
        slots[slots >= len(scores)] = -1
        found: np.ndarray = np.where(slots >= 0, scores[slots].astype(np.float64), missing)
        return found


_cache: dict[tuple[str, str, str], BrainVectors] = {}
_cache_lock = threading.Lock()


def cached(conn: Connection, brain_id: str, model: str, dims: int) -> BrainVectors:
    """The brain's vectors for `model`, brought up to date with what is in the table."""
    key = (str(conn.engine.url), brain_id, model)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None or entry.dims != dims:
            entry = _cache[key] = BrainVectors(dims)
    with entry.lock:
        _refresh(conn, entry, brain_id, model)
    return entry


def warm(conn: Connection, brain_id: str, model: str, dims: int) -> BrainVectors | None:
    """The brain's vectors if this process has loaded them already (brought up to date), else
    None: for a write that may use them but must not pay for loading a whole brain."""
    with _cache_lock:
        entry = _cache.get((str(conn.engine.url), brain_id, model))
    if entry is None or entry.dims != dims:
        return None
    return cached(conn, brain_id, model, dims)


def _refresh(conn: Connection, entry: BrainVectors, brain_id: str, model: str) -> None:
    params = {"brain": brain_id, "model": model}
    if time.monotonic() - entry.loaded_at > _FULL_RELOAD_SECONDS:
        # Purged memories leave their vectors behind in a warm cache: harmless, since every
        # candidate is read back from SQL, but reload now and then so they do not pile up.
        fresh = BrainVectors(entry.dims)
        entry.ids, entry.rows, entry.user_codes = [], {}, {}
        entry.matrix, entry.user_of, entry.state_of = fresh.matrix, fresh.user_of, fresh.state_of
        entry.loaded_until = 0
        entry.loaded_at = time.monotonic()
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
    if rows:
        entry.upsert(rows)
    entry.loaded_until = started if settled is None else min(started, settled)


def forget_all() -> None:
    with _cache_lock:
        _cache.clear()
