"""Exporting a brain as records of the export format (core/transfer/format.py), streamed.

Every table is read in keyset pages along one of its indexes, inside ONE read transaction
(PostgreSQL: repeatable read), so the export is a consistent picture of the brain however long
it takes to stream, and what it holds in memory is one page, not the brain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine

from core.kernel.db.engine import WRITE, sql
from core.kernel.errors import Forbidden, NotFound
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.transfer import format as fmt
from core.transfer.tables import TABLES, TableShape, table_shape

PAGE = 1000

# (kind, table, keyset order): each order is the tail of an index that starts with brain_id.
_ORDER: dict[str, tuple[str, ...]] = {
    "memory": ("created_at", "id"),
    "history": ("memory_id", "created_at", "id"),
    "link": ("from_id", "to_id", "relation"),
    "user": ("user_id",),
}


def export_records(
    engine: Engine,
    brain: Scope | str,
    *,
    include_archived: bool = True,
    page_size: int = PAGE,
) -> Iterator[fmt.Line]:
    """The header, then every record of the brain (a Scope, or a brain slug), then `end`.

    `include_archived=False` keeps active memories only (and their history and links)."""
    with engine.connect() as conn:
        options: dict[str, Any] = {WRITE: False}
        if conn.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        conn = conn.execution_options(**options)
        with conn.begin():
            scope = _scope(conn, brain)
            yield from _records(conn, scope, include_archived, page_size)


def export_lines(
    engine: Engine, brain: Scope | str, *, include_archived: bool = True
) -> Iterator[bytes]:
    return fmt.to_lines(export_records(engine, brain, include_archived=include_archived))


def _scope(conn: Connection, brain: Scope | str) -> Scope:
    if isinstance(brain, Scope):
        if brain.user_id is not None:
            raise Forbidden(
                "exporting a brain needs a brain-wide key, not a user-scoped one",
                code="brain_key_required",
            )
        return brain
    found = conn.execute(sql("SELECT id FROM brains WHERE slug = :slug"), {"slug": brain}).scalar()
    if found is None:
        raise NotFound(f"no brain named {brain!r}", code="brain_not_found")
    return Scope(brain_id=str(found), principal="export", role="owner")


def _records(
    conn: Connection, scope: Scope, include_archived: bool, page_size: int
) -> Iterator[fmt.Line]:
    brain = (
        conn.execute(
            sql("SELECT id, slug, name, created_at FROM brains WHERE id = :brain"),
            {"brain": scope.brain_id},
        )
        .mappings()
        .one()
    )
    yield fmt.header(dict(brain), exported_at=now_ms(), include_archived=include_archived)
    counts: dict[str, int] = {}
    params = {"brain": scope.brain_id}
    active_only = "" if include_archived else " AND state = 'active'"
    of_exported = (
        ""
        if include_archived
        else " AND {col} IN (SELECT id FROM memories WHERE brain_id = :brain AND state = 'active')"
    )
    plan: list[tuple[str, str, str]] = [
        ("memory", TABLES["memory"], active_only),
        ("history", TABLES["history"], of_exported.format(col="memory_id")),
        (
            "link",
            TABLES["link"],
            of_exported.format(col="from_id") + of_exported.format(col="to_id"),
        ),
        ("user", TABLES["user"], ""),
        ("trust", TABLES["trust"], ""),
        ("policy", TABLES["policy"], ""),
    ]
    for kind, table, extra in plan:
        shape = table_shape(conn, table)
        if shape is None:
            continue
        order = _ORDER.get(kind) or shape.key
        counts[kind] = 0
        for row in _pages(conn, shape, order, extra, params, page_size):
            counts[kind] += 1
            yield fmt.record(kind, _data(kind, row))  # type: ignore[arg-type]
    yield {"kind": fmt.END, "counts": counts}


def _pages(
    conn: Connection,
    shape: TableShape,
    order: Sequence[str],
    extra: str,
    params: dict[str, Any],
    page_size: int,
) -> Iterator[fmt.Data]:
    """Rows of the brain in `order`, one page per query; each page starts after the last row
    of the one before (keyset), so a page costs the same at the start and at the end."""
    columns = ", ".join(shape.columns)
    base = f"SELECT {columns} FROM {shape.name} WHERE brain_id = :brain{extra}"
    if not order:  # one row per brain at most
        yield from (dict(r) for r in conn.execute(sql(base), params).mappings())
        return
    ordering = ", ".join(order)
    after: dict[str, Any] | None = None
    while True:
        where = ""
        page_params = {**params, "page": page_size}
        if after is not None:
            where = " AND " + _after(order)
            page_params.update({f"k_{name}": after[name] for name in order})
        rows = [
            dict(r)
            for r in conn.execute(
                sql(f"{base}{where} ORDER BY {ordering} LIMIT :page"), page_params
            ).mappings()
        ]
        yield from rows
        if len(rows) < page_size:
            return
        after = rows[-1]


def _after(order: Sequence[str]) -> str:
    """(a, b, c) > (:a, :b, :c), spelled out so both stores use the index the same way."""
    first, rest = order[0], order[1:]
    if not rest:
        return f"{first} > :k_{first}"
    return f"({first} > :k_{first} OR ({first} = :k_{first} AND {_after(rest)}))"


def _data(kind: str, row: fmt.Data) -> fmt.Data:
    if kind == "memory":
        row["tags"] = json.loads(row["tags"])
        row["metadata"] = json.loads(row["metadata"])
    elif kind == "history":
        row["detail"] = None if row["detail"] is None else json.loads(row["detail"])
        row["is_deleted"] = bool(row["is_deleted"])
    return row
