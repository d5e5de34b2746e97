"""Steering SQLite's query planner where its own choice is known to be slow.

SQLite picks one index per table. A statement that names its rows by primary key or rowid and
also says `brain_id = :brain` (as every statement must: tenant isolation) can lead the planner
to the (brain_id, ...) index instead, which walks every row of the brain: 6 ms at 10,000
memories for what the primary key finds in microseconds. A unary `+` before the column makes
it an expression, which no index serves, so the planner keeps the key. PostgreSQL's planner
weighs its statistics and needs no help, so the column is left as it is there.
"""

from __future__ import annotations

from sqlalchemy import Connection


def no_index(conn: Connection, column: str) -> str:
    """`column` as a statement should name it so that no index is chosen for it (SQLite);
    for statements that find their rows by primary key or rowid."""
    return f"+{column}" if conn.dialect.name == "sqlite" else column
