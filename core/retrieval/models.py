"""Request and response models of search and context packs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, Field

from core.memory.models import Memory, MemoryFilters, MemoryRecord, Name, Out, Strict


class SearchFilters(MemoryFilters):
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None
    metadata: dict[str, Any] | None = Field(
        None,
        description=(
            "A filter on metadata fields: {'field': value} or {'field': {'op': value}} with op "
            "one of eq, ne, in, nin, gt, gte, lt, lte, contains; combine with "
            "{'AND': [...]}, {'OR': [...]}, {'NOT': {...}}. Dotted names reach nested fields."
        ),
    )


class SearchIn(Strict):
    query: str = Field(max_length=10_000, description="Free text; an empty query finds nothing.")
    limit: int = Field(10, ge=1, le=100)
    cursor: str | None = None
    filters: SearchFilters = Field(default_factory=SearchFilters)
    user_id: Name | None = Field(None, description="Shorthand for filters.user_id.")
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    mode: Literal["hybrid", "lexical", "semantic"] = "hybrid"
    explain: bool = False
    as_of: datetime | None = Field(None, description="Shorthand for filters.as_of.")
    known_at: datetime | None = Field(None, description="Shorthand for filters.known_at.")


class Explain(Out):
    lexical: float = Field(description="Weighted z-score of the full-text match.")
    semantic: float = Field(description="Weighted z-score of the vector similarity.")
    context: float = Field(description="Evidence borrowed from the neighbouring memories.")
    relevance: float = Field(description="All evidence squashed onto [0, 1).")
    importance: float
    confidence: float
    trust: float
    recency: float
    superseded: bool
    time: float | None = Field(
        None, description="The query's time: 1, or less when the memory misses it."
    )
    score: float


class SearchHit(Out):
    memory: Memory
    score: float
    explain: Explain | None = None


class SearchPage(Out):
    results: list[SearchHit]
    next_cursor: str | None


class ContextIn(Strict):
    query: str = Field(min_length=1, max_length=10_000)
    max_tokens: int = Field(2000, ge=50, le=100_000)
    limit: int = Field(30, ge=1, le=100, description="How many search hits to consider.")
    filters: SearchFilters = Field(default_factory=SearchFilters)
    user_id: Name | None = None
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    expand_links: bool = Field(True, description="Also consider memories linked to the hits.")
    as_of: datetime | None = Field(
        None, description="The memories valid at this moment (shorthand for filters.as_of)."
    )
    known_at: datetime | None = Field(
        None, description="What the store held at this moment (filters.known_at)."
    )


class Citation(Out):
    n: int
    id: str
    score: float
    tokens: int
    via: str | None = Field(None, description="Set when the memory came in through a link.")
    contested: bool = Field(
        False, description="An unresolved conflict joins it to another memory (both shown)."
    )


class Omitted(Out):
    id: str
    reason: Literal["budget", "superseded", "below_min_score", "duplicate"]


class ContextPack(Out):
    text: str
    tokens: int
    citations: list[Citation]
    omitted: list[Omitted]


class ReindexResult(BaseModel):
    model: str
    reindexed: int
    remaining: int = Field(description="Call again while this is above zero.")


# -- Typed records ------------------------------------------------------------------------------
# What core/retrieval returns: the JSON a route sends, field for field (`SearchPage`, ...).


class ExplainRecord(TypedDict):
    lexical: float
    semantic: float
    context: float
    relevance: float
    importance: float
    confidence: float
    trust: float
    recency: float
    superseded: bool
    time: float | None
    score: float


class SearchHitRecord(TypedDict):
    memory: MemoryRecord
    score: float
    explain: NotRequired[ExplainRecord]


class SearchPageRecord(TypedDict):
    results: list[SearchHitRecord]
    next_cursor: str | None
    # The ids on the page, for the caller to count as accessed; popped before the reply.
    touched: NotRequired[list[str]]


class FilteredPageRecord(TypedDict):
    results: list[MemoryRecord]
    total: int


class CitationRecord(TypedDict):
    n: int
    id: str
    score: float
    tokens: int
    via: str | None
    contested: bool


class OmittedRecord(TypedDict):
    id: str
    reason: Literal["budget", "superseded", "below_min_score", "duplicate"]


class ContextPackRecord(TypedDict):
    text: str
    tokens: int
    citations: list[CitationRecord]
    omitted: list[OmittedRecord]
    # The cited ids, for the caller to count as accessed; popped before the reply.
    touched: NotRequired[list[str]]


class SavedImageRecord(TypedDict):
    """What maintenance's `vector_images` task did (core/retrieval/vectors.py `save_image`)."""

    written: bool
    count: int
    parts: NotRequired[int]
