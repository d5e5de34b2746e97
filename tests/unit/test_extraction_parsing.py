"""mem0-style extraction without a database: the prompts, and the parsing of what models
answer, malformed answers included (core/app/extraction.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.app import extraction
from core.app.extraction import ExtractionError, parse_decisions, parse_facts
from core.memory.models import Conversation

CHAT = [
    {"role": "user", "content": "I moved from Paris to Lyon, and I gave my dog Rex away."},
    {"role": "assistant", "content": "Lyon is lovely. Still on green tea?"},
    {"role": "user", "content": "Yes, green tea every morning."},
]


def test_the_fact_prompt_carries_the_conversation_and_instructions() -> None:
    conversation = Conversation.model_validate(
        {"messages": CHAT, "custom_instructions": "Ignore pets."}
    )
    system, prompt = extraction.fact_messages(conversation, "2026-12-06")
    assert "Today is 2026-12-06" in system and "Also: Ignore pets." in system
    assert prompt.splitlines()[1:] == [f"{m['role']}: {m['content']}" for m in CHAT]


@pytest.mark.parametrize(
    ("reply", "facts"),
    [
        ('{"facts": ["A", " B  b ", "A", ""]}', ["A", "B b"]),
        ('```json\n{"facts": ["A"]}\n```', ["A"]),
        ('Here you go: {"facts": ["A"]} Hope it helps.', ["A"]),
        ('{"facts": []}', []),
    ],
)
def test_facts_are_read_from_what_models_write(reply: str, facts: list[str]) -> None:
    assert parse_facts(reply, limit=10) == facts


@pytest.mark.parametrize(
    "reply",
    ["", "I cannot help", "{not json}", '["A"]', '{"facts": "A"}', '{"facts": [1]}', '{"x": []}'],
)
def test_malformed_fact_replies_are_refused(reply: str) -> None:
    with pytest.raises(ExtractionError):
        parse_facts(reply, limit=10)


STORED = [{"id": "m-a", "content": "Lives in Paris"}, {"id": "m-b", "content": "Likes tea"}]


def test_decisions_map_back_to_the_memories_shown() -> None:
    reply = json.dumps(
        {
            "memory": [
                {"id": "0", "event": "update", "text": "Lives in Lyon", "old_memory": "x"},
                {"id": "1", "event": "UPDATE", "text": "Likes tea"},  # no change: NONE
                {"id": "9", "event": "ADD", "text": "Has a cat"},
            ]
        }
    )
    decisions = parse_decisions(reply, STORED)
    assert [(d.event, d.memory_id, d.text, d.old) for d in decisions] == [
        ("UPDATE", "m-a", "Lives in Lyon", "Lives in Paris"),
        ("NONE", "m-b", "Likes tea", "Likes tea"),
        ("ADD", None, "Has a cat", None),
    ]


@pytest.mark.parametrize(
    ("items", "why"),
    [
        ([{"id": "2", "event": "DELETE"}], "not shown"),
        ([{"id": "m-a", "event": "DELETE"}], "not shown"),
        ([{"id": "0", "event": "DELETE"}, {"id": "0", "event": "NONE"}], "twice"),
        ([{"id": "0", "event": "MERGE"}], "unknown event"),
        ([{"id": "0", "event": "UPDATE"}], "without new text"),
        ([{"event": "ADD", "text": " "}], "without text"),
        (["ADD"], "not an object"),
    ],
)
def test_malformed_decisions_are_refused(items: list[Any], why: str) -> None:
    with pytest.raises(ExtractionError, match=why):
        parse_decisions(json.dumps({"memory": items}), STORED)
