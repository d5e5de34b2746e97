"""The request and response models of OpenMemory's API as Mnemo serves it (the routes are in
handlers/routes/openmemory.py, which read OpenMemory's loosely typed fields by hand: these
models are what the OpenAPI document says of them).

The replies handlers/openmemory_mapping.py makes (OMAdded, OMMatch, OMItem, OMMemory, OMSector,
OMSectorStat) are TypedDicts: one definition is both what the mapping returns, checked by mypy,
and what /openapi.json documents (handlers/openapi.py reads a TypedDict's schema through
pydantic's TypeAdapter, the same schema a model of the same fields makes). typing_extensions'
TypedDict, as pydantic asks for on Python 3.11."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

# OpenMemory clamps k to this.
MAX_K = 100


class OMErrorOut(BaseModel):
    err: str = Field(description="OpenMemory's word for the problem, or Mnemo's error code")
    msg: str | None = Field(None, description="What to fix")


class OMAddIn(BaseModel):
    content: str
    user_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


class OMAdded(TypedDict):
    id: str
    primary_sector: str
    sectors: list[str]
    chunks: int


class OMQueryFilters(BaseModel):
    sector: str | None = None
    user_id: str | None = None
    min_score: float | None = Field(None, description="0 to 1 (clamped)")


class OMQueryIn(BaseModel):
    query: str
    k: float | None = Field(None, description=f"How many matches, 1 to {MAX_K} (clamped)")
    filters: OMQueryFilters | None = None


class OMMatch(TypedDict):
    id: str
    content: str
    score: float
    sectors: list[str]
    primary_sector: str
    path: list[str]
    salience: float
    last_seen_at: int


class OMQueryOut(BaseModel):
    query: str
    matches: list[OMMatch]


class OMItem(TypedDict):
    id: str
    content: str
    tags: list[str]
    metadata: dict[str, Any]
    created_at: int
    updated_at: int
    last_seen_at: int
    salience: float
    decay_lambda: float
    primary_sector: str
    version: int


class OMItems(BaseModel):
    user_id: str
    items: list[OMItem]


class OMPageQuery(BaseModel):
    l: int | None = Field(None, ge=0, description="How many (default 100; at most a page)")  # noqa: E741
    u: int | None = Field(None, ge=0, description="How many to skip")


class OMAllQuery(BaseModel):
    l: int | None = Field(None, ge=0, description="How many (default 100; at most a page)")  # noqa: E741
    u: int | None = Field(None, ge=0, description="How many to skip")
    sector: str | None = Field(None, description="Only this sector's memories")


class OMAll(BaseModel):
    items: list[OMItem]


class OMMemory(TypedDict):
    id: str
    content: str
    primary_sector: str
    sectors: list[str]
    tags: list[str]
    metadata: dict[str, Any]
    created_at: int
    updated_at: int
    last_seen_at: int
    salience: float
    decay_lambda: float
    user_id: str | None


class OMUpdateIn(BaseModel):
    content: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = Field(None, description="Replaces the metadata whole")


class OMUpdated(BaseModel):
    id: str
    updated: bool


class OMReinforceIn(BaseModel):
    id: str
    boost: float | None = Field(None, description="In (0, 1]; 0.2 when left out")


class OMOk(BaseModel):
    ok: bool


class OMSector(TypedDict):
    name: str
    description: str
    model: str
    decay_lambda: float
    table_suffix: str


class OMSectorStat(TypedDict):
    sector: str
    count: int
    avg_salience: float


class OMSectors(BaseModel):
    sectors: dict[str, OMSector]
    stats: list[OMSectorStat]


class OMSummary(BaseModel):
    user_id: str
    summary: str
    reflection_count: int
    updated_at: int | None


class OMRegenerated(BaseModel):
    ok: bool
    user_id: str
    summary: str
    reflection_count: int
