"""Conversations into memories without an LLM (core/memory/conversations.py): which turns,
traced how, and the messages chat APIs produce."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.memory.conversations import (
    procedure_memory,
    selected,
    transcript,
    turn_memories,
)
from core.memory.models import Conversation

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "User", "content": " I like tea ", "name": "ana"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
    {"role": "tool", "content": [{"type": "text", "text": "42"}, {"type": "image_url"}]},
    {"role": "user", "content": "   "},
]


def test_messages_as_chat_apis_write_them() -> None:
    conversation = Conversation.model_validate({"messages": CHAT})
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("system", "Be brief."),
        ("user", "I like tea"),
        ("assistant", ""),
        ("tool", "42"),
        ("user", ""),
    ]
    assert transcript(conversation) == "system: Be brief.\nuser: I like tea\ntool: 42"


def test_the_selected_turns_become_memories_traced_to_them() -> None:
    conversation = Conversation.model_validate(
        {
            "messages": CHAT,
            "roles": ["user", "TOOL"],
            "user_id": "ana",
            "timestamp": 1_700_000_000,
            "metadata": {"k": 1},
        }
    )
    assert [p for p, _ in selected(conversation)] == [1, 3]  # the blank user turn is skipped
    items = turn_memories(conversation)
    assert [(i["content"], i["role"]) for i in items] == [("I like tea", "user"), ("42", "tool")]
    traces = [i["metadata"]["conversation"] for i in items]
    assert [(t["position"], t["role"]) for t in traces] == [(1, "user"), (3, "tool")]
    assert traces[0]["name"] == "ana" and "name" not in traces[1]
    assert traces[0]["id"] == traces[1]["id"]
    assert {i["occurred_at"] for i in items} == {"2023-11-14T22:13:20.000Z"}
    assert all(i["metadata"]["k"] == 1 and i["user_id"] == "ana" for i in items)


def test_a_procedure_keeps_the_whole_exchange() -> None:
    conversation = Conversation.model_validate(
        {"messages": CHAT, "memory_type": "procedural_memory", "tags": ["deploy"]}
    )
    item = procedure_memory(conversation)
    assert item["content"] == transcript(conversation)
    assert item["tags"] == ["deploy", "procedural"]
    assert item["metadata"]["memory_type"] == "procedural_memory"
    assert item["metadata"]["conversation"]["positions"] == [0, 1, 3]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [{"content": "no role"}]},
        {"messages": [{"role": "user", "content": "x"}], "roles": []},
        {"messages": [{"role": "user", "content": "x"}], "memory_type": "episodic"},
        {"messages": [{"role": "user", "content": "x"}], "unknown": 1},
    ],
)
def test_bad_conversations_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Conversation.model_validate(body)
