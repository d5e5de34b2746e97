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

A cold cache starts from the brain's saved image (`vector_images`, written by maintenance:
`save_image`) when there is one: a few rows of int8 codes, scales, owners, states and sorted
ids, read into the arrays with no Python object per memory, then caught up from the image's
watermark like any refresh. Without one it reads every row, as a first load always did.

A purged memory leaves its vector behind in a warm cache until the next reconcile (a count
compared every ten minutes; the ids read only if they differ): harmless meanwhile, since the
cache only proposes candidates and every hit is read back from SQL under the caller's scope
and filters. A stale entry can cost a candidate, never leak one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.kernel.db.engine import db_settled, sql, tuples
from core.kernel.db.id_lists import id_table
from core.kernel.db.planner import no_index
from core.kernel.ids import now_ms
from core.retrieval import pgvector
from core.retrieval.models import SavedImageRecord

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
    rows = [
        {
            "id": memory_id,
            "brain": brain_id,
            "model": model,
            "dims": int(vector.shape[0]),
            "vector": np.asarray(vector, dtype=np.float32).tobytes(),
            "now": now,
        }
        for memory_id, vector in items
    ]
    if pgvector.mirroring(conn):
        # The pgvector copy in the same statement: one round trip per write, not two.
        pgvector.store_with_copy(conn, _upsert(conn), rows, items)
        return
    conn.execute(sql(_upsert(conn)), rows)


def touch(conn: Connection, brain_id: str, memory_id: str) -> None:
    """Mark a memory's vector row changed so caches pick up its new state or owner."""
    touch_many(conn, brain_id, [memory_id])


def touch_many(conn: Connection, brain_id: str, memory_ids: Sequence[str]) -> None:
    if not memory_ids:
        return
    members, value = id_table(conn, "ids")
    # By primary key (core/kernel/db/planner.py).
    brain = no_index(conn, "brain_id")
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


class _Ids:
    """Which memory each slot holds, and the slot of each memory.

    The slots a saved image filled (`_load_image`) are one array of fixed-width UTF-8 ids
    sorted by id, found by binary search: a cold load makes no Python object per memory. Slots
    added after are a list and a dict. A published snapshot holds one of these and sees only
    the slots below its count, so appending is safe; forgetting a memory (its vector replaced,
    or purged) happens on a copy (`forgetting`) while a snapshot holds this one."""

    __slots__ = ("base", "extra", "gone", "index", "size")

    def __init__(self, base: np.ndarray | None = None) -> None:
        self.base = np.zeros(0, "S1") if base is None else base  # sorted, slots [0, size)
        self.size = len(self.base)
        self.extra: list[str] = []  # slots [size, ...)
        self.index: dict[str, int] = {}  # extra's slots
        self.gone: set[str] = set()  # base ids no longer held

    def __len__(self) -> int:
        return self.size + len(self.extra)

    def name(self, slot: int) -> str:
        if slot < self.size:
            return str(self.base[slot].decode())
        return self.extra[slot - self.size]

    __getitem__ = name

    def get(self, memory_id: str) -> int | None:
        slot = self.index.get(memory_id)
        if slot is not None or not self.size or memory_id in self.gone:
            return slot
        key = memory_id.encode()
        at = int(np.searchsorted(self.base, key))
        return at if at < self.size and self.base[at] == key else None

    def find(self, memory_ids: Sequence[str]) -> np.ndarray:
        """Slots of these memories, -1 where none."""
        found = np.fromiter((self.index.get(i, -1) for i in memory_ids), np.int64, len(memory_ids))
        if self.size and len(memory_ids):
            keys = np.array([i.encode() for i in memory_ids], dtype=f"S{self.base.itemsize}")
            at = np.minimum(np.searchsorted(self.base, keys), self.size - 1)
            hit = (self.base[at] == keys) & (found < 0)
            # An id longer than the array's width was cut to it above: it is not in the array.
            hit &= np.fromiter(
                (len(k.encode()) <= self.base.itemsize and k not in self.gone
                 for k in memory_ids), bool, len(memory_ids),
            )  # fmt: skip
            found[hit] = at[hit]
        return found

    def add(self, memory_ids: list[str]) -> None:
        start = len(self)
        self.extra.extend(memory_ids)
        self.index.update(zip(memory_ids, range(start, start + len(memory_ids)), strict=True))

    def forget(self, memory_id: str) -> None:
        if self.index.pop(memory_id, None) is None and self.size:
            self.gone.add(memory_id)

    def forgetting(self) -> _Ids:
        """A copy to forget memories in, sharing the arrays and list (append-only)."""
        copy = _Ids(self.base)
        copy.extra, copy.index, copy.gone = self.extra, dict(self.index), set(self.gone)
        return copy

    def held(self) -> int:
        """How many memories have a slot."""
        return self.size - len(self.gone) + len(self.index)

    def names(self, slots: np.ndarray) -> list[str]:
        return [self.name(i) for i in slots.tolist()]


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
    ids: _Ids
    codes: np.ndarray  # (count, dims) int8
    scale: np.ndarray  # (count,) float32: a vector is codes * scale
    user_of: np.ndarray  # (count,) int32: the owner's code
    state_of: np.ndarray  # (count,) int8: _STATES, or _DEAD
    _user_codes: Mapping[str | None, int]

    @property
    def nbytes(self) -> int:
        return int(
            self.codes.nbytes + self.scale.nbytes + self.user_of.nbytes + self.state_of.nbytes
        )

    def slot(self, memory_id: str) -> int | None:
        """The memory's slot in this snapshot, None if it has no vector here."""
        slot = self.ids.get(memory_id)
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
        # One buffer for every block: a fresh 8 MiB array per block is fresh pages to fault in.
        buffer = np.empty((min(_CHUNK, self.count), self.dims), np.float32)
        for start in range(0, self.count, _CHUNK):
            end = min(start + _CHUNK, self.count)
            block = buffer[: end - start]
            np.copyto(block, self.codes[start:end], casting="unsafe")
            yield start, end, block

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
        return [(self.ids.name(i), float(scores[i])) for i in best]

    def cosines(self, scores: np.ndarray, ids: list[str], *, missing: float) -> np.ndarray:
        """The scores of these memories; `missing` for those without a vector here."""
        slots = self.ids.find(ids)
        slots[slots >= self.count] = -1
        found: np.ndarray = np.where(slots >= 0, scores[slots].astype(np.float64), missing)
        return found


def _empty(dims: int) -> Snapshot:
    return Snapshot(
        dims,
        0,
        _Ids(),
        np.zeros((0, dims), np.int8),
        np.zeros(0, np.float32),
        np.zeros(0, np.int32),
        np.zeros(0, np.int8),
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
        self.ids = _Ids()
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

    def clear(self) -> None:
        """Back to empty (an image that turned out not to fit); nothing was published."""
        self.ids, self.user_codes = _Ids(), {}
        self.codes = np.zeros((0, self.dims), np.int8)
        self.scale = np.zeros(0, np.float32)
        self.user_of = np.zeros(0, np.int32)
        self.state_of = np.zeros(0, np.int8)
        self.dead = 0
        self.watermark = -1
        self._owners_private = False

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
        known = [self.ids.get(i) for i in ids]
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
            if self.ids is self.snapshot.ids:
                self.ids = self.ids.forgetting()  # published snapshots keep the old map
            self.ids.forget(ids[k])
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
        self.ids.add(ids)

    def drop(self, memory_ids: Sequence[str]) -> None:
        """Memories whose vector rows are gone (purged)."""
        slots = [s for i in memory_ids if (s := self.ids.get(i)) is not None]
        if not slots:
            return
        self._own_owners()
        self.state_of[slots] = _DEAD
        self.dead += len(slots)
        if self.ids is self.snapshot.ids:
            self.ids = self.ids.forgetting()
        for memory_id in memory_ids:
            self.ids.forget(memory_id)

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
            self.user_codes,
        )
        self._owners_private = False

    def _compact(self) -> None:
        """Drop dead slots into fresh storage (published snapshots keep the old)."""
        live = np.flatnonzero(self.state_of[: self.count] < _DEAD)
        names = self.ids.names(live)
        self.ids = _Ids()
        self.ids.add(names)
        self.codes = self.codes[live]
        self.scale = self.scale[live]
        self.user_of = self.user_of[live]
        self.state_of = self.state_of[live]
        self.dead = 0
        self._owners_private = True


_cache: dict[tuple[str, str, str], _Entry] = {}
_cache_lock = threading.Lock()


def cached(conn: Connection, brain_id: str, model: str, dims: int) -> Snapshot:
    """The brain's vectors for `model`, brought up to date with what is in the table: one
    snapshot, for the caller to read everything it needs from (never the cache again)."""
    return _current(conn, brain_id, model, dims)[0]


def _current(
    conn: Connection, brain_id: str, model: str, dims: int, *, reconcile: bool = False
) -> tuple[Snapshot, int]:
    """`cached`, and the watermark it is current to; `reconcile`: purged memories dropped
    too, now."""
    key = (str(conn.engine.url), brain_id, model)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None or entry.dims != dims:
            entry = _cache[key] = _Entry(dims)
    with entry.lock:
        _refresh(conn, entry, brain_id, model)
        if reconcile:
            _reconcile(conn, entry, {"brain": brain_id, "model": model, "dims": dims})
            entry.publish()
        return entry.snapshot, entry.watermark


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
    if entry.watermark < 0:
        # A cold cache starts from the saved image, if any, and reads only what changed since.
        # Purged memories it still holds wait for the reconcile like a warm cache's do.
        _load_image(conn, entry, brain_id, model)
    elif time.monotonic() - entry.reconciled_at > _RECONCILE_SECONDS:
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
    conn: Connection, statement: str, params: dict[str, Any], *, whole: bool, size: int = _CHUNK
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
            while chunk := cursor.fetchmany(size):
                yield chunk
        finally:
            cursor.close()
            if mapped:
                driver.execute(f"PRAGMA mmap_size = {int(mapped)}")
        return
    # Per statement: Connection.execution_options would make every later statement on this
    # connection a server-side cursor too.
    result = conn.execute(sql(statement), params, execution_options={"yield_per": size})
    for part in result.partitions():
        yield [tuple(row) for row in part]


_IMAGE_COLUMNS = "part, parts, total, dims, watermark, ids, codes, scales, owners, states, users"


def _load_image(conn: Connection, entry: _Entry, brain_id: str, model: str) -> bool:
    """Fill an empty entry from the brain's saved image (`save_image`) and take its watermark
    on; False (the entry left empty) when there is none or it does not fit these dims."""
    statement = (
        f"SELECT {_IMAGE_COLUMNS} FROM vector_images "
        "WHERE brain_id = :brain AND model = :model ORDER BY part"
    )
    watermark = None
    expected = filled = 0
    shape = (0, 0)  # parts, total: every part of one image says the same
    base = np.zeros(0, "S1")
    # Past SQLite's memory map (whole=True): through it the image's pages would stay resident
    # beside the arrays made from them (+40 MiB at 100,000 MiniLM vectors, for ~20 ms less
    # CPU). One part per fetch: the bytes of one part are all this holds beside the cache.
    for chunk in _chunks(conn, statement, {"brain": brain_id, "model": model}, whole=True, size=1):
        for part, parts, total, dims, mark, ids, codes, scales, owners, states, users in chunk:
            rows = len(scales) // 4
            fits = part == expected and dims == entry.dims and watermark in (None, mark)
            fits = fits and (part == 0 or shape == (parts, total)) and filled + rows <= total
            if not fits or len(codes) != rows * dims:
                entry.clear()
                return False
            if part == 0:
                entry._grow(int(total))
                width = len(ids) // rows if rows else 1
                base = np.empty(int(total), f"S{width}")
            watermark, expected, end, shape = int(mark), expected + 1, filled + rows, (parts, total)
            base[filled:end] = np.frombuffer(ids, base.dtype)
            entry.codes[filled:end] = np.frombuffer(codes, np.int8).reshape(rows, dims)
            entry.scale[filled:end] = np.frombuffer(scales, np.float32)
            user_codes = entry.user_codes
            code_of = np.fromiter(
                (user_codes.setdefault(u, len(user_codes)) for u in json.loads(users)), np.int32
            )
            entry.user_of[filled:end] = code_of[np.frombuffer(owners, np.int32)]
            entry.state_of[filled:end] = np.frombuffer(states, np.int8)
            filled = end
    if watermark is None or shape != (expected, filled):
        entry.clear()
        return False
    entry.ids = _Ids(base)
    entry.publish()
    entry.watermark = watermark
    return True


# Vectors per image row: 16,384 x 256 dims is 4 MiB of codes.
_IMAGE_PART = 16384


def save_image(conn: Connection, brain_id: str, model: str, dims: int) -> SavedImageRecord:
    """Save the brain's vectors of `model` as this process's cache holds them (brought up to
    date first), for cold processes to start from, unless the saved image is current: nothing
    stamped since it and as many vectors as it holds. Called by maintenance, in a write
    transaction (the image is replaced whole or not at all); derived data only.

    Why in the database rather than a file beside it: it is written in a transaction (a crash
    leaves the old image or the new one), every process and host sees the same one (a
    function's /tmp starts empty), it goes with the brain (ON DELETE CASCADE) and erasure
    deletes it with the vectors, and PostgreSQL deployments have no shared file system."""
    where = "brain_id = :brain AND model = :model"
    params = {"brain": brain_id, "model": model}
    saved = conn.execute(
        sql(f"SELECT watermark, total, dims FROM vector_images WHERE {where} AND part = 0"),
        params,
    ).first()
    if saved is not None and saved.dims == dims:
        changed = conn.execute(
            sql(f"SELECT count(*) FROM memory_vectors WHERE {where} AND updated_at >= :since"),
            {**params, "since": saved.watermark},
        ).scalar_one()
        stored = conn.execute(
            sql(f"SELECT count(*) FROM memory_vectors WHERE {where}"), params
        ).scalar_one()
        if not changed and stored == saved.total:
            return {"written": False, "count": int(saved.total)}
    # Reconciled: a purged memory's codes must not outlive it in the image.
    snapshot, watermark = _current(conn, brain_id, model, dims, reconcile=True)
    live = np.flatnonzero(snapshot.state_of < _DEAD)
    # Sorted by id, as UTF-8 bytes of one width: what a cold load searches (`_Ids`).
    names = [name.encode() for name in snapshot.ids.names(live)]
    order = sorted(range(len(names)), key=names.__getitem__)
    live = live[order]
    ids = np.array([names[k] for k in order], dtype=f"S{max(map(len, names), default=1)}")
    parts = max(1, -(-len(live) // _IMAGE_PART))
    users_by_code = {code: user for user, code in snapshot._user_codes.items()}
    rows = []
    now = now_ms()
    for part in range(parts):
        cut = slice(part * _IMAGE_PART, (part + 1) * _IMAGE_PART)
        slots = live[cut]
        present, local = np.unique(snapshot.user_of[slots], return_inverse=True)
        rows.append(
            {
                **params,
                "part": part,
                "parts": parts,
                "total": len(live),
                "dims": dims,
                "watermark": watermark,
                "ids": ids[cut].tobytes(),
                "codes": snapshot.codes[slots].tobytes(),
                "scales": snapshot.scale[slots].tobytes(),
                "owners": local.astype(np.int32).tobytes(),
                "states": snapshot.state_of[slots].tobytes(),
                "users": json.dumps([users_by_code[int(c)] for c in present.tolist()]),
                "now": now,
            }
        )
    conn.execute(
        sql(f"DELETE FROM vector_images WHERE {where} AND part >= :parts"),
        {**params, "parts": parts},
    )
    conn.execute(
        sql(
            f"INSERT INTO vector_images (brain_id, model, {_IMAGE_COLUMNS}, written_at) VALUES "
            "(:brain, :model, :part, :parts, :total, :dims, :watermark, :ids, :codes, :scales, "
            ":owners, :states, :users, :now) ON CONFLICT (brain_id, model, part) DO UPDATE SET "
            "parts = excluded.parts, total = excluded.total, dims = excluded.dims, "
            "watermark = excluded.watermark, ids = excluded.ids, codes = excluded.codes, "
            "scales = excluded.scales, owners = excluded.owners, states = excluded.states, "
            "users = excluded.users, written_at = excluded.written_at"
        ),
        rows,
    )
    return {"written": True, "count": len(live), "parts": parts}


def drop_images(conn: Connection, brain_id: str) -> int:
    """Delete the brain's saved images (an erasure: what they hold must go with the rows)."""
    result = conn.execute(
        sql("DELETE FROM vector_images WHERE brain_id = :brain"), {"brain": brain_id}
    )
    return int(result.rowcount or 0)


def _reconcile(conn: Connection, entry: _Entry, params: dict[str, Any]) -> None:
    """Let go of the vectors of purged memories: a count, and their ids only if it differs."""
    entry.reconciled_at = time.monotonic()
    where = "brain_id = :brain AND model = :model AND dims = :dims"
    stored = conn.execute(
        sql(f"SELECT count(*) FROM memory_vectors WHERE {where}"), params
    ).scalar_one()
    if stored >= entry.ids.held():
        return
    statement = f"SELECT memory_id FROM memory_vectors WHERE {where}"
    present = {row[0] for row in tuples(conn, statement, params)}
    held = entry.ids.names(np.flatnonzero(entry.state_of[: entry.count] < _DEAD))
    entry.drop([memory_id for memory_id in held if memory_id not in present])


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
    # By primary key: the (brain, model) index would read every vector of the brain
    # (core/kernel/db/planner.py).
    brain = no_index(conn, "brain_id")
    rows = tuples(
        conn,
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
