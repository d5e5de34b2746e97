"""Merge, entity aliases and consolidation on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory.policy import set_policy
from tests.conftest import Tenant, embeds_during
from tests.lambda_client import LambdaClient


def _create(client: LambdaClient, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/memories", json_body=fields)
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.json()
    return body


def _link(client: LambdaClient, start: str, end: str, relation: str = "related") -> None:
    reply = client.post(
        "/v1/links", json_body={"from_id": start, "to_id": end, "relation": relation}
    )
    assert reply.status == 201, reply.body


def _links(engine: Engine, brain_id: str) -> set[tuple[str, str, str]]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text("SELECT from_id, to_id, relation FROM memory_links WHERE brain_id = :b"),
            {"b": brain_id},
        ).all()
    return {(r.from_id, r.to_id, r.relation) for r in rows}


def _history(client: LambdaClient, memory_id: str) -> list[dict[str, Any]]:
    reply = client.get(f"/v1/memories/{memory_id}/history")
    assert reply.status == 200, reply.body
    rows: list[dict[str, Any]] = reply.json()["results"]
    return rows


def test_merge_joins_unites_moves_links_and_archives_sources(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    a = _create(client, content="Alice works at Acme", tags=["work"], importance=0.3)
    b = _create(client, content="Alice is an engineer", tags=["work", "job"], importance=0.8)
    c = _create(client, content="Acme makes rockets")
    d = _create(client, content="Engineers build things")
    _link(client, a["id"], c["id"])
    _link(client, b["id"], c["id"])  # collapses into the same link as a -> c: dropped
    _link(client, d["id"], b["id"], "supports")
    _link(client, a["id"], b["id"])  # between two sources: dropped
    reply = client.post("/v1/memories/merge", json_body={"ids": [a["id"], b["id"]]})
    assert reply.status == 201, reply.body
    body = reply.json()
    merged = body["memory"]
    assert merged["content"] == "Alice works at Acme\n\nAlice is an engineer"
    assert merged["tags"] == ["work", "job"] and merged["importance"] == 0.8
    assert body["merged_ids"] == [a["id"], b["id"]]
    assert (body["links_moved"], body["links_dropped"]) == (2, 2)
    new = merged["id"]
    assert _links(engine, tenant.brain_id) == {
        (new, c["id"], "related"),
        (d["id"], new, "supports"),
        (new, a["id"], "supersedes"),
        (new, b["id"], "supersedes"),
    }
    for source in (a, b):
        fetched = client.get(f"/v1/memories/{source['id']}").json()
        assert fetched["state"] == "archived" and fetched["superseded_by"] == new
        last = _history(client, source["id"])[-1]
        assert last["event"] == "ARCHIVE" and last["detail"]["merged_into"] == new
    result_history = _history(client, new)
    assert [h["event"] for h in result_history] == ["ADD", "UPDATE"]
    assert result_history[-1]["detail"]["merged_from"] == [a["id"], b["id"]]
    feed = client.get("/v1/changelog", query={"event_type": "memory.merged"}).json()
    assert [e["entity_id"] for e in feed["results"]] == [new]


def test_merge_into_one_keeps_its_id_and_takes_supplied_content(client: LambdaClient) -> None:
    a = _create(client, content="Bob likes tea", tags=["drinks"])
    b = _create(client, content="Bob loves tea", tags=["bob"], importance=0.9)
    reply = client.post(
        "/v1/memories/merge",
        json_body={"ids": [a["id"], b["id"]], "into_id": a["id"], "content": "Bob loves tea"},
    )
    assert reply.status == 201, reply.body
    merged = reply.json()["memory"]
    assert merged["id"] == a["id"] and merged["content"] == "Bob loves tea"
    assert merged["tags"] == ["drinks", "bob"] and merged["importance"] == 0.9
    assert client.get(f"/v1/memories/{b['id']}").json()["superseded_by"] == a["id"]
    assert _history(client, a["id"])[-1]["detail"]["merged_from"] == [b["id"]]


@pytest.mark.parametrize("into", [False, True])
def test_a_merge_embeds_its_result_before_the_write_transaction(
    client: LambdaClient, monkeypatch: pytest.MonkeyPatch, into: bool
) -> None:
    """A remote embedder is a network call: it must not run while the merge holds the store.
    The result's text is read and embedded first, and the vector written is the result's."""
    from core.curation import merge

    a = _create(client, content="Carol paints watercolour landscapes", tags=["art"])
    b = _create(client, content="Carol sells her paintings at the market", title="Carol")
    embedded_while_writing = embeds_during(monkeypatch, merge, "merge")
    body: dict[str, Any] = {"ids": [a["id"], b["id"]], "title": "Carol's art"}
    if into:
        body.update(into_id=b["id"], content="Carol paints and sells watercolours")
    reply = client.post("/v1/memories/merge", json_body=body)
    assert reply.status == 201, reply.body
    result = reply.json()["memory"]
    assert embedded_while_writing == [False]
    query = "watercolours" if into else "watercolour landscapes market"
    hits = client.post("/v1/search", json_body={"query": query, "mode": "semantic"}).json()
    assert hits["results"][0]["memory"]["id"] == result["id"]


def test_merge_refuses_bad_input(
    client: LambdaClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    a = _create(client, content="One", user_id="u1")
    b = _create(client, content="Two", user_id="u1")
    c = _create(client, content="Three", user_id="u2")
    foreign = _create(client.as_key(other_tenant.key), content="Elsewhere")

    def merge(**body: Any) -> tuple[int, str | None]:
        reply = client.post("/v1/memories/merge", json_body=body)
        return reply.status, reply.error_code

    assert merge(ids=[a["id"]]) == (422, "merge_size")
    assert merge(ids=[a["id"], a["id"]]) == (422, "invalid_input")
    assert merge(ids=[f"m{i}" for i in range(21)]) == (422, "merge_size")
    assert merge(ids=[a["id"], foreign["id"]]) == (404, "memory_not_found")
    assert merge(ids=[a["id"], c["id"]]) == (422, "mixed_users")
    assert merge(ids=[a["id"], b["id"]], into_id=c["id"]) == (422, "invalid_input")
    assert client.post(f"/v1/memories/{b['id']}/archive").status == 200
    assert merge(ids=[a["id"], b["id"]]) == (409, "memory_not_active")
    as_u2 = client.as_key(tenant.new_key(user_id="u2"))
    assert as_u2.post("/v1/memories/merge", json_body={"ids": [a["id"], c["id"]]}).status == 404
    read_only = client.as_key(tenant.new_key(read_only=True))
    refused = read_only.post("/v1/memories/merge", json_body={"ids": [a["id"], c["id"]]})
    assert refused.status == 403
    # Nothing was changed by the refusals.
    assert client.get(f"/v1/memories/{a['id']}").json()["state"] == "active"
    assert [h["event"] for h in _history(client, a["id"])] == ["ADD"]


def test_aliases_map_list_archive_and_delete(client: LambdaClient, other_tenant: Tenant) -> None:
    bob = _create(client, content="Robert Smith, our CTO", type="fact", key="person bob")
    nick = _create(client, content="Bob")
    title = _create(client, content="the CTO")
    reply = client.post(
        "/v1/aliases",
        json_body={
            "canonical_id": bob["id"],
            "alias_ids": [nick["id"], title["id"]],
            "archive": True,
            "note": "same person",
        },
    )
    assert reply.status == 201, reply.body
    body = reply.json()
    assert body["canonical_id"] == bob["id"]
    assert [r["alias_memory_id"] for r in body["results"]] == [nick["id"], title["id"]]
    assert body["results"][0]["confidence"] == 0.9 and body["results"][0]["note"] == "same person"
    assert client.get(f"/v1/memories/{nick['id']}").json()["state"] == "archived"
    archived = client.get("/v1/changelog", query={"event_type": "memory.archived"}).json()
    assert sorted(e["entity_id"] for e in archived["results"]) == sorted([nick["id"], title["id"]])
    assert _history(client, nick["id"])[-1]["detail"]["alias_of"] == bob["id"]
    assert _history(client, bob["id"])[-1]["detail"]["aliases_added"] == [nick["id"], title["id"]]
    from_alias = client.get(f"/v1/memories/{title['id']}/aliases").json()
    assert from_alias["canonical_id"] == bob["id"] and len(from_alias["results"]) == 2
    assert from_alias["results"][1]["memory"]["content"] == "the CTO"

    def status(path: str, **body: Any) -> tuple[int, str | None]:
        reply = client.post(path, json_body=body)
        return reply.status, reply.error_code

    assert status("/v1/aliases", canonical_id=bob["id"], alias_ids=[bob["id"]]) == (
        422,
        "self_alias",
    )
    assert status("/v1/aliases", canonical_id=nick["id"], alias_ids=[bob["id"]]) == (
        409,
        "canonical_is_alias",
    )
    foreign = _create(client.as_key(other_tenant.key), content="Bobby")
    assert status("/v1/aliases", canonical_id=bob["id"], alias_ids=[foreign["id"]])[0] == 404
    gone = client.delete(f"/v1/aliases/{body['results'][0]['id']}")
    assert gone.status == 200 and gone.json() == {"id": body["results"][0]["id"], "deleted": True}
    left = client.get(f"/v1/memories/{bob['id']}/aliases").json()["results"]
    assert [r["alias_memory_id"] for r in left] == [title["id"]]
    assert client.delete(f"/v1/aliases/{body['results'][0]['id']}").status == 404
    assert client.as_key(other_tenant.key).delete(f"/v1/aliases/{left[0]['id']}").status == 404
    feed = client.get("/v1/changelog", query={"event_type": "alias.deleted"}).json()
    assert [e["entity_id"] for e in feed["results"]] == [nick["id"]]


def test_merge_moves_aliases_to_the_result(client: LambdaClient) -> None:
    canonical = _create(client, content="Acme Corporation")
    other = _create(client, content="Acme Corp")
    alias = _create(client, content="ACME")
    assert (
        client.post(
            "/v1/aliases", json_body={"canonical_id": canonical["id"], "alias_ids": [alias["id"]]}
        ).status
        == 201
    )
    merged = client.post(
        "/v1/memories/merge", json_body={"ids": [canonical["id"], other["id"]]}
    ).json()["memory"]
    found = client.get(f"/v1/memories/{alias['id']}/aliases").json()
    assert found["canonical_id"] == merged["id"]


def test_merge_into_an_alias_keeps_aliases_one_level_deep(client: LambdaClient) -> None:
    canonical = _create(client, content="Robert Smith")
    kept = _create(client, content="Bob")
    source = _create(client, content="Bobby")
    nickname = _create(client, content="Rob")
    for parent, child in ((canonical, kept), (source, nickname)):
        reply = client.post(
            "/v1/aliases", json_body={"canonical_id": parent["id"], "alias_ids": [child["id"]]}
        )
        assert reply.status == 201, reply.body
    merged = client.post(
        "/v1/memories/merge", json_body={"ids": [kept["id"], source["id"]], "into_id": kept["id"]}
    )
    assert merged.status == 201, merged.body
    # "Rob" named "Bobby", merged into "Bob", itself an alias of "Robert Smith": all one entity.
    found = client.get(f"/v1/memories/{nickname['id']}/aliases").json()
    assert found["canonical_id"] == canonical["id"]
    assert sorted(r["alias_memory_id"] for r in found["results"]) == sorted(
        [kept["id"], nickname["id"]]
    )


def test_consolidate_dry_run_lists_groups_and_apply_merges_them(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    # Consolidation is for the copies a brain took in with its write gate off (or before it
    # had one): with the gate on, these would have reinforced one memory.
    with transaction(engine) as conn:
        set_policy(conn, Scope(tenant.brain_id, "test", role="owner"), {"write_gate": 0})
    same_a = _create(client, content="Alice prefers green tea", user_id="alice")
    same_b = _create(client, content="Alice prefers green tea", key="drink", user_id="alice")
    near = _create(client, content="Alice prefers green tea.", user_id="alice", importance=0.9)
    _create(client, content="Alice prefers green tea", user_id="bob")  # another user
    cats_2 = _create(client, content="Alice has 2 cats", user_id="alice")
    cats_3 = _create(client, content="Alice has 3 cats", user_id="alice")
    _create(client, content="The train to Turin left late", user_id="alice")

    dry = client.post("/v1/consolidate", json_body={"threshold": 0.8})
    assert dry.status == 200, dry.body
    body = dry.json()
    assert body["applied"] is False
    # Two statements that disagree on a number are a conflict, never a duplicate.
    assert [sorted(g["ids"]) for g in body["results"]] == [
        sorted([same_a["id"], same_b["id"], near["id"]])
    ]
    group = body["results"][0]
    assert group["keep_id"] == near["id"] and group["reason"] == "similar"
    assert cats_2["id"] not in group["ids"] and cats_3["id"] not in group["ids"]
    assert client.get(f"/v1/memories/{same_a['id']}").json()["state"] == "active"

    as_bob = client.as_key(tenant.new_key(user_id="bob"))
    assert as_bob.post("/v1/consolidate", json_body={"threshold": 0.8}).json()["results"] == []

    applied = client.post("/v1/consolidate", json_body={"threshold": 0.8, "dry_run": False})
    assert applied.status == 200, applied.body
    (merged_group,) = applied.json()["results"]
    assert merged_group["merged"]["id"] == near["id"]
    for source in (same_a, same_b):
        fetched = client.get(f"/v1/memories/{source['id']}").json()
        assert fetched["state"] == "archived" and fetched["superseded_by"] == near["id"]
    again = client.post("/v1/consolidate", json_body={"threshold": 0.8}).json()
    assert again["results"] == []
    read_only = client.as_key(tenant.new_key(read_only=True))
    assert read_only.post("/v1/consolidate", json_body={"dry_run": False}).status == 403
    assert read_only.post("/v1/consolidate", json_body={"dry_run": True}).status == 200


def test_consolidate_exact_duplicates_without_vectors_window(client: LambdaClient) -> None:
    one = _create(client, content="Meeting notes: ship on Friday", key="notes 1")
    two = _create(client, content="Meeting notes: ship on Friday")
    found = client.post("/v1/consolidate", json_body={}).json()["results"]
    assert [(sorted(g["ids"]), g["reason"]) for g in found] == [
        (sorted([one["id"], two["id"]]), "same_content")
    ]
