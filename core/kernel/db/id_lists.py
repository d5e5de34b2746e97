"""A list of ids bound as one value, on either store."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection


def id_table(
    conn: Connection, name: str, *, alias: str = "c"
) -> tuple[str, Callable[[list[str]], Any]]:
    """A list of ids as a one-column table `<alias>(value)`, bound as ONE value: a few hundred
    separate parameters would cost more to bind than the query costs to run. Returns the table
    expression for a FROM clause and what turns the list into the bound value."""
    if conn.dialect.name == "postgresql":
        return f"unnest(CAST(:{name} AS text[])) AS {alias}(value)", list
    return f"json_each(:{name}) AS {alias}", json.dumps


def id_in(conn: Connection, ids: list[str]) -> tuple[str, Any]:
    """`IN (...)` over a list of ids bound as ONE value named `:ids` (json_each on SQLite, a
    text[] on PostgreSQL). Returns the SQL after the column and the value to bind."""
    if conn.dialect.name == "postgresql":
        return "= ANY(CAST(:ids AS text[]))", list(ids)
    return "IN (SELECT value FROM json_each(:ids))", json.dumps(ids)


def brain_by_id(conn: Connection) -> str:
    """brain_id for a statement that names its rows by a list of ids: SQLite's planner, left
    alone, walks the brain's index instead of the primary key; a unary + takes that index out
    of its choices."""
    return "+brain_id" if conn.dialect.name == "sqlite" else "brain_id"
