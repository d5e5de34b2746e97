"""The spelling edits a misspelt query word is matched through (core/retrieval/near_words.py).
Search with typos on both stores: tests/api/test_near_words.py."""

from __future__ import annotations

from core.retrieval.near_words import edits


def test_edits_cover_common_slips() -> None:
    assert "peanuts" in edits("penauts")  # swapped neighbours
    assert "allergic" in edits("alergic")  # a doubled letter left out
    assert "received" in edits("recieved")  # swapped vowels
    assert "festival" in edits("fesetival")  # a letter too many
    assert "tuesday" in edits("tuesdya")
    assert "sprint" in edits("spront")  # a neighbouring key
    assert "sprint" in edits("sprrint")  # a letter typed twice
    # The first letter stays, bar a swap of the first two.
    assert "xprint" not in edits("sprint")
    assert "psrint" in edits("sprint")
    assert len(edits("vehicle")) < 25 * len("vehicle")  # all single edits: 54 a letter
