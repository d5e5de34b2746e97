"""A list of ids bound as one value, on either store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection


def text_array(values: Iterable[str]) -> str:
    """PostgreSQL's text form of a text[] holding `values`, for a parameter cast to text[]:
    psycopg adapts a Python list element by element, a regular expression each (0.2 ms for
    100 ids, about a millisecond of a search that binds ~500), where this is one join. Every
    element is quoted, so NULL, blanks, commas and braces are plain text; inside the quotes
    only a double quote and a backslash need a backslash before them."""
    values = list(values)
    if not values:
        return "{}"
    joined = '","'.join(values)
    if '"' in joined or "\\" in joined:
        joined = '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return '{"' + joined + '"}'


def id_table(
    conn: Connection, name: str, *, alias: str = "c"
) -> tuple[str, Callable[[list[str]], Any]]:
    """A list of ids as a one-column table `<alias>(value)`, bound as ONE value: a few hundred
    separate parameters would cost more to bind than the query costs to run. Returns the table
    expression for a FROM clause and what turns the list into the bound value."""
    if conn.dialect.name == "postgresql":
        return f"unnest(CAST(:{name} AS text[])) AS {alias}(value)", text_array
    return f"json_each(:{name}) AS {alias}", json.dumps


def id_in(conn: Connection, ids: list[str]) -> tuple[str, Any]:
    """`IN (...)` over a list of ids bound as ONE value named `:ids` (json_each on SQLite, a
    text[] on PostgreSQL). Returns the SQL after the column and the value to bind."""
    if conn.dialect.name == "postgresql":
        return "= ANY(CAST(:ids AS text[]))", text_array(ids)
    return "IN (SELECT value FROM json_each(:ids))", json.dumps(ids)


def brain_by_id(conn: Connection) -> str:
    """brain_id for a statement that names its rows by a list of ids: SQLite's planner, left
    alone, walks the brain's index instead of the primary key; a unary + takes that index out
    of its choices."""
    return "+brain_id" if conn.dialect.name == "sqlite" else "brain_id"
