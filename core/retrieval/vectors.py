"""Memory vectors: stored beside each memory, searched with numpy from a per-process cache.

The table holds each vector exactly (float32). The cache holds one brain's vectors for one
model compactly, as int8 codes with one float32 scale per vector (a quarter of float32: 100,000
vectors of 256 dims take 25 MiB), which is enough to rank every memory by cosine to within
about 0.003; search then rescores its candidates exactly from the table (`exact`).

The cache follows the table by a watermark on `updated_at`, which every change to a vector row
bumps (state and owner changes too, through `touch`): each refresh reads only rows stamped at
or after the watermark, in chunks straight into the preallocated arrays (no Python row per
memory is kept). Stamps are made so that the watermark never steps past a row still to come:

- SQLite runs one writer at a time, and a writer stamps each row past the largest stamp the
  brain's vectors of that model hold: stamps grow in commit order, so every row committed
  after a read is stamped past everything that read saw.
- PostgreSQL stamps with the database's own clock (one clock for every writer, whichever host
  it runs on), and a refresh asks, before reading, for a time before which everything stamped
  is visible (the oldest open writer's start, see `watermark`).

A purged memory leaves its vector behind in a warm cache until the next reconcile (a count
compared every ten minutes; the ids read only if they differ): harmless meanwhile, since the
cache only proposes candidates and every hit is read back from SQL under the caller's scope
and filters. A stale entry can cost a candidate, never leak one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.kernel.db.engine import db_settled, sql, tuples
from core.kernel.db.id_lists import id_table
from core.kernel.ids import now_ms
from core.retrieval import pgvector

_STATES = {"active": 0, "archived": 1, "deleted": 2}
_DEAD = 3  # a slot whose memory has a newer vector in a later slot, or was purged
# Rows per chunk, when loading and when scoring: 8,192 x 256 dims dequantized is 8 MiB.
_CHUNK = 8192
_RECONCILE_SECONDS = 600.0


def _stamp(conn: Connection, *, correlated: bool = False) -> str:
    """The SQL for a vector row's new `updated_at` (see the module's docstring)."""
    if conn.dialect.name == "postgresql":
        return "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)"
    if correlated:  # an UPDATE: the row's own brain and model
        where = "w.brain_id = memory_vectors.brain_id AND w.model = memory_vectors.model"
    else:
        where = "w.brain_id = :brain AND w.model = :model"
    return (
        f"max(:now, coalesce((SELECT max(w.updated_at) FROM memory_vectors w WHERE {where}), 0)"
        " + 1)"
    )


def _upsert(conn: Connection) -> str:
    return (
        "INSERT INTO memory_vectors (memory_id, brain_id, model, dims, vector, updated_at) "
        f"VALUES (:id, :brain, :model, :dims, :vector, {_stamp(conn)}) "
        "ON CONFLICT (memory_id) DO UPDATE SET model = excluded.model, dims = excluded.dims, "
        "vector = excluded.vector, updated_at = excluded.updated_at"
    )


def store(conn: Connection, brain_id: str, memory_id: str, model: str, vector: np.ndarray) -> None:
    store_many(conn, brain_id, model, [(memory_id, vector)])


def store_many(
    conn: Connection, brain_id: str, model: str, items: Sequence[tuple[str, np.ndarray]]
) -> None:
    """Store these memories' vectors in one executemany (a write, imports)."""
    if not items:
        return
    now = now_ms()
    conn.execute(
        sql(_upsert(conn)),
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
    touch_many(conn, brain_id, [memory_id])


def touch_many(conn: Connection, brain_id: str, memory_ids: Sequence[str]) -> None:
    if not memory_ids:
        return
    members, value = id_table(conn, "ids")
    # By primary key: SQLite's planner, left alone, may walk the brain's index instead; a
    # unary + takes that index out of its choices.
    brain = "+brain_id" if conn.dialect.name == "sqlite" else "brain_id"
    conn.execute(
        sql(
            f"UPDATE memory_vectors SET updated_at = {_stamp(conn, correlated=True)} "
            f"WHERE {brain} = :brain AND memory_id IN (SELECT c.value FROM {members})"
        ),
        {"now": now_ms(), "brain": brain_id, "ids": value(list(memory_ids))},
    )


def exact(
    conn: Connection, brain_id: str, model: str, dims: int, memory_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """The stored (exact) vectors of these memories that have one of `model`."""
    if not memory_ids:
        return {}
    members, value = id_table(conn, "ids")
    rows = tuples(
        conn,
        f"SELECT v.memory_id, v.vector FROM {members} "
        f"{'CROSS JOIN' if conn.dialect.name == 'sqlite' else 'JOIN'} memory_vectors v "
        "ON v.memory_id = c.value WHERE v.brain_id = :brain AND v.model = :model "
        "AND v.dims = :dims",
        {"ids": value(list(memory_ids)), "brain": brain_id, "model": model, "dims": dims},
    )
    return {memory_id: np.frombuffer(blob, np.float32) for memory_id, blob in rows}


def _quantize(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and a scale per row: row ~= codes * scale, to within scale / 2 a value."""
    peak = np.abs(matrix).max(axis=1) if len(matrix) else np.zeros(0, np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.rint(matrix / scale[:, None]).astype(np.int8)
    return codes, scale


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One brain's vectors for one model as of one refresh: immutable once published.

    A reader takes one snapshot and works on it alone, so what it reads (count, vectors,
    owners, states, slots) always agrees, whatever writers and refreshes do meanwhile. The
    arrays are views of the cache's storage, which a refresh only ever appends to past `count`
    (a changed vector takes a new slot; owner and state arrays are copied before an existing
    slot of theirs changes), and the id list and slot map are shared the same way: entries at
    or past `count` belong to later snapshots and are never seen through this one."""

    dims: int
    count: int
    ids: Sequence[str]
    codes: np.ndarray  # (count, dims) int8
    scale: np.ndarray  # (count,) float32: a vector is codes * scale
    user_of: np.ndarray  # (count,) int32: the owner's code
    state_of: np.ndarray  # (count,) int8: _STATES, or _DEAD
    _slots: Mapping[str, int]
    _user_codes: Mapping[str | None, int]

    @property
    def nbytes(self) -> int:
        return int(
            self.codes.nbytes + self.scale.nbytes + self.user_of.nbytes + self.state_of.nbytes
        )

    def slot(self, memory_id: str) -> int | None:
        """The memory's slot in this snapshot, None if it has no vector here."""
        slot = self._slots.get(memory_id)
        return slot if slot is not None and slot < self.count else None

    def user_code(self, user_id: str | None) -> int:
        """The owner's code in user_of; a code no slot holds for an owner never seen."""
        return self._user_codes.get(user_id, -2)

    def scope_mask(self, *, user_id: str | None, states: tuple[str, ...] | None) -> np.ndarray:
        """Which memories belong to the user (if any) and are in one of `states` (any if
        None); a replaced or purged slot never."""
        if states is None:
            mask = self.state_of < _DEAD
        else:
            mask = np.isin(self.state_of, [_STATES[s] for s in states])
        if user_id is not None:
            mask &= self.user_of == self.user_code(user_id)
        return mask

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        """These slots' vectors as the cache holds them (float32, to within ~0.4%)."""
        found: np.ndarray = self.codes[slots].astype(np.float32) * self.scale[slots, None]
        return found

    def _blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        # Dequantized a block at a time: the whole matrix as float32 would be 4x the cache.
        for start in range(0, self.count, _CHUNK):
            end = min(start + _CHUNK, self.count)
            yield start, end, self.codes[start:end].astype(np.float32)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """The dot product (the cosine: vectors are unit length) of every slot with `query`."""
        query = np.asarray(query, dtype=np.float32)
        out = np.empty(self.count, np.float32)
        for start, end, block in self._blocks():
            out[start:end] = block @ query
        out *= self.scale
        return out

    def products(self, slots: np.ndarray) -> np.ndarray:
        """(len(slots), count): the dot products of these slots' vectors with every slot's."""
        rows = self.vectors(slots)
        out = np.empty((len(slots), self.count), np.float32)
        for start, end, block in self._blocks():
            out[:, start:end] = rows @ block.T
        out *= self.scale[None, :]
        return out

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
        np.zeros((0, dims), np.int8),
        np.zeros(0, np.float32),
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
        self.ids: list[str] = []
        self.slots: dict[str, int] = {}
        self.user_codes: dict[str | None, int] = {}
        self.codes = np.zeros((0, dims), np.int8)
        self.scale = np.zeros(0, np.float32)
        self.user_of = np.zeros(0, np.int32)
        self.state_of = np.zeros(0, np.int8)
        self.dead = 0
        self.watermark = -1  # rows stamped at or after it are read by the next refresh
        self.reconciled_at = time.monotonic()
        # Set when the owner and state arrays may be written in place: they are this refresh's
        # own copies, or only slots no published snapshot holds are written.
        self._owners_private = False

    @property
    def count(self) -> int:
        return len(self.ids)

    def _grow(self, need: int) -> None:
        """Room for `need` slots: new arrays (published snapshots keep the old ones)."""
        if need <= self.codes.shape[0]:
            return
        count = self.count
        capacity = max(need, self.codes.shape[0] + self.codes.shape[0] // 2, 256)
        codes = np.zeros((capacity, self.dims), np.int8)
        codes[:count] = self.codes[:count]
        scale = np.ones(capacity, np.float32)
        scale[:count] = self.scale[:count]
        self.codes, self.scale = codes, scale
        self._copy_owners(capacity)

    def _copy_owners(self, capacity: int) -> None:
        count = self.count
        user_of = np.full(capacity, -1, np.int32)
        user_of[:count] = self.user_of[:count]
        state_of = np.full(capacity, _DEAD, np.int8)
        state_of[:count] = self.state_of[:count]
        self.user_of, self.state_of = user_of, state_of
        self._owners_private = True

    def _own_owners(self) -> None:
        """Before changing a slot a published snapshot holds: copy the owner arrays."""
        if not self._owners_private:
            self._copy_owners(self.codes.shape[0])

    def take(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Take a chunk of (memory_id, user_id, state, vector bytes) rows in; `publish` makes
        them visible."""
        if not rows:
            return
        ids, users, states, blobs = zip(*rows, strict=True)
        matrix = np.frombuffer(b"".join(blobs), np.float32).reshape(len(rows), self.dims)
        codes, scale = _quantize(matrix)
        published = self.snapshot.count
        user_codes = self.user_codes
        owner = np.fromiter(
            (user_codes.setdefault(u, len(user_codes)) for u in users), np.int32, len(rows)
        )
        state = np.fromiter((_STATES.get(s, _DEAD) for s in states), np.int8, len(rows))
        mapping = self.slots
        known = [mapping.get(i) for i in ids]
        if known.count(None) == len(known):  # a first load: every row new
            self._append(list(ids), codes, scale, owner, state)
            return
        fresh = [k for k, slot in enumerate(known) if slot is None]
        # A memory already here keeps its slot if its vector is unchanged (a state or owner
        # change); a new vector takes a new slot and the old one is marked dead.
        kept: list[int] = []
        for k, slot in enumerate(known):
            if slot is None:
                continue
            if self.scale[slot] == scale[k] and np.array_equal(self.codes[slot], codes[k]):
                kept.append(k)
                continue
            if slot < published:
                self._own_owners()
            self.state_of[slot] = _DEAD
            self.dead += 1
            if self.slots is self.snapshot._slots:
                self.slots = dict(self.slots)  # published snapshots keep the old map
            del self.slots[ids[k]]
            fresh.append(k)
        if kept:
            slots = np.array([known[k] for k in kept], np.int64)
            unchanged = np.array_equal(self.user_of[slots], owner[kept]) and np.array_equal(
                self.state_of[slots], state[kept]
            )
            if not unchanged:
                if int(slots.min()) < published:
                    self._own_owners()
                self.user_of[slots] = owner[kept]
                self.state_of[slots] = state[kept]
        if fresh:
            self._append(
                [ids[k] for k in fresh], codes[fresh], scale[fresh], owner[fresh], state[fresh]
            )

    def _append(
        self,
        ids: list[str],
        codes: np.ndarray,
        scale: np.ndarray,
        owner: np.ndarray,
        state: np.ndarray,
    ) -> None:
        """New slots past the end: no published snapshot sees them."""
        start = self.count
        end = start + len(ids)
        self._grow(end)
        self.codes[start:end] = codes
        self.scale[start:end] = scale
        self.user_of[start:end] = owner
        self.state_of[start:end] = state
        self.ids.extend(ids)
        self.slots.update(zip(ids, range(start, end), strict=True))

    def drop(self, memory_ids: Sequence[str]) -> None:
        """Memories whose vector rows are gone (purged)."""
        slots = [s for i in memory_ids if (s := self.slots.get(i)) is not None]
        if not slots:
            return
        self._own_owners()
        self.state_of[slots] = _DEAD
        self.dead += len(slots)
        if self.slots is self.snapshot._slots:
            self.slots = dict(self.slots)
        for memory_id in memory_ids:
            self.slots.pop(memory_id, None)

    def publish(self) -> None:
        if self.dead > max(1024, (self.count - self.dead) // 4):
            self._compact()
        count = self.count
        if count == self.snapshot.count and not self._owners_private and not self.dead:
            return  # nothing changed
        self.snapshot = Snapshot(
            self.dims,
            count,
            self.ids,
            self.codes[:count],
            self.scale[:count],
            self.user_of[:count],
            self.state_of[:count],
            self.slots,
            self.user_codes,
        )
        self._owners_private = False

    def _compact(self) -> None:
        """Drop dead slots into fresh storage (published snapshots keep the old)."""
        live = np.flatnonzero(self.state_of[: self.count] < _DEAD)
        self.ids = [self.ids[i] for i in live.tolist()]
        self.codes = self.codes[live]
        self.scale = self.scale[live]
        self.user_of = self.user_of[live]
        self.state_of = self.state_of[live]
        self.slots = {memory_id: slot for slot, memory_id in enumerate(self.ids)}
        self.dead = 0
        self._owners_private = True


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


def warm(conn: Connection, brain_id: str, model: str, dims: int) -> Snapshot | None:
    """The brain's vectors if this process has loaded them already (brought up to date), else
    None: for a write that may use them but must not pay for loading a whole brain."""
    with _cache_lock:
        entry = _cache.get((str(conn.engine.url), brain_id, model))
    if entry is None or entry.dims != dims:
        return None
    return cached(conn, brain_id, model, dims)


def _refresh(conn: Connection, entry: _Entry, brain_id: str, model: str) -> None:
    params = {"brain": brain_id, "model": model, "dims": entry.dims}
    if time.monotonic() - entry.reconciled_at > _RECONCILE_SECONDS:
        _reconcile(conn, entry, params)
    # PostgreSQL: asked before reading, so the next refresh starts no later than any row a
    # transaction open now may still commit.
    settled = db_settled(conn)
    statement = (
        "SELECT v.memory_id, m.user_id, m.state, v.vector, v.updated_at FROM memory_vectors v "
        "JOIN memories m ON m.id = v.memory_id AND m.brain_id = v.brain_id "
        "WHERE v.brain_id = :brain AND v.model = :model AND v.updated_at >= :since "
        "AND v.dims = :dims"
    )
    newest = entry.watermark - 1
    since = {**params, "since": entry.watermark}
    for chunk in _chunks(conn, statement, since, whole=entry.watermark < 0):
        newest = max(newest, max(row[4] for row in chunk))
        entry.take([row[:4] for row in chunk])
    entry.publish()
    # SQLite: every later commit is stamped past the newest stamp seen (`_stamp`).
    entry.watermark = newest + 1 if settled is None else max(entry.watermark, settled)


def _chunks(
    conn: Connection, statement: str, params: dict[str, Any], *, whole: bool
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of a read, a chunk at a time: a cold load of 100,000 vectors never holds more
    than one chunk of Python rows."""
    if conn.dialect.name == "sqlite":
        driver = conn.connection.driver_connection
        assert driver is not None
        # A first load reads most of the file: through the memory map (engine.py) every page
        # of it would stay resident in this process (360 MiB at 100,000 memories); read()
        # leaves them in the OS's cache instead.
        mapped = driver.execute("PRAGMA mmap_size").fetchone()[0] if whole else 0
        if mapped:
            driver.execute("PRAGMA mmap_size = 0")
        cursor = driver.execute(statement, params)
        try:
            while chunk := cursor.fetchmany(_CHUNK):
                yield chunk
        finally:
            cursor.close()
            if mapped:
                driver.execute(f"PRAGMA mmap_size = {int(mapped)}")
        return
    # Per statement: Connection.execution_options would make every later statement on this
    # connection a server-side cursor too.
    result = conn.execute(sql(statement), params, execution_options={"yield_per": _CHUNK})
    for part in result.partitions():
        yield [tuple(row) for row in part]


def _reconcile(conn: Connection, entry: _Entry, params: dict[str, Any]) -> None:
    """Let go of the vectors of purged memories: a count, and their ids only if it differs."""
    entry.reconciled_at = time.monotonic()
    where = "brain_id = :brain AND model = :model AND dims = :dims"
    stored = conn.execute(
        sql(f"SELECT count(*) FROM memory_vectors WHERE {where}"), params
    ).scalar_one()
    if stored >= len(entry.slots):
        return
    statement = f"SELECT memory_id FROM memory_vectors WHERE {where}"
    present = {row[0] for row in tuples(conn, statement, params)}
    entry.drop([memory_id for memory_id in entry.slots if memory_id not in present])


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
