"""What a read leaves behind, written off the read path: access counts and recall notes.

The memories search and context packs return count as accessed (ranking, decay and retention
read `access_count` and `last_accessed_at`), and the write gate's echo guard notes which
memories were shown to which caller (`memory_recalls`, read by core/memory/gate.py: content
that repeats them is recalled, not new evidence).

A search used to end with a write transaction of its own: 8-10% of a 10,000-memory search, and
on SQLite it took the single writer's lock, so reads queued behind writers. Now a read only adds
its ids to this process's tally, and the tally is written in one transaction per store when it
is `_FLUSH_SECONDS` old or holds `_FLUSH_IDS` memories (by the request that finds it due, after
its own read), before maintenance runs (decay reads what it fed), and at a clean exit of the
process (atexit: `mnemo serve`, the CLI, tests). A flush that fails puts its counts back for the
next one. What a process killed without warning had not yet written is lost: at most
`_FLUSH_SECONDS` of counts, which rank and decay by, never a memory or a change to one.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from core.kernel.db.engine import sql, transaction
from core.kernel.db.planner import no_index
from core.kernel.ids import new_id, now_ms

log = logging.getLogger("mnemo.access")

_FLUSH_SECONDS = 5.0
_FLUSH_IDS = 500

# A recall note keeps at most this many ids, and lives this long (the longest echo window).
RECALL_IDS = 100
RECALL_KEEP_MS = 86_400_000

# (brain_id, memory_id) -> [accesses not yet written, the last of them (epoch ms)]
_Tally = dict[tuple[str, str], list[int]]


@dataclass(frozen=True)
class Recall:
    """Which memories a read showed one caller (principal, and the user it is scoped to)."""

    brain_id: str
    principal: str
    user_id: str | None
    memory_ids: tuple[str, ...]
    at: int


class _Log:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._tallies: dict[Engine, _Tally] = {}
        self._notes: dict[Engine, list[Recall]] = {}
        self._since: dict[Engine, float] = {}

    def add(
        self,
        engine: Engine,
        brain_id: str,
        memory_ids: Sequence[str],
        at: int,
        note: Recall | None = None,
    ) -> bool:
        """Count these accesses (and keep the recall note); whether the engine's tally is due
        to be written."""
        with self._lock:
            tally = self._tallies.setdefault(engine, {})
            since = self._since.setdefault(engine, time.monotonic())
            for memory_id in memory_ids:
                entry = tally.setdefault((brain_id, memory_id), [0, at])
                entry[0] += 1
                entry[1] = max(entry[1], at)
            if note is not None:
                self._notes.setdefault(engine, []).append(note)
            return len(tally) >= _FLUSH_IDS or time.monotonic() - since >= _FLUSH_SECONDS

    def pending(self, engine: Engine, brain_id: str, principal: str, since: int) -> list[str]:
        """The ids of this caller's recall notes not written yet, newest first."""
        with self._lock:
            notes = list(self._notes.get(engine, ()))
        seen: dict[str, None] = {}
        for note in reversed(notes):
            if note.brain_id == brain_id and note.principal == principal and note.at >= since:
                seen.update(dict.fromkeys(note.memory_ids))
        return list(seen)

    def _take(self, engine: Engine) -> tuple[_Tally, list[Recall]]:
        with self._lock:
            self._since.pop(engine, None)
            return self._tallies.pop(engine, {}), self._notes.pop(engine, [])

    def _put_back(self, engine: Engine, tally: _Tally, notes: list[Recall]) -> None:
        with self._lock:
            mine = self._tallies.setdefault(engine, {})
            self._since.setdefault(engine, time.monotonic())
            for key, (count, at) in tally.items():
                entry = mine.setdefault(key, [0, at])
                entry[0] += count
                entry[1] = max(entry[1], at)
            self._notes[engine] = notes + self._notes.get(engine, [])

    def engines(self) -> list[Engine]:
        with self._lock:
            return list({*self._tallies, *self._notes})

    def flush(self, engine: Engine, *, wait: bool = True) -> int:
        """Write the engine's tally; returns how many memories it updated. Without `wait`, a
        flush already under way elsewhere is left to it."""
        if not self._flushing.acquire(blocking=wait):
            return 0
        try:
            tally, notes = self._take(engine)
            if not tally and not notes:
                return 0
            rows = [
                {"brain": brain, "id": memory_id, "n": count, "at": at}
                for (brain, memory_id), (count, at) in sorted(tally.items())
            ]
            try:
                with transaction(engine) as conn:
                    if rows:
                        # By primary key (core/kernel/db/planner.py).
                        brain = no_index(conn, "brain_id")
                        conn.execute(
                            sql(
                                "UPDATE memories SET access_count = access_count + :n, "
                                "last_accessed_at = CASE WHEN last_accessed_at IS NULL OR "
                                "last_accessed_at < :at THEN :at ELSE last_accessed_at END "
                                f"WHERE id = :id AND {brain} = :brain"
                            ),
                            rows,
                        )
                    if notes:
                        _write_notes(conn, notes)
            except Exception:
                self._put_back(engine, tally, notes)
                raise
            return len(rows)
        finally:
            self._flushing.release()


def _write_notes(conn: Connection, notes: list[Recall]) -> None:
    conn.execute(
        sql(
            "INSERT INTO memory_recalls (id, brain_id, principal, user_id, memory_ids, "
            "created_at) VALUES (:id, :brain, :principal, :user, :ids, :at)"
        ),
        [
            {
                "id": new_id(),
                "brain": n.brain_id,
                "principal": n.principal,
                "user": n.user_id,
                "ids": json.dumps(list(n.memory_ids)),
                "at": n.at,
            }
            for n in notes
        ],
    )
    # Each caller's notes past the longest window go with the next notes it leaves.
    callers = sorted({(n.brain_id, n.principal) for n in notes})
    conn.execute(
        sql(
            "DELETE FROM memory_recalls WHERE brain_id = :brain AND principal = :principal "
            "AND created_at < :cutoff"
        ),
        [{"brain": b, "principal": p, "cutoff": now_ms() - RECALL_KEEP_MS} for b, p in callers],
    )


_log = _Log()


def record(
    engine: Engine,
    brain_id: str,
    memory_ids: Sequence[str],
    *,
    principal: str | None = None,
    user_id: str | None = None,
) -> None:
    """The memories a read returned count as accessed now, and with a `principal` were shown
    to that caller (the echo guard's note). Writes the process's tally when it is due; a
    failure to write it is logged and the counts kept for the next try, never the reader's
    error."""
    if not memory_ids:
        return
    at = now_ms()
    note = None
    if principal is not None:
        note = Recall(brain_id, principal, user_id, tuple(memory_ids[:RECALL_IDS]), at)
    if _log.add(engine, brain_id, memory_ids, at, note):
        try:
            _log.flush(engine, wait=False)
        except Exception:
            log.warning("access counts not written yet, kept for the next flush", exc_info=True)


def pending_recalls(engine: Engine, brain_id: str, principal: str, since: int) -> list[str]:
    """What this process showed the caller since `since` and has not written yet: the echo
    guard reads these beside the written notes, so an echo is caught at once here (another
    process sees it after the next flush, within _FLUSH_SECONDS)."""
    return _log.pending(engine, brain_id, principal, since)


def flush(engine: Engine | None = None) -> int:
    """Write what is tallied (for one engine, or all): before maintenance, at exit, in tests."""
    return sum(_log.flush(e) for e in ([engine] if engine is not None else _log.engines()))


@atexit.register
def _flush_at_exit() -> None:
    for engine in _log.engines():
        try:
            _log.flush(engine)
        except Exception:
            log.warning("access counts lost at exit", exc_info=True)
