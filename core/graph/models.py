"""Request and response models of links and the graph, shared by REST, MCP and the OpenAPI spec."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import Field, field_validator

from core.memory.models import (
    Actor,
    Memory,
    MemoryRecord,
    MemoryType,
    Name,
    Out,
    Score,
    Strict,
)

Relation = Literal["related", "supports", "contradicts", "supersedes", "causes", "example_of"]
RELATIONS: tuple[str, ...] = Relation.__args__  # type: ignore[attr-defined]
Origin = Literal["manual", "inferred", "system"]
Direction = Literal["out", "in"]


def _split_relations(value: Any) -> Any:
    """`relation=supports&relation=causes` or `relation=supports,causes`."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


class LinkIn(Actor):
    from_id: Name
    to_id: Name
    relation: Relation = Field(description="One of " + ", ".join(RELATIONS) + ".")
    label: Name | None = Field(None, description="A short free-text note on the link.")
    weight: Score = Field(1.0, description="How strong the link is, from 0 to 1.")


class LinkDeleteIn(Actor):
    pass


class Link(Out):
    id: str
    from_id: str
    to_id: str
    relation: Relation
    label: str | None
    weight: float
    origin: Origin = Field(description="manual, inferred (a waypoint) or system (a supersession).")
    created_by: str | None
    created_at: str
    deduplicated: bool | None = Field(None, description="Set on create when it already existed.")


class MemoryRef(Out):
    """The other end of a link, in brief."""

    id: str
    type: MemoryType
    title: str | None
    key: str | None
    preview: str
    state: str
    user_id: str | None


class LinkView(Link):
    direction: Direction = Field(description="out: the memory links to the other; in: reverse.")
    memory: MemoryRef = Field(description="The memory at the other end.")


class LinkPage(Out):
    results: list[LinkView]
    next_cursor: str | None


class LinkDeleted(Out):
    id: str
    deleted: bool


class _RelationFilter(Strict):
    relation: list[Relation] = Field(
        default_factory=list, description="Only these relations (repeat or comma-separate)."
    )

    _relations = field_validator("relation", mode="before")(_split_relations)


class LinkListQuery(_RelationFilter):
    direction: Literal["both", "out", "in"] = "both"
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


class NeighborQuery(_RelationFilter):
    direction: Literal["both", "out", "in"] = "both"
    limit: int = Field(20, ge=1, le=200)
    include_archived: bool = False


class Neighbor(Out):
    memory: Memory
    link: Link
    direction: Direction


class NeighborPage(Out):
    results: list[Neighbor]


class SuggestionQuery(Strict):
    limit: int = Field(10, ge=1, le=50)
    min_score: float = Field(0.05, ge=0.0, le=1.0)


class SuggestionSignals(Out):
    similarity: float | None = Field(description="Cosine of the two memories' vectors.")
    shared_tags: list[str]
    same_source: bool
    hours_apart: float


class Suggestion(Out):
    memory: Memory
    score: float = Field(description="From 0 to 1: how worth linking.")
    relation: Relation
    reasons: list[str]
    signals: SuggestionSignals


class SuggestionPage(Out):
    results: list[Suggestion]


class SubgraphQuery(_RelationFilter):
    memory_id: Name | None = Field(None, description="Centre the subgraph on this memory...")
    query: str | None = Field(
        None, min_length=1, max_length=10_000, description="...or on the best search hits."
    )
    seeds: int = Field(5, ge=1, le=20, description="How many search hits seed a query subgraph.")
    radius: int = Field(2, ge=0, le=4, description="Hops from the seeds.")
    limit: int = Field(
        100, ge=1, le=2000, description="Most nodes; capped by the brain's subgraph_max_nodes."
    )
    user_id: Name | None = None
    include_archived: bool = False


class GraphNode(Memory):
    depth: int = Field(description="Hops from the nearest seed (for a path: the position).")


class GraphEdge(Out):
    id: str
    from_id: str
    to_id: str
    relation: Relation
    label: str | None
    weight: float
    origin: Origin
    created_by: str | None
    created_at: str


class Subgraph(Out):
    seeds: list[str]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    radius: int
    limit: int = Field(description="The node limit applied.")
    truncated: bool = Field(description="True when the limit left reachable memories out.")


class PathQuery(_RelationFilter):
    from_id: Name
    to_id: Name
    max_hops: int | None = Field(
        None, ge=1, le=12, description="Longest path searched; the brain's path_max_hops caps it."
    )
    include_archived: bool = False


class PathEdge(GraphEdge):
    direction: Literal["forward", "backward"] = Field(
        description="forward: the link points along the path; backward: against it."
    )


class Path(Out):
    hops: int
    nodes: list[GraphNode]
    edges: list[PathEdge]


class GraphStatsQuery(Strict):
    user_id: Name | None = None
    top: int = Field(10, ge=1, le=50, description="How many hubs.")


class Hub(Out):
    id: str
    degree: int
    memory: MemoryRef


class GraphStats(Out):
    nodes: int = Field(description="Active memories in scope.")
    edges: int = Field(description="Links between them.")
    components: int = Field(description="Connected components, isolated memories included.")
    isolated: int
    largest_component: int
    relations: dict[str, int]
    hubs: list[Hub]
    sampled: bool = Field(description="True when only the first links read were counted.")


# -- Typed records ------------------------------------------------------------------------------
# What core/graph returns: the JSON a route sends, field for field (`Link`, `LinkView`, ...).


class LinkRecord(TypedDict):
    id: str
    from_id: str
    to_id: str
    relation: Relation
    label: str | None
    weight: float
    origin: Origin
    created_by: str | None
    created_at: str


class SavedLinkRecord(LinkRecord):
    deduplicated: bool


class MemoryRefRecord(TypedDict):
    id: str
    type: MemoryType
    title: str | None
    key: str | None
    preview: str
    state: str
    user_id: str | None


class LinkViewRecord(LinkRecord):
    direction: Direction
    memory: MemoryRefRecord


class LinkPageRecord(TypedDict):
    results: list[LinkViewRecord]
    next_cursor: str | None


class LinkDeletedRecord(TypedDict):
    id: str
    deleted: bool


class NeighborRecord(TypedDict):
    memory: MemoryRecord
    link: LinkRecord
    direction: Direction


class NeighborPageRecord(TypedDict):
    results: list[NeighborRecord]


class GraphNodeRecord(MemoryRecord):
    depth: int


class SubgraphRecord(TypedDict):
    seeds: list[str]
    nodes: list[GraphNodeRecord]
    edges: list[LinkRecord]
    radius: int
    limit: int
    truncated: bool


class PathEdgeRecord(LinkRecord):
    direction: Literal["forward", "backward"]


class PathRecord(TypedDict):
    hops: int
    nodes: list[GraphNodeRecord]
    edges: list[PathEdgeRecord]


class HubRecord(TypedDict):
    id: str
    degree: int
    memory: MemoryRefRecord


class GraphStatsRecord(TypedDict):
    nodes: int
    edges: int
    components: int
    isolated: int
    largest_component: int
    relations: dict[str, int]
    hubs: list[HubRecord]
    sampled: bool


class NewLinkRecord(TypedDict):
    """A link on its way in: `links.insert` sets its id and created_at (epoch ms)."""

    from_id: str
    to_id: str
    relation: Relation
    label: str | None
    weight: float
    origin: Origin
    created_by: str | None
    id: NotRequired[str]
    created_at: NotRequired[int]


class SuggestionSignalsRecord(TypedDict):
    similarity: float | None
    shared_tags: list[str]
    same_source: bool
    hours_apart: float


class SuggestionRecord(TypedDict):
    memory: MemoryRecord
    score: float
    relation: Relation
    reasons: list[str]
    signals: SuggestionSignalsRecord


class SuggestionPageRecord(TypedDict):
    results: list[SuggestionRecord]
