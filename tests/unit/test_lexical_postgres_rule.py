"""Which query words PostgreSQL's full-text statements score, from ANALYZE's commonest lexemes
(core/retrieval/lexical.py `_postgres_selective`, `_rarest`): the rule SQLite applies with
its vocabulary table. The statistics are given here; tests/core/test_pg_vocabulary.py reads
them from a real server."""

from __future__ import annotations

from typing import Any

import pytest

from core.retrieval import lexical

# 10,000 memories: "great" in 19%, "caroline" in 4.6%, "pottery" and "lisbon" unlisted (rare).
SHARES = {"great": 0.19, "carolin": 0.046, "thank": 0.18, "time": 0.079, "peopl": 0.061}


@pytest.fixture
def vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    found = lexical._Vocabulary(SHARES, 10_000.0)
    monkeypatch.setattr(lexical, "_vocabulary", lambda _conn: found)


def test_common_words_are_dropped_rare_ones_and_names_kept(vocabulary: None) -> None:
    conn: Any = None
    terms = ["great", "caroline", "pottery", "time"]
    # A scope of 1,000: a word in over a tenth of the index is dropped, the rest kept in the
    # query's order.
    assert lexical._postgres_selective(conn, terms, 1_000) == ["caroline", "pottery", "time"]
    # One user holding the whole index: a word in up to a fifth of it still tells memories
    # apart (a speaker's name in one of five conversations), so it stays.
    assert lexical._postgres_selective(conn, terms, 10_000) == terms


def test_the_postings_scored_are_bounded(vocabulary: None, monkeypatch: pytest.MonkeyPatch) -> None:
    conn: Any = None
    monkeypatch.setattr(lexical, "_POSTINGS", 1_000)
    # The rarest first: pottery (unlisted), people (610); time (790) would pass the budget.
    assert lexical._postgres_selective(conn, ["people", "time", "pottery"], 10_000) == [
        "people",
        "pottery",
    ]
    # A lookup that does not know its scope (a writer's conflict check) is bounded tighter.
    assert lexical._postgres_selective(conn, ["caroline", "time", "lisbon"], None) == [
        "caroline",
        "lisbon",
    ]


def test_a_single_word_and_a_small_index_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn: Any = None
    monkeypatch.setattr(lexical, "_vocabulary", lambda _conn: lexical._Vocabulary(SHARES, 500.0))
    assert lexical._postgres_selective(conn, ["great", "thanks"], 500) == ["great", "thanks"]
    monkeypatch.setattr(lexical, "_vocabulary", lambda _conn: None)  # never analyzed
    assert lexical._postgres_selective(conn, ["great", "thanks"], 500) == ["great", "thanks"]
    assert lexical._postgres_selective(conn, ["great"], 10_000) == ["great"]


def test_the_write_gate_takes_the_rarest_words(vocabulary: None) -> None:
    conn: Any = None
    words = ["great", "thanks", "caroline", "pottery", "at", "lisbon"]
    # Unlisted words first, the longest of them first; then the least common listed.
    assert lexical._rarest(conn, words, 4) == ["pottery", "lisbon", "at", "caroline"]
