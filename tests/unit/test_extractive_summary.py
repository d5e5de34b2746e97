"""The extractive summariser on its own (core/curation/summaries/extractive.py): deterministic
whatever the order, within its token budget, short statements from long or blank memories.
Summaries through the API on both stores: tests/api/test_summaries.py."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.curation.summaries.extractive import Candidate, extract, statement_text
from core.embeddings import BuiltinEmbedder
from core.memory.indexing import document_text
from core.retrieval.context import estimate_tokens
from tests.summary_fixtures import DANA, DANA_UPDATES, FOOD, RUN, SUPERSEDED, TRAVEL, WORK


def test_the_extractive_summary_is_deterministic_and_order_free() -> None:
    rows = [r for r in DANA if r[1] not in SUPERSEDED] + DANA_UPDATES
    embedder = BuiltinEmbedder()
    vectors = embedder.embed([document_text(None, r[3], r[4], r[1]) for r in rows])
    items = [
        Candidate(
            id=f"m{i:03d}", content=r[1], type=r[2], tags=tuple(r[4]), importance=r[5], when=i
        )
        for i, r in enumerate(rows)
    ]
    first = extract(items, vectors, 200)
    order = list(range(len(items)))
    random.Random(7).shuffle(order)
    shuffled = extract([items[i] for i in order], vectors[order], 200)
    assert shuffled.text == first.text
    assert [t.label for t in shuffled.themes] == [t.label for t in first.themes]
    assert first.considered == 60 and sum(t.memory_count for t in first.themes) == 60
    # Most memories sit with their own theme's majority.
    theme_of = {f"m{i:03d}": r[0] for i, r in enumerate(rows)}
    majority = sum(
        max(
            sum(1 for m in t.member_ids if theme_of[m] == name)
            for name in (FOOD, RUN, WORK, TRAVEL)
        )
        for t in first.themes
    )
    assert majority / 60 >= 0.6


@pytest.mark.parametrize("budget", [12, 40, 80, 200, 400])
def test_the_summary_keeps_to_its_token_budget(budget: int) -> None:
    rows = DANA_UPDATES + DANA[:20]
    vectors = BuiltinEmbedder().embed([r[1] for r in rows])
    items = [Candidate(id=f"m{i:03d}", content=r[1], when=i) for i, r in enumerate(rows)]
    made = extract(items, vectors, budget)
    assert made.text and estimate_tokens(made.text) <= budget
    assert made.tokens == estimate_tokens(made.text)


def test_long_and_blank_memories_make_short_statements() -> None:
    long = "First sentence of a long memory. " + "word " * 400
    assert statement_text(long) == "First sentence of a long memory."
    assert statement_text("no punctuation here") == "no punctuation here."
    assert statement_text("x" * 1000).endswith("…") and len(statement_text("x" * 1000)) <= 240
    assert statement_text("   \n ") == ""
    items = [Candidate(id="a", content="   "), Candidate(id="b", content="Only one memory")]
    made = extract(items, np.zeros((2, 8), np.float32), 200)
    assert made.text == "Only one memory." and made.considered == 1
    assert extract([], np.zeros((0, 8), np.float32), 200).text == ""
