"""Per-brain behaviour: how memories decay, how long they are kept, how far graph queries reach.

A brain's policy is stored as the JSON of the values its owner set (`brain_policies`, one row per
brain); every value not set takes the default below, so a default can change without a data
migration. Values are validated and clamped:

- a value of the wrong type (a string for a number, a bool, NaN, an unknown field) is refused
  with `InvalidInput` (422) naming the field and what it accepts;
- a number of the right type outside its range is clamped to the nearest bound, and the
  clamped fields are reported back (`PolicyUpdate.clamped`), so a client sees the effective value.

Decay is multiplicative: each period a stale memory's importance becomes
`max(importance_floor, importance * (1 - decay_rate))`. A multiplicative step slows down near the
floor instead of crashing into it, and `decay_rate = 0` turns decay off.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from core.events import changelog
from core.kernel.db.engine import sql
from core.kernel.errors import InvalidInput
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.memory.models import PolicyValues, StoredPolicy

DAY_MS = 86_400_000


@dataclass(frozen=True)
class _Bound:
    low: float
    high: float
    integer: bool
    nullable: bool = False
    help: str = ""


# field -> accepted range; the single place a bound is written down.
BOUNDS: dict[str, _Bound] = {
    "decay_days": _Bound(1, 3650, True, help="days without access or update before decay"),
    "decay_rate": _Bound(0.0, 0.9, False, help="fraction of importance lost per decay period"),
    "importance_floor": _Bound(0.0, 1.0, False, help="decay never lowers importance below it"),
    "reinforce_step": _Bound(0.01, 0.5, False, help="importance added by one reinforce"),
    "retention_days": _Bound(
        1, 36500, True, nullable=True, help="archive memories idle longer; null keeps forever"
    ),
    "inferred_links_max": _Bound(0, 50, True, help="inferred related links made per new memory"),
    "inferred_links_threshold": _Bound(
        0.0, 1.0, False, help="similarity above which an inferred link is made"
    ),
    "snapshot_retention": _Bound(1, 1000, True, help="snapshots kept per brain"),
    "path_max_hops": _Bound(1, 12, True, help="longest path searched between two memories"),
    "subgraph_max_nodes": _Bound(1, 2000, True, help="most nodes a subgraph returns"),
    "consolidate_threshold": _Bound(
        0.5, 1.0, False, help="similarity at which memories count as near-duplicates"
    ),
    "write_gate": _Bound(
        0, 1, True, help="1 screens every write (near-duplicates, instructions, echoes); 0 off"
    ),
    "gate_dedup_threshold": _Bound(
        0.5, 1.0, False, help="cosine at which a write of the same user is a near-duplicate"
    ),
    "gate_text_threshold": _Bound(
        0.0, 1.0, False, help="share of terms a near-duplicate must share (Jaccard)"
    ),
    "echo_window_seconds": _Bound(
        0, 86400, True, help="how long recalled memories count as echoes; 0 turns it off"
    ),
}


@dataclass(frozen=True)
class BrainPolicy:
    decay_days: int = 30
    decay_rate: float = 0.1
    importance_floor: float = 0.1
    reinforce_step: float = 0.1
    retention_days: int | None = None
    inferred_links_max: int = 5
    inferred_links_threshold: float = 0.8
    snapshot_retention: int = 10
    path_max_hops: int = 6
    subgraph_max_nodes: int = 200
    consolidate_threshold: float = 0.95
    # The write gate (core/memory/gate.py).
    write_gate: int = 1
    gate_dedup_threshold: float = 0.75
    gate_text_threshold: float = 0.6
    echo_window_seconds: int = 900

    @property
    def decay_ms(self) -> int:
        return self.decay_days * DAY_MS

    @property
    def retention_ms(self) -> int | None:
        return None if self.retention_days is None else self.retention_days * DAY_MS

    def decayed(self, importance: float) -> float:
        """One decay step; never below the floor, never raises an importance already under it."""
        if importance <= self.importance_floor:
            return importance
        # Unrounded: the same double arithmetic as the SQL that applies it
        # (core/curation/hygiene.py).
        return max(self.importance_floor, importance * self.decay_keep)

    @property
    def decay_keep(self) -> float:
        """The share of importance one decay step keeps."""
        return 1.0 - self.decay_rate

    def reinforced(self, importance: float) -> float:
        return min(1.0, round(importance + self.reinforce_step, 6))

    def to_dict(self) -> PolicyValues:
        return asdict(self)


DEFAULT_POLICY = BrainPolicy()
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(BrainPolicy))


@dataclass(frozen=True)
class PolicyUpdate:
    policy: BrainPolicy
    # field -> the value asked for, for every field clamped to its range.
    clamped: dict[str, Any]


def _check_value(name: str, value: Any) -> tuple[int | float | None, bool]:
    """(effective value, whether it was clamped). Raises InvalidInput for a wrong type."""
    bound = BOUNDS[name]
    if value is None:
        if bound.nullable:
            return None, False
        raise InvalidInput(
            f"policy field {name!r} cannot be null: give a number from {bound.low:g} to "
            f"{bound.high:g} ({bound.help})",
            code="invalid_policy",
            details=[{"field": name, "message": "null not allowed"}],
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        kind = "a whole number" if bound.integer else "a number"
        raise InvalidInput(
            f"policy field {name!r} must be {kind} from {bound.low:g} to {bound.high:g} "
            f"({bound.help}), got {value!r}",
            code="invalid_policy",
            details=[{"field": name, "message": f"expected {kind}"}],
        )
    if bound.integer and isinstance(value, float):
        if not value.is_integer():
            raise InvalidInput(
                f"policy field {name!r} must be a whole number from {bound.low:g} to "
                f"{bound.high:g} ({bound.help}), got {value!r}",
                code="invalid_policy",
                details=[{"field": name, "message": "expected a whole number"}],
            )
        value = int(value)
    clamped_value = min(max(value, bound.low), bound.high)
    effective: int | float = int(clamped_value) if bound.integer else float(clamped_value)
    return effective, clamped_value != value


def build(values: dict[str, Any]) -> PolicyUpdate:
    """Validate and clamp `values` (any subset of the fields) over the defaults."""
    if not isinstance(values, dict):
        raise InvalidInput("the policy must be a JSON object", code="invalid_policy")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise InvalidInput(
            f"unknown policy field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}",
            code="invalid_policy",
            details=[{"field": name, "message": "unknown field"} for name in unknown],
        )
    effective: dict[str, Any] = {}
    clamped: dict[str, Any] = {}
    for name, value in values.items():
        effective[name], was_clamped = _check_value(name, value)
        if was_clamped:
            clamped[name] = value
    return PolicyUpdate(BrainPolicy(**effective), clamped)


# Parsed once per stored text: every gated write reads the policy (twice when the gate reads
# ahead of the transaction), and validating it again cost more than the read. The policy is
# frozen, so callers share it safely.
@lru_cache(maxsize=1024)
def _from_stored(raw: str | None) -> BrainPolicy:
    if not raw:
        return DEFAULT_POLICY
    try:
        stored = json.loads(raw)
        # Values are clamped again: a bound tightened since they were saved still holds.
        return build({k: v for k, v in stored.items() if k in BOUNDS}).policy
    except (ValueError, AttributeError, InvalidInput):
        return DEFAULT_POLICY


def from_stored(raw: str | None) -> BrainPolicy:
    """The policy of a stored `policy_json` (None: the brain never set one), for a caller that
    read the column with other things in one statement."""
    return _from_stored(raw)


def policy_for(conn: Connection, brain_id: str) -> BrainPolicy:
    """The brain's effective policy; the defaults when it never set one."""
    raw = conn.execute(
        sql("SELECT policy_json FROM brain_policies WHERE brain_id = :brain"),
        {"brain": brain_id},
    ).scalar()
    return _from_stored(raw)


def stored_values(conn: Connection, brain_id: str) -> StoredPolicy:
    """Only the values the brain set (what GET shows as `overrides`)."""
    raw = conn.execute(
        sql("SELECT policy_json FROM brain_policies WHERE brain_id = :brain"),
        {"brain": brain_id},
    ).scalar()
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def set_policy(conn: Connection, scope: Scope, values: dict[str, Any]) -> PolicyUpdate:
    """Replace the brain's policy with `values` (fields left out take their defaults).

    The caller checks the role (owner only) and owns the transaction; a changelog row records
    the change in it.
    """
    update = build(values)
    # Store the effective values given, so what was saved is what applies.
    overrides = {name: getattr(update.policy, name) for name in values}
    at = now_ms()
    conn.execute(
        sql(
            "INSERT INTO brain_policies (brain_id, policy_json, created_at, updated_at) "
            "VALUES (:brain, :json, :at, :at) ON CONFLICT (brain_id) DO UPDATE SET "
            "policy_json = excluded.policy_json, updated_at = excluded.updated_at"
        ),
        {"brain": scope.brain_id, "json": json.dumps(overrides, sort_keys=True), "at": at},
    )
    changelog.record(
        conn,
        scope,
        event_type="policy.updated",
        entity_type="policy",
        entity_id=scope.brain_id,
        summary="brain policy set: "
        + (", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "defaults"),
        payload={"policy": update.policy.to_dict(), "clamped": update.clamped},
        at=at,
    )
    return update
