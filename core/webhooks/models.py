"""Request and response models of webhooks: watches and their deliveries, inbound hook sources,
secret rotation (shared by REST, MCP and the OpenAPI spec)."""

from __future__ import annotations

import re
from typing import Annotated, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.memory.models import Name, Out, Strict

DEFAULT_OVERLAP_SECONDS = 86_400


MAX_OVERLAP_SECONDS = 7 * 86_400


class RotateIn(Strict):
    overlap_seconds: int = Field(
        DEFAULT_OVERLAP_SECONDS,
        ge=0,
        le=MAX_OVERLAP_SECONDS,
        description="How long the replaced secret stays valid (0: not at all)",
    )


class RotatedOut(Out):
    id: str
    secret: str = Field(description="The new secret: shown once, store it now")
    secret_hint: str
    previous_secret_expires_at: str | None = Field(
        description="Until when the replaced secret still verifies"
    )


# "memory.created", or a family: "memory.*".
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.[a-z0-9_]+|\.\*)$")


MAX_EVENT_TYPES = 50


EventTypes = Annotated[
    list[str] | Literal["*"],
    Field(description='Event types to deliver, e.g. ["memory.created", "link.*"], or "*" for all.'),
]


def _check_event_types(value: list[str] | str) -> list[str] | str:
    if value == "*":
        return value
    assert isinstance(value, list)
    if not value:
        raise ValueError('list at least one event type, or "*" for all')
    if len(value) > MAX_EVENT_TYPES:
        raise ValueError(f"at most {MAX_EVENT_TYPES} event types")
    cleaned = []
    for item in value:
        item = item.strip().lower()
        if item == "*":
            return "*"
        if not _EVENT_TYPE.match(item):
            raise ValueError(
                f"{item!r} is not an event type: they look like memory.created, or link.* for "
                "a family"
            )
        if item not in cleaned:
            cleaned.append(item)
    return cleaned


class WatchIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    event_types: EventTypes = "*"
    query: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Only events whose summary or payload contains this text (any case).",
    )
    webhook_url: str = Field(min_length=1, max_length=2048, description="https:// URL")
    active: bool = True

    _types = field_validator("event_types")(_check_event_types)


class WatchPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    event_types: EventTypes | None = None
    query: str | None = Field(None, max_length=500, description='Text filter; "" removes it.')
    webhook_url: str | None = Field(None, min_length=1, max_length=2048)
    active: bool | None = None

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | str | None) -> list[str] | str | None:
        return None if value is None else _check_event_types(value)


class WatchOut(Out):
    id: str
    name: str
    event_types: list[str] | Literal["*"]
    query: str | None
    webhook_url: str
    active: bool
    secret_hint: str = Field(description="The secret's first characters, to tell secrets apart")
    previous_secret_expires_at: str | None = Field(
        None, description="After a rotation: until when the replaced secret still signs too"
    )
    created_at: str | None
    updated_at: str | None
    last_triggered_at: str | None
    last_error: str | None


class NewWatchOut(WatchOut):
    secret: str = Field(description="The signing secret: shown once, store it now")


class WatchList(Out):
    results: list[WatchOut]


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "delivered", "failed"] | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


class EntityRef(Out):
    type: str
    id: str


class DeliveryOut(Out):
    id: str = Field(description="Sent as Mnemo-Delivery-Id, the same on every attempt")
    watch_id: str
    event_id: str
    event_type: str
    entity: EntityRef
    summary: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str | None
    updated_at: str | None


class DeliveryPage(Out):
    results: list[DeliveryOut]
    next_cursor: str | None


class WatchDeleted(Out):
    id: str
    deleted: bool


_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


class HookSourceIn(Strict):
    name: str = Field(min_length=1, max_length=100, description="A label: a-z, 0-9, '-', '_', '.'")
    user_id: Name | None = Field(
        None, description="Every memory this source adds belongs to this end user"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        name = name.lower()
        if not _SOURCE_NAME.match(name):
            raise ValueError("a source name is a-z, 0-9, '-', '_' and '.', starting with a-z/0-9")
        return name


class HookSourceOut(Out):
    id: str
    name: str
    user_id: str | None
    active: bool
    path: str = Field(description="Where the source POSTs: /v1/hooks/{id}")
    secret_hint: str
    previous_secret_expires_at: str | None = Field(
        None, description="After a rotation: until when the replaced secret is still accepted"
    )
    created_at: str | None
    last_received_at: str | None


class NewHookSourceOut(HookSourceOut):
    secret: str = Field(description="The HMAC secret: shown once, store it now")


class HookSourceList(Out):
    results: list[HookSourceOut]


class SourceDeleted(Out):
    id: str
    deleted: bool


# -- Typed records ------------------------------------------------------------------------------
# What core/webhooks returns: the JSON a route sends, field for field. The `Out` models above
# document the same replies; tests/unit/test_records.py holds the two to the same fields.


class WatchRecord(TypedDict):
    """A watch as every reply carries it (`WatchOut`)."""

    id: str
    name: str
    event_types: list[str] | Literal["*"]
    query: str | None
    webhook_url: str
    active: bool
    secret_hint: str
    previous_secret_expires_at: str | None
    created_at: str | None
    updated_at: str | None
    last_triggered_at: str | None
    last_error: str | None


class NewWatchRecord(WatchRecord):
    secret: str


class RotatedRecord(TypedDict):
    id: str
    secret: str
    secret_hint: str
    previous_secret_expires_at: str | None


class WatchDeletedRecord(TypedDict):
    id: str
    deleted: bool


class EntityRefRecord(TypedDict):
    type: str
    id: str


DeliveryStatus = Literal["pending", "delivered", "failed"]


class DeliveryRecord(TypedDict):
    id: str
    watch_id: str
    event_id: str
    event_type: str
    entity: EntityRefRecord
    summary: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str | None
    updated_at: str | None


class DeliveryPageRecord(TypedDict):
    results: list[DeliveryRecord]
    next_cursor: str | None


class HookSourceRecord(TypedDict):
    id: str
    name: str
    user_id: str | None
    active: bool
    path: str
    secret_hint: str
    previous_secret_expires_at: str | None
    created_at: str | None
    last_received_at: str | None


class NewHookSourceRecord(HookSourceRecord):
    secret: str


class SourceDeletedRecord(TypedDict):
    id: str
    deleted: bool


class DrainRecord(TypedDict):
    """One drain's tally (`mnemo deliver`, the DeliveryFunction's log line, the sweep)."""

    claimed: int
    delivered: int
    retrying: int
    failed: int
    seconds: float
    # Set by the DeliveryFunction when it asked SQS to wake it again (handlers/triggers.py).
    follow_up_in_seconds: NotRequired[int]


class SweepRecord(DrainRecord):
    """The maintenance run's webhook task, as its `stats` row records it."""

    deliveries_purged: int
    hook_receipts_purged: int
