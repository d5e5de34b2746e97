"""Core's typed records and the reply models /openapi.json documents name the same fields, so
what core returns is what the document promises (tests/contract.py checks the replies)."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from core.app import models as app
from core.curation import models as curation
from core.curation.summaries import models as summaries
from core.events import models as events
from core.graph import models as graph
from core.identity import models as identity
from core.identity.oauth import models as oauth
from core.memory import models as memory
from core.retrieval import models as retrieval
from core.transfer import models as transfer
from core.webhooks import models as webhooks

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
    (webhooks.WatchRecord, webhooks.WatchOut),
    (webhooks.NewWatchRecord, webhooks.NewWatchOut),
    (webhooks.RotatedRecord, webhooks.RotatedOut),
    (webhooks.WatchDeletedRecord, webhooks.WatchDeleted),
    (webhooks.EntityRefRecord, webhooks.EntityRef),
    (webhooks.DeliveryRecord, webhooks.DeliveryOut),
    (webhooks.DeliveryPageRecord, webhooks.DeliveryPage),
    (webhooks.HookSourceRecord, webhooks.HookSourceOut),
    (webhooks.NewHookSourceRecord, webhooks.NewHookSourceOut),
    (webhooks.SourceDeletedRecord, webhooks.SourceDeleted),
    (transfer.KindCountsRecord, transfer.KindCounts),
    (transfer.ImportRecord, transfer.ImportResult),
    (transfer.SnapshotRecord, transfer.Snapshot),
    (transfer.SnapshotPageRecord, transfer.SnapshotPage),
    (transfer.RestoreRecord, transfer.RestoreResult),
    (transfer.SnapshotDeletedRecord, transfer.SnapshotDeleted),
    (identity.AccountRecord, identity.AccountOut),
    (identity.SessionRecord, identity.SessionOut),
    (identity.KeyRecord, identity.KeyOut),
    (oauth.TokenRecord, oauth.TokenOut),
    (oauth.ClientRecord, oauth.ClientOut),
    (oauth.ServerMetadataRecord, oauth.ServerMetadataOut),
    (oauth.ResourceMetadataRecord, oauth.ResourceMetadataOut),
    (app.OutcomeRecord, memory.Outcome),
    (app.JobRecord, memory.Job),
    (app.RunRecord, app.RunOut),
    (app.RunPageRecord, app.RunPage),
    (curation.AliasRecord, curation.AliasOut),
    (curation.AliasesRecord, curation.AliasesOut),
    (curation.AliasDeletedRecord, curation.AliasDeleted),
    (curation.MergeRecord, curation.MergeOut),
    (curation.DuplicateGroupRecord, curation.DuplicateGroup),
    (curation.ConsolidateRecord, curation.ConsolidateOut),
    (curation.ClusterRecord, curation.Cluster),
    (curation.NearDuplicatesRecord, curation.NearDuplicates),
    (curation.JunkRecord, curation.Junk),
    (curation.HealthReportRecord, curation.HealthReport),
    (curation.BatchRunRecord, curation.BatchRunOut),
    (curation.ForgetPreviewRecord, curation.ForgetPreview),
    (curation.ForgetRecord, curation.ForgetOut),
    (graph.SuggestionSignalsRecord, graph.SuggestionSignals),
    (graph.SuggestionRecord, graph.Suggestion),
    (graph.SuggestionPageRecord, graph.SuggestionPage),
    (events.HistoryEntryRecord, memory.HistoryEntry),
    (events.ChangelogEntryRecord, memory.ChangelogEntry),
    (memory.NewConflictRecord, memory.NewConflict),
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
    assert required <= _required_keys(record), required - _required_keys(record)


def _required_keys(record: type) -> set[str]:
    """The keys a record always has. `__required_keys__` alone is not it on Python 3.11: with
    `from __future__ import annotations` typing's TypedDict sees `NotRequired[...]` as a string
    and counts the key required; the evaluated hints say which keys are marked either way."""
    hints = typing.get_type_hints(record, include_extras=True)
    marked = {name: typing.get_origin(hint) for name, hint in hints.items()}
    keys: set[str] = set(record.__required_keys__)  # type: ignore[attr-defined]
    keys -= {name for name, origin in marked.items() if origin is typing.NotRequired}
    return keys | {name for name, origin in marked.items() if origin is typing.Required}


def test_a_not_required_key_is_seen_as_not_required() -> None:
    assert "explain" not in _required_keys(retrieval.SearchHitRecord)
    assert "deduplicated" in _required_keys(memory.SavedMemoryRecord)
    assert "gate" not in _required_keys(memory.SavedMemoryRecord)


def test_a_held_write_is_what_a_saved_memory_allows() -> None:
    fields = set(memory.SavedMemory.model_fields)
    assert set(typing.get_type_hints(memory.HeldWriteRecord)) <= fields
