"""Importance changes that are not edits: a reinforcement (an explicit signal: it counts as an
update and an access) and decay (drift: it leaves updated_at alone). The memory layer writes
them; the policy and the records of each are core/curation/hygiene.py's.
"""

from __future__ import annotations

from sqlalchemy import Connection

from core.kernel.db.engine import sql
from core.kernel.db.id_lists import brain_by_id, id_in


def reinforce(conn: Connection, brain_id: str, memory_id: str, importance: float, now: int) -> None:
    conn.execute(
        sql(
            "UPDATE memories SET importance = :imp, updated_at = :now, last_accessed_at = :now, "
            "access_count = access_count + 1 WHERE brain_id = :brain AND id = :id"
        ),
        {"imp": importance, "now": now, "brain": brain_id, "id": memory_id},
    )


def decay(
    conn: Connection,
    brain_id: str,
    memory_ids: list[str],
    *,
    keep: float,
    floor: float,
    now: int,
    stale: int,
) -> None:
    """One multiplicative step down for the memories, never below `floor`, in one statement.
    Only memories not decayed since `stale`: a concurrent run that read the same rows changes
    nothing."""
    among, ids = id_in(conn, memory_ids)
    conn.execute(
        sql(
            "UPDATE memories SET importance = CASE WHEN importance * :keep > :floor "
            "THEN importance * :keep ELSE :floor END, decayed_at = :now "
            f"WHERE {brain_by_id(conn)} = :brain AND id {among} AND importance > :floor "
            "AND (decayed_at IS NULL OR decayed_at <= :stale)"
        ),
        {"keep": keep, "floor": floor, "now": now, "brain": brain_id, "ids": ids, "stale": stale},
    )
