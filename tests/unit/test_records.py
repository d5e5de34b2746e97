"""Core's typed records and the reply models /openapi.json documents name the same fields, so
what core returns is what the document promises (tests/contract.py checks the replies)."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from core.curation import models as curation
from core.curation.summaries import models as summaries
from core.graph import models as graph
from core.identity import models as identity
from core.memory import models as memory
from core.retrieval import models as retrieval

PAIRS: list[tuple[type, type[BaseModel]]] = [
    (memory.MemoryRecord, memory.Memory),
    (memory.GateDecisionRecord, memory.GateDecision),
    (memory.SavedMemoryRecord, memory.Memory),
    (memory.MemoryPageRecord, memory.MemoryPage),
    (memory.DeletedRecord, memory.Deleted),
    (memory.QuarantineItemRecord, memory.QuarantineItem),
    (memory.QuarantinePageRecord, memory.QuarantinePage),
    (memory.ApprovedRecord, memory.Approved),
    (memory.TrustRecord, memory.TrustOut),
    (memory.TrustPageRecord, memory.TrustPage),
    (memory.TrustDeletedRecord, memory.TrustDeleted),
    (graph.LinkRecord, graph.Link),
    (graph.SavedLinkRecord, graph.Link),
    (graph.MemoryRefRecord, graph.MemoryRef),
    (graph.LinkViewRecord, graph.LinkView),
    (graph.LinkPageRecord, graph.LinkPage),
    (graph.LinkDeletedRecord, graph.LinkDeleted),
    (graph.NeighborRecord, graph.Neighbor),
    (graph.NeighborPageRecord, graph.NeighborPage),
    (graph.GraphNodeRecord, graph.GraphNode),
    (graph.SubgraphRecord, graph.Subgraph),
    (graph.PathEdgeRecord, graph.PathEdge),
    (graph.PathRecord, graph.Path),
    (graph.HubRecord, graph.Hub),
    (graph.GraphStatsRecord, graph.GraphStats),
    (curation.ConflictRecord, curation.ConflictOut),
    (curation.ConflictPageRecord, curation.ConflictPage),
    (curation.DetectRecord, curation.DetectOut),
    (curation.ErasureReceiptRecord, curation.ErasureReceipt),
    (curation.ErasurePageRecord, curation.ErasurePage),
    (summaries.UserSummaryRecord, summaries.UserSummaryOut),
    (summaries.DigestRecord, summaries.Digest),
    (summaries.ThemeRecord, summaries.ThemeOut),
    (retrieval.ExplainRecord, retrieval.Explain),
    (identity.BrainRecord, identity.BrainOut),
    (identity.BrainDeletedRecord, identity.BrainDeleted),
    (identity.MemberRecord, identity.MemberOut),
    (identity.MemberRemovedRecord, identity.MemberRemoved),
    (retrieval.SearchHitRecord, retrieval.SearchHit),
    (retrieval.SearchPageRecord, retrieval.SearchPage),
    (retrieval.CitationRecord, retrieval.Citation),
    (retrieval.OmittedRecord, retrieval.Omitted),
    (retrieval.ContextPackRecord, retrieval.ContextPack),
]


# Keys a record carries to its caller that the route takes off before replying.
INTERNAL = {"touched"}


@pytest.mark.parametrize(("record", "model"), PAIRS, ids=lambda t: t.__name__)
def test_a_record_has_its_reply_models_fields(record: type, model: type[BaseModel]) -> None:
    fields = set(model.model_fields)
    keys = set(typing.get_type_hints(record)) - INTERNAL
    assert keys <= fields, f"{record.__name__} has fields {model.__name__} lacks: {keys - fields}"
    # The model's required fields are always in the record; its optional ones may be left out.
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    assert required <= record.__required_keys__, required - record.__required_keys__  # type: ignore[attr-defined]


def test_a_held_write_is_what_a_saved_memory_allows() -> None:
    fields = set(memory.SavedMemory.model_fields)
    assert set(typing.get_type_hints(memory.HeldWriteRecord)) <= fields
