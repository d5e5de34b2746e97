"""Request and response models of the summary routes (for validation and the OpenAPI spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NotRequired, TypedDict

from pydantic import BaseModel, Field

from core.memory.models import Memory, MemoryRecord, Strict


class UserSummaryOut(BaseModel):
    user_id: str
    summary: str | None = Field(description="Plain text, one line per theme; empty if no memory.")
    source: Literal["extractive", "llm"] | None = Field(
        description="What wrote it: the extractive summariser, or the configured LLM."
    )
    reflection_count: int = Field(description="How many times the summary was made.")
    new_memories: int = Field(
        description="Memories saved since it was made (counted up to refresh_interval)."
    )
    refresh_interval: int = Field(
        description="MNEMO_USER_SUMMARY_INTERVAL: at this many new memories it is made again."
    )
    summarized_at: str | None = Field(description="When its memories were read.")
    created_at: str
    updated_at: str
    as_of: str | None = Field(
        None, description="Set when asked as of a moment: made from the memories valid then."
    )
    known_at: str | None = Field(
        None,
        description="Set when asked what was known at a moment: made from what the store held.",
    )


class UserSummaryQuery(Strict):
    as_of: datetime | None = Field(
        None, description="What was true of the user then (made on demand, not stored)."
    )
    known_at: datetime | None = Field(
        None,
        description=(
            "What the store held about the user then, each memory as it read at that moment "
            "(audit: what did the agent know?; made on demand, not stored)."
        ),
    )


class DigestQuery(Strict):
    max_tokens: int | None = Field(
        None, ge=20, le=4000, description="Defaults to MNEMO_SUMMARY_MAX_TOKENS."
    )
    important: int = Field(10, ge=0, le=100, description="How many important memories to list.")


class Example(BaseModel):
    id: str
    text: str


class ThemeOut(BaseModel):
    label: str
    memory_count: int
    examples: list[Example] = Field(description="The theme's most central, important statements.")


class Digest(BaseModel):
    summary: str
    source: Literal["extractive", "llm"]
    memory_count: int = Field(description="Active memories in scope.")
    considered: int = Field(description="The newest ones summarised (MNEMO_SUMMARY_MAX_MEMORIES).")
    themes: list[ThemeOut]
    important: list[Memory]


# -- Typed records ------------------------------------------------------------------------------
# What the summary service returns: the JSON a route sends, field for field.

Source = Literal["extractive", "llm"]


class UserSummaryRecord(TypedDict):
    user_id: str
    summary: str | None
    source: Source | None
    reflection_count: int
    new_memories: int
    refresh_interval: int
    summarized_at: str | None
    created_at: str
    updated_at: str
    as_of: NotRequired[str | None]
    known_at: NotRequired[str | None]


class ExampleRecord(TypedDict):
    id: str
    text: str


class ThemeRecord(TypedDict):
    label: str
    memory_count: int
    examples: list[ExampleRecord]


class DigestRecord(TypedDict):
    summary: str
    source: Source
    memory_count: int
    considered: int
    themes: list[ThemeRecord]
    important: list[MemoryRecord]


class RefreshRecord(TypedDict):
    """What maintenance's summary refresh did (core/app/maintenance.py's `user_summaries`)."""

    due: int
    refreshed: int
    raced: int
    failed: int
    llm: int
    complete: bool
