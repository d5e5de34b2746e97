"""The request and response models of mem0's platform API as Mnemo serves it (the routes are
in handlers/routes/mem0.py). Requests ignore fields Mnemo has no use for (mem0's clients send
`version`, `output_format` and the like), so a client of any recent version is understood."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from core.memory.models import EpochSeconds, Message, Name, Out

# Pages past this would put the SQL offset beyond what a 64-bit integer holds (page x size).
MAX_PAGE = 1_000_000_000


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, defer_build=True)


class AddIn(Lenient):
    messages: list[Message] | Message | str = Field(
        description="The conversation: role/content turns, one turn, or a user's text."
    )
    user_id: Name | None = None
    agent_id: Name | None = None
    run_id: Name | None = None
    app_id: Name | None = Field(None, description="Kept as metadata.app_id.")
    filters: dict[str, Any] | None = Field(
        None, description="Entity ids may come here too: {'user_id': ...}."
    )
    metadata: dict[str, Any] | None = None
    infer: bool = Field(
        True,
        description=(
            "Extract facts with the configured LLM (MNEMO_EXTRACTION_LLM); without one, or "
            "false, every user turn is stored as it is."
        ),
    )
    memory_type: Literal["procedural_memory"] | None = None
    async_mode: bool = Field(
        False, description="With an LLM: answer at once; read GET /v1/event/{event_id}/."
    )
    timestamp: EpochSeconds | None = Field(None, description="Epoch seconds of the conversation.")
    custom_instructions: str | None = Field(None, max_length=4000)
    roles: list[Name] | None = Field(
        None, description="Without an LLM: the roles whose turns are stored (default: user)."
    )


class Record(Out):
    id: str
    memory: str
    hash: str = Field(description="MD5 of the text, as mem0 computes it.")
    metadata: dict[str, Any] | None
    categories: list[str] = Field(description="Mnemo's tags.")
    created_at: str
    updated_at: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    app_id: str | None
    immutable: bool
    expiration_date: str | None
    state: str | None
    memory_type: Literal["procedural_memory"] | None = None
    score: float | None = None


class AddResult(Out):
    id: str | None = None
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"] | None = None
    memory: str | None = None
    data: dict[str, Any] | None = None
    previous_memory: str | None = None
    message: str | None = Field(None, description="async_mode: the job was queued.")
    status: str | None = Field(None, description="async_mode: PENDING.")
    event_id: str | None = Field(None, description="async_mode: read GET /v1/event/{id}/.")
    # The memory's record (`Record`, without its id and text), as the platform sends them.
    hash: str | None = None
    metadata: dict[str, Any] | None = None
    categories: list[str] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    app_id: str | None = None
    immutable: bool | None = None
    expiration_date: str | None = None
    state: str | None = None
    memory_type: Literal["procedural_memory"] | None = None


class AddPage(Out):
    results: list[AddResult]


class ListIn(Lenient):
    filters: dict[str, Any] | None = Field(
        None,
        description=(
            "mem0 v2 filters: {'AND'|'OR'|'NOT': [...]}, entity fields (user_id, agent_id, "
            "run_id, app_id), created_at/updated_at, categories, keywords, metadata; operators "
            "in nin gt gte lt lte ne contains icontains, '*' for any value."
        ),
    )
    page: int | None = Field(None, ge=1, le=MAX_PAGE)
    page_size: int | None = Field(None, ge=1)
    start_date: str | None = None
    end_date: str | None = None
    categories: list[str] | None = None


class Mem0Page(Out):
    count: int
    next: str | None
    previous: str | None
    results: list[Record]


class Mem0SearchIn(ListIn):
    query: str = Field(min_length=1, max_length=10_000)
    top_k: int = Field(10, ge=1, le=100)
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="Mnemo's min_score.")
    keyword_search: bool = Field(False, description="Full-text only (Mnemo's lexical mode).")
    fields: list[str] | None = Field(None, description="Return only these record fields.")


class Projected(Out):
    """A search result when `fields` was given: its id and the fields asked for (as `Record`
    has them)."""

    model_config = ConfigDict(extra="allow")

    id: str


class Mem0SearchPage(Out):
    results: list[Record | Projected]


class UpdateIn(Lenient):
    text: str | None = Field(None, min_length=1)
    metadata: dict[str, Any] | None = Field(None, description="Merged into the memory's metadata.")
    timestamp: EpochSeconds | str | None = Field(None, description="When it happened.")


class Message_(Out):
    message: str


class DeletedAll(Message_):
    deleted: int = Field(description="How many memories were deleted")


class Mem0Error(Out):
    code: str
    message: str
    details: Any = None


class Mem0ErrorOut(Out):
    """A failure as mem0's clients read it (`detail`), with Mnemo's error object beside it."""

    detail: str
    error: Mem0Error


class BatchUpdateItem(Lenient):
    memory_id: str
    text: str | None = Field(None, min_length=1)
    metadata: dict[str, Any] | None = None


class BatchUpdateIn(Lenient):
    memories: list[BatchUpdateItem] = Field(min_length=1)


class BatchDeleteItem(Lenient):
    memory_id: str


class BatchDeleteIn(Lenient):
    memories: list[BatchDeleteItem] = Field(min_length=1)


class DeleteAllQuery(Lenient):
    user_id: Name | None = None
    agent_id: Name | None = None
    run_id: Name | None = None
    app_id: Name | None = None


class Entity(Out):
    id: str
    name: str
    type: Literal["user", "agent", "run"]
    total_memories: int
    created_at: str | None
    updated_at: str | None
    owner: str | None = None
    organization: str | None = None
    metadata: dict[str, Any] | None = None


class EntityPage(Out):
    count: int
    results: list[Entity]


class Ping(Out):
    status: str
    message: str
    org_id: str | None
    project_id: str | None
    user_email: str | None
    brain_id: str
    user_id: str | None


class HistoryRow(Out):
    id: str
    memory_id: str
    event: str
    old_memory: str | None
    new_memory: str | None
    detail: dict[str, Any] | None = Field(description="Mnemo's account of the change")
    input: list[dict[str, Any]] | None = None
    actor_id: str | None
    role: str | None
    is_deleted: bool
    created_at: str
    updated_at: str | None


class Event(Out):
    id: str
    status: Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
    results: list[AddResult] | None
    error: dict[str, Any] | None
    created_at: str
    updated_at: str


class HistoryList(RootModel[list[HistoryRow]]):
    pass
