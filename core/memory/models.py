"""Request and response models of the memory API, shared by REST, MCP and the OpenAPI spec."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired, Required, TypedDict, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
)

from core.kernel.errors import InvalidInput
from core.kernel.ids import now_ms, parse_time

MemoryType = Literal["note", "fact", "journal"]
MemoryState = Literal["active", "archived", "deleted"]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
NAME_CHARS = 256  # titles, keys, sources and user, agent and run ids
Name = Annotated[str, Field(min_length=1, max_length=NAME_CHARS)]
# Epoch seconds as a caller may send them: 1970 to the end of year 9999, the range a time stamp
# can be written back in (past it, formatting the time fails).
EpochSeconds = Annotated[float, Field(ge=0, le=253_402_300_799)]


class Strict(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import, so a cold
    # Lambda start pays only for the models its first request touches.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


class Out(BaseModel):
    """Response models: documentation for the OpenAPI spec, built only when it is."""

    model_config = ConfigDict(defer_build=True)


def _clean_tags(tags: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = " ".join(tag.split()).lower()
        if not cleaned:
            raise ValueError("tags must not be empty strings")
        seen.setdefault(cleaned, None)
    return list(seen)


class Actor(Strict):
    actor_id: Name | None = Field(None, description="Who made the change; defaults to the key.")
    role: Name | None = Field(None, description="The actor's role: user, assistant, system...")


class MemoryIn(Actor):
    content: str = Field(min_length=1, description="The memory itself.")
    type: MemoryType = "note"
    title: Name | None = None
    key: Name | None = Field(None, description="Required for facts: what the fact is about.")
    tags: list[str] = Field(default_factory=list)
    source: Name | None = None
    confidence: Score = 0.7
    importance: Score = 0.5
    metadata: dict[str, Any] = Field(default_factory=dict)
    user_id: Name | None = None
    agent_id: Name | None = None
    run_id: Name | None = None
    occurred_at: datetime | None = Field(None, description="When what it describes happened.")
    valid_from: datetime | None = Field(
        None,
        description="When what it states became true; defaults to occurred_at, else now. A "
        "fact whose key has a current fact supersedes it from this moment.",
    )
    valid_to: datetime | None = Field(
        None, description="When what it states stopped being true; open-ended when left out."
    )

    _tags = field_validator("tags")(_clean_tags)

    @field_validator("key")
    @classmethod
    def _key_text(cls, key: str | None) -> str | None:
        return None if key is None else " ".join(key.split())


class MemoryDraft(TypedDict, total=False):
    """A memory as a caller sends it, before `MemoryIn` validates it (core/memory/
    conversations.py makes these from a conversation's turns)."""

    content: str
    role: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    actor_id: str | None
    source: str | None
    tags: list[str]
    occurred_at: str | None
    # The caller's own metadata: any JSON object (a conversation's trace goes in it too).
    metadata: dict[str, Any]


def valid_memories(items: list[dict[str, Any]]) -> list[MemoryIn]:
    """The batch items that validate. Their vectors are made before the batch's transaction
    opens; the invalid ones fail inside it, reported with their index."""
    parsed = []
    for raw in items:
        try:
            parsed.append(MemoryIn.model_validate(raw))
        except ValidationError:
            continue
    return parsed


class MemoryBatchIn(Strict):
    memories: list[dict[str, Any]] = Field(
        min_length=1, description="Up to 500 memories, each as for POST /v1/memories."
    )


class MemoryPatch(Actor):
    content: str | None = Field(None, min_length=1)
    title: Name | None = None
    tags: list[str] | None = None
    source: Name | None = None
    confidence: Score | None = None
    importance: Score | None = None
    metadata: dict[str, Any] | None = None
    metadata_mode: Literal["merge", "replace"] = "merge"
    occurred_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else _clean_tags(tags)

    def changes(self) -> PatchChanges:
        """The fields the caller set. Null clears title, source and occurred_at; the fields a
        memory always has are refused here, before anything reads the changes (the patch's
        embedding text is made from them ahead of the write)."""
        fields = self.model_fields_set - {"actor_id", "role", "metadata_mode"}
        changes = cast(PatchChanges, {name: getattr(self, name) for name in fields})
        for name in _NOT_NULL:
            if name in changes and changes.get(name) is None:
                fix = " (send [] to remove every tag)" if name == "tags" else ""
                raise InvalidInput(f"{name} cannot be null{fix}", details={"field": name})
        return changes


_NOT_NULL = ("content", "tags", "confidence", "importance", "metadata")


class PatchChanges(TypedDict, total=False):
    """The fields a `MemoryPatch` sets: only those the caller sent."""

    content: str
    title: str | None
    tags: list[str]
    source: str | None
    confidence: float
    importance: float
    # The memory's own metadata: whatever JSON object the caller keeps there.
    metadata: dict[str, Any]
    occurred_at: datetime | None
    valid_from: datetime | None
    valid_to: datetime | None


class PurgeIn(Actor):
    confirm: bool = Field(description="Must be true: a purge cannot be undone.")


class StateChangeIn(Actor):
    pass


# Each tag of a filter is a bound parameter: 40,000 of them kept PostgreSQL planning a search
# for half a minute. A filter that needs more tags than this wants a tag of its own.
MAX_FILTER_TAGS = 100


class MemoryFilters(Strict):
    type: MemoryType | None = None
    tag: list[str] = Field(
        default_factory=list,
        max_length=MAX_FILTER_TAGS,
        description=f"Repeat or comma-separate; at most {MAX_FILTER_TAGS}.",
    )
    tag_mode: Literal["any", "all"] = "any"
    user_id: Name | None = None
    agent_id: Name | None = None
    run_id: Name | None = None
    source: Name | None = None
    state: Literal["active", "archived", "deleted", "all"] = "active"
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    as_of: datetime | None = Field(
        None,
        description="Valid time: the memories whose statement was true at this moment, "
        "superseded facts included.",
    )
    known_at: datetime | None = Field(
        None,
        description="System time: the memories the store held at this moment, with the "
        "content they had then (rebuilt from history).",
    )

    @field_validator("tag", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [part for item in value for part in str(item).split(",") if part.strip()]
        return value

    _tags = field_validator("tag")(_clean_tags)


class Page(Strict):
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None
    include_total: bool = False


class MemoryListQuery(MemoryFilters, Page):
    pass


class UserMemoriesQuery(Page):
    state: Literal["active", "archived", "deleted", "all"] = "active"


class FactQuery(Strict):
    user_id: Name | None = None
    as_of: datetime | None = Field(None, description="The fact that was true at this moment.")
    known_at: datetime | None = Field(None, description="The fact the store held at this moment.")


class ChangelogQuery(Strict):
    since: datetime | None = None
    event_type: Name | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


class GateDecision(Out):
    """What the write gate made of a write (core/memory/gate.py), and why."""

    decision: Literal["added", "duplicate", "reinforced", "recalled", "quarantined"]
    reason: str = Field(
        description="new, gate_off, exact_copy, near_duplicate, echo, instruction, "
        "system_role, empty or boilerplate"
    )
    message: str
    memory_id: str | None = Field(None, description="The memory restated, echoed or copied.")
    quarantine_id: str | None = None
    similarity: dict[str, float] | None = None
    importance: dict[str, float] | None = Field(None, description="A reinforcement's from/to.")
    recalled_ids: list[str] | None = None


class NewConflict(Out):
    """A contradiction a save caught: the conflict recorded (GET /v1/conflicts/{id})."""

    id: str
    with_id: str = Field(description="The memory the new one contradicts.")
    kind: str = Field(description="key, link or value")
    reason: str


class Memory(Out):
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
    valid_from: str | None = Field(None, description="When what it states became true.")
    valid_to: str | None = Field(None, description="When it stopped being true (null: still).")
    created_at: str
    updated_at: str
    archived_at: str | None
    deleted_at: str | None
    access_count: int
    last_accessed_at: str | None
    deduplicated: bool | None = Field(None, description="Set on create when it already existed.")
    conflicts: list[NewConflict] | None = Field(
        None,
        description="Set on create when the new memory contradicts memories of the same user: "
        "the conflicts recorded; both sides stay until resolved.",
    )
    gate: GateDecision | None = Field(None, description="Set on create: the write gate's word.")


class SavedMemory(Out):
    """A save's reply: the memory (every field of `Memory`), or when the gate quarantined the
    write, the held write: `state` quarantined and `id` its id under /v1/quarantine."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    id: str
    state: Literal["active", "archived", "deleted", "quarantined"]
    content: str
    user_id: str | None
    deduplicated: bool | None = None
    gate: GateDecision | None = None


class MemoryPage(Out):
    results: list[Memory]
    next_cursor: str | None
    total: int | None = None


class UserMemoryPage(MemoryPage):
    user_id: str


class HistoryEntry(Out):
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


class HistoryPage(Out):
    results: list[HistoryEntry]


class ChangelogEntry(Out):
    id: str
    event_type: str
    entity_type: str
    entity_id: str
    user_id: str | None
    actor_id: str | None
    summary: str
    payload: dict[str, Any]
    created_at: str


class ChangelogPage(Out):
    results: list[ChangelogEntry]
    next_cursor: str | None


class BatchResult(Out):
    results: list[SavedMemory]


class Deleted(Out):
    id: str
    purged: bool


# -- Conversations in, and the jobs that ingest them ---------------------------------------------

MAX_MESSAGES = 200


class Message(Strict):
    # Chat APIs put more on a message (tool_calls, tool_call_id, ...): a conversation copied
    # from one is taken as it is, and only what a memory needs is read.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, defer_build=True)

    role: Name = Field(description="Who spoke: user, assistant, system, tool...")
    content: str = Field(
        description=(
            "What was said (empty turns are skipped); a list of content parts gives its text "
            "parts, joined."
        )
    )
    name: Name | None = Field(None, description="The speaker's name, kept in the metadata.")

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, content: Any) -> Any:
        if content is None:  # an assistant turn that only called tools
            return ""
        if isinstance(content, list):  # OpenAI-style parts: keep the text ones
            return "\n".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type", "text") == "text"
            )
        return content

    @field_validator("role")
    @classmethod
    def _lower(cls, role: str) -> str:
        return role.lower()


class Conversation(Strict):
    """What a caller sends to have memories made from a conversation."""

    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    roles: list[Name] = Field(
        default_factory=lambda: ["user"],
        min_length=1,
        description="Which turns become memories when no LLM extracts facts (default: user).",
    )
    infer: bool = Field(
        True,
        description=(
            "Let the configured LLM draw facts from the conversation and reconcile them with "
            "the user's memories (ADD/UPDATE/DELETE/NONE). Without an LLM, or when false, "
            "each selected turn is stored as it is."
        ),
    )
    memory_type: Literal["procedural_memory"] | None = Field(
        None, description="procedural_memory: keep the whole exchange as one procedure."
    )
    timestamp: datetime | EpochSeconds | None = Field(
        None, description="When the conversation took place (ISO 8601 or epoch seconds)."
    )
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    user_id: Name | None = None
    agent_id: Name | None = None
    run_id: Name | None = None
    actor_id: Name | None = None
    source: Name | None = None
    custom_instructions: str | None = Field(
        None, max_length=4000, description="Extra guidance for the LLM's fact extraction."
    )
    async_mode: bool = Field(
        False, description="With an LLM: answer at once with a job to poll (GET /v1/jobs/{id})."
    )

    @field_validator("roles")
    @classmethod
    def _lower_roles(cls, roles: list[str]) -> list[str]:
        return [r.lower() for r in roles]

    def occurred_ms(self) -> int:
        return now_ms() if self.timestamp is None else parse_time(self.timestamp)


class Outcome(Out):
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"] = Field(
        description="What happened to the memory: made, changed, deleted, or already known."
    )
    memory: Memory
    previous_content: str | None = Field(None, description="The text before an UPDATE/DELETE.")


class Ingested(Out):
    results: list[Outcome]


class Job(Out):
    id: str
    user_id: str | None
    status: Literal["pending", "running", "succeeded", "failed"]
    results: list[Outcome] | None
    error: dict[str, Any] | None
    created_at: str
    updated_at: str


class JobAccepted(Out):
    job: Job


# -- Quarantine review -------------------------------------------------------------------------

QuarantineStatus = Literal["pending", "approved", "rejected"]


class QuarantineQuery(Page):
    status: Literal["pending", "approved", "rejected", "all"] = "pending"
    user_id: Name | None = None


class DecisionIn(Actor):
    note: str | None = Field(None, max_length=1000, description="Why, for the changelog.")


class QuarantineItem(Out):
    id: str
    user_id: str | None
    content: str
    reason: str = Field(description="instruction, system_role, empty or boilerplate")
    explanation: str
    status: QuarantineStatus
    memory_id: str | None = Field(description="The memory an approval saved.")
    request: dict[str, Any] = Field(description="The write as it was asked for.")
    created_by: str | None
    decided_by: str | None
    created_at: str
    decided_at: str | None


class QuarantinePage(Out):
    results: list[QuarantineItem]
    next_cursor: str | None


class Approved(Out):
    item: QuarantineItem
    memory: dict[str, Any]


# -- Brain policy and source trust ----------------------------------------------------------

# A JSON number that is not a bool or a string (a policy or trust value of the wrong type is a 422).
Number = StrictFloat | StrictInt


class PolicyIn(Strict):
    """The whole policy: a field left out takes its default. Out-of-range numbers are clamped
    to the nearest bound (the response lists them under `clamped`); a wrong type is a 422."""

    decay_days: StrictInt | None = Field(None, description="1..3650")
    decay_rate: Number | None = Field(None, description="0..0.9, fraction lost per period")
    importance_floor: Number | None = Field(None, description="0..1")
    reinforce_step: Number | None = Field(None, description="0.01..0.5")
    retention_days: StrictInt | None = Field(None, description="1..36500; null keeps forever")
    inferred_links_max: StrictInt | None = Field(None, description="0..50")
    inferred_links_threshold: Number | None = Field(None, description="0..1")
    snapshot_retention: StrictInt | None = Field(None, description="1..1000")
    path_max_hops: StrictInt | None = Field(None, description="1..12")
    subgraph_max_nodes: StrictInt | None = Field(None, description="1..2000")
    consolidate_threshold: Number | None = Field(None, description="0.5..1")
    write_gate: StrictInt | None = Field(None, description="1 screens every write; 0 off")
    gate_dedup_threshold: Number | None = Field(None, description="0.5..1, near-duplicate cosine")
    gate_text_threshold: Number | None = Field(None, description="0..1, shared terms (Jaccard)")
    echo_window_seconds: StrictInt | None = Field(None, description="0..86400; 0 off")


# A policy as field -> value: BrainPolicy's fields (core/memory/policy.py FIELDS), every one a
# number or null. A dict keyed by name rather than a TypedDict, so the fields stay listed once.
PolicyValues = dict[str, int | float | None]
# The values an owner set, as stored JSON: read back unchecked (policy_for clamps them again).
StoredPolicy = dict[str, Any]


class PolicyOut(Out):
    policy: dict[str, Any] = Field(description="The effective values")
    overrides: dict[str, Any] = Field(description="The values this brain set")
    clamped: dict[str, Any] = Field(default_factory=dict, description="field -> value asked for")
    bounds: dict[str, Any]


class TrustIn(Strict):
    trust: Number = Field(description="0 (ignore) to 1 (fully trusted); 0.5 is neutral")
    notes: str | None = Field(None, max_length=1000)


class TrustOut(Out):
    source: str
    trust: float
    notes: str | None
    created_at: str | None
    updated_at: str | None


class TrustDeleted(Out):
    source: str
    deleted: bool


class TrustPage(Out):
    results: list[TrustOut]
    next_cursor: str | None


class TrustListQuery(Strict):
    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = None


# -- POST /v1/memories: a memory, or a conversation to make memories from --------------------


class MemoryOrConversation(RootModel[MemoryIn | Conversation]):
    """A memory, or a conversation (`messages`) to make memories from."""


class MemoryOrIngested(RootModel[Memory | Ingested]):
    """The memory; for a conversation, what happened to each memory it touched (with
    async_mode and an LLM: 202 and the job to poll at GET /v1/jobs/{id})."""


class HeldOrJob(RootModel[SavedMemory | JobAccepted]):
    """202: the write the gate held in quarantine (`state` quarantined, `id` its id under
    /v1/quarantine), or for a conversation in async_mode the job to poll."""


# -- Typed records ------------------------------------------------------------------------------
# What core/memory returns: the JSON a route sends, field for field. The pydantic `Out` models
# above document the same replies in /openapi.json; tests/unit/test_records.py holds the two
# to the same fields, and tests/contract.py checks every reply in the suite against the document.


class GateDecisionRecord(TypedDict):
    """What the write gate made of a write (`GateDecision`): core/memory/gate.py `Verdict`."""

    decision: Literal["added", "duplicate", "reinforced", "recalled", "quarantined"]
    reason: str
    message: str
    memory_id: NotRequired[str]
    quarantine_id: NotRequired[str]
    similarity: NotRequired[dict[str, float]]
    importance: NotRequired[dict[str, float]]
    recalled_ids: NotRequired[list[str]]


class MemoryRecord(TypedDict):
    """A memory as every reply carries it (`Memory`)."""

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
    valid_from: str | None
    valid_to: str | None
    created_at: str
    updated_at: str
    archived_at: str | None
    deleted_at: str | None
    access_count: int
    last_accessed_at: str | None


class NewConflictRecord(TypedDict):
    """A conflict the save found: `Memory.conflicts`' items."""

    id: str
    with_id: str
    kind: str
    reason: str


class CreatedFields(TypedDict, total=False):
    """What the checks an indexer runs on a new memory add to the save's reply (`CreatedHook`)."""

    conflicts: list[NewConflictRecord]


class SavedMemoryRecord(MemoryRecord, total=False):
    """A save's reply for a memory that is in the store: new (201) or already there (200)."""

    deduplicated: Required[bool]
    conflicts: list[NewConflictRecord]
    gate: GateDecisionRecord


class HeldWriteRecord(TypedDict):
    """A save's reply when the write gate held the write in quarantine (202)."""

    id: str
    state: Literal["quarantined"]
    user_id: str | None
    content: str
    deduplicated: bool
    gate: GateDecisionRecord


SaveRecord = SavedMemoryRecord | HeldWriteRecord


class MemoryPageRecord(TypedDict):
    results: list[MemoryRecord]
    next_cursor: str | None
    total: NotRequired[int | None]


class DeletedRecord(TypedDict):
    id: str
    purged: bool


class QuarantineItemRecord(TypedDict):
    id: str
    user_id: str | None
    content: str
    reason: str
    explanation: str
    status: QuarantineStatus
    memory_id: str | None
    request: dict[str, Any]
    created_by: str | None
    decided_by: str | None
    created_at: str
    decided_at: str | None


class QuarantinePageRecord(TypedDict):
    results: list[QuarantineItemRecord]
    next_cursor: str | None


class ApprovedRecord(TypedDict):
    item: QuarantineItemRecord
    memory: SaveRecord


class TrustRecord(TypedDict):
    source: str
    trust: float
    notes: str | None
    created_at: str | None
    updated_at: str | None


class TrustPageRecord(TypedDict):
    results: list[TrustRecord]
    next_cursor: str | None


class TrustDeletedRecord(TypedDict):
    source: str
    deleted: bool


class EntityRecord(TypedDict):
    """A user, agent or run with active memories (mem0's entities: the route adds mem0's id,
    owner, organization and metadata to make handlers/mem0_models.py's `Entity`)."""

    type: Literal["user", "agent", "run"]
    name: str
    total_memories: int
    created_at: str
    updated_at: str


class UserListingRecord(TypedDict):
    """An end user as the console's users page lists it (core/memory/users.py `list_users`)."""

    user_id: str
    summary: str | None
    summary_source: str | None
    summarized_at: str | None
    created_at: str
    memories: int


class SectorMemoryRecord(TypedDict):
    """A memory as OpenMemory's listings need it (core/memory/openmemory.py): times in epoch
    ms, its sector, and how many times it was edited."""

    id: str
    content: str
    tags: list[str]
    # The memory's own metadata: whatever JSON object its writer kept there.
    metadata: dict[str, Any]
    created_at: int
    updated_at: int
    last_accessed_at: int | None
    importance: float
    sector: str
    edits: int


class SectorCountRecord(TypedDict):
    sector: str
    count: int
    mean_importance: float
