"""OpenMemory's per-brain end users: a row appears the first time a user_id is seen."""

from __future__ import annotations

from sqlalchemy import Connection

from core.db.engine import sql
from core.ids import now_ms


def touch(conn: Connection, brain_id: str, user_id: str) -> None:
    now = now_ms()
    conn.execute(
        sql(
            "INSERT INTO users (brain_id, user_id, reflection_count, created_at, updated_at) "
            "VALUES (:brain, :user, 0, :now, :now) ON CONFLICT (brain_id, user_id) DO NOTHING"
        ),
        {"brain": brain_id, "user": user_id, "now": now},
    )
