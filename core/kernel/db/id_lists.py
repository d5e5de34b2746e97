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
