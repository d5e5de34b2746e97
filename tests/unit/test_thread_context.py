"""Thread context: what a memory borrows from the memories saved near it."""

from __future__ import annotations

import numpy as np

from core.retrieval.ranking import thread_context, typical


def test_borrows_each_neighbours_share_above_the_background() -> None:
    fused = np.array([0.0, 0.0])
    before = np.array([4.0, -1.0])
    two_after = np.array([-1.0, 6.0])
    context = thread_context(fused, [(before, 0.5), (two_after, 0.25)], background=-1.0)
    # Memory 0: half of its strong predecessor above the background, nothing from the other.
    assert context[0] == 2.5
    # Memory 1: a quarter of what the memory two places after it has above the background.
    assert context[1] == 1.75


def test_never_rises_past_the_strongest_lender() -> None:
    fused = np.array([1.0, 2.9])
    near = np.array([3.0, 3.0])
    far = np.array([5.0, 0.0])
    context = thread_context(fused, [(near, 0.75), (far, 0.5)], background=0.0)
    # 0.75 * 3 + 0.5 * 5 would take the first to 5.75: it stops just under its best lender.
    assert 4.99 < fused[0] + context[0] < 5.0
    # The second rises to just under its one strong neighbour.
    assert 2.99 < fused[1] + context[1] < 3.0


def test_a_weak_neighbour_lends_nothing_and_a_zero_share_is_ignored() -> None:
    fused = np.array([1.0])
    context = thread_context(
        fused, [(np.array([-2.0]), 0.5), (np.array([9.0]), 0.0)], background=-2.0
    )
    assert context[0] == 0.0


def test_quiet_neighbours_take_at_most_half_of_a_match() -> None:
    # A semantic match saved among four unrelated memories, each under the background.
    fused = np.array([0.8, -0.5])
    quiet = np.array([-2.0, -2.0])
    sides = [(quiet, 0.5), (quiet, 0.5), (quiet, 0.25), (quiet, 0.25)]
    context = thread_context(fused, sides, background=-0.2)
    assert context[0] == -0.4  # -2.7 lent in all, held to half of its own 0.8
    assert context[1] < -2.0  # no match of its own: nothing to keep


def test_the_unremarkable_memory_is_the_median_one() -> None:
    # Few matches in a big scope: the median memory matches nothing.
    assert typical(np.array([5.0, 1.0, 0.5]), 100, prior=10.0) == 0.0
    # Every memory of a small scope matches a word (a user's name in all their notes): the
    # median one's score, so matching the name alone lends nothing.
    scores = np.array([9.0] + [1.0] * 30 + [0.8] * 9)
    assert typical(scores, 40, prior=10.0) == 1.0
    assert typical(np.array([]), 0, prior=10.0) == 0.0
