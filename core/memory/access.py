"""Access counts: the memories search and context packs return count as accessed (ranking,
decay and retention read `access_count` and `last_accessed_at`), counted off the read path.

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
import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Engine

from core.kernel.db.engine import sql, transaction
from core.kernel.ids import now_ms

log = logging.getLogger("mnemo.access")

_FLUSH_SECONDS = 5.0
_FLUSH_IDS = 500

# (brain_id, memory_id) -> [accesses not yet written, the last of them (epoch ms)]
_Tally = dict[tuple[str, str], list[int]]


class _Log:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._tallies: dict[Engine, _Tally] = {}
        self._since: dict[Engine, float] = {}

    def add(self, engine: Engine, brain_id: str, memory_ids: Sequence[str], at: int) -> bool:
        """Count these accesses; whether the engine's tally is due to be written."""
        with self._lock:
            tally = self._tallies.setdefault(engine, {})
            since = self._since.setdefault(engine, time.monotonic())
            for memory_id in memory_ids:
                entry = tally.setdefault((brain_id, memory_id), [0, at])
                entry[0] += 1
                entry[1] = max(entry[1], at)
            return len(tally) >= _FLUSH_IDS or time.monotonic() - since >= _FLUSH_SECONDS

    def _take(self, engine: Engine) -> _Tally:
        with self._lock:
            self._since.pop(engine, None)
            return self._tallies.pop(engine, {})

    def _put_back(self, engine: Engine, tally: _Tally) -> None:
        with self._lock:
            mine = self._tallies.setdefault(engine, {})
            self._since.setdefault(engine, time.monotonic())
            for key, (count, at) in tally.items():
                entry = mine.setdefault(key, [0, at])
                entry[0] += count
                entry[1] = max(entry[1], at)

    def engines(self) -> list[Engine]:
        with self._lock:
            return list(self._tallies)

    def flush(self, engine: Engine, *, wait: bool = True) -> int:
        """Write the engine's tally; returns how many memories it updated. Without `wait`, a
        flush already under way elsewhere is left to it."""
        if not self._flushing.acquire(blocking=wait):
            return 0
        try:
            tally = self._take(engine)
            if not tally:
                return 0
            rows = [
                {"brain": brain, "id": memory_id, "n": count, "at": at}
                for (brain, memory_id), (count, at) in sorted(tally.items())
            ]
            try:
                with transaction(engine) as conn:
                    # SQLite's planner, left alone, walks the brain's index instead of the
                    # primary key; a unary + takes that index out of its choices.
                    brain = "+brain_id" if conn.dialect.name == "sqlite" else "brain_id"
                    conn.execute(
                        sql(
                            "UPDATE memories SET access_count = access_count + :n, "
                            "last_accessed_at = CASE WHEN last_accessed_at IS NULL OR "
                            "last_accessed_at < :at THEN :at ELSE last_accessed_at END "
                            f"WHERE id = :id AND {brain} = :brain"
                        ),
                        rows,
                    )
            except Exception:
                self._put_back(engine, tally)
                raise
            return len(rows)
        finally:
            self._flushing.release()


_log = _Log()


def record(engine: Engine, brain_id: str, memory_ids: Sequence[str]) -> None:
    """The memories a read returned count as accessed now. Writes the process's tally when it
    is due; a failure to write it is logged and the counts kept for the next try, never the
    reader's error."""
    if not memory_ids:
        return
    if _log.add(engine, brain_id, memory_ids, now_ms()):
        try:
            _log.flush(engine, wait=False)
        except Exception:
            log.warning("access counts not written yet, kept for the next flush", exc_info=True)


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
