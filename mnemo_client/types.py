"""Typed results: the server's JSON as TypedDicts, so `result["matches"]` works as in
OpenMemory's SDK and a type checker knows every field."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

MemoryType = Literal["note", "fact", "journal"]
MemoryState = Literal["active", "archived", "deleted"]

# --- OpenMemory-compatible calls ----------------------------------------------------------------


class AddResult(TypedDict):
    id: str
    primary_sector: str
    sectors: list[str]
    chunks: int


class QueryMatch(TypedDict):
    id: str
    content: str
    score: float
    sectors: list[str]
    primary_sector: str
    path: list[str]
    salience: float
    last_seen_at: int


class QueryResult(TypedDict):
    query: str
    matches: list[QueryMatch]


class UserMemoryItem(TypedDict):
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


class UserMemories(TypedDict):
    user_id: str
    items: list[UserMemoryItem]


class UserSummaryResult(TypedDict):
    user_id: str
    summary: str
    reflection_count: int
    updated_at: int


class RegenerateResult(TypedDict):
    ok: bool
    user_id: str
    summary: str
    reflection_count: int


# --- the native API -----------------------------------------------------------------------------


class NewConflict(TypedDict):
    """A contradiction a save caught: the conflict recorded and the memory it is with."""

    id: str
    with_id: str
    kind: str
    reason: str


class GateDecision(TypedDict):
    """What the write gate made of a save, and why (set on a save's reply)."""

    decision: Literal["added", "duplicate", "reinforced", "recalled", "quarantined"]
    reason: str
    message: str
    memory_id: NotRequired[str | None]
    quarantine_id: NotRequired[str | None]
    similarity: NotRequired[dict[str, float] | None]
    importance: NotRequired[dict[str, float] | None]
    recalled_ids: NotRequired[list[str] | None]


class Memory(TypedDict):
    id: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    type: MemoryType
    title: str | None
    key: str | None
    content: str
    tags: list[str]
    source: str | None
    confidence: float
    importance: float
    metadata: dict[str, Any]
    state: MemoryState
    superseded_by: str | None
    occurred_at: str | None
    valid_from: str | None  # when what it states became true
    valid_to: str | None  # when it stopped being true (None: still is)
    created_at: str
    updated_at: str
    archived_at: str | None
    deleted_at: str | None
    access_count: int
    last_accessed_at: str | None
    deduplicated: NotRequired[bool]
    conflicts: NotRequired[list[NewConflict]]
    gate: NotRequired[GateDecision]


class MemoryPage(TypedDict):
    results: list[Memory]
    next_cursor: str | None
    total: NotRequired[int]


class UserMemoryPage(MemoryPage):
    user_id: str


class Purged(TypedDict):
    id: str
    purged: bool


class HistoryEntry(TypedDict):
    id: str
    memory_id: str
    event: Literal["ADD", "UPDATE", "DELETE", "ARCHIVE", "RESTORE"]
    old_memory: str | None
    new_memory: str | None
    detail: dict[str, Any] | None
    actor_id: str | None
    role: str | None
    is_deleted: bool
    created_at: str
    updated_at: str | None


class Explain(TypedDict):
    lexical: float
    semantic: float
    context: float
    relevance: float
    importance: float
    confidence: float
    trust: float
    recency: float
    superseded: bool
    time: float
    score: float


class SearchHit(TypedDict):
    memory: Memory
    score: float
    explain: NotRequired[Explain]


class SearchPage(TypedDict):
    results: list[SearchHit]
    next_cursor: str | None


class Citation(TypedDict):
    n: int
    id: str
    score: float
    tokens: int
    via: str | None
    contested: bool


class Omitted(TypedDict):
    id: str
    reason: Literal["budget", "superseded", "below_min_score", "duplicate"]


class ContextPack(TypedDict):
    text: str
    tokens: int
    citations: list[Citation]
    omitted: list[Omitted]


class ChangelogEntry(TypedDict):
    id: str
    event_type: str
    entity_type: str
    entity_id: str
    user_id: str | None
    actor_id: str | None
    summary: str
    payload: dict[str, Any]
    created_at: str


class ChangelogPage(TypedDict):
    results: list[ChangelogEntry]
    next_cursor: str | None


class UserSummary(TypedDict):
    user_id: str
    summary: str | None
    source: Literal["extractive", "llm"] | None
    reflection_count: int
    new_memories: int
    refresh_interval: int
    summarized_at: str | None
    created_at: str
    updated_at: str
    as_of: NotRequired[str]
    known_at: NotRequired[str]


class ThemeExample(TypedDict):
    id: str
    text: str


class Theme(TypedDict):
    label: str
    memory_count: int
    examples: list[ThemeExample]


class Digest(TypedDict):
    summary: str
    source: Literal["extractive", "llm"]
    memory_count: int
    considered: int
    themes: list[Theme]
    important: list[Memory]


class Health(TypedDict):
    status: str
    version: str
    schema_version: int
    store: str


class ReindexResult(TypedDict):
    model: str
    reindexed: int
    remaining: int


# --- request options (keyword arguments of the client's calls) ---------------------------------


class MemoryFields(TypedDict, total=False):
    """What POST /v1/memories takes besides `content`."""

    type: MemoryType
    title: str
    key: str
    tags: list[str]
    source: str
    confidence: float
    importance: float
    metadata: dict[str, Any]
    user_id: str
    agent_id: str
    run_id: str
    occurred_at: str
    valid_from: str
    valid_to: str
    actor_id: str
    role: str


class MemoryChanges(TypedDict, total=False):
    """What PATCH /v1/memories/{id} takes; a field given as None is cleared."""

    content: str
    title: str | None
    tags: list[str]
    source: str | None
    confidence: float
    importance: float
    metadata: dict[str, Any]
    metadata_mode: Literal["merge", "replace"]
    occurred_at: str | None
    valid_from: str
    valid_to: str | None
    actor_id: str
    role: str


class MemoryFilters(TypedDict, total=False):
    type: MemoryType
    tag: list[str]
    tag_mode: Literal["any", "all"]
    user_id: str
    agent_id: str
    run_id: str
    source: str
    state: Literal["active", "archived", "deleted", "all"]
    created_after: str
    created_before: str
    updated_after: str
    updated_before: str
    as_of: str  # valid time: what was true then
    known_at: str  # system time: what the store held then


class SearchFilters(MemoryFilters, total=False):
    occurred_after: str
    occurred_before: str
    metadata: dict[str, Any]


class ListOptions(MemoryFilters, total=False):
    limit: int
    cursor: str
    include_total: bool


class SearchOptions(TypedDict, total=False):
    limit: int
    cursor: str
    filters: SearchFilters
    user_id: str
    min_score: float
    mode: Literal["hybrid", "lexical", "semantic"]
    explain: bool
    as_of: str
    known_at: str


class ContextOptions(TypedDict, total=False):
    max_tokens: int
    limit: int
    filters: SearchFilters
    user_id: str
    min_score: float
    expand_links: bool
    as_of: str
    known_at: str


class QueryFilters(TypedDict, total=False):
    """OpenMemory's query filters."""

    sector: str
    min_score: float
    user_id: str


# --- links and the graph ------------------------------------------------------------------------

Relation = Literal["related", "supports", "contradicts", "supersedes", "causes", "example_of"]


class Link(TypedDict):
    id: str
    from_id: str
    to_id: str
    relation: Relation
    label: str | None
    weight: float
    origin: Literal["manual", "inferred", "system"]
    created_by: str | None
    created_at: str
    deduplicated: NotRequired[bool]


class MemoryRef(TypedDict):
    id: str
    type: MemoryType
    title: str | None
    key: str | None
    preview: str
    state: MemoryState
    user_id: str | None


class LinkView(Link):
    direction: Literal["out", "in"]
    memory: MemoryRef


class LinkPage(TypedDict):
    results: list[LinkView]
    next_cursor: str | None


class LinkDeleted(TypedDict):
    id: str
    deleted: bool


class Neighbor(TypedDict):
    memory: Memory
    link: Link
    direction: Literal["out", "in"]


class SuggestionSignals(TypedDict):
    similarity: float | None
    shared_tags: list[str]
    same_source: bool
    hours_apart: float


class Suggestion(TypedDict):
    memory: Memory
    score: float
    relation: Relation
    reasons: list[str]
    signals: SuggestionSignals


class GraphNode(Memory):
    depth: int


class GraphEdge(TypedDict):
    id: str
    from_id: str
    to_id: str
    relation: Relation
    label: str | None
    weight: float
    origin: Literal["manual", "inferred", "system"]
    created_by: str | None
    created_at: str


class Subgraph(TypedDict):
    seeds: list[str]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    radius: int
    limit: int
    truncated: bool


class PathEdge(GraphEdge):
    direction: Literal["forward", "backward"]


class Path(TypedDict):
    hops: int
    nodes: list[GraphNode]
    edges: list[PathEdge]


class Hub(TypedDict):
    id: str
    degree: int
    memory: MemoryRef


class GraphStats(TypedDict):
    nodes: int
    edges: int
    components: int
    isolated: int
    largest_component: int
    relations: dict[str, int]
    hubs: list[Hub]
    sampled: bool
