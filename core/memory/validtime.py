"""Valid time beside system time, and the two ways of asking about the past.

`valid_from` / `valid_to` say when what a memory states was true; `created_at` / `updated_at`
(and the history rows) when the store learned it. A memory is valid from what its writer says,
else from when it happened (`occurred_at`, a message's time), else from when it was saved, and
until a newer fact of its key takes over (its `valid_to` is closed at the newer one's
`valid_from`; it stays, archived, for questions about the past).

- `as_of` (valid time): the memories whose statement held at that moment, superseded facts
  included, ranked as usual. A memory archived or deleted by hand is not part of any past.
- `known_at` (system time): what the store held at that moment, each memory with the content
  and state its history rows give it then (audit: "what did the agent know when it answered?").
  A purge erases history, so a purged memory is not rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

from sqlalchemy import Connection

from core.kernel.db.engine import sql
from core.kernel.errors import InvalidInput
from core.kernel.ids import iso
from core.kernel.scope import Scope
from core.memory import dates
from core.memory.models import MemoryRecord

# The moment a memory became valid when nothing else says so, as SQL over a memories row.
VALID_FROM_SQL = "coalesce({a}valid_from, {a}occurred_at, {a}created_at)"


def span(
    valid_from: int | None, valid_to: int | None, occurred_at: int | None, now: int
) -> tuple[int, int | None]:
    """The valid time of a new memory, checked."""
    start = valid_from if valid_from is not None else occurred_at if occurred_at else now
    if valid_to is not None and valid_to <= start:
        raise InvalidInput(
            "valid_to must be later than valid_from (or occurred_at, or now)",
            code="invalid_valid_time",
            details={"field": "valid_to"},
        )
    return start, valid_to


def as_of_sql(params: dict[str, Any], as_of: int, alias: str = "") -> list[str]:
    """WHERE clauses for the memories valid at `as_of`. Replaces the plain state filter: a
    superseded fact (archived with a closed `valid_to`) was true in its time."""
    params["as_of"] = as_of
    return [
        f"({alias}state = 'active' OR ({alias}state = 'archived' AND {alias}valid_to IS NOT NULL))",
        f"{VALID_FROM_SQL.format(a=alias)} <= :as_of",
        f"({alias}valid_to IS NULL OR {alias}valid_to > :as_of)",
    ]


# The latest history event of the memory at `known_at`, read off ix_memory_history_memory.
_EVENT_THEN = (
    "(SELECT h.{column} FROM memory_history h WHERE h.brain_id = {a}brain_id "
    "AND h.memory_id = {a}id AND h.created_at <= :known_at "
    "ORDER BY h.created_at DESC, h.id DESC LIMIT 1)"
)


def known_at_sql(params: dict[str, Any], known_at: int, alias: str = "") -> list[str]:
    """WHERE clauses for the memories the store held, active, at `known_at`."""
    params["known_at"] = known_at
    event = _EVENT_THEN.format(column="event", a=alias)
    return [
        f"{alias}created_at <= :known_at",
        f"coalesce({event}, 'ADD') NOT IN ('DELETE', 'ARCHIVE')",
    ]


def rebuild(
    conn: Connection, scope: Scope, memories: list[MemoryRecord], known_at: int
) -> list[MemoryRecord]:
    """The memories as the store held them at `known_at`: content from the latest history row
    at that moment; later changes (and the time they were made) are not shown."""
    if not memories:
        return memories
    then = contents_then(conn, scope.brain_id, [m["id"] for m in memories], known_at)
    out = []
    for memory in memories:
        found = then.get(memory["id"])
        copy = memory.copy()
        if found is not None and found[0] != memory["content"]:
            copy["content"], copy["updated_at"] = found[0], iso(found[1]) or copy["updated_at"]
        copy["state"] = "active"
        out.append(copy)
    return out


def contents_then(
    conn: Connection, brain_id: str, memory_ids: list[str], known_at: int
) -> dict[str, tuple[str, int]]:
    """Each memory's content at `known_at` and when it was written, from the latest ADD or
    UPDATE history row by then (absent: no such row, the content is the memory's own)."""
    if not memory_ids:
        return {}
    names = [f"k_{i}" for i in range(len(memory_ids))]
    params: dict[str, Any] = {"brain": brain_id, "known_at": known_at}
    params.update(zip(names, memory_ids, strict=True))
    rows = conn.execute(
        sql(
            "SELECT memory_id, event, new_memory, created_at FROM memory_history "
            f"WHERE brain_id = :brain AND memory_id IN ({', '.join(':' + n for n in names)}) "
            "AND created_at <= :known_at ORDER BY created_at, id"
        ),
        params,
    ).all()
    then: dict[str, tuple[str, int]] = {}
    for memory_id, event, new_memory, at in rows:
        if event in ("ADD", "UPDATE") and new_memory is not None:
            then[memory_id] = (new_memory, at)
    return then


def close(conn: Connection, brain_id: str, memory_id: str, at: int) -> None:
    """Stop a memory's validity at `at` (a newer statement took over), never before it began
    and never later than an end it already has."""
    conn.execute(
        sql(
            "UPDATE memories SET valid_to = CASE "
            f"WHEN {VALID_FROM_SQL.format(a='')} >= :at THEN {VALID_FROM_SQL.format(a='')} + 1 "
            "WHEN valid_to IS NOT NULL AND valid_to < :at THEN valid_to ELSE :at END "
            "WHERE brain_id = :brain AND id = :id"
        ),
        {"at": at, "brain": brain_id, "id": memory_id},
    )


def index_dates(
    conn: Connection, brain_id: str, memory_id: str, content: str, anchor: int, *, new: bool
) -> None:
    """The memory's `memory_dates` rows: the spans its content names, resolved against its own
    time; one row without a span when it speaks of time without naming one."""
    if not new:
        conn.execute(
            sql("DELETE FROM memory_dates WHERE brain_id = :brain AND memory_id = :id"),
            {"brain": brain_id, "id": memory_id},
        )
    index_dates_many(conn, brain_id, [(memory_id, content, anchor)])


def index_dates_many(
    conn: Connection, brain_id: str, memories: Iterable[tuple[str, str, int]]
) -> None:
    """`index_dates` for many new memories (memory id, content, the time it is read against)
    in one statement: imports write their memories in bulk."""
    rows = [
        row
        for memory_id, content, anchor in memories
        for row in _date_rows(brain_id, memory_id, content, anchor)
    ]
    if rows:
        conn.execute(
            sql(
                "INSERT INTO memory_dates (memory_id, brain_id, starts_at, ends_at, phrase) "
                "VALUES (:m, :b, :s, :e, :p)"
            ),
            rows,
        )


def dates_written_with(
    brain_id: str, memory_id: str, content: str, anchor: int
) -> tuple[str, dict[str, Any]] | None:
    """PostgreSQL: a new memory's `memory_dates` rows (as `index_dates` writes them) as a
    data-modifying WITH for the memory's own INSERT, and its parameters; None when there are
    none. Their foreign key to the memory is checked at the end of that statement, when the
    memory's row is there."""
    rows = _date_rows(brain_id, memory_id, content, anchor)
    if not rows:
        return None
    return (
        "d AS (INSERT INTO memory_dates (memory_id, brain_id, starts_at, ends_at, phrase) "
        "SELECT :d_memory, :d_brain, x.s, x.e, x.p FROM unnest(CAST(:d_starts AS bigint[]), "
        "CAST(:d_ends AS bigint[]), CAST(:d_phrases AS text[])) AS x(s, e, p))",
        {
            "d_memory": memory_id,
            "d_brain": brain_id,
            "d_starts": [r["s"] for r in rows],
            "d_ends": [r["e"] for r in rows],
            "d_phrases": [r["p"] for r in rows],
        },
    )


class _DateRow(TypedDict):
    """One memory_dates row's parameters: memory, brain, start, end, phrase."""

    m: str
    b: str
    s: int | None
    e: int | None
    p: str


def _date_rows(brain_id: str, memory_id: str, content: str, anchor: int) -> list[_DateRow]:
    rows: list[_DateRow] = [
        {"m": memory_id, "b": brain_id, "s": s.start, "e": s.end, "p": s.phrase[:100]}
        for s in dates.spans(content, anchor)
    ]
    if not rows and dates.carries_time(content):
        rows = [{"m": memory_id, "b": brain_id, "s": None, "e": None, "p": ""}]
    return rows[:20]
