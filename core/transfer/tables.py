"""The tables behind the export's record kinds, as the database has them: columns other parts
of the schema add round-trip through export and import without this package knowing them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, inspect

# The tables behind the record kinds other parts of the schema own; a kind whose table does
# not exist (yet) is skipped as `unsupported`, never an error.
TABLES: dict[str, str] = {
    "memory": "memories",
    "history": "memory_history",
    "link": "memory_links",
    "user": "users",
    # Source trust and brain policy (migration 9).
    "trust": "brain_source_trust",
    "policy": "brain_policies",
}

# Within a brain a row is found by these columns rather than its primary key (a trust row's
# id is global; its source_key is what it is about). brain_policies has one row per brain.
_NATURAL_KEYS: dict[str, tuple[str, ...]] = {"brain_source_trust": ("source_key",)}

# Time stamps whose names do not end in _at: a memory's valid time (migration 13).
_VALID_TIME = {"valid_from", "valid_to"}

# Never exported nor imported: derived from other columns, or the tenant itself.
_DERIVED = {"brain_id", "content_hash", "search_vector"}

MEMORY_FIELDS = (
    "id", "user_id", "agent_id", "run_id", "type", "title", "key", "content", "tags", "source",
    "confidence", "importance", "metadata", "state", "occurred_at", "created_at", "updated_at",
    "archived_at", "deleted_at", "access_count", "last_accessed_at", "superseded_by",
)  # fmt: skip


# A row of a table an import writes, by column name: its columns are the table's as the
# database has them (TableShape, read at run time), so they are known only then.
Row = dict[str, Any]


@dataclass(frozen=True)
class TableShape:
    name: str
    columns: tuple[str, ...]  # data columns (brain_id and derived ones left out)
    key: tuple[str, ...]  # primary key without brain_id
    timestamps: frozenset[str]
    # Column -> "int", "float" or "text", for the columns whose values an import checks.
    kinds: tuple[tuple[str, str], ...] = ()
    not_null: frozenset[str] = frozenset()


_shapes: dict[tuple[str, str], TableShape | None] = {}


def table_shape(conn: Connection, table: str) -> TableShape | None:
    """The table's columns as the database has them (None if it does not exist), so columns
    other parts of the schema add round-trip without this module knowing them."""
    cache_key = (str(conn.engine.url), table)
    if cache_key in _shapes:
        return _shapes[cache_key]
    inspector = inspect(conn)
    if not inspector.has_table(table):
        return None  # not cached: the migration that makes it may run later in this process
    described = inspector.get_columns(table)
    columns = tuple(c["name"] for c in described if c["name"] not in _DERIVED)
    key = _NATURAL_KEYS.get(table) or tuple(
        c for c in inspector.get_pk_constraint(table)["constrained_columns"] if c != "brain_id"
    )
    stamps = frozenset(
        c["name"]
        for c in described
        if (c["name"].endswith("_at") or c["name"] in _VALID_TIME)
        and "INT" in str(c["type"]).upper()
    )
    not_null = frozenset(c["name"] for c in described if not c.get("nullable", True))
    shape = TableShape(table, columns, key, stamps, tuple(_kinds(described)), not_null)
    _shapes[cache_key] = shape
    return shape


def _kinds(described: list[Any]) -> Iterator[tuple[str, str]]:
    for column in described:
        if column["name"] in _DERIVED:
            continue
        python_type = None
        try:
            python_type = column["type"].python_type
        except NotImplementedError:
            continue
        if python_type is bool:
            continue
        if python_type is int:
            yield column["name"], "int"
        elif python_type in (float, Decimal):
            yield column["name"], "float"
        elif python_type is str:
            yield column["name"], "text"


def shape_of(conn: Connection, table: str) -> TableShape:
    shape = table_shape(conn, table)
    assert shape is not None, f"the {table} table is missing: run the migrations"
    return shape
