"""The Mnemo export format: JSON Lines, one header line, then one record per line.

    {"kind": "mnemo-export", "version": 1, "brain": {"id", "slug", "name", "created_at"},
     "exported_at": 1764000000000, "include_archived": true}
    {"kind": "memory", "data": {...}}
    {"kind": "history", "data": {...}}
    {"kind": "link", "data": {...}}
    {"kind": "user", "data": {...}}
    {"kind": "trust", "data": {...}}
    {"kind": "policy", "data": {...}}
    {"kind": "end", "counts": {"memory": 2, "history": 3, ...}}

Timestamps are integers: milliseconds since the Unix epoch, UTC, exactly as stored (no
rounding through a float, so an export imported again compares equal). On import an ISO 8601
string (naive means UTC) is accepted as well, which is what importers of other systems
usually have at hand.

Records: memories come first (oldest first), then history, links, users, trust, policy. A
history row or link must come after the memories it refers to (an importer writing its own
stream keeps that order); `end` is optional and lets a reader tell a complete file from a
truncated one.

- memory: id, user_id, agent_id, run_id, type (note|fact|journal), title, key, content,
  tags (list of strings), source, confidence, importance (0..1), metadata (object), state
  (active|archived|deleted), occurred_at, created_at, updated_at, archived_at, deleted_at,
  access_count, last_accessed_at, superseded_by. Only id, content and created_at are required
  on import; the rest default as for a new memory (updated_at = created_at). Columns other
  parts of the schema add later round-trip as extra fields.
- history: id, memory_id, user_id, event (ADD|UPDATE|DELETE|ARCHIVE|RESTORE), old_memory,
  new_memory, detail (object or null), actor_id, role, is_deleted (bool), created_at,
  updated_at.
- link: id, from_id, to_id, relation (related|supports|contradicts|supersedes|causes|
  example_of), label, weight, created_at (plus any columns the links table gained).
- user: user_id, summary, reflection_count, created_at, updated_at, summarized_at,
  summary_source.
- trust, policy: the rows of the source trust and brain policy tables, brain_id left out.

Every `id` is the one the source had; an import keeps it or, with `remap_ids`, gives each a new
one and rewrites every reference (links, history, superseded_by) to match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from core.kernel.errors import InvalidInput

FORMAT_KIND = "mnemo-export"
FORMAT_VERSION = 1
MEDIA_TYPE = "application/x-ndjson"

RecordKind = Literal["memory", "history", "link", "user", "trust", "policy"]
RECORD_KINDS: tuple[RecordKind, ...] = ("memory", "history", "link", "user", "trust", "policy")
END = "end"

# A line of the format, read from a file or about to be written. Mappings, not records: a
# line is JSON from outside until each field is checked where it is written (core/transfer/
# rows.py), and a record's `data` carries its table's columns, which grow with the schema.
Line = dict[str, Any]
Data = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def header(brain: Data, *, exported_at: int, include_archived: bool) -> Line:
    return {
        "kind": FORMAT_KIND,
        "version": FORMAT_VERSION,
        "brain": brain,
        "exported_at": exported_at,
        "include_archived": include_archived,
    }


def record(kind: RecordKind, data: Data) -> Line:
    return {"kind": kind, "data": data}


def to_ms(value: Any, *, field: str) -> int | None:
    """A stored timestamp from an export: integer ms, or an ISO 8601 string (exactly, no float)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a timestamp, got a boolean", details={"field": field})
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{field} is not an ISO 8601 time or integer milliseconds: {value[:40]!r}",
                details={"field": field},
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - _EPOCH) // _MS
    raise InvalidInput(
        f"{field} must be integer milliseconds or an ISO 8601 string", details={"field": field}
    )


def check_header(line: Line) -> Line:
    if line.get("kind") != FORMAT_KIND:
        raise InvalidInput(
            f'the first line must be the header {{"kind": "{FORMAT_KIND}", ...}}',
            code="not_an_export",
        )
    version = line.get("version")
    if version != FORMAT_VERSION:
        raise InvalidInput(
            f"export format version {version!r} is not supported; this Mnemo reads version "
            f"{FORMAT_VERSION}",
            code="unsupported_export_version",
        )
    return line


def dumps(line: Line) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def to_lines(records: Iterable[Line]) -> Iterator[bytes]:
    """Records -> UTF-8 JSON Lines."""
    for line in records:
        yield (dumps(line) + "\n").encode()


def parse_lines(lines: Iterable[bytes | str]) -> Iterator[Line]:
    """JSON Lines -> records (blank lines ignored). A line that is not a JSON object stops the
    read with its line number: a half-read file must not pass for a whole one."""
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            if not text.strip():
                continue
            line = json.loads(text)
        except ValueError as exc:  # UnicodeDecodeError included
            raise InvalidInput(
                f"line {number} is not valid UTF-8 JSON: {exc}", code="malformed_export"
            ) from None
        if not isinstance(line, dict):
            raise InvalidInput(f"line {number} is not a JSON object", code="malformed_export")
        yield line


def parse_header_slug(line: bytes) -> str:
    """The brain slug of an encoded header line (for a download's file name)."""
    try:
        slug = json.loads(line).get("brain", {}).get("slug")
    except (ValueError, AttributeError):
        slug = None
    return slug if isinstance(slug, str) and slug else "brain"
