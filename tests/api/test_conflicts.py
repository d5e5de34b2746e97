"""Conflicts on both stores: the three rules, listing, resolve (archive, demote), dismiss,
detection in bounded passes, and the effect of a resolution on search. Which statements
disagree (the text rules alone): tests/unit/test_contradiction.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.app import brain_maintenance
from core.curation import conflicts
from core.embeddings import get_embedder
from core.embeddings.base import Embedder
from core.kernel.config import ConflictSettings, MaintenanceSettings, Settings
from core.kernel.db.engine import transaction
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope
from core.memory.store import COLUMNS
from tests.api.test_mcp import Mcp
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient
from tests.statements import statements_sent


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Detection on demand and in maintenance is what these tests exercise: the check on write
    (tests/test_validtime.py) is off, so the pairs they make are left for detection to find."""
    return Settings(
        database_url=database_url,
        log_level="WARNING",
        conflicts=ConflictSettings(on_write=False),
    )


def _create(client: LambdaClient, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/memories", json_body=fields)
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.json()
    return body


def _detect(client: LambdaClient, **body: Any) -> list[dict[str, Any]]:
    reply = client.post("/v1/conflicts/detect", json_body=body)
    assert reply.status == 200, reply.body
    found: list[dict[str, Any]] = reply.json()["results"]
    return found


def _conflicts(client: LambdaClient, **query: Any) -> list[dict[str, Any]]:
    reply = client.get("/v1/conflicts", query=query)
    assert reply.status == 200, reply.body
    found: list[dict[str, Any]] = reply.json()["results"]
    return found


def test_value_conflict_found_on_demand_and_rewording_is_not(client: LambdaClient) -> None:
    two = _create(client, content="Alice has 2 cats", user_id="alice")
    three = _create(client, content="Alice has 3 cats", user_id="alice")
    _create(client, content="Alice lives in Lyon", user_id="alice")
    _create(client, content="Alice resides in Lyon", user_id="alice")
    _create(client, content="Bob has 5 cats", user_id="bob")
    found = _detect(client)
    assert len(found) == 1
    conflict = found[0]
    assert conflict["kind"] == "value" and conflict["reason"] == "number_differs"
    assert {conflict["a_id"], conflict["b_id"]} == {two["id"], three["id"]}
    assert conflict["pair_key"] == "|".join(sorted((two["id"], three["id"])))
    assert conflict["status"] == "needs_review" and conflict["user_id"] == "alice"
    assert {conflict["a"]["content"], conflict["b"]["content"]} == {
        "Alice has 2 cats",
        "Alice has 3 cats",
    }
    # Found again (by another call or rule): still one conflict.
    assert _detect(client) == []
    assert _detect(client, memory_id=two["id"]) == []
    assert len(_conflicts(client)) == 1
    feed = client.get("/v1/changelog", query={"event_type": "conflict.detected"}).json()
    assert [e["entity_id"] for e in feed["results"]] == [conflict["id"]]


def test_key_conflict_same_user_scope_only(client: LambdaClient) -> None:
    first = _create(
        client, type="fact", key="Home City", content="Alice lives in Lyon", user_id="a"
    )
    second = _create(
        client, type="fact", key="home  city", content="Alice lives in Paris", user_id="a"
    )
    _create(client, type="fact", key="home city", content="Bob lives in Rome", user_id="b")
    _create(client, type="fact", key="home city", content="HQ is in Oslo")
    found = _detect(client, memory_id=first["id"])
    assert [(c["kind"], c["reason"]) for c in found] == [("key", "same_key_different_content")]
    assert {found[0]["a_id"], found[0]["b_id"]} == {first["id"], second["id"]}
    assert _detect(client) == []


def test_detection_on_demand_reads_links_with_a_limit(client: LambdaClient, engine: Engine) -> None:
    a = _create(client, content="The office opens at 9")
    b = _create(client, content="The office is closed on Sundays")
    link = {"from_id": a["id"], "to_id": b["id"], "relation": "contradicts"}
    assert client.post("/v1/links", json_body=link).status == 201
    with statements_sent(engine) as sent:
        _detect(client)
    reads = [
        s
        for s in sent.statements
        if s.lstrip().upper().startswith("SELECT") and "memory_links" in s
    ]
    assert reads and all("LIMIT" in s.upper() for s in reads)


def test_contradicts_link_is_a_conflict(client: LambdaClient) -> None:
    a = _create(client, content="The office opens at 9")
    b = _create(client, content="Nobody is ever in before ten")
    reply = client.post(
        "/v1/links", json_body={"from_id": a["id"], "to_id": b["id"], "relation": "contradicts"}
    )
    assert reply.status == 201, reply.body
    # Recorded with the link (core/graph/links.py calls conflicts.on_contradicts_link)...
    listed = _conflicts(client, memory_id=b["id"])
    assert [(c["kind"], c["reason"]) for c in listed] == [("link", "contradicts_link")]
    assert {listed[0]["a_id"], listed[0]["b_id"]} == {a["id"], b["id"]}
    # ...so detection, which also reads contradicts links, finds nothing new.
    assert _detect(client, memory_id=b["id"]) == []


def test_list_filters_and_pages(client: LambdaClient) -> None:
    made = []
    for n in range(3):
        made.append(_create(client, content=f"Project {'abc'[n]}x budget is {n + 1}000 euros"))
        made.append(_create(client, content=f"Project {'abc'[n]}x budget is {n + 5}000 euros"))
    assert len(_detect(client)) == 3
    first = client.get("/v1/conflicts", query={"limit": 2}).json()
    assert len(first["results"]) == 2 and first["next_cursor"]
    second = client.get("/v1/conflicts", query={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(second["results"]) == 1 and second["next_cursor"] is None
    ids = [c["id"] for c in first["results"] + second["results"]]
    assert len(set(ids)) == 3
    assert len(_conflicts(client, memory_id=made[0]["id"])) == 1
    assert _conflicts(client, status="resolved") == []
    assert len(_conflicts(client, kind="value", status="needs_review")) == 3
    assert client.get("/v1/conflicts", query={"status": "open"}).status == 422
    one = client.get(f"/v1/conflicts/{ids[0]}")
    assert one.status == 200 and one.json()["id"] == ids[0]


def test_resolve_archives_the_loser_with_history_link_and_changelog(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    old = _create(client, content="The project deadline is March 5")
    new = _create(client, content="The project deadline is March 12")
    (conflict,) = _detect(client)
    url = f"/v1/conflicts/{conflict['id']}/resolve"
    stranger = _create(client, content="Unrelated")
    bad = client.post(url, json_body={"winner_id": stranger["id"]})
    assert bad.status == 422 and bad.json()["error"]["details"]["field"] == "winner_id"
    reply = client.post(url, json_body={"winner_id": new["id"], "note": "moved"})
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["status"] == "resolved" and body["canonical_id"] == new["id"]
    assert body["mode"] == "archive" and body["note"] == "moved" and body["resolved_at"]
    loser = client.get(f"/v1/memories/{old['id']}").json()
    assert loser["state"] == "archived" and loser["superseded_by"] == new["id"]
    assert client.get(f"/v1/memories/{new['id']}").json()["state"] == "active"
    with transaction(engine, write=False) as conn:
        links = conn.execute(
            text(
                "SELECT from_id, to_id, relation FROM memory_links WHERE brain_id = :b "
                "AND relation = 'supersedes'"
            ),
            {"b": tenant.brain_id},
        ).all()
    assert [tuple(r) for r in links] == [(new["id"], old["id"], "supersedes")]
    loser_history = client.get(f"/v1/memories/{old['id']}/history").json()["results"]
    winner_history = client.get(f"/v1/memories/{new['id']}/history").json()["results"]
    assert loser_history[-1]["event"] == "ARCHIVE"
    assert loser_history[-1]["detail"]["superseded_by"] == new["id"]
    assert winner_history[-1]["event"] == "UPDATE"
    assert winner_history[-1]["detail"]["supersedes"] == old["id"]
    feed = client.get("/v1/changelog", query={"event_type": "conflict.resolved"}).json()
    assert [e["entity_id"] for e in feed["results"]] == [conflict["id"]]
    # The loser's state change is in the feed as a memory event, as a merge's sources are.
    feed = client.get("/v1/changelog", query={"event_type": "memory.superseded"}).json()
    assert [(e["entity_id"], e["payload"]["state"]) for e in feed["results"]] == [
        (old["id"], "archived")
    ]
    again = client.post(url, json_body={"winner_id": new["id"]})
    assert again.status == 409 and again.json()["error"]["code"] == "conflict_closed"


def test_resolved_conflict_reorders_search(client: LambdaClient) -> None:
    # Fillers between them: each borrows the same thread context from its neighbours.
    _create(client, content="The weather in Paris was mild", user_id="alice")
    loud = _create(client, content="Alice has 2 cats", importance=0.9, user_id="alice")
    _create(client, content="Bob repaired the old bicycle", user_id="alice")
    quiet = _create(client, content="Alice has 3 cats", importance=0.4, user_id="alice")
    _create(client, content="The train to Turin left late", user_id="alice")

    def order() -> list[str]:
        reply = client.post("/v1/search", json_body={"query": "how many cats has Alice"})
        assert reply.status == 200, reply.body
        ids = [hit["memory"]["id"] for hit in reply.json()["results"]]
        return [i for i in ids if i in (loud["id"], quiet["id"])]

    # Caught on write, the newer value leads while the conflict is open, whatever the
    # importance; resolving it for the older value puts that one first.
    assert order() == [quiet["id"], loud["id"]]
    (conflict,) = _detect(client, user_id="alice")
    reply = client.post(
        f"/v1/conflicts/{conflict['id']}/resolve",
        json_body={"winner_id": loud["id"], "mode": "demote"},
    )
    assert reply.status == 200, reply.body
    demoted = client.get(f"/v1/memories/{quiet['id']}").json()
    assert demoted["state"] == "active" and demoted["superseded_by"] == loud["id"]
    assert order() == [loud["id"], quiet["id"]]


def test_dismissed_pair_is_not_flagged_again(client: LambdaClient) -> None:
    _create(client, content="Alice has 2 cats")
    _create(client, content="Alice has 3 cats")
    (conflict,) = _detect(client)
    reply = client.post(f"/v1/conflicts/{conflict['id']}/dismiss", json_body={"note": "both"})
    assert reply.status == 200 and reply.json()["status"] == "dismissed"
    assert _detect(client) == []
    assert _conflicts(client, status="dismissed")[0]["note"] == "both"
    again = client.post(f"/v1/conflicts/{conflict['id']}/dismiss")
    assert again.status == 409


def test_scope_rules(client: LambdaClient, tenant: Tenant, other_tenant: Tenant) -> None:
    _create(client, content="Alice has 2 cats", user_id="alice")
    _create(client, content="Alice has 3 cats", user_id="alice")
    _create(client, content="Bob has 2 dogs", user_id="bob")
    _create(client, content="Bob has 4 dogs", user_id="bob")
    found = _detect(client)
    assert len(found) == 2
    alice_conflict = next(c for c in found if c["user_id"] == "alice")
    bob_conflict = next(c for c in found if c["user_id"] == "bob")
    as_bob = client.as_key(tenant.new_key(user_id="bob"))
    assert [c["id"] for c in _conflicts(as_bob)] == [bob_conflict["id"]]
    assert as_bob.get(f"/v1/conflicts/{alice_conflict['id']}").status == 404
    other = client.as_key(other_tenant.key)
    assert _conflicts(other) == []
    assert other.get(f"/v1/conflicts/{alice_conflict['id']}").status == 404
    winner = alice_conflict["a_id"]
    resolve = f"/v1/conflicts/{alice_conflict['id']}/resolve"
    assert other.post(resolve, json_body={"winner_id": winner}).status == 404
    read_only = client.as_key(tenant.new_key(read_only=True))
    refused = read_only.post(resolve, json_body={"winner_id": winner})
    assert refused.status == 403 and refused.json()["error"]["code"] == "read_only_key"
    assert read_only.post("/v1/conflicts/detect").status == 403


def _space(embedder: Embedder) -> conflicts.VectorSpace:
    return conflicts.VectorSpace(embedder.name, embedder.dims, 8)


def test_maintenance_detection_is_bounded_and_resumes(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    batch = client.post(
        "/v1/memories/batch",
        json_body={
            "memories": [{"content": f"Filler note number {word}"} for word in "abcdefg"]
            + [
                {"content": "The product launch is on Monday"},
                {"content": "The product launch is on Friday"},
            ]
        },
    )
    assert batch.status == 201, batch.body
    space = _space(get_embedder(client.app.state.services.settings.embedder))
    passes = []
    while True:
        run = conflicts.detect(engine, tenant.brain_id, batch_size=4, space=space)
        assert run["memories_scanned"] <= 4
        passes.append(run)
        if run["done"]:
            break
    assert [p["memories_scanned"] for p in passes] == [4, 4, 1]
    assert sum(p["created"] for p in passes) == 1
    # Nothing changed since: the next pass reads nothing and finds nothing.
    idle = conflicts.detect(engine, tenant.brain_id, batch_size=4, space=space)
    assert (idle["memories_scanned"], idle["created"]) == (0, 0)
    # A conflict whose memory is archived is moot: the pass marks it superseded.
    (conflict,) = _conflicts(client)
    assert client.post(f"/v1/memories/{conflict['a_id']}/archive").status == 200
    swept = conflicts.detect(engine, tenant.brain_id, batch_size=4, space=space)
    assert swept["superseded"] == 1
    assert _conflicts(client)[0]["status"] == "superseded"


def test_detection_never_passes_a_row_a_transaction_still_holds(
    client: LambdaClient, engine: Engine, tenant: Tenant, store: str
) -> None:
    """PostgreSQL: a memory written in a transaction that commits late carries a time before
    rows committed meanwhile. The watermark must not pass it: it is scanned once committed."""
    if store != "postgres":
        pytest.skip("SQLite runs one writer at a time: what is visible is settled")
    from core.kernel.config import Limits
    from core.memory import store as memories
    from core.memory.models import MemoryIn
    from core.retrieval.indexing import SearchIndexer

    embedder = get_embedder(client.app.state.services.settings.embedder)
    space = _space(embedder)
    scope = Scope(brain_id=tenant.brain_id, principal="test")
    monday = MemoryIn(content="The product launch is on Monday")
    with engine.connect() as late:
        writing = late.begin()
        memories.create(late, scope, monday, Limits(), SearchIndexer(embedder))
        friday = {"content": "The product launch is on Friday"}
        assert client.post("/v1/memories", json_body=friday).status == 201
        first = conflicts.detect(engine, tenant.brain_id, batch_size=50, space=space)
        assert first["memories_scanned"] == 0  # both wait for the open transaction
        writing.commit()
    after = conflicts.detect(engine, tenant.brain_id, batch_size=50, space=space)
    assert after["memories_scanned"] == 2 and after["created"] == 1
    assert len(_conflicts(client)) == 1


def test_maintenance_run_detects_and_suggests(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    _create(client, content="The product launch is on Monday")
    _create(client, content="The product launch is on Friday")
    _create(client, content="Remember to water the plants", key="chores")
    _create(client, content="Remember to water the plants")
    settings = MaintenanceSettings(batch_size=3)
    out = brain_maintenance.maintain_brain(
        engine, tenant.brain_id, settings, tasks=("conflicts", "consolidate")
    )
    assert out["conflicts"]["count"] == 1 and out["conflicts"]["batch_size"] == 3
    assert out["conflicts"]["passes"] == 2  # 3 + 1 memories: bounded passes until done
    assert out["consolidate"]["count"] == 1 and out["consolidate"]["memories"] == 2
    with transaction(engine, write=False) as conn:
        recorded = conn.execute(
            text("SELECT type, count FROM stats WHERE brain_id = :b ORDER BY type"),
            {"b": tenant.brain_id},
        ).all()
    assert [tuple(r) for r in recorded] == [("conflicts", 1), ("consolidate", 1)]


def test_mcp_tools_list_resolve_and_merge(client: LambdaClient) -> None:
    mcp = Mcp(client)
    two = _create(client, content="Alice has 2 cats")
    three = _create(client, content="Alice has 3 cats")
    (found,) = _detect(client)
    listed = mcp.ok("conflicts", {"status": "needs_review"})
    assert listed == client.get("/v1/conflicts", query={"status": "needs_review"}).json()
    resolved = mcp.ok(
        "resolve_conflict", {"id": found["id"], "winner_id": three["id"], "mode": "demote"}
    )
    assert resolved["status"] == "resolved" and resolved["canonical_id"] == three["id"]
    assert mcp.fails("merge", {"ids": [two["id"]]}) == "merge_size"
    merged = mcp.ok("merge", {"ids": [two["id"], three["id"]], "content": "Alice has 3 cats."})
    assert merged["memory"]["content"] == "Alice has 3 cats." and merged["merged_ids"] == [
        two["id"],
        three["id"],
    ]


def test_a_pair_whose_memory_was_purged_meanwhile_is_not_recorded(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    kept = _create(client, content="Alice has 2 cats")
    gone = _create(client, content="Alice has 3 cats")
    with transaction(engine, write=False) as conn:
        found = conflicts.find(
            conn,
            Scope(brain_id=tenant.brain_id, principal="test"),
            list(
                conn.execute(
                    text(f"SELECT {COLUMNS} FROM memories WHERE id = :id"), {"id": kept["id"]}
                ).all()
            ),
            _space(get_embedder(client.app.state.services.settings.embedder)),
        )
    assert [(f.a.id, f.b.id) for f in found] == [(kept["id"], gone["id"])]
    purged = client.post(f"/v1/memories/{gone['id']}/purge", json_body={"confirm": True})
    assert purged.status == 200
    with transaction(engine) as conn:
        scope = Scope(brain_id=tenant.brain_id, principal="test")
        assert conflicts.record_all(conn, scope, found) == []
    assert _conflicts(client) == []


def test_two_detection_passes_at_once_record_each_pair_once(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    for n in range(4):
        _create(client, content=f"Project {'abcd'[n]}z budget is {n + 1}000 euros")
        _create(client, content=f"Project {'abcd'[n]}z budget is {n + 5}000 euros")
    space = _space(get_embedder(client.app.state.services.settings.embedder))
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda _: conflicts.detect(engine, tenant.brain_id, batch_size=50, space=space),
                range(2),
            )
        )
    assert sum(run["created"] for run in runs) == 4
    assert len(_conflicts(client)) == 4
    assert conflicts.detect(engine, tenant.brain_id, batch_size=50, space=space)["created"] == 0


def test_maintenance_finds_contradicts_links_made_without_the_api(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    a = _create(client, content="The office opens at 9")
    b = _create(client, content="Nobody is ever in before ten")
    space = _space(get_embedder(client.app.state.services.settings.embedder))
    assert conflicts.detect(engine, tenant.brain_id, batch_size=10, space=space)["created"] == 0
    with transaction(engine) as conn:  # as an import or a restored snapshot would write it
        conn.execute(
            text(
                "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, weight, "
                "created_at) VALUES (:id, :brain, :a, :b, 'contradicts', 1.0, :now)"
            ),
            {"id": new_id(), "brain": tenant.brain_id, "a": a["id"], "b": b["id"], "now": now_ms()},
        )
    run = conflicts.detect(engine, tenant.brain_id, batch_size=10, space=space)
    assert (run["links_scanned"], run["created"]) == (1, 1)
    assert [c["kind"] for c in _conflicts(client)] == ["link"]
