"""Reinforce, decay, retention, forget and source trust, on both stores."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.curation import hygiene
from core.kernel.config import MaintenanceSettings, Settings
from core.kernel.db.engine import transaction
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.memory import policy, trust
from tests.conftest import Tenant
from tests.hygiene_fixtures import DAY, age, importance_of, insert_memories, states_of
from tests.lambda_client import LambdaClient

SETTINGS = MaintenanceSettings(batch_size=500)


def _create(client: LambdaClient, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/memories", json_body=fields)
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.json()
    return body


def _set_policy(engine: Engine, brain_id: str, **values: Any) -> None:
    with transaction(engine) as conn:
        policy.set_policy(conn, Scope(brain_id=brain_id, principal="test", role="owner"), values)


def _history(engine: Engine, memory_id: str) -> list[Any]:
    with transaction(engine, write=False) as conn:
        return list(
            conn.execute(
                text(
                    "SELECT event, detail FROM memory_history WHERE memory_id = :id "
                    "ORDER BY created_at, id"
                ),
                {"id": memory_id},
            ).all()
        )


def _changelog_count(engine: Engine, brain_id: str, event_type: str) -> int:
    with transaction(engine, write=False) as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM changelog WHERE brain_id = :b AND event_type = :e"),
                {"b": brain_id, "e": event_type},
            ).scalar_one()
        )


# -- reinforce -------------------------------------------------------------------------------


def test_reinforce_raises_importance_by_the_policy_step_up_to_one(
    client: LambdaClient, tenant: Tenant
) -> None:
    memory = _create(client, content="The staging database password rotates monthly")
    reply = client.post(f"/v1/memories/{memory['id']}/reinforce")
    assert reply.status == 200, reply.body
    assert reply.json()["importance"] == pytest.approx(0.6)
    assert reply.json()["last_accessed_at"] is not None
    # A larger step than the policy allows is bounded by the policy.
    reply = client.post(f"/v1/memories/{memory['id']}/reinforce", json_body={"step": 0.9})
    assert reply.json()["importance"] == pytest.approx(0.7)
    for _ in range(5):
        reply = client.post(f"/v1/memories/{memory['id']}/reinforce")
    assert reply.json()["importance"] == 1.0
    history = client.get(f"/v1/memories/{memory['id']}/history").json()["results"]
    reinforced = [h for h in history if h["detail"] and "reinforced" in h["detail"]]
    assert len(reinforced) == 7
    assert reinforced[0]["event"] == "UPDATE"
    assert reinforced[0]["detail"]["reinforced"]["importance"] == {"from": 0.5, "to": 0.6}
    assert _changelog_count(tenant.engine, tenant.brain_id, "memory.reinforced") == 7


def test_reinforce_refuses_other_brains_archived_memories_and_read_only_keys(
    client: LambdaClient, tenant: Tenant, other_tenant: Tenant, settings: Settings
) -> None:
    memory = _create(client, content="Quarterly planning happens in the first week")
    other = LambdaClient(settings, other_tenant.key)
    assert other.post(f"/v1/memories/{memory['id']}/reinforce").status == 404
    reader = client.as_key(tenant.new_key(read_only=True))
    assert reader.post(f"/v1/memories/{memory['id']}/reinforce").status == 403
    client.post(f"/v1/memories/{memory['id']}/archive")
    reply = client.post(f"/v1/memories/{memory['id']}/reinforce")
    assert reply.status == 409 and reply.error_code == "memory_not_active"
    bad = client.post(f"/v1/memories/{memory['id']}/reinforce", json_body={"step": -1})
    assert bad.status == 422


# -- decay -----------------------------------------------------------------------------------


def test_decay_lowers_idle_memories_once_per_period(engine: Engine, tenant: Tenant) -> None:
    brain = tenant.brain_id
    idle = insert_memories(engine, brain, 5, idle_days=40)
    fresh = insert_memories(engine, brain, 2, idle_days=1, prefix="fresh")
    read_lately = insert_memories(engine, brain, 1, idle_days=40, prefix="read")
    age(engine, read_lately, days=40, accessed_days=2)
    at_floor = insert_memories(engine, brain, 1, idle_days=40, importance=0.1, prefix="floor")
    scope = hygiene.system_scope(brain)
    now = now_ms()

    first = hygiene.decay(engine, scope, SETTINGS, now=now)
    assert first.count == 5 and first.batches == [5]
    after_first = importance_of(engine, idle + fresh + read_lately + at_floor)
    assert all(after_first[i] == pytest.approx(0.45) for i in idle)
    assert all(after_first[i] == 0.5 for i in fresh + read_lately)
    assert after_first[at_floor[0]] == 0.1

    # Again in the same period (before the fresh ones go idle too): nothing changes.
    for later in (now, now + 3_600_000, now + 20 * DAY):
        again = hygiene.decay(engine, scope, SETTINGS, now=later)
        assert again.count == 0
        assert importance_of(engine, idle) == {i: after_first[i] for i in idle}
    assert _history(engine, fresh[0]) == []

    # A period later, one more step from the decayed value; by then the others are idle too.
    next_period = hygiene.decay(engine, scope, SETTINGS, now=now + 31 * DAY)
    assert next_period.count == 5 + 2 + 1
    assert all(v == pytest.approx(0.405) for v in importance_of(engine, idle).values())

    history = _history(engine, idle[0])
    assert [h.event for h in history] == ["UPDATE", "UPDATE"]
    detail = json.loads(history[0].detail)
    assert detail["decayed"]["importance"] == {"from": 0.5, "to": pytest.approx(0.45)}
    # One changelog entry per batch, listing the memories.
    assert _changelog_count(engine, brain, "memory.decayed") == 2


def test_decay_never_goes_below_the_floor_and_runs_in_batches(
    engine: Engine, tenant: Tenant
) -> None:
    brain = tenant.brain_id
    _set_policy(engine, brain, decay_rate=0.5, importance_floor=0.3, decay_days=10)
    ids = insert_memories(engine, brain, 5, idle_days=20, importance=0.4)
    # Past its deadline a run stops between batches; the next one picks everything up.
    late = hygiene.decay(
        engine, hygiene.system_scope(brain), SETTINGS, deadline=time.monotonic() - 1
    )
    assert late.stopped_early and late.count == 0
    assert set(importance_of(engine, ids).values()) == {0.4}
    run = hygiene.decay(
        engine, hygiene.system_scope(brain), MaintenanceSettings(batch_size=2), now=now_ms()
    )
    assert run.batches == [2, 2, 1]
    assert set(importance_of(engine, ids).values()) == {0.3}
    later = hygiene.decay(engine, hygiene.system_scope(brain), SETTINGS, now=now_ms() + 11 * DAY)
    assert later.count == 0  # at the floor: nothing left to decay


def test_a_dry_run_decays_nothing_and_a_zero_rate_turns_decay_off(
    engine: Engine, tenant: Tenant
) -> None:
    brain = tenant.brain_id
    ids = insert_memories(engine, brain, 3, idle_days=45)
    dry = hygiene.decay(engine, hygiene.system_scope(brain), SETTINGS, dry_run=True)
    assert dry.count == 3
    assert {s["id"] for s in dry.sample} == set(ids)
    assert all(s["to"] == pytest.approx(0.45) for s in dry.sample)
    assert set(importance_of(engine, ids).values()) == {0.5}
    _set_policy(engine, brain, decay_rate=0)
    off = hygiene.decay(engine, hygiene.system_scope(brain), SETTINGS)
    assert off.count == 0 and off.skipped
    assert set(importance_of(engine, ids).values()) == {0.5}


def test_decay_over_rest_honours_dry_run_and_user_scope(
    client: LambdaClient, tenant: Tenant, engine: Engine
) -> None:
    brain = tenant.brain_id
    alice = insert_memories(engine, brain, 2, idle_days=40, user_id="alice", prefix="alice")
    bob = insert_memories(engine, brain, 2, idle_days=40, user_id="bob", prefix="bob")
    dry = client.post("/v1/decay", json_body={"dry_run": True})
    assert dry.status == 200, dry.body
    assert dry.json()["count"] == 4 and dry.json()["dry_run"] is True
    assert set(importance_of(engine, alice + bob).values()) == {0.5}
    alice_key = client.as_key(tenant.new_key(user_id="alice"))
    done = alice_key.post("/v1/decay")
    assert done.status == 200 and done.json()["count"] == 2
    values = importance_of(engine, alice + bob)
    assert all(values[i] == pytest.approx(0.45) for i in alice)
    assert all(values[i] == 0.5 for i in bob)
    reader = client.as_key(tenant.new_key(read_only=True))
    assert reader.post("/v1/decay").status == 403


def test_decay_over_rest_stops_between_batches_in_time(
    client: LambdaClient, tenant: Tenant, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request that walked a whole large brain would outlast API Gateway's 30 s.
    from handlers.routes import hygiene as routes

    ids = insert_memories(engine, tenant.brain_id, 3, idle_days=40)
    monkeypatch.setattr(routes, "_DECAY_REQUEST_SECONDS", -1.0)
    late = client.post("/v1/decay")
    assert late.status == 200, late.body
    assert late.json()["stopped_early"] is True and late.json()["count"] == 0
    monkeypatch.undo()
    done = client.post("/v1/decay").json()
    assert done["count"] == 3 and "stopped_early" not in done
    assert all(v == pytest.approx(0.45) for v in importance_of(engine, ids).values())


# -- retention -------------------------------------------------------------------------------


def test_retention_archives_exactly_the_memories_past_it(engine: Engine, tenant: Tenant) -> None:
    brain = tenant.brain_id
    _set_policy(engine, brain, retention_days=30)
    past = insert_memories(engine, brain, 3, idle_days=31, prefix="past")
    inside = insert_memories(engine, brain, 2, idle_days=29, prefix="inside")
    read_lately = insert_memories(engine, brain, 1, idle_days=60, prefix="read")
    age(engine, read_lately, days=60, accessed_days=5)
    read_long_ago = insert_memories(engine, brain, 1, idle_days=60, prefix="old")
    age(engine, read_long_ago, days=60, accessed_days=45)
    run = hygiene.retention(engine, hygiene.system_scope(brain), MaintenanceSettings(batch_size=2))
    assert run.count == 4 and run.batches == [2, 2]
    states = states_of(engine, past + inside + read_lately + read_long_ago)
    archived = {i for i, s in states.items() if s == "archived"}
    assert archived == set(past + read_long_ago)
    history = _history(engine, past[0])
    assert [h.event for h in history] == ["ARCHIVE"]
    assert json.loads(history[0].detail)["retention_days"] == 30
    assert _changelog_count(engine, brain, "memory.archived") == 4
    # Nothing is left past retention: a second run archives nothing.
    assert hygiene.retention(engine, hygiene.system_scope(brain), SETTINGS).count == 0


def test_retention_archive_reaches_warm_vector_caches(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    # A run's batches come after its start: stamping the vector rows with the start time put
    # them before what a cache refreshed meanwhile reads, which kept them "active" there.
    from core.embeddings import get_embedder
    from core.retrieval import vectors

    brain = tenant.brain_id
    _set_policy(engine, brain, retention_days=30)
    ids = [_create(client, content=f"Old fact number {i} about the cellar")["id"] for i in range(2)]
    age(engine, ids, days=40)
    embedder = get_embedder(client.app.state.services.settings.embedder)
    with transaction(engine, write=False) as conn:
        vectors.cached(conn, brain, embedder.name, embedder.dims)  # warm, as a search leaves it
    run_started = now_ms() - 60_000
    run = hygiene.retention(engine, hygiene.system_scope(brain), SETTINGS, now=run_started)
    assert run.count == 2
    with transaction(engine, write=False) as conn:
        cache = vectors.cached(conn, brain, embedder.name, embedder.dims)
    assert [int(cache.state_of[cache.slot(i)]) for i in ids] == [1, 1]  # archived


def test_without_retention_days_memories_are_kept_forever(engine: Engine, tenant: Tenant) -> None:
    ids = insert_memories(engine, tenant.brain_id, 2, idle_days=5000)
    run = hygiene.retention(engine, hygiene.system_scope(tenant.brain_id), SETTINGS)
    assert run.count == 0 and run.skipped
    assert set(states_of(engine, ids).values()) == {"active"}


# -- forget ----------------------------------------------------------------------------------


def test_forget_dry_run_lists_and_changes_nothing(client: LambdaClient) -> None:
    low = _create(client, content="Old lunch order", importance=0.1)
    _create(client, content="Production runbook lives in the wiki", importance=0.9)
    reply = client.post(
        "/v1/forget", json_body={"filters": {"importance_below": 0.2}, "dry_run": True}
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert [m["id"] for m in body["memories"]] == [low["id"]]
    assert body["affected"] == 0 and body["matched"] == 1
    assert client.get(f"/v1/memories/{low['id']}").json()["state"] == "active"


def test_forget_archives_by_filters_with_history(client: LambdaClient) -> None:
    a = _create(client, content="Trip plan: Lisbon in May", tags=["travel"], user_id="u1")
    b = _create(client, content="Trip plan: Oslo in June", tags=["travel"], user_id="u2")
    keep = _create(client, content="Team offsite budget", tags=["work"], user_id="u1")
    reply = client.post("/v1/forget", json_body={"filters": {"tag": ["travel"], "user_id": "u1"}})
    assert reply.status == 200, reply.body
    assert reply.json()["ids"] == [a["id"]]
    states = {m: client.get(f"/v1/memories/{m}").json()["state"] for m in (a["id"], b["id"])}
    assert states == {a["id"]: "archived", b["id"]: "active"}
    assert client.get(f"/v1/memories/{keep['id']}").json()["state"] == "active"
    history = client.get(f"/v1/memories/{a['id']}/history").json()["results"]
    assert history[-1]["event"] == "ARCHIVE" and history[-1]["detail"]["forget"] is True


def test_forget_by_idle_days(client: LambdaClient, engine: Engine) -> None:
    stale = _create(client, content="Printer on floor 3 is broken")
    fresh = _create(client, content="Printer on floor 4 works")
    age(engine, [stale["id"]], days=100)
    reply = client.post("/v1/forget", json_body={"filters": {"idle_days": 90}})
    assert reply.json()["ids"] == [stale["id"]]
    assert client.get(f"/v1/memories/{fresh['id']}").json()["state"] == "active"


def test_forget_purges_by_ids_only_when_confirmed(client: LambdaClient, tenant: Tenant) -> None:
    a = _create(client, content="Secret that must go")
    b = _create(client, content="Another secret that must go")
    body = {"ids": [a["id"], b["id"]], "mode": "purge"}
    refused = client.post("/v1/forget", json_body=body)
    assert refused.status == 422
    reply = client.post("/v1/forget", json_body={**body, "confirm": True})
    assert reply.status == 200, reply.body
    assert sorted(reply.json()["ids"]) == sorted([a["id"], b["id"]])
    assert client.get(f"/v1/memories/{a['id']}").status == 404
    assert _history(tenant.engine, a["id"]) == []
    assert _changelog_count(tenant.engine, tenant.brain_id, "memory.purged") == 2


def test_forget_is_bounded_and_needs_a_criterion(
    client: LambdaClient, settings: Settings, tenant: Tenant
) -> None:
    for i in range(5):
        _create(client, content=f"Scratch note {i}", tags=["scratch"])
    reply = client.post(
        "/v1/forget", json_body={"filters": {"tag": ["scratch"]}, "limit": 2, "dry_run": True}
    )
    assert reply.json()["matched"] == 2 and reply.json()["truncated"] is True
    capped = LambdaClient(settings.with_(maintenance=MaintenanceSettings(forget_max=3)), tenant.key)
    done = capped.post("/v1/forget", json_body={"filters": {"tag": ["scratch"]}, "limit": 50})
    assert done.json()["affected"] == 3 and done.json()["limit"] == 3
    empty = client.post("/v1/forget", json_body={"filters": {}})
    assert empty.status == 422 and empty.error_code == "forget_needs_filter"
    assert client.post("/v1/forget", json_body={"mode": "archive"}).status == 422
    assert client.post("/v1/forget", json_body={"ids": ["x"], "mode": "shred"}).status == 422


def test_forget_never_reaches_another_brain_or_user(
    client: LambdaClient, tenant: Tenant, other_tenant: Tenant, settings: Settings
) -> None:
    mine = _create(client, content="Alice's note", user_id="alice")
    bobs = _create(client, content="Bob's note", user_id="bob")
    other = LambdaClient(settings, other_tenant.key)
    reply = other.post("/v1/forget", json_body={"ids": [mine["id"]]})
    assert reply.status == 200 and reply.json()["affected"] == 0
    alice = client.as_key(tenant.new_key(user_id="alice"))
    reply = alice.post("/v1/forget", json_body={"filters": {"importance_below": 1}})
    assert reply.json()["ids"] == [mine["id"]]
    assert client.get(f"/v1/memories/{bobs['id']}").json()["state"] == "active"


# -- source trust ----------------------------------------------------------------------------


def test_trust_crud_with_normalised_sources(client: LambdaClient, tenant: Tenant) -> None:
    reply = client.request(
        "PUT",
        "/v1/trust/https://WWW.Wiki.Example.com/some/page",
        json_body={"trust": 0.9, "notes": "the team wiki"},
    )
    assert reply.status == 200, reply.body
    assert reply.json()["source"] == "wiki.example.com"
    assert reply.json()["trust"] == 0.9
    assert client.get("/v1/trust/https://wiki.example.com/other").json()["trust"] == 0.9
    client.request("PUT", "/v1/trust/  Slack   #General ", json_body={"trust": 0.2})
    listed = client.get("/v1/trust").json()["results"]
    assert [t["source"] for t in listed] == ["slack #general", "wiki.example.com"]
    client.request("PUT", "/v1/trust/wiki.example.com", json_body={"trust": 0.3})
    assert client.get("/v1/trust/wiki.example.com").json()["trust"] == 0.3
    assert client.delete("/v1/trust/wiki.example.com").status == 200
    assert client.get("/v1/trust/wiki.example.com").status == 404
    assert client.delete("/v1/trust/wiki.example.com").status == 404
    assert _changelog_count(tenant.engine, tenant.brain_id, "trust.set") == 3


def test_trust_input_and_permissions(
    client: LambdaClient, tenant: Tenant, other_tenant: Tenant, settings: Settings
) -> None:
    assert client.request("PUT", "/v1/trust/x", json_body={"trust": 1.5}).status == 422
    assert client.request("PUT", "/v1/trust/x", json_body={"trust": "high"}).status == 422
    assert client.request("PUT", "/v1/trust/%20", json_body={"trust": 0.5}).status == 422
    user_key = client.as_key(tenant.new_key(user_id="alice"))
    reply = user_key.request("PUT", "/v1/trust/x", json_body={"trust": 0.5})
    assert reply.status == 403 and reply.error_code == "brain_wide_key_required"
    reader = client.as_key(tenant.new_key(read_only=True))
    assert reader.request("PUT", "/v1/trust/x", json_body={"trust": 0.5}).status == 403
    assert client.request("PUT", "/v1/trust/x", json_body={"trust": 0.5}).status == 200
    other = LambdaClient(settings, other_tenant.key)
    assert other.get("/v1/trust/x").status == 404


def test_a_parent_domain_trust_covers_its_hosts(engine: Engine, tenant: Tenant) -> None:
    scope = Scope(brain_id=tenant.brain_id, principal="test")
    with transaction(engine) as conn:
        trust.set_trust(conn, scope, "example.com", 0.8)
        trust.set_trust(conn, scope, "https://docs.example.com", 0.2)
    with transaction(engine, write=False) as conn:
        found = trust.lookup(
            conn,
            tenant.brain_id,
            ["https://docs.example.com/a", "https://blog.example.com/b", "elsewhere", None],
        )
    assert found == {"https://docs.example.com/a": 0.2, "https://blog.example.com/b": 0.8}


def test_a_trusted_source_outranks_an_untrusted_one(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    # Two wordings of one statement: the write gate would fold the second into the first.
    with transaction(engine) as conn:
        policy.set_policy(conn, Scope(tenant.brain_id, "test", role="owner"), {"write_gate": 0})
    trusted = _create(
        client,
        content="The release freeze starts on Thursday at noon (note one)",
        source="https://handbook.example.com/releases",
    )
    # Not saved back to back: each would borrow the other's evidence as thread context.
    _create(client, content="The canteen serves lentil soup on Fridays")
    doubtful = _create(
        client,
        content="The release freeze starts on Thursday at noon (note two)",
        source="hallway rumour",
    )

    def order() -> list[str]:
        reply = client.post(
            "/v1/search", json_body={"query": "when does the release freeze start", "explain": True}
        )
        assert reply.status == 200, reply.body
        return [r["memory"]["id"] for r in reply.json()["results"][:2]]

    client.request("PUT", "/v1/trust/handbook.example.com", json_body={"trust": 1.0})
    client.request("PUT", "/v1/trust/hallway rumour", json_body={"trust": 0.0})
    assert order() == [trusted["id"], doubtful["id"]]
    # Trust, not the small difference in wording, decides: swap it and the order swaps.
    client.request("PUT", "/v1/trust/handbook.example.com", json_body={"trust": 0.0})
    client.request("PUT", "/v1/trust/hallway rumour", json_body={"trust": 1.0})
    assert order() == [doubtful["id"], trusted["id"]]
    explain = client.post(
        "/v1/search", json_body={"query": "release freeze", "explain": True}
    ).json()["results"]
    trust_of = {r["memory"]["id"]: r["explain"]["trust"] for r in explain}
    assert (trust_of[doubtful["id"]], trust_of[trusted["id"]]) == (1.0, 0.0)
