"""One record of the export format checked and turned into a row, and the lookups an import
makes to place it (which ids exist, which active memory holds the same content)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from core.kernel.db.engine import sql
from core.kernel.errors import InvalidInput
from core.kernel.ids import new_id, now_ms
from core.memory.store import content_hash
from core.memory.store import write_tags as _memory_tags
from core.transfer import format as fmt
from core.transfer.tables import MEMORY_FIELDS, Row, TableShape

_TYPES = ("note", "fact", "journal")

_STATES = ("active", "archived", "deleted")

EVENTS = ("ADD", "UPDATE", "DELETE", "ARCHIVE", "RESTORE")

RELATIONS = ("related", "supports", "contradicts", "supersedes", "causes", "example_of")

LINK_ORIGINS = ("manual", "inferred", "system")


class Skip(Exception):
    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class Known:
    """Which of a batch's ids exist already, and whether in this brain: one query per table
    per batch instead of one per record."""

    def __init__(self, conn: Connection, brain_id: str, batch: list[dict[str, Any]]) -> None:
        ids: dict[str, list[str]] = {"memory": [], "history": [], "link": []}
        for line in batch:
            data = line.get("data")
            kind = line.get("kind")
            if kind in ids and isinstance(data, dict):
                if isinstance(data.get("id"), str):
                    ids[str(kind)].append(data["id"])
                for ref in ("memory_id", "from_id", "to_id"):
                    if isinstance(data.get(ref), str):
                        ids["memory"].append(data[ref])
        self.memories = owners(conn, "memories", brain_id, ids["memory"])
        self.history = owners(conn, "memory_history", brain_id, ids["history"])
        self.links = owners(conn, "memory_links", brain_id, ids["link"])


def owners(conn: Connection, table: str, brain_id: str, ids: list[str]) -> dict[str, bool]:
    """id -> True if this brain has it, False if another brain does; absent ids left out."""
    found: dict[str, bool] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 900):
        chunk = unique[start : start + 900]
        names = {f"i{i}": value for i, value in enumerate(chunk)}
        rows = conn.execute(
            sql(
                f"SELECT id, CASE WHEN brain_id = :brain THEN 1 ELSE 0 END AS ours FROM {table} "
                f"WHERE id IN ({', '.join(':' + n for n in names)})"
            ),
            {"brain": brain_id, **names},
        ).all()
        found.update((str(r.id), bool(r.ours)) for r in rows)
    return found


def memory_is_ours(conn: Connection, brain_id: str, memory_id: str) -> bool:
    row = conn.execute(
        sql("SELECT 1 FROM memories WHERE brain_id = :brain AND id = :id"),
        {"brain": brain_id, "id": memory_id},
    ).first()
    return row is not None


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Skip("invalid", f"{name} must be a number")
    if not 0 <= value <= 1:
        raise Skip("invalid", f"{name} must be between 0 and 1")
    return float(value)


def _stamp(value: Any, name: str) -> int | None:
    try:
        return fmt.to_ms(value, field=name)
    except InvalidInput as exc:
        raise Skip("invalid", exc.message) from None


# Memory fields that are text or null: another JSON type would fail in the database (a 500).
_TEXT_FIELDS = ("user_id", "agent_id", "run_id", "title", "key", "source", "superseded_by")


def _json_field(value: Any, name: str) -> Any:
    """A field exports write as JSON but older sources may hold as a JSON string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise Skip("invalid", f"{name} is a string that is not JSON") from None


def memory_row(shape: TableShape, data: fmt.Data) -> Row:
    """A memory record checked and completed with the defaults a new memory gets."""
    content = data.get("content")
    if not isinstance(content, str) or not content:
        raise Skip("invalid", "content must be a non-empty string")
    # Columns a memory always has; columns the schema gained since are taken when present
    # and otherwise left to their database defaults.
    row: Row = {c: data.get(c) for c in MEMORY_FIELDS}
    row.update({c: data[c] for c in shape.columns if c not in MEMORY_FIELDS and c in data})
    row["id"] = str(data["id"]) if data.get("id") else new_id()
    row["type"] = data.get("type") or "note"
    if row["type"] not in _TYPES:
        raise Skip("invalid", f"type must be one of {', '.join(_TYPES)}")
    row["state"] = data.get("state") or "active"
    if row["state"] not in _STATES:
        raise Skip("invalid", f"state must be one of {', '.join(_STATES)}")
    for name in _TEXT_FIELDS:
        if row.get(name) is not None and not isinstance(row[name], str):
            raise Skip("invalid", f"{name} must be a string")
    if row.get("key") is not None:
        # As the API stores keys (core.memory.models): runs of white space are one space, so fact
        # keys and conflict detection's key match (lower(key)) see the same key.
        row["key"] = " ".join(row["key"].split()) or None
    if row["type"] == "fact" and not row.get("key"):
        raise Skip("invalid", "a fact needs a key")
    tags = _json_field(data.get("tags"), "tags")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise Skip("invalid", "tags must be a list of strings")
    row["tags"] = tags
    metadata = _json_field(data.get("metadata"), "metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise Skip("invalid", "metadata must be an object")
    row["metadata"] = metadata
    row["confidence"] = _number(data.get("confidence"), "confidence", 0.7)
    row["importance"] = _number(data.get("importance"), "importance", 0.5)
    count = data.get("access_count") or 0
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise Skip("invalid", "access_count must be a whole number >= 0")
    row["access_count"] = count
    for name in shape.timestamps:
        if name in row:
            row[name] = _stamp(row[name], name)
    if row.get("created_at") is None:
        row["created_at"] = now_ms()
    if row.get("updated_at") is None:
        row["updated_at"] = row["created_at"]
    return row


def memory_params(brain_id: str, row: Row) -> Row:
    params = dict(row)
    params["brain_id"] = brain_id
    params["tags"] = json.dumps(row["tags"])
    params["metadata"] = json.dumps(row["metadata"])
    params["content_hash"] = content_hash(row["content"])
    return params


def plain_row(shape: TableShape, data: fmt.Data, *, required: Iterable[str]) -> Row:
    for name in required:
        if data.get(name) in (None, ""):
            raise Skip("invalid", f"{name} is required")
    # An explicit null where the column cannot hold one: left out, so the default applies.
    row = {
        c: data[c]
        for c in shape.columns
        if c in data and not (data[c] is None and c in shape.not_null)
    }
    for name in shape.timestamps:
        if name in row:
            row[name] = _stamp(row[name], name)
    for name, value in row.items():
        if isinstance(value, dict | list):
            if name in shape.key:
                raise Skip("invalid", f"{name} must be a string")
            row[name] = json.dumps(value)
    # A value of the wrong type would fail in the database (a 500) or, on SQLite, be stored.
    for name, kind in shape.kinds:
        value = row.get(name)
        if value is None or name in shape.timestamps:
            continue
        if kind == "text" and not isinstance(value, str):
            raise Skip("invalid", f"{name} must be a string")
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        whole = isinstance(value, bool) or (numeric and float(value).is_integer())
        if kind == "int" and not whole:  # flags (is_deleted) are integer columns
            raise Skip("invalid", f"{name} must be a whole number")
        if kind == "float" and not numeric:
            raise Skip("invalid", f"{name} must be a number")
    return row


def write_tags(
    conn: Connection, brain_id: str, memory_id: str, tags: list[str], created_at: int
) -> None:
    _memory_tags(conn, brain_id, memory_id, list(dict.fromkeys(tags)), created_at)


def active_twin(
    conn: Connection, brain_id: str, row: dict[str, Any], digest: str, *, exclude: str | None
) -> str | None:
    found = conn.execute(
        sql(
            "SELECT id FROM memories WHERE brain_id = :brain AND coalesce(user_id, '') = :user "
            "AND coalesce(key, '') = :key AND content_hash = :hash AND state = 'active' "
            "AND id <> :exclude"
        ),
        {
            "brain": brain_id,
            "user": row.get("user_id") or "",
            "key": row.get("key") or "",
            "hash": digest,
            "exclude": exclude or "",
        },
    ).scalar()
    return None if found is None else str(found)


def active_fact(
    conn: Connection, brain_id: str, row: dict[str, Any], *, exclude: str | None
) -> str | None:
    found = conn.execute(
        sql(
            "SELECT id FROM memories WHERE brain_id = :brain AND coalesce(user_id, '') = :user "
            "AND key = :key AND type = 'fact' AND state = 'active' AND id <> :exclude"
        ),
        {
            "brain": brain_id,
            "user": row.get("user_id") or "",
            "key": row.get("key") or "",
            "exclude": exclude or "",
        },
    ).scalar()
    return None if found is None else str(found)
