"""Typed records of the events package: what it returns, field for field the reply models that
document them (`HistoryEntry` and `ChangelogEntry` in core/memory/models.py, which sits above
this package)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Event = Literal["ADD", "UPDATE", "DELETE", "ARCHIVE", "RESTORE"]


class HistoryEntryRecord(TypedDict):
    id: str
    memory_id: str
    event: Event
    old_memory: str | None
    new_memory: str | None
    # What changed besides the text (the importance, a merge's sources, ...): each change
    # names its own keys.
    detail: dict[str, Any] | None
    actor_id: str | None
    role: str | None
    is_deleted: bool
    created_at: str
    updated_at: str | None


class ChangelogEntryRecord(TypedDict):
    id: str
    event_type: str
    entity_type: str
    entity_id: str
    user_id: str | None
    actor_id: str | None
    summary: str
    # The change's own facts (the memory's preview, the fields changed, ...): each event type
    # names its own keys.
    payload: dict[str, Any]
    created_at: str
