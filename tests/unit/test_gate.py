"""The write gate's classifier (core/memory/gate.py) on its own. Quarantine through the API:
tests/api/test_gate.py."""

from __future__ import annotations

from core.memory.gate import classify


def test_facts_about_the_user_are_not_instructions() -> None:
    for content in (
        "Alice always responds to email within a day",
        "Alice is allergic to peanuts",
        "Alice said: you are welcome to visit in May",
        "Bob never eats meat",
        "c",
    ):
        assert classify(content) is None, content
