"""The vector cache's snapshots without a store (core/retrieval/vectors.py): a published
snapshot never changes, whatever a later refresh takes in. Readers and writers together on both
stores: tests/core/test_search_under_writes.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.retrieval import vectors


def _blob(seed: int, dims: int = 8) -> bytes:
    vector = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32).tobytes()


def _apply(entry: Any, rows: list[tuple[str, str, str, bytes]]) -> None:
    entry.take(rows)
    entry.publish()


def test_a_published_snapshot_never_changes() -> None:
    entry = vectors._Entry(8)
    _apply(entry, [(f"m{i}", "u1" if i % 2 else "u2", "active", _blob(i)) for i in range(5)])
    before = entry.snapshot
    query = np.frombuffer(_blob(2), np.float32)
    scores = before.scores(query).copy()
    mask = before.scope_mask(user_id="u2", states=("active",)).copy()
    # A new memory, a new vector for m2, m3 archived and moved to another user, a new user.
    _apply(
        entry,
        [
            ("m9", "u3", "active", _blob(9)),
            ("m2", "u2", "active", _blob(20)),
            ("m3", "u3", "archived", _blob(3)),
        ],
    )
    after = entry.snapshot
    assert before.count == 5 and len(before.user_of) == len(before.state_of) == 5
    assert np.array_equal(before.scores(query), scores)
    assert np.array_equal(before.scope_mask(user_id="u2", states=("active",)), mask)
    assert before.slot("m9") is None and before.slot("m2") == 2
    assert before.top(scores, mask, 1) == [("m2", scores[2])]
    # The new snapshot sees every change, and the replaced slot of m2 is never matched.
    assert after.slot("m9") is not None and after.slot("m2") not in (None, 2)
    assert after.scope_mask(user_id="u3", states=("archived",)).sum() == 1
    assert int(after.state_of[after.slot("m3") or 0]) == 1
    everything = after.scope_mask(user_id=None, states=None)
    assert int(everything.sum()) == 6 and not everything[2]
    cosines = after.cosines(after.scores(query), ["m2", "m0", "gone"], missing=-9.0)
    assert cosines[2] == -9.0 and cosines[0] < 0.99  # m2's new vector, not the old one
