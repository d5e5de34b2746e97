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

from collections.abc import Sequence
from typing import Any

from core.kernel.ids import iso, new_id
from core.memory.models import Conversation, MemoryDraft, MemoryIn, Message

PROCEDURAL = "procedural_memory"
PROCEDURAL_TAG = "procedural"


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


def _base(conversation: Conversation, at: int) -> MemoryDraft:
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


def turn_memories(conversation: Conversation) -> list[MemoryDraft]:
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
        item["content"] = message.content.strip()
        item["role"] = message.role
        item["metadata"]["conversation"] = trace
        items.append(item)
    return items


def procedure_memory(conversation: Conversation, content: str | None = None) -> MemoryDraft:
    """The whole exchange (or an LLM's summary of it) as one procedural memory."""
    conversation_id, at = new_id(), conversation.occurred_ms()
    item = _base(conversation, at)
    tags = item["tags"]
    if PROCEDURAL_TAG not in tags:
        tags.append(PROCEDURAL_TAG)
    item["content"] = content or transcript(conversation)
    item["role"] = "assistant"
    item["metadata"]["memory_type"] = PROCEDURAL
    item["metadata"]["conversation"] = {
        "id": conversation_id,
        "positions": [i for i, m in enumerate(conversation.messages) if m.content.strip()],
    }
    return item


def fact_memory(
    conversation: Conversation, fact: str, conversation_id: str, at: int
) -> MemoryDraft:
    """A memory for a fact an LLM drew from the conversation."""
    item = _base(conversation, at)
    item["content"] = fact
    item["role"] = "assistant"
    item["metadata"]["conversation"] = {"id": conversation_id, "extracted": True}
    return item


def validate_items(items: Sequence[MemoryDraft]) -> list[MemoryIn]:
    return [MemoryIn.model_validate(item) for item in items]
