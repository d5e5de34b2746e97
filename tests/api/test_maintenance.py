"""Per-brain maintenance on both stores: bounded batches over 10,000 memories, stats, leases and
two runs at once, the REST view of the runs, `mnemo maintain` and the schedule."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from core.app import brain_maintenance, maintenance
from core.curation import hygiene
from core.kernel import leases
from core.kernel.config import MaintenanceSettings, Settings
from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory.policy import set_policy
from tests.conftest import Tenant
from tests.hygiene_fixtures import importance_of, insert_memories, states_of
from tests.lambda_client import LambdaClient

ROOT = Path(__file__).resolve().parents[2]
_LIMIT = re.compile(r"\bLIMIT\b", re.IGNORECASE)


@contextmanager
def statements(engine: Engine) -> Iterator[list[dict[str, Any]]]:
    """Every statement the engine runs meanwhile: its SQL, how many parameter sets it carried,
    its bound LIMIT and the rows it changed."""
    seen: list[dict[str, Any]] = []

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        first = parameters[0] if many and parameters else parameters
        limit = first.get("limit") if isinstance(first, dict) else None
        seen.append(
            {"sql": statement, "sets": len(parameters) if many else 1, "limit": limit, "rows": 0}
        )

    def after(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if seen and cursor.rowcount is not None and cursor.rowcount > 0:
            seen[-1]["rows"] = cursor.rowcount

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def _near(values: dict[str, float], expected: float) -> bool:
    return bool(values) and all(v == pytest.approx(expected) for v in values.values())


def _owner_scope(brain_id: str) -> Scope:
    return Scope(brain_id=brain_id, principal="test", role="owner")


def test_maintenance_of_10000_memories_runs_in_bounded_batches(
    engine: Engine, tenant: Tenant
) -> None:
    brain = tenant.brain_id
    with transaction(engine) as conn:
        set_policy(conn, _owner_scope(brain), {"retention_days": 60})
    idle = insert_memories(engine, brain, 10_000, idle_days=40)
    expired = insert_memories(engine, brain, 700, idle_days=61, prefix="expired")
    settings = MaintenanceSettings(batch_size=500)
    with statements(engine) as seen:
        report = brain_maintenance.maintain_brain(engine, brain, settings)
    assert report["decay"]["count"] == 10_700
    assert report["decay"]["batches"] == 22 and report["decay"]["largest_batch"] == 500
    assert report["retention"]["count"] == 700
    assert report["retention"]["batches"] == 2
    for s in seen:
        assert s["sets"] <= 500, s["sql"]
        assert s["rows"] <= 500, s["sql"]
        if s["limit"] is not None:
            assert s["limit"] <= 500, s["sql"]
        if re.match(r"\s*SELECT\b", s["sql"]) and re.search(r"\bFROM memories\b", s["sql"]):
            # No unbounded read of the memories table.
            assert _LIMIT.search(s["sql"]) or " id = " in s["sql"], s["sql"]
    # The work was really done, each memory exactly once.
    assert _near(importance_of(engine, idle[:50] + idle[-50:]), 0.45)
    assert set(states_of(engine, expired).values()) == {"archived"}
    assert set(states_of(engine, idle[:100]).values()) == {"active"}
    with transaction(engine, write=False) as conn:
        stats = conn.execute(
            text("SELECT type, count, detail FROM stats WHERE brain_id = :b ORDER BY type"),
            {"b": brain},
        ).all()
    recorded = {row.type: row.count for row in stats}
    assert recorded["decay"] == 10_700 and recorded["retention"] == 700
    assert json.loads(next(r.detail for r in stats if r.type == "decay"))["batch_size"] == 500

    # A second run in the same period changes nothing.
    again = brain_maintenance.maintain_brain(engine, brain, settings)
    assert again["decay"]["count"] == 0 and again["retention"]["count"] == 0


@pytest.mark.parametrize("guard", ["lease", "decayed_at"])
def test_two_runs_at_once_do_not_double_apply(engine: Engine, tenant: Tenant, guard: str) -> None:
    """Under the lease (maintenance), and without it (two POST /v1/decay at once): the
    decayed_at guard alone keeps a memory from decaying twice in one period."""
    brain = tenant.brain_id
    ids = insert_memories(engine, brain, 1_500, idle_days=40)
    settings = MaintenanceSettings(batch_size=200)

    def one_run() -> dict[str, Any]:
        if guard == "lease":
            return brain_maintenance.maintain_brain(engine, brain, settings)
        run = hygiene.decay(engine, hygiene.system_scope(brain), settings)
        return {"decay": run.to_dict()}

    start = threading.Barrier(2)
    reports: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            reports.append(one_run())
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    decayed = sum(r.get("decay", {}).get("count", 0) for r in reports)
    assert decayed == 1_500
    assert _near(importance_of(engine, ids), 0.45)
    with transaction(engine, write=False) as conn:
        per_memory = conn.execute(
            text(
                "SELECT max(n) FROM (SELECT memory_id, count(*) AS n FROM memory_history "
                "WHERE brain_id = :b GROUP BY memory_id) AS counts"
            ),
            {"b": brain},
        ).scalar()
    assert per_memory == 1


def test_a_held_lease_makes_a_run_skip_until_it_lapses(engine: Engine, tenant: Tenant) -> None:
    brain = tenant.brain_id
    ids = insert_memories(engine, brain, 3, idle_days=40)
    settings = MaintenanceSettings()
    holder = leases.acquire(engine, brain, brain_maintenance.LEASE_TASK, seconds=600)
    assert holder is not None
    assert leases.acquire(engine, brain, brain_maintenance.LEASE_TASK, seconds=600) is None
    skipped = brain_maintenance.maintain_brain(engine, brain, settings)
    assert "skipped" in skipped and "decay" not in skipped
    assert set(importance_of(engine, ids).values()) == {0.5}
    leases.release(engine, brain, brain_maintenance.LEASE_TASK, holder)
    assert brain_maintenance.maintain_brain(engine, brain, settings)["decay"]["count"] == 3
    # A crashed run's lease (expired) does not block the next one.
    assert leases.acquire(engine, brain, brain_maintenance.LEASE_TASK, seconds=0) is not None
    assert "skipped" not in brain_maintenance.maintain_brain(engine, brain, settings)


def test_a_dry_run_changes_nothing_and_records_nothing(engine: Engine, tenant: Tenant) -> None:
    brain = tenant.brain_id
    ids = insert_memories(engine, brain, 4, idle_days=40)
    report = brain_maintenance.maintain_brain(engine, brain, MaintenanceSettings(), dry_run=True)
    assert report["decay"]["count"] == 4 and report["decay"]["dry_run"] is True
    assert set(importance_of(engine, ids).values()) == {0.5}
    with transaction(engine, write=False) as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM stats WHERE brain_id = :b"), {"b": brain}
            ).scalar()
            == 0
        )


def test_runs_are_listed_per_brain_over_rest(
    client: LambdaClient, tenant: Tenant, other_tenant: Tenant, settings: Settings, engine: Engine
) -> None:
    insert_memories(engine, tenant.brain_id, 3, idle_days=40)
    brain_maintenance.maintain_brain(engine, tenant.brain_id, MaintenanceSettings())
    reply = client.get("/v1/maintenance/runs")
    assert reply.status == 200, reply.body
    runs = reply.json()["results"]
    assert {r["type"]: r["count"] for r in runs}["decay"] == 3
    assert all(r["ts"].endswith("Z") for r in runs)
    only = client.get("/v1/maintenance/runs", query={"type": "decay", "limit": 1}).json()
    assert [r["type"] for r in only["results"]] == ["decay"]
    assert client.get("/v1/maintenance/runs", query={"type": "nope"}).status == 422
    other = LambdaClient(settings, other_tenant.key)
    assert other.get("/v1/maintenance/runs").json()["results"] == []


def test_recorded_runs_carry_no_memory_of_any_user(
    client: LambdaClient, tenant: Tenant, engine: Engine
) -> None:
    # The runs are listed to every key of the brain, a user-scoped one too: a sample of the
    # memories archived (ids, previews) would show one user another's memories.
    policy_scope = Scope(brain_id=tenant.brain_id, principal="test", role="owner")
    with transaction(engine) as conn:
        set_policy(conn, policy_scope, {"retention_days": 30})
    secret = insert_memories(engine, tenant.brain_id, 2, idle_days=40, user_id="alice")
    brain_maintenance.maintain_brain(engine, tenant.brain_id, MaintenanceSettings())
    bob = client.as_key(tenant.new_key(user_id="bob"))
    reply = bob.get("/v1/maintenance/runs")
    assert reply.status == 200, reply.body
    assert {r["type"]: r["count"] for r in reply.json()["results"]}["retention"] == 2
    assert not any(memory_id in reply.body for memory_id in secret)
    assert all("sample" not in r["detail"] for r in reply.json()["results"])


@pytest.mark.parametrize("store", ["sqlite"])
def test_the_full_run_visits_every_brain_least_recently_maintained_first(
    engine: Engine, tenant: Tenant, other_tenant: Tenant, settings: Settings
) -> None:
    # SQLite only: the PostgreSQL database is shared by the session, full of other tests' brains.
    first = insert_memories(engine, tenant.brain_id, 2, idle_days=40)
    second = insert_memories(engine, other_tenant.brain_id, 2, idle_days=40)
    tasks = maintenance.run(engine, settings)
    hygiene = tasks["hygiene"]
    assert hygiene["brains"] == 2 and hygiene["totals"]["decay"] == 4
    assert not hygiene["out_of_time"]
    assert _near(importance_of(engine, first + second), 0.45)
    again = maintenance.run(engine, settings)["hygiene"]
    assert again["brains"] == 2 and again["totals"]["decay"] == 0
    # Out of time before the first brain: nothing visited, nothing lost.
    broke = brain_maintenance.run_all(engine, MaintenanceSettings(budget_seconds=1e-9))
    assert broke["out_of_time"] and broke["brains"] == 0


@pytest.mark.parametrize("store", ["sqlite"])
def test_mnemo_maintain_runs_one_brain_or_reports_a_dry_run(
    engine: Engine, tenant: Tenant, database_url: str
) -> None:
    ids = insert_memories(engine, tenant.brain_id, 3, idle_days=40)
    env = {**os.environ, "MNEMO_DATABASE_URL": database_url}

    def mnemo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "handlers.cli", "maintain", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dry = mnemo("--brain", tenant.slug, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["hygiene"]["brains"][0]["decay"]["count"] == 3
    assert set(importance_of(engine, ids).values()) == {0.5}
    done = mnemo("--brain", tenant.slug)
    assert done.returncode == 0, done.stderr
    assert _near(importance_of(engine, ids), 0.45)
    missing = mnemo("--brain", "no-such-brain")
    assert missing.returncode == 2 and "no brain named" in missing.stderr
