"""The brain policy's rules without a database (core/memory/policy.py): validation, clamping,
decay and reinforcement. Stored and served per brain: tests/api/test_policy.py."""

from __future__ import annotations

import pytest

from core.kernel.errors import InvalidInput
from core.memory.policy import BrainPolicy, build


def test_build_validates_and_clamps_without_a_database() -> None:
    update = build({"subgraph_max_nodes": 10**9, "consolidate_threshold": 0.1})
    assert update.policy.subgraph_max_nodes == 2000
    assert update.policy.consolidate_threshold == 0.5
    assert set(update.clamped) == {"subgraph_max_nodes", "consolidate_threshold"}
    assert build({"decay_days": 30.0}).policy.decay_days == 30
    for bad in ({"decay_rate": float("nan")}, {"retention_days": "x"}, {"nope": 1}):
        with pytest.raises(InvalidInput):
            build(bad)


def test_decay_and_reinforce_steps_respect_the_floor_and_the_cap() -> None:
    p = BrainPolicy(decay_rate=0.5, importance_floor=0.2, reinforce_step=0.3)
    assert p.decayed(0.8) == 0.4
    assert p.decayed(0.3) == 0.2  # not 0.15: never below the floor
    assert p.decayed(0.1) == 0.1  # already under the floor: left alone, never raised
    assert p.reinforced(0.9) == 1.0
