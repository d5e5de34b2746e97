"""OpenMemory's per-brain end users: a row appears the first time a user_id is seen."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from core.kernel.db.engine import sql
from core.kernel.ids import iso, now_ms
from core.kernel.scope import Scope
from core.memory.models import UserListingRecord

# The user's row, made if missing; its parameters are a new memory's INSERT's own names, so
# PostgreSQL runs it inside that statement (core/memory/store.py `create`).
TOUCH = (
    "INSERT INTO users (brain_id, user_id, reflection_count, created_at, updated_at) "
    "VALUES (:brain, :user, 0, :now, :now) ON CONFLICT (brain_id, user_id) DO NOTHING"
)


def touch(conn: Connection, brain_id: str, user_id: str) -> None:
    conn.execute(sql(TOUCH), {"brain": brain_id, "user": user_id, "now": now_ms()})


def store_summary(
    conn: Connection,
    brain_id: str,
    user_id: str,
    *,
    summary: str,
    source: str,
    read_at: int,
    guard: bool,
    expected: int | None,
) -> bool:
    """Save a user's summary (made by core/curation/summaries) and count one reflection; with
    `guard`, only if the stored summary is still the one `expected` (its summarized_at, None
    for none yet). Returns whether it was saved."""
    params: dict[str, Any] = {
        "brain": brain_id,
        "user": user_id,
        "summary": summary,
        "source": source,
        "read_at": read_at,
        "now": now_ms(),
    }
    condition = ""
    if guard:
        condition = " AND coalesce(summarized_at, -1) = :expected"
        params["expected"] = -1 if expected is None else expected
    result = conn.execute(
        sql(
            "UPDATE users SET summary = :summary, summary_source = :source, "
            "summarized_at = :read_at, reflection_count = reflection_count + 1, "
            f"updated_at = :now WHERE brain_id = :brain AND user_id = :user{condition}"
        ),
        params,
    )
    return bool(result.rowcount)


def list_users(
    conn: Connection, scope: Scope, *, limit: int, after: str | None = None
) -> tuple[list[UserListingRecord], str | None]:
    """The brain's end users by id, with how many memories each has (in any state: counted from
    the (brain_id, user_id, created_at, id) index alone, without reading the rows) and their
    stored summary (read as it is: making summaries is the summaries service's job). Returns
    the page and the id to pass as `after` for the next one."""
    params: dict[str, Any] = {"after": after or "", "n": limit + 1}
    where = f"{scope.where(params, 'u.')} AND u.user_id > :after"
    rows = conn.execute(
        sql(
            "SELECT u.user_id, u.summary, u.summary_source, u.summarized_at, u.created_at, "
            "(SELECT count(*) FROM memories m WHERE m.brain_id = u.brain_id "
            "AND m.user_id = u.user_id) AS memories "
            f"FROM users u WHERE {where} ORDER BY u.user_id LIMIT :n"
        ),
        params,
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    users: list[UserListingRecord] = [
        {
            "user_id": r.user_id,
            "summary": r.summary,
            "summary_source": r.summary_source,
            "summarized_at": iso(r.summarized_at),
            "created_at": iso(r.created_at),
            "memories": int(r.memories),
        }
        for r in rows
    ]
    return users, (rows[-1].user_id if more and rows else None)
