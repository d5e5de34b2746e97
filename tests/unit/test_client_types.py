"""The Python client's result types against the server's response models.

mnemo_client stays standalone (httpx only: no pydantic, no server code), so its TypedDicts
mirror the server's pydantic models (core/*/models.py, the OpenMemory route models) rather
than import them. This test is what keeps the mirror true: every client type is paired with
the model it mirrors, and a field added, removed, renamed or retyped on either side fails it.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any, Literal, NotRequired, Union, get_args, get_origin, get_type_hints

import pytest
from pydantic import BaseModel

import mnemo_client.types as client
from core.curation.summaries import models as summaries
from core.graph import models as graph
from core.memory import models as memory
from core.retrieval import models as retrieval
from handlers import openmemory_models as openmemory
from handlers.routes import health

# client type -> (server model, the model's fields the client passes as arguments instead)
PAIRS: dict[str, tuple[type, frozenset[str]]] = {
    "AddResult": (openmemory.OMAdded, frozenset()),
    "QueryMatch": (openmemory.OMMatch, frozenset()),
    "QueryResult": (openmemory.OMQueryOut, frozenset()),
    "UserMemoryItem": (openmemory.OMItem, frozenset()),
    "UserMemories": (openmemory.OMItems, frozenset()),
    "UserSummaryResult": (openmemory.OMSummary, frozenset()),
    "RegenerateResult": (openmemory.OMRegenerated, frozenset()),
    "QueryFilters": (openmemory.OMQueryFilters, frozenset()),
    "GateDecision": (memory.GateDecision, frozenset()),
    "Memory": (memory.Memory, frozenset()),
    "MemoryPage": (memory.MemoryPage, frozenset()),
    "Purged": (memory.Deleted, frozenset()),
    "HistoryEntry": (memory.HistoryEntry, frozenset()),
    "ChangelogEntry": (memory.ChangelogEntry, frozenset()),
    "ChangelogPage": (memory.ChangelogPage, frozenset()),
    "MemoryFields": (memory.MemoryIn, frozenset({"content"})),
    "MemoryChanges": (memory.MemoryPatch, frozenset()),
    "MemoryFilters": (memory.MemoryFilters, frozenset()),
    "ListOptions": (memory.MemoryListQuery, frozenset()),
    "Explain": (retrieval.Explain, frozenset()),
    "SearchHit": (retrieval.SearchHit, frozenset()),
    "SearchPage": (retrieval.SearchPage, frozenset()),
    "Citation": (retrieval.Citation, frozenset()),
    "Omitted": (retrieval.Omitted, frozenset()),
    "ContextPack": (retrieval.ContextPack, frozenset()),
    "SearchFilters": (retrieval.SearchFilters, frozenset()),
    "SearchOptions": (retrieval.SearchIn, frozenset({"query"})),
    "ContextOptions": (retrieval.ContextIn, frozenset({"query"})),
    "UserSummary": (summaries.UserSummaryOut, frozenset()),
    "ThemeExample": (summaries.Example, frozenset()),
    "Theme": (summaries.ThemeOut, frozenset()),
    "Digest": (summaries.Digest, frozenset()),
    "Health": (health.Health, frozenset()),
    "ReindexResult": (retrieval.ReindexResult, frozenset()),
    "Link": (graph.Link, frozenset()),
    "MemoryRef": (graph.MemoryRef, frozenset()),
    "LinkView": (graph.LinkView, frozenset()),
    "LinkPage": (graph.LinkPage, frozenset()),
    "LinkDeleted": (graph.LinkDeleted, frozenset()),
    "Neighbor": (graph.Neighbor, frozenset()),
    "SuggestionSignals": (graph.SuggestionSignals, frozenset()),
    "Suggestion": (graph.Suggestion, frozenset()),
    "GraphNode": (graph.GraphNode, frozenset()),
    "GraphEdge": (graph.GraphEdge, frozenset()),
    "Subgraph": (graph.Subgraph, frozenset()),
    "PathEdge": (graph.PathEdge, frozenset()),
    "Path": (graph.Path, frozenset()),
    "Hub": (graph.Hub, frozenset()),
    "GraphStats": (graph.GraphStats, frozenset()),
    "NewConflict": (memory.NewConflict, frozenset()),
}
# Client types with no server model of their own: a page the client adds a path parameter to.
UNPAIRED = {"UserMemoryPage": "MemoryPage + user_id"}
# The server model each client type stands for, by the model: nested models compare by pair.
TWIN = {model: name for name, (model, _) in PAIRS.items()}


def _typed_dicts() -> list[str]:
    return [
        name
        for name, value in vars(client).items()
        if isinstance(value, type) and typing.is_typeddict(value)
    ]


def _shape(tp: Any) -> str:
    """A type as a comparable string: optional-ness dropped (None, NotRequired: whether a
    field may be absent is compared apart), constraints dropped, nested models by their pair."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Annotated:
        return _shape(args[0])
    if origin is NotRequired:
        return _shape(args[0])
    if origin in (Union, types.UnionType):
        parts = sorted({_shape(a) for a in args if a is not type(None)})
        return " | ".join(parts)
    if origin is Literal:
        return "Literal[" + ", ".join(sorted(repr(a) for a in args)) + "]"
    if origin is not None:
        inner = ", ".join(_shape(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return TWIN.get(tp, f"unpaired model {tp.__name__}")
    if isinstance(tp, type) and tp in TWIN:  # a reply that is a TypedDict (OpenMemory's)
        return TWIN[tp]
    if tp is datetime:
        return "str"  # what a time is on the wire: ISO 8601 text
    return getattr(tp, "__name__", str(tp))


def _agree(mine: str, theirs: str) -> bool:
    """Equal, or the client documents more narrowly what the server types loosely: the values
    a `str` takes (a Literal)."""
    return mine == theirs or (theirs == "str" and mine.startswith("Literal["))


def _fields(model: type) -> dict[str, Any]:
    """A reply model's fields and their types; a reply that is a TypedDict (OpenMemory's) has
    its keys instead."""
    if issubclass(model, BaseModel):
        return {name: info.annotation for name, info in model.model_fields.items()}
    return get_type_hints(model, include_extras=True)


def test_every_client_type_is_paired_with_a_server_model() -> None:
    assert sorted(_typed_dicts()) == sorted([*PAIRS, *UNPAIRED])


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_client_type_matches_its_server_model(name: str) -> None:
    model, passed_apart = PAIRS[name]
    mine = get_type_hints(getattr(client, name), include_extras=True)
    theirs = {
        field: annotation
        for field, annotation in _fields(model).items()
        if field not in passed_apart
    }
    assert sorted(mine) == sorted(theirs), f"{name} and {model.__name__} have different fields"
    retyped = {
        field: (_shape(mine[field]), _shape(theirs[field]))
        for field in mine
        if not _agree(_shape(mine[field]), _shape(theirs[field]))
    }
    assert not retyped, f"{name}: (client, server) types differ: {retyped}"
