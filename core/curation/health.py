"""A brain's (or one user's) health report: what a store holds that it should not.

Counts come from SQL over the brain's indexes (state, supersession, accesses, links, the
quarantine, conflicts, ages). What needs content compared, near-duplicate clusters and the
junk estimate, is measured on a sample: the newest `SAMPLE` active memories, their vectors
multiplied in one matrix product and every pair above the policy's near-duplicate cosine
checked with the write gate's own rule (core/memory/gate.py). So the report costs the same on
100,000 memories as on 5,000, and says how large its sample was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.curation.models import (
    ClusterRecord,
    HealthReportRecord,
    JunkRecord,
    NearDuplicatesRecord,
)
from core.kernel.db.engine import sql
from core.kernel.ids import iso, now_ms
from core.kernel.scope import Scope
from core.memory import gate
from core.memory.policy import policy_for

SAMPLE = 1000
# Candidate pairs checked with the gate's rule at most: a store of copies of one thing would
# otherwise make the sample's every pair a candidate.
_MAX_PAIRS = 20_000
_CLUSTERS_SHOWN = 10
_DAY = 86_400_000
_AGES = (
    ("under_1_day", 0, _DAY),
    ("1_to_7_days", _DAY, 7 * _DAY),
    ("7_to_30_days", 7 * _DAY, 30 * _DAY),
    ("30_to_90_days", 30 * _DAY, 90 * _DAY),
    ("90_to_365_days", 90 * _DAY, 365 * _DAY),
    ("over_1_year", 365 * _DAY, None),
)
_NEVER_RETRIEVED_AFTER = 7 * _DAY


def _owner(scope: Scope, user_id: str | None, params: dict[str, Any], alias: str = "") -> str:
    params["brain"] = scope.brain_id
    clause = f"{alias}brain_id = :brain"
    owner = scope.user_id if scope.user_id is not None else user_id
    if owner is not None:
        params["owner"] = owner
        clause += f" AND {alias}user_id = :owner"
    return clause


def report(
    conn: Connection, scope: Scope, *, user_id: str | None, model: str | None
) -> HealthReportRecord:
    """The report for the brain, or for one user (a user-scoped key: always its own)."""
    if scope.user_id is not None and user_id not in (None, scope.user_id):
        user_id = scope.user_id  # a user-scoped key sees its own user only, never another's
    now = now_ms()
    params: dict[str, Any] = {"now": now}
    where = _owner(scope, user_id, params)
    params["old"] = now - _NEVER_RETRIEVED_AFTER
    # One pass over the owner's memories for every per-memory figure.
    active = "state = 'active'"
    ages = ", ".join(
        f"sum(CASE WHEN {active} AND created_at <= :now - {low}"
        + (f" AND created_at > :now - {high}" if high is not None else "")
        + " THEN 1 ELSE 0 END)"
        for _, low, high in _AGES
    )
    counts = conn.execute(
        sql(
            f"SELECT sum(CASE WHEN {active} THEN 1 ELSE 0 END), "
            "sum(CASE WHEN state = 'archived' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN state = 'deleted' THEN 1 ELSE 0 END), "
            f"sum(CASE WHEN {active} AND superseded_by IS NOT NULL THEN 1 ELSE 0 END), "
            f"sum(CASE WHEN {active} AND access_count = 0 THEN 1 ELSE 0 END), "
            f"sum(CASE WHEN {active} AND access_count = 0 AND created_at < :old "
            f"THEN 1 ELSE 0 END), {ages} FROM memories WHERE {where}"
        ),
        params,
    ).one()
    numbers = [int(value or 0) for value in counts]
    states = {"active": numbers[0], "archived": numbers[1], "deleted": numbers[2]}
    # Active memories an active one supersedes through a link (no superseded_by of their
    # own): read from the brain's supersedes links, however many memories there are.
    linked = conn.execute(
        sql(
            "SELECT count(DISTINCT o.id) FROM memory_links l "
            "JOIN memories n ON n.id = l.from_id JOIN memories o ON o.id = l.to_id "
            "WHERE l.brain_id = :brain AND l.relation = 'supersedes' AND n.state = 'active' "
            f"AND o.state = 'active' AND o.superseded_by IS NULL AND "
            f"{_owner(scope, user_id, params, 'o.')}"
        ),
        params,
    ).scalar_one()
    stale = numbers[3] + int(linked or 0)
    never = (numbers[4], numbers[5])
    histogram = {name: numbers[6 + i] for i, (name, _, _) in enumerate(_AGES)}
    orphans = conn.execute(
        sql(
            "SELECT count(*) FROM memory_links l JOIN memories a ON a.id = l.from_id "
            "JOIN memories b ON b.id = l.to_id "
            f"WHERE {_owner(scope, user_id, params, 'a.')} AND l.brain_id = :brain "
            "AND (a.state = 'deleted' OR b.state = 'deleted' "
            "OR coalesce(a.user_id, '') <> coalesce(b.user_id, ''))"
        ),
        params,
    ).scalar_one()
    quarantined = conn.execute(
        sql(f"SELECT count(*) FROM memory_quarantine WHERE {where} AND status = 'pending'"),
        params,
    ).scalar_one()
    conflicts = conn.execute(
        sql(
            f"SELECT count(*) FROM memory_conflict_resolutions WHERE {where} "
            "AND status = 'needs_review'"
        ),
        params,
    ).scalar_one()
    near_duplicates, junk = _sample(conn, scope, user_id, model)
    return {
        "user_id": scope.user_id if scope.user_id is not None else user_id,
        "generated_at": iso(now),
        "memories": states,
        "quarantined": int(quarantined),
        "open_conflicts": int(conflicts),
        "stale_facts": int(stale),
        "never_retrieved": {
            "active": never[0],
            "older_than_7_days": never[1],
        },
        "orphan_links": int(orphans),
        "near_duplicates": near_duplicates,
        "junk": junk,
        "age_histogram": histogram,
    }


def _sample(
    conn: Connection, scope: Scope, user_id: str | None, model: str | None
) -> tuple[NearDuplicatesRecord, JunkRecord]:
    params: dict[str, Any] = {"n": SAMPLE, "model": model or ""}
    where = _owner(scope, user_id, params, "m.")
    rows = conn.execute(
        sql(
            "SELECT m.id, m.user_id, m.key, m.content, v.vector FROM memories m "
            "LEFT JOIN memory_vectors v ON v.memory_id = m.id AND v.model = :model "
            f"WHERE {where} AND m.state = 'active' ORDER BY m.created_at DESC, m.id DESC "
            "LIMIT :n"
        ),
        params,
    ).all()
    junk = [row.id for row in rows if gate.classify(row.content) is not None]
    clusters = _clusters(conn, scope, rows)
    redundant = sum(len(c["ids"]) - 1 for c in clusters)
    size = len(rows)
    near_duplicates: NearDuplicatesRecord = {
        "sample": size,
        "clusters": len(clusters),
        "memories_in_clusters": sum(len(c["ids"]) for c in clusters),
        "largest": clusters[:_CLUSTERS_SHOWN],
    }
    return near_duplicates, {
        "sample": size,
        "instructions_or_boilerplate": len(junk),
        "redundant_copies": redundant,
        "ratio_estimate": round((len(junk) + redundant) / size, 4) if size else 0.0,
    }


def _clusters(conn: Connection, scope: Scope, rows: Sequence[Any]) -> list[ClusterRecord]:
    """Groups of memories of one owner and fact key that restate each other (the gate's
    rule), largest first."""
    with_vectors = [r for r in rows if r.vector is not None]
    if len(with_vectors) < 2:
        return []
    policy = policy_for(conn, scope.brain_id)
    parent = list(range(len(with_vectors)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Pairs only within one owner and fact key: one small product per owner, not the whole
    # sample's square (a brain of many users compares far fewer pairs).
    owners: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(with_vectors):
        owners.setdefault((r.user_id or "", r.key or ""), []).append(i)
    checked = 0
    for members in owners.values():
        if len(members) < 2 or checked >= _MAX_PAIRS:
            continue
        matrix = np.stack([np.frombuffer(with_vectors[i].vector, np.float32) for i in members])
        scores = matrix @ matrix.T
        left, right = np.nonzero(np.triu(scores >= policy.gate_dedup_threshold, k=1))
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            checked += 1
            if checked > _MAX_PAIRS:
                break
            i, j = members[a], members[b]
            same, _, _ = gate.same_statement(
                with_vectors[i].content, with_vectors[j].content, float(scores[a, b]), policy
            )
            if same:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(with_vectors)):
        groups.setdefault(root(i), []).append(i)
    out: list[ClusterRecord] = [
        {
            "ids": [with_vectors[i].id for i in members],
            "user_id": with_vectors[members[0]].user_id,
            "preview": with_vectors[members[0]].content[:120],
        }
        for members in groups.values()
        if len(members) > 1
    ]
    out.sort(key=lambda c: -len(c["ids"]))
    return out
