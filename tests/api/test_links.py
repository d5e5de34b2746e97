"""Links through the Lambda handler, on both stores: create, read, list, delete, the scope rules
(another brain's or another user's memory is a 404), bad input, waypoints and suggestions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from core.kernel.config import LinkSettings, Settings
from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory.policy import set_policy
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient
from tests.statements import statements_sent


def _memory(client: LambdaClient, content: str, **fields: Any) -> str:
    reply = client.post("/v1/memories", json_body={"content": content, **fields})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def _link(client: LambdaClient, from_id: str, to_id: str, relation: str, **fields: Any) -> Any:
    return client.post(
        "/v1/links",
        json_body={"from_id": from_id, "to_id": to_id, "relation": relation, **fields},
    )


def _links(client: LambdaClient, memory_id: str, **query: Any) -> list[dict[str, Any]]:
    reply = client.get(f"/v1/memories/{memory_id}/links", query=query)
    assert reply.status == 200, reply.body
    rows: list[dict[str, Any]] = reply.json()["results"]
    return rows


def _changelog(client: LambdaClient, event_type: str) -> list[dict[str, Any]]:
    reply = client.get("/v1/changelog", query={"event_type": event_type, "limit": 500})
    assert reply.status == 200, reply.body
    rows: list[dict[str, Any]] = reply.json()["results"]
    return rows


def _policy(tenant: Tenant, **values: Any) -> None:
    with transaction(tenant.engine) as conn:
        set_policy(conn, Scope(brain_id=tenant.brain_id, principal="test"), values)


def test_create_get_and_delete_with_changelog_rows(client: LambdaClient) -> None:
    a = _memory(client, "The deploy runs on Fridays")
    b = _memory(client, "Fridays are quiet in the office")
    reply = _link(client, a, b, "supports", label="why Friday", weight=0.75, actor_id="agent-1")
    assert reply.status == 201, reply.body
    link = reply.json()
    assert (link["from_id"], link["to_id"], link["relation"]) == (a, b, "supports")
    assert (link["label"], link["weight"], link["origin"]) == ("why Friday", 0.75, "manual")
    assert link["created_by"] == "agent-1" and link["deduplicated"] is False
    fetched = client.get(f"/v1/links/{link['id']}").json()
    assert fetched == {k: v for k, v in link.items() if k != "deduplicated"}
    created = _changelog(client, "link.created")
    assert [e["entity_id"] for e in created] == [link["id"]]
    assert created[0]["payload"]["relation"] == "supports"
    assert created[0]["actor_id"] == "agent-1"

    deleted = client.delete(f"/v1/links/{link['id']}")
    assert deleted.status == 200 and deleted.json() == {"id": link["id"], "deleted": True}
    assert client.get(f"/v1/links/{link['id']}").error_code == "link_not_found"
    assert client.delete(f"/v1/links/{link['id']}").status == 404
    assert [e["entity_id"] for e in _changelog(client, "link.deleted")] == [link["id"]]
    assert _links(client, a) == []


def test_relinking_a_pair_with_another_relation_keeps_both(client: LambdaClient) -> None:
    a = _memory(client, "Rain was forecast")
    b = _memory(client, "The picnic moved indoors")
    first = _link(client, a, b, "causes").json()
    second = _link(client, a, b, "supports", weight=0.4)
    assert second.status == 201
    reverse = _link(client, b, a, "causes")
    assert reverse.status == 201
    relations = sorted((r["relation"], r["direction"]) for r in _links(client, a))
    assert relations == [("causes", "in"), ("causes", "out"), ("supports", "out")]
    # The same link again is the same link (a retried POST is safe)...
    again = _link(client, a, b, "causes")
    assert again.status == 200 and again.json()["id"] == first["id"]
    assert again.json()["deduplicated"] is True
    # ...but not with another weight or label: that would silently drop what was asked.
    changed = _link(client, a, b, "causes", weight=0.2)
    assert changed.status == 409 and changed.error_code == "link_exists"
    assert changed.json()["error"]["details"]["existing_id"] == first["id"]
    assert len(_changelog(client, "link.created")) == 3


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"relation": "likes"}, 422, "invalid_input", "relation"),
        ({"relation": "related", "weight": 1.5}, 422, "invalid_input", "weight"),
        ({"relation": "related", "weight": -0.1}, 422, "invalid_input", "weight"),
        ({"relation": "related", "label": ""}, 422, "invalid_input", "label"),
        ({"relation": "related", "colour": "red"}, 422, "invalid_input", "colour"),
    ],
)
def test_bad_link_input_is_a_clear_422(
    client: LambdaClient, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    a = _memory(client, "one memory")
    b = _memory(client, "another memory")
    reply = client.post("/v1/links", json_body={"from_id": a, "to_id": b, **body})
    assert reply.status == status, reply.body
    assert reply.error_code == code
    assert reply.json()["error"]["details"][0]["field"] == field
    assert _links(client, a) == []


def test_self_links_and_unknown_memories_are_refused(client: LambdaClient) -> None:
    a = _memory(client, "a lonely memory")
    self_link = _link(client, a, a, "related")
    assert self_link.status == 422 and self_link.error_code == "self_link"
    missing = _link(client, a, "no-such-memory", "related")
    assert missing.status == 404 and missing.error_code == "memory_not_found"
    assert missing.json()["error"]["details"] == {"field": "to_id"}
    assert client.get("/v1/memories/no-such-memory/links").status == 404


def test_another_brains_memories_and_links_are_404(
    client: LambdaClient, settings: Settings, other_tenant: Tenant
) -> None:
    mine = _memory(client, "my memory")
    mine_too = _memory(client, "my other memory")
    stranger = LambdaClient(settings, key=other_tenant.key)
    theirs = _memory(stranger, "their memory")
    theirs_too = _memory(stranger, "their other memory")
    their_link = _link(stranger, theirs, theirs_too, "related").json()["id"]
    for from_id, to_id in ((mine, theirs), (theirs, mine), (theirs, theirs_too)):
        reply = _link(client, from_id, to_id, "related")
        assert reply.status == 404 and reply.error_code == "memory_not_found", reply.body
    assert client.get(f"/v1/links/{their_link}").status == 404
    assert client.delete(f"/v1/links/{their_link}").status == 404
    assert client.get(f"/v1/memories/{theirs}/links").status == 404
    assert _link(client, mine, mine_too, "related").status == 201
    assert len(_links(stranger, theirs)) == 1  # untouched


def test_another_users_memories_are_404(client: LambdaClient, tenant: Tenant) -> None:
    alice_1 = _memory(client, "Alice likes jazz", user_id="alice")
    alice_2 = _memory(client, "Alice plays piano", user_id="alice")
    bob_1 = _memory(client, "Bob likes metal", user_id="bob")
    brain_level = _memory(client, "The office closes at six")
    # Even a brain-wide key cannot join two users' memories, or a user's and a brain-level one.
    for from_id, to_id in ((alice_1, bob_1), (bob_1, alice_1), (alice_1, brain_level)):
        reply = _link(client, from_id, to_id, "related")
        assert reply.status == 404 and reply.error_code == "memory_not_found"
    alice = client.as_key(tenant.new_key(user_id="alice"))
    assert _link(alice, alice_1, bob_1, "related").status == 404
    made = _link(alice, alice_1, alice_2, "supports")
    assert made.status == 201
    bob = client.as_key(tenant.new_key(user_id="bob"))
    link_id = made.json()["id"]
    assert bob.get(f"/v1/links/{link_id}").status == 404
    assert bob.delete(f"/v1/links/{link_id}").status == 404
    assert bob.get(f"/v1/memories/{alice_1}/links").status == 404
    assert [r["id"] for r in _links(alice, alice_1)] == [link_id]
    assert client.get(f"/v1/links/{link_id}").status == 200  # the brain-wide key sees it


def test_read_only_keys_cannot_link_or_unlink(client: LambdaClient, tenant: Tenant) -> None:
    a = _memory(client, "first")
    b = _memory(client, "second")
    link_id = _link(client, a, b, "related").json()["id"]
    reader = client.as_key(tenant.new_key(read_only=True))
    refused = _link(reader, b, a, "related")
    assert refused.status == 403 and refused.error_code == "read_only_key"
    assert reader.delete(f"/v1/links/{link_id}").status == 403
    assert len(_links(reader, a)) == 1


def test_deleted_memories_cannot_be_linked(client: LambdaClient) -> None:
    a = _memory(client, "kept")
    b = _memory(client, "thrown away")
    client.delete(f"/v1/memories/{b}")
    reply = _link(client, a, b, "related")
    assert reply.status == 409 and reply.error_code == "memory_deleted"


def test_listing_both_ways_with_filters_and_pages(client: LambdaClient) -> None:
    hub = _memory(client, "the hub")
    spokes = [_memory(client, f"spoke {i}") for i in range(5)]
    for i, spoke in enumerate(spokes):
        relation = "supports" if i % 2 else "example_of"
        if i < 3:
            assert _link(client, hub, spoke, relation).status == 201
        else:
            assert _link(client, spoke, hub, relation).status == 201
    both = _links(client, hub)
    assert len(both) == 5
    assert {r["direction"] for r in both} == {"in", "out"}
    for row in both:
        far = row["to_id"] if row["direction"] == "out" else row["from_id"]
        assert row["memory"]["id"] == far
        assert row["memory"]["preview"].startswith("spoke")
    assert len(_links(client, hub, direction="out")) == 3
    assert len(_links(client, hub, direction="in")) == 2
    assert {r["relation"] for r in _links(client, hub, relation="supports")} == {"supports"}
    assert len(_links(client, hub, relation="supports,example_of")) == 5
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 2}
        if cursor:
            query["cursor"] = cursor
        page = client.get(f"/v1/memories/{hub}/links", query=query).json()
        seen += [r["id"] for r in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [r["id"] for r in both]
    assert client.get(f"/v1/memories/{hub}/links", query={"direction": "up"}).status == 422


def test_a_superseded_fact_gets_a_system_link(client: LambdaClient) -> None:
    old = _memory(client, "Alice lives in Paris", type="fact", key="home", user_id="alice")
    new = _memory(client, "Alice lives in Lyon", type="fact", key="home", user_id="alice")
    (link,) = _links(client, new)
    assert (link["relation"], link["origin"], link["direction"]) == ("supersedes", "system", "out")
    assert link["to_id"] == old and link["memory"]["state"] == "archived"


def test_waypoints_are_made_only_when_on_and_above_the_threshold(
    client: LambdaClient, settings: Settings, tenant: Tenant
) -> None:
    # The write gate off: "... every morning in Kyoto" would reinforce "... every morning".
    _policy(tenant, write_gate=0)
    first = _memory(client, "Alice drinks green tea every morning", user_id="alice")
    second = _memory(client, "Alice drinks green tea every evening", user_id="alice")
    assert _links(client, second) == []  # off by default

    inferring = LambdaClient(settings.with_(links=LinkSettings(inferred=True)), key=tenant.key)
    _policy(tenant, inferred_links_threshold=0.5, inferred_links_max=1, write_gate=0)
    _memory(inferring, "Alice drinks green tea every afternoon", user_id="bob")
    third = _memory(inferring, "Alice drinks green tea every morning in Kyoto", user_id="alice")
    unrelated = _memory(inferring, "The quarterly budget review is on Friday", user_id="alice")
    (waypoint,) = _links(client, third)  # at most inferred_links_max, bob's never
    assert waypoint["from_id"] == third and waypoint["to_id"] == first
    assert (waypoint["relation"], waypoint["origin"]) == ("related", "inferred")
    assert 0.5 <= waypoint["weight"] <= 1.0
    assert _links(client, unrelated) == []  # nothing similar enough
    created = _changelog(client, "link.created")
    assert [e["entity_id"] for e in created] == [waypoint["id"]]

    _policy(tenant, inferred_links_threshold=0.5, inferred_links_max=3, write_gate=0)
    fourth = _memory(inferring, "Alice drinks green tea every evening too", user_id="alice")
    targets = {r["to_id"] for r in _links(client, fourth)}
    assert targets == {first, second, third}
    _policy(tenant, inferred_links_threshold=0.99, write_gate=0)
    fifth = _memory(inferring, "Alice drinks green tea every single evening", user_id="alice")
    assert _links(client, fifth) == []


def test_suggestions_score_shared_tags_similarity_source_and_time(
    client: LambdaClient,
) -> None:
    centre = _memory(
        client,
        "Alice is training for the Berlin marathon",
        tags=["running", "goals"],
        source="chat",
        user_id="alice",
    )
    similar = _memory(
        client, "Alice is training for the Berlin marathon in September", user_id="alice"
    )
    tagged = _memory(client, "New shoes arrived", tags=["running"], user_id="alice")
    same_source = _memory(client, "Asked about the weather", source="chat", user_id="alice")
    linked = _memory(client, "Alice ran a half marathon", tags=["running"], user_id="alice")
    bob = _memory(client, "Bob is training for the Berlin marathon", user_id="bob")
    assert _link(client, centre, linked, "related").status == 201

    reply = client.get(f"/v1/memories/{centre}/suggestions", query={"min_score": 0})
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    by_id = {r["memory"]["id"]: r for r in results}
    assert linked not in by_id and bob not in by_id and centre not in by_id
    assert set(by_id) == {similar, tagged, same_source}
    assert results[0]["memory"]["id"] == similar
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(0 <= r["score"] <= 1 and r["relation"] == "related" for r in results)
    assert any(reason.startswith("similar content") for reason in by_id[similar]["reasons"])
    assert by_id[tagged]["signals"]["shared_tags"] == ["running"]
    assert "shares tags: running" in by_id[tagged]["reasons"]
    assert by_id[same_source]["signals"]["same_source"] is True
    assert "same source: chat" in by_id[same_source]["reasons"]
    assert any(reason.startswith("saved") for reason in by_id[tagged]["reasons"])
    limited = client.get(f"/v1/memories/{centre}/suggestions", query={"limit": 1}).json()
    assert [r["memory"]["id"] for r in limited["results"]] == [similar]
    assert client.get("/v1/memories/nope/suggestions").status == 404


def test_saving_a_memory_with_waypoints_off_runs_no_link_statement(
    client: LambdaClient, engine: Engine
) -> None:
    _memory(client, "Alice drinks green tea every morning")
    with statements_sent(engine) as sent:
        _memory(client, "Alice drinks green tea every evening")
    seen = sent.statements
    assert any("INSERT INTO memories" in s for s in seen)
    # One policy read is the write gate's (core/memory/gate.py), not the waypoints'.
    assert not [s for s in seen if "memory_links" in s]
    assert len([s for s in seen if "brain_policies" in s]) == 1


def test_a_contradicts_link_is_a_conflict_to_review(client: LambdaClient) -> None:
    a = _memory(client, "The launch is on Monday", user_id="alice")
    b = _memory(client, "The launch moved to Thursday", user_id="alice")
    assert _link(client, a, b, "supports").status == 201
    assert client.get("/v1/conflicts").json()["results"] == []
    assert _link(client, b, a, "contradicts").status == 201
    (conflict,) = client.get("/v1/conflicts").json()["results"]
    assert conflict["kind"] == "link" and conflict["status"] == "needs_review"
