"""Time in retrieval: what a query says about time, and how much that moves each candidate.

Two signals, each a factor in (0, 1] on a candidate's score, so a search that says nothing
about time ranks exactly as before:
- a question about when or how long ("When did Melanie run a charity race?", "How long ago
  was...") wants the memory that carries a date or a time phrase: the memories that carry none
  are scaled by `1 - WHEN_WEIGHT`;
- a query that names a time ("in May 2023", "last summer", "before June 2023", "in June" of
  any year) wants memories of that time: the memories that were valid then, or whose content
  mentions a date then (`memory_dates`, resolved when they were saved), keep their score, the
  others are scaled by `1 - RANGE_WEIGHT`.
And two for every search. Of the two sides of an unresolved conflict (a contradiction caught
on write, core/curation/on_write.py), the one that became true later is the current statement
when both were true at the moment asked about: the older side is scaled by
`1 - CONTESTED_WEIGHT` (both stay in the results; context packs mark them contested). And of
two statements otherwise alike, the one that became true more
recently (by valid time, against the moment asked about: its `as_of`, else now) is the more
current, so it ranks first: "Alice lives in Paris" (valid from 2025) over "Alice lives in Lyon"
(from 2024). Its weight is small and its horizon years, where the recency factor (system time,
30 days) sees two old statements as equally old.
The weights are global, measured on the LoCoMo dev split and the knowledge-update bench
(docs/benchmarks.md), never tuned per question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.kernel.db.engine import tuples
from core.kernel.db.id_lists import id_table
from core.memory import dates

WHEN_WEIGHT = 0.25
RANGE_WEIGHT = 0.3
CONTESTED_WEIGHT = 0.2
CURRENCY_WEIGHT = 0.01
CURRENCY_HALF_LIFE_DAYS = 365.0
_DAY_MS = 86_400_000

_NEVER = 2**62
_WHEN = re.compile(
    r"^\s*(?:when\b|what\s+(?:date|day|year|month|time)\b|which\s+(?:date|day|year|month)\b|"
    r"how\s+long\b|how\s+many\s+(?:days|weeks|months|years)\b|since\s+when\b)"
    r"|\b(?:what|which)\s+(?:date|year|month)\b|\bhow\s+long\s+ago\b",
    re.IGNORECASE,
)
_MONTH_ONLY = re.compile(
    r"\b(?:in|during|on|of)\s+(?P<month>" + "|".join(dates.MONTH_NAMES) + r")\b(?!\s*,?\s*\d)",
    re.IGNORECASE,
)
_SEASON_ONLY = re.compile(
    r"\b(?:in|during|over)\s+the\s+(?P<season>spring|summer|fall|autumn|winter)\b", re.IGNORECASE
)
_SEASON_MONTHS = {
    "spring": (3, 4, 5),
    "summer": (6, 7, 8),
    "fall": (9, 10, 11),
    "autumn": (9, 10, 11),
    "winter": (12, 1, 2),
}
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(dates.MONTH_NAMES)}


@dataclass(frozen=True)
class TimeQuery:
    """What a query says about time."""

    when: bool = False  # asks when, or how long
    spans: tuple[tuple[int, int], ...] = ()  # absolute [start, end) in epoch ms
    months: frozenset[int] = field(default_factory=frozenset)  # a month of any year

    @property
    def names_time(self) -> bool:
        return bool(self.spans or self.months)

    @property
    def matters(self) -> bool:
        return self.when or self.names_time


def read_query(query: str, anchor_ms: int) -> TimeQuery:
    """The query's time, resolved against `anchor_ms` (its as_of, else now). A month or a
    season named without a year is that month of any year: a person asking "in June" of a
    memory years old means that June, not the one just past."""
    months: set[int] = set()
    covered: list[tuple[int, int]] = []
    for m in _MONTH_ONLY.finditer(query):
        months.add(_MONTH_NUMBER[m.group("month").lower()])
        covered.append((m.start(), m.end()))
    for m in _SEASON_ONLY.finditer(query):
        months.update(_SEASON_MONTHS[m.group("season").lower()])
        covered.append((m.start(), m.end()))
    spans: list[tuple[int, int]] = []
    lowered = query.lower()
    for span in dates.spans(query, anchor_ms):
        at = lowered.find(span.phrase.lower())
        if any(start <= at < end for start, end in covered):
            continue
        before = lowered[max(0, at - 8) : at]
        if re.search(r"\bbefore\s*$", before):
            spans.append((0, span.start))
        elif re.search(r"\b(?:after|since)\s*$", before):
            spans.append((span.end if "after" in before else span.start, _NEVER))
        else:
            spans.append((span.start, span.end))
    return TimeQuery(bool(_WHEN.search(query)), tuple(spans), frozenset(months))


def _month_of(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).month


@dataclass(frozen=True)
class Read:
    """What `factors` reads of the candidates, read already: on PostgreSQL search reads it in
    the statement that reads the candidates' thread neighbours (a round trip each saved)."""

    conflicts: list[tuple[str, str]]  # open conflicts among them (a_id, b_id)
    dates: list[tuple[str, int | None, int | None]] | None  # the dates they mention; None: unread


def conflicts_sql(ids: str, brain: str) -> str:
    """The open conflicts (a_id, b_id) both of whose sides are among `ids` (a subquery of
    ids), in the brain bound as `brain`."""
    return (
        "SELECT c.a_id, c.b_id FROM memory_conflict_resolutions c "
        f"WHERE c.brain_id = {brain} AND c.status = 'needs_review' "
        f"AND c.a_id IN ({ids}) AND c.b_id IN ({ids})"
    )


def dates_sql(members: str, brain: str, *, join: str = "JOIN") -> str:
    """(memory_id, starts_at, ends_at) of the dates mentioned by the memories of `members` (a
    table expression with an `ids.value` column), in the brain bound as `brain`."""
    return (
        f"SELECT d.memory_id, d.starts_at, d.ends_at FROM {members} {join} memory_dates d "
        f"ON d.memory_id = ids.value WHERE d.brain_id = {brain}"
    )


def factors(
    conn: Connection,
    brain_id: str,
    ids: list[str],
    valid_from: list[int],
    query: TimeQuery,
    moment: int,
    read: Read | None = None,
) -> np.ndarray:
    """One factor in (0, 1] per candidate (ids with their valid_from, epoch ms), for a query
    about `moment` (its as_of, else now); `read` is what was read of them already."""
    age_days = np.maximum(moment - np.array(valid_from, dtype=np.float64), 0.0) / _DAY_MS
    out: np.ndarray = 1.0 - CURRENCY_WEIGHT * (
        1.0 - np.power(0.5, age_days / CURRENCY_HALF_LIFE_DAYS)
    )
    if ids:
        pairs = read.conflicts if read is not None else None
        out *= _contested(conn, brain_id, ids, valid_from, pairs)
    if not query.matters or not ids:
        return out
    mentioned: dict[str, list[tuple[int | None, int | None]]] = {}
    found = read.dates if read is not None else None
    if found is None:
        found = _dates_of(conn, brain_id, ids)
    for memory_id, start, end in found:
        mentioned.setdefault(memory_id, []).append((start, end))
    for i, memory_id in enumerate(ids):
        own = mentioned.get(memory_id, [])
        if query.when and not own:
            out[i] *= 1.0 - WHEN_WEIGHT
        if query.names_time and not _in_range(query, valid_from[i], own):
            out[i] *= 1.0 - RANGE_WEIGHT
    return out


def _in_range(
    query: TimeQuery, valid_from: int, mentions: list[tuple[int | None, int | None]]
) -> bool:
    spans = [(valid_from, valid_from + 1)] + [(s, e) for s, e in mentions if s is not None]
    for start, end in spans:
        assert end is not None
        if any(start < q_end and q_start < end for q_start, q_end in query.spans):
            return True
        if query.months and _month_of(start) in query.months:
            return True
    return False


def _dates_of(
    conn: Connection, brain_id: str, ids: list[str]
) -> list[tuple[str, int | None, int | None]]:
    members, value = id_table(conn, "ids", alias="ids")
    join = "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"
    return tuples(
        conn, dates_sql(members, ":brain", join=join), {"brain": brain_id, "ids": value(ids)}
    )


def _contested(
    conn: Connection,
    brain_id: str,
    ids: list[str],
    valid_from: list[int],
    pairs: list[tuple[str, str]] | None = None,
) -> np.ndarray:
    """1 for each candidate, 1 - CONTESTED_WEIGHT for the older side of an open conflict whose
    newer side is a candidate too (every candidate is valid at the moment asked about). The
    conflicts are read here unless `pairs` holds them."""
    out = np.ones(len(ids))
    rows: Sequence[tuple[Any, ...]] | None = pairs
    if rows is None:
        members, value = id_table(conn, "ids", alias="ids")
        rows = tuples(
            conn,
            conflicts_sql(f"SELECT ids.value FROM {members}", ":brain"),
            {"brain": brain_id, "ids": value(ids)},
        )
    if not rows:
        return out
    position = {memory_id: i for i, memory_id in enumerate(ids)}
    for a_id, b_id in rows:
        a, b = position[a_id], position[b_id]
        if valid_from[a] != valid_from[b]:
            out[a if valid_from[a] < valid_from[b] else b] = 1.0 - CONTESTED_WEIGHT
    return out


# Two memories saved one after the other are one thread (a conversation stored turn by turn)
# only if what they say was true at about the same time; facts of different years saved in a
# row are not (core/retrieval/search.py's thread context asks this).
THREAD_WINDOW_MS = 2 * _DAY_MS


def same_time(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: valid from within THREAD_WINDOW_MS of each other."""
    close: np.ndarray = np.abs(a - b) <= THREAD_WINDOW_MS
    return close
