"""Valid time beside system time (issue 18), through the Lambda handler on both stores:
valid_from / valid_to, supersession closing the older fact, `as_of` on search, list, facts and
context packs, and `known_at` rebuilt from history."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.conftest import Tenant
from tests.lambda_client import LambdaClient


def _add(client: LambdaClient, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/memories", json_body=fields)
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.json()
    return body


def _contents(reply: Any) -> list[str]:
    assert reply.status == 200, reply.body
    return [r["memory"]["content"] for r in reply.json()["results"]]


def _alice(client: LambdaClient) -> tuple[dict[str, Any], dict[str, Any]]:
    lyon = _add(
        client,
        type="fact",
        key="home city",
        content="Alice lives in Lyon",
        user_id="alice",
        valid_from="2024-01-01",
    )
    paris = _add(
        client,
        type="fact",
        key="home city",
        content="Alice lives in Paris",
        user_id="alice",
        valid_from="2025-06-01",
    )
    return lyon, paris


def test_superseded_fact_is_closed_and_searchable_as_of(client: LambdaClient) -> None:
    lyon, paris = _alice(client)
    assert paris["valid_from"] == "2025-06-01T00:00:00.000Z"
    assert paris["valid_to"] is None
    old = client.get(f"/v1/memories/{lyon['id']}").json()
    assert old["valid_to"] == "2025-06-01T00:00:00.000Z"  # closed at the newer one's start
    assert old["state"] == "archived" and old["superseded_by"] == paris["id"]

    query = {"query": "where does alice live", "user_id": "alice"}
    then = _contents(client.post("/v1/search", json_body={**query, "as_of": "2025-01-01"}))
    assert then[0] == "Alice lives in Lyon"
    assert "Alice lives in Paris" not in then  # not yet true then
    now = _contents(client.post("/v1/search", json_body=query))
    assert now[0] == "Alice lives in Paris"
    before = client.post("/v1/search", json_body={**query, "as_of": "2023-06-01"})
    assert _contents(before) == []  # nothing was known to be true then


def test_as_of_on_facts_list_and_context(client: LambdaClient) -> None:
    _alice(client)
    fact = client.get("/v1/facts/home city", query={"user_id": "alice", "as_of": "2025-01-01"})
    assert fact.status == 200 and fact.json()["content"] == "Alice lives in Lyon"
    assert client.get("/v1/facts/home city", query={"user_id": "alice"}).json()["content"] == (
        "Alice lives in Paris"
    )
    missing = client.get("/v1/facts/home city", query={"user_id": "alice", "as_of": "2020-01-01"})
    assert missing.status == 404 and missing.json()["error"]["code"] == "fact_not_found"

    listed = client.get("/v1/memories", query={"user_id": "alice", "as_of": "2025-01-01"})
    assert [m["content"] for m in listed.json()["results"]] == ["Alice lives in Lyon"]
    listed = client.get("/v1/memories", query={"user_id": "alice", "as_of": "2025-07-01"})
    assert [m["content"] for m in listed.json()["results"]] == ["Alice lives in Paris"]

    pack = client.post(
        "/v1/context",
        json_body={"query": "where does alice live", "user_id": "alice", "as_of": "2025-01-01"},
    )
    assert pack.status == 200, pack.body
    assert "Lyon" in pack.json()["text"] and "Paris" not in pack.json()["text"]
    pack = client.post("/v1/context", json_body={"query": "where does alice live"})
    assert "Paris" in pack.json()["text"] and "Lyon" not in pack.json()["text"]


def test_an_earlier_fact_is_saved_as_history(client: LambdaClient) -> None:
    lyon, paris = _alice(client)
    berlin = _add(
        client,
        type="fact",
        key="home city",
        content="Alice lives in Berlin",
        user_id="alice",
        valid_from="2020-03-01",
    )
    # Learned late, true before the current fact: saved closed, the current fact stays.
    assert berlin["state"] == "archived" and berlin["superseded_by"] == lyon["id"]
    assert berlin["valid_to"] == "2024-01-01T00:00:00.000Z"  # where Lyon begins
    assert client.get("/v1/facts/home city", query={"user_id": "alice"}).json()["id"] == paris["id"]
    then = client.get(
        "/v1/facts/home city", query={"user_id": "alice", "as_of": "2021-01-01"}
    ).json()
    assert then["content"] == "Alice lives in Berlin"
    # Between two known versions: both neighbours' valid times now meet it.
    _add(
        client,
        type="fact",
        key="home city",
        content="Alice lives in Marseille",
        user_id="alice",
        valid_from="2024-09-01",
    )
    lyon_now = client.get(f"/v1/memories/{lyon['id']}").json()
    assert lyon_now["valid_to"] == "2024-09-01T00:00:00.000Z"
    for moment, city in (("2024-05-01", "Lyon"), ("2025-01-01", "Marseille"), (None, "Paris")):
        query = {"user_id": "alice", **({"as_of": moment} if moment else {})}
        fact = client.get("/v1/facts/home city", query=query).json()
        assert fact["content"] == f"Alice lives in {city}"


def test_valid_time_defaults_and_checks(client: LambdaClient) -> None:
    happened = _add(client, content="Ran the Lyon half marathon", occurred_at="2024-04-07T09:00")
    assert happened["valid_from"] == happened["occurred_at"]
    plain = _add(client, content="Prefers green tea")
    assert plain["valid_from"] == plain["created_at"]
    bad = client.post(
        "/v1/memories",
        json_body={"content": "x y", "valid_from": "2025-01-01", "valid_to": "2024-01-01"},
    )
    assert bad.status == 422 and bad.json()["error"]["code"] == "invalid_valid_time"
    patched = client.patch(
        f"/v1/memories/{plain['id']}", json_body={"valid_from": "2020-01-01T00:00:00Z"}
    )
    assert patched.status == 200 and patched.json()["valid_from"].startswith("2020-01-01")
    wrong = client.patch(f"/v1/memories/{plain['id']}", json_body={"valid_to": "2019-01-01"})
    assert wrong.status == 422 and wrong.json()["error"]["details"]["field"] == "valid_to"


def test_known_at_rebuilds_what_the_store_held(client: LambdaClient) -> None:
    first = _add(client, content="The launch is planned for March", user_id="bob")
    time.sleep(0.01)
    moment = client.get(f"/v1/memories/{first['id']}").json()["updated_at"]
    time.sleep(0.01)
    client.patch(f"/v1/memories/{first['id']}", json_body={"content": "The launch moved to May"})
    gone = _add(client, content="Bob likes sailing", user_id="bob")
    client.delete(f"/v1/memories/{gone['id']}")
    then = client.get("/v1/memories", query={"user_id": "bob", "known_at": moment}).json()[
        "results"
    ]
    assert [m["content"] for m in then] == ["The launch is planned for March"]
    now = client.get("/v1/memories", query={"user_id": "bob"}).json()["results"]
    assert [m["content"] for m in now] == ["The launch moved to May"]
    found = client.post(
        "/v1/search", json_body={"query": "launch", "user_id": "bob", "known_at": moment}
    )
    assert _contents(found) == ["The launch is planned for March"]


def test_migration_fills_valid_time(engine: Engine, tenant: Tenant, client: LambdaClient) -> None:
    lyon, paris = _alice(client)
    # As rows saved before migration 13 would be: no valid time at all.
    with engine.begin() as conn:
        conn.execute(text("UPDATE memories SET valid_from = NULL, valid_to = NULL"))
    from core.kernel.db.migrations import MIGRATIONS

    fill = next(m for m in MIGRATIONS if m.version == 13)
    with engine.begin() as conn:
        for statement in fill.statements(engine.dialect.name)[2:4]:
            conn.execute(text(statement))
    old = client.get(f"/v1/memories/{lyon['id']}").json()
    new = client.get(f"/v1/memories/{paris['id']}").json()
    assert old["valid_from"] == old["created_at"] and new["valid_from"] == new["created_at"]
    assert old["valid_to"] == new["valid_from"]


def test_a_contradiction_is_caught_when_it_is_saved(client: LambdaClient) -> None:
    allergy = _add(client, content="Dana is allergic to peanuts and shellfish", user_id="dana")
    _add(client, content="Dana likes Thai food", user_id="dana")
    denial = _add(client, content="Dana is not allergic to peanuts", user_id="dana")
    assert denial["conflicts"] == [
        {
            "id": denial["conflicts"][0]["id"],
            "with_id": allergy["id"],
            "kind": "value",
            "reason": "negation_differs",
        }
    ]
    listed = client.get("/v1/conflicts", query={"user_id": "dana"}).json()["results"]
    assert [c["status"] for c in listed] == ["needs_review"]
    # Another user's memories are never compared.
    other = _add(client, content="Dana is allergic to peanuts and shellfish", user_id="erin")
    assert other.get("conflicts") is None

    pack = client.post(
        "/v1/context", json_body={"query": "what should Dana avoid eating", "user_id": "dana"}
    )
    assert pack.status == 200, pack.body
    text = pack.json()["text"]
    assert "allergic to peanuts and shellfish" in text
    assert "not allergic to peanuts" in text
    assert text.count("[contested") == 2
    contested = [c for c in pack.json()["citations"] if c["contested"]]
    assert {c["id"] for c in contested} == {allergy["id"], denial["id"]}


def test_a_batch_is_checked_item_by_item(client: LambdaClient) -> None:
    reply = client.post(
        "/v1/memories/batch",
        json_body={
            "memories": [
                {"content": "Jon owns a dance studio in Brooklyn", "user_id": "jon"},
                {"content": "Jon does not own a dance studio", "user_id": "jon"},
                {"content": "Jon likes jazz", "user_id": "jon"},
            ]
        },
    )
    assert reply.status == 201, reply.body
    first, second, third = reply.json()["results"]
    assert first.get("conflicts") is None and third.get("conflicts") is None
    assert second["conflicts"][0]["with_id"] == first["id"]


@pytest.mark.parametrize("warm", [False, True], ids=["by-words", "by-vector"])
def test_the_check_reaches_past_the_recent_memories(client: LambdaClient, warm: bool) -> None:
    allergy = _add(client, content="Dana is allergic to peanuts and shellfish", user_id="dana")
    if warm:  # a search loads the brain's vectors: the check then asks them, not the index
        assert client.post("/v1/search", json_body={"query": "Dana"}).status == 200
    filler = [
        {"content": f"Dana visited museum number {n} with her cousin", "user_id": "dana"}
        for n in range(30)
    ]
    assert client.post("/v1/memories/batch", json_body={"memories": filler}).status == 201
    denial = _add(client, content="Dana is not allergic to peanuts", user_id="dana")
    assert [c["with_id"] for c in denial["conflicts"]] == [allergy["id"]]


def test_summaries_show_both_sides_and_answer_as_of(client: LambdaClient) -> None:
    _add(client, content="Dana is allergic to peanuts and shellfish", user_id="dana")
    _add(client, content="Dana is not allergic to peanuts", user_id="dana")
    made = client.post("/v1/users/dana/summary/regenerate")
    assert made.status == 200, made.body
    summary = made.json()["summary"]
    contested = [line for line in summary.splitlines() if line.startswith("Contested")]
    assert len(contested) == 1
    assert "allergic to peanuts and shellfish" in contested[0]
    assert "not allergic to peanuts" in contested[0]

    _alice(client)
    then = client.get("/v1/users/alice/summary", query={"as_of": "2025-01-01"})
    assert then.status == 200, then.body
    assert "Lyon" in then.json()["summary"] and "Paris" not in then.json()["summary"]
    assert then.json()["as_of"] == "2025-01-01T00:00:00.000Z"
    now = client.get("/v1/users/alice/summary").json()
    assert "Paris" in now["summary"] and "Lyon" not in now["summary"]
    bad = client.get("/v1/users/alice/summary", query={"as_of": "soon"})
    assert bad.status == 422


def test_summaries_answer_known_at(client: LambdaClient) -> None:
    """What the store held about a user at a moment, each memory as it read then, and the
    contradictions still open then, whatever happened since."""
    launch = _add(client, content="Bob's launch is planned for March", user_id="bob")
    bees = _add(client, content="Bob keeps bees in his garden", user_id="bob")
    _add(client, content="Bob is allergic to peanuts and shellfish", user_id="bob")
    _add(client, content="Bob is not allergic to peanuts", user_id="bob")
    (conflict,) = client.get("/v1/conflicts", query={"user_id": "bob"}).json()["results"]
    moment = conflict["created_at"]  # the last change before the moment asked about
    time.sleep(0.01)
    patched = {"content": "Bob's launch moved to May"}
    assert client.patch(f"/v1/memories/{launch['id']}", json_body=patched).status == 200
    assert client.delete(f"/v1/memories/{bees['id']}").status == 200
    _add(client, content="Bob started rowing on Sundays", user_id="bob")
    assert client.post(f"/v1/conflicts/{conflict['id']}/dismiss", json_body={}).status == 200

    then = client.get("/v1/users/bob/summary", query={"known_at": moment})
    assert then.status == 200, then.body
    assert then.json()["known_at"] == moment and "as_of" not in then.json()
    text_then = then.json()["summary"]
    assert "March" in text_then and "May" not in text_then
    assert "bees" in text_then and "rowing" not in text_then
    assert any(line.startswith("Contested") for line in text_then.splitlines())

    now = client.post("/v1/users/bob/summary/regenerate").json()["summary"]
    assert "May" in now and "March" not in now
    assert "bees" not in now and "rowing" in now
    assert not any(line.startswith("Contested") for line in now.splitlines())
    # Not stored: the summary of the present is unchanged by asking about the past.
    assert client.get("/v1/users/bob/summary").json()["summary"] == now

    both = client.get("/v1/users/bob/summary", query={"known_at": moment, "as_of": moment})
    assert both.status == 200 and both.json()["as_of"] == moment
    assert client.get("/v1/users/bob/summary", query={"known_at": "soon"}).status == 422


def test_resolving_for_the_newer_note_closes_the_older(client: LambdaClient) -> None:
    lyon = _add(client, content="Alice lives in Lyon", user_id="alice", valid_from="2024-01-01")
    paris = _add(client, content="Alice lives in Paris", user_id="alice", valid_from="2025-06-01")
    (conflict,) = paris["conflicts"]
    assert conflict["with_id"] == lyon["id"] and conflict["reason"] == "place_differs"
    query = {"query": "where does alice live", "user_id": "alice"}
    # Unresolved: both true now, the one true more recently first.
    assert _contents(client.post("/v1/search", json_body=query))[:2] == [
        "Alice lives in Paris",
        "Alice lives in Lyon",
    ]
    resolved = client.post(
        f"/v1/conflicts/{conflict['id']}/resolve", json_body={"winner_id": paris["id"]}
    )
    assert resolved.status == 200, resolved.body
    old = client.get(f"/v1/memories/{lyon['id']}").json()
    assert old["state"] == "archived" and old["valid_to"] == "2025-06-01T00:00:00.000Z"
    then = client.post("/v1/search", json_body={**query, "as_of": "2025-01-01"})
    assert _contents(then) == ["Alice lives in Lyon"]
    assert _contents(client.post("/v1/search", json_body=query)) == ["Alice lives in Paris"]
