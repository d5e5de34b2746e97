"""Conversations in: role/content turns turned into memories without an LLM.

Each selected turn (the user's, unless the caller names other roles) becomes one memory whose
actor role is the turn's role, whose `occurred_at` is the conversation's time, and whose
metadata records where it came from:

    metadata.conversation = {"id": <one id per conversation>, "position": <index of the turn in
                             the messages sent>, "role": <its role>, "name": <its name, if any>}

so any memory made from a conversation can be traced to its turn. The memories are written by
`memories.create_batch`: one transaction, all or nothing, each with its ADD history row.

A procedural memory (mem0's `memory_type="procedural_memory"`) is one memory holding the whole
exchange: tagged `procedural` (OpenMemory's procedural sector) with
`metadata.memory_type = "procedural_memory"`, as mem0 itself marks it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from core.kernel.ids import iso, new_id, now_ms, parse_time
from core.memory.models import EpochSeconds, Memory, MemoryIn, Name, Out, Strict

PROCEDURAL = "procedural_memory"
PROCEDURAL_TAG = "procedural"
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


def selected(conversation: Conversation) -> list[tuple[int, Message]]:
    """The turns that become memories, with their positions in the conversation."""
    return [
        (position, message)
        for position, message in enumerate(conversation.messages)
        if message.role in conversation.roles and message.content.strip()
    ]


def transcript(conversation: Conversation) -> str:
    """The conversation as text, one turn a line: what an LLM reads and a procedure keeps."""
    return "\n".join(
        f"{m.role}: {m.content.strip()}" for m in conversation.messages if m.content.strip()
    )


def _base(conversation: Conversation, at: int) -> dict[str, Any]:
    return {
        "user_id": conversation.user_id,
        "agent_id": conversation.agent_id,
        "run_id": conversation.run_id,
        "actor_id": conversation.actor_id,
        "source": conversation.source,
        "tags": list(conversation.tags),
        "occurred_at": iso(at),
        "metadata": {**conversation.metadata},
    }


def turn_memories(conversation: Conversation) -> list[dict[str, Any]]:
    """One memory (as for POST /v1/memories/batch) per selected turn, traceable to it."""
    conversation_id, at = new_id(), conversation.occurred_ms()
    items = []
    for position, message in selected(conversation):
        item = _base(conversation, at)
        trace: dict[str, Any] = {
            "id": conversation_id,
            "position": position,
            "role": message.role,
        }
        if message.name:
            trace["name"] = message.name
        item.update(content=message.content.strip(), role=message.role)
        item["metadata"]["conversation"] = trace
        items.append(item)
    return items


def procedure_memory(conversation: Conversation, content: str | None = None) -> dict[str, Any]:
    """The whole exchange (or an LLM's summary of it) as one procedural memory."""
    conversation_id, at = new_id(), conversation.occurred_ms()
    item = _base(conversation, at)
    tags = item["tags"]
    if PROCEDURAL_TAG not in tags:
        tags.append(PROCEDURAL_TAG)
    item.update(content=content or transcript(conversation), role="assistant")
    item["metadata"]["memory_type"] = PROCEDURAL
    item["metadata"]["conversation"] = {
        "id": conversation_id,
        "positions": [i for i, m in enumerate(conversation.messages) if m.content.strip()],
    }
    return item


def fact_memory(
    conversation: Conversation, fact: str, conversation_id: str, at: int
) -> dict[str, Any]:
    """A memory for a fact an LLM drew from the conversation."""
    item = _base(conversation, at)
    item.update(content=fact, role="assistant")
    item["metadata"]["conversation"] = {"id": conversation_id, "extracted": True}
    return item


def validate_items(items: list[dict[str, Any]]) -> list[MemoryIn]:
    return [MemoryIn.model_validate(item) for item in items]


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
