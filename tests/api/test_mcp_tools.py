"""The MCP tools through the Lambda handler, on both stores: each answers what its REST twin
answers, arguments are checked as REST checks them, read-only callers cannot write, and a call
never reaches past its brain or its user."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_mcp import ALL_TOOLS, MODERN, WRITE_TOOLS, Mcp
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient


@pytest.fixture
def mcp(client: LambdaClient) -> Mcp:
    return Mcp(client)


def _without_access(page: dict[str, Any]) -> dict[str, Any]:
    """A search counts its hits as accessed, so two searches differ only in those counters."""
    for hit in page["results"]:
        hit["memory"].pop("access_count")
        hit["memory"].pop("last_accessed_at")
    return page


@pytest.mark.parametrize("version", ["2025-11-25", MODERN])
def test_each_tool_answers_what_its_rest_twin_answers(client: LambdaClient, version: str) -> None:
    mcp = Mcp(client, version)
    saved = mcp.ok("save", {"content": "Ada drinks green tea", "user_id": "ada", "tags": ["tea"]})
    rest_saved = client.get(f"/v1/memories/{saved['id']}").json()
    assert mcp.ok("get", {"id": saved["id"]}) == rest_saved
    again = mcp.ok("save", {"content": "Ada drinks green tea", "user_id": "ada", "tags": ["tea"]})
    assert again["id"] == saved["id"] and again["deduplicated"] is True

    mcp.ok("save", {"content": "Europe/Paris", "type": "fact", "key": "tz", "user_id": "ada"})
    assert (
        mcp.ok("get_fact", {"key": "tz", "user_id": "ada"})
        == client.get("/v1/facts/tz", query={"user_id": "ada"}).json()
    )

    batch = {"memories": [{"content": "Grace codes in COBOL", "user_id": "grace"}]}
    made = mcp.ok("save_batch", batch)["results"]
    assert [m["content"] for m in made] == ["Grace codes in COBOL"]

    query = {"query": "green tea", "limit": 5, "explain": True}
    via_mcp = _without_access(mcp.ok("search", query))
    via_rest = _without_access(client.post("/v1/search", query).json())
    assert via_mcp["results"][0]["memory"]["id"] == saved["id"]
    assert [h["memory"] for h in via_mcp["results"]] == [h["memory"] for h in via_rest["results"]]
    assert [h["score"] for h in via_mcp["results"]] == pytest.approx(
        [h["score"] for h in via_rest["results"]], abs=0.05
    )

    packed = mcp.ok("context", {"query": "what does Ada drink?", "max_tokens": 200})
    assert packed.keys() == client.post("/v1/context", {"query": "Ada"}).json().keys()
    assert saved["id"] in {c["id"] for c in packed["citations"]}

    listing = {"user_id": "ada", "tag": ["tea"], "include_total": True}
    assert mcp.ok("list", listing) == client.get("/v1/memories", query=listing).json()
    assert (
        mcp.ok("user_memories", {"user_id": "grace"})
        == client.get("/v1/users/grace/memories").json()
    )

    patched = mcp.ok("update", {"id": saved["id"], "content": "Ada drinks jasmine tea"})
    assert patched == client.get(f"/v1/memories/{saved['id']}").json()
    assert mcp.ok("archive", {"id": saved["id"]})["state"] == "archived"
    assert mcp.ok("restore", {"id": saved["id"]})["state"] == "active"
    assert mcp.ok("delete", {"id": saved["id"], "actor_id": "agent-7"})["state"] == "deleted"
    history = mcp.ok("history", {"id": saved["id"]})
    assert history == client.get(f"/v1/memories/{saved['id']}/history").json()
    assert [h["event"] for h in history["results"]] == [
        "ADD",
        "UPDATE",
        "ARCHIVE",
        "RESTORE",
        "DELETE",
    ]
    assert history["results"][-1]["actor_id"] == "agent-7"

    feed = mcp.ok("changelog", {"limit": 100})
    assert feed == client.get("/v1/changelog", query={"limit": 100}).json()
    assert mcp.ok("purge", {"id": saved["id"], "confirm": True}) == {
        "id": saved["id"],
        "purged": True,
    }
    assert client.get(f"/v1/memories/{saved['id']}").status == 404
    assert mcp.fails("get", {"id": saved["id"]}) == "memory_not_found"


def test_arguments_are_checked_as_rest_checks_them(mcp: Mcp) -> None:
    is_error, value = mcp.call("save", {"content": "", "confidence": 3, "bogus": 1})
    assert is_error and value["error"]["code"] == "invalid_input"
    fields = {d["field"] for d in value["error"]["details"]}
    assert fields == {"content", "confidence", "bogus"}
    is_error, value = mcp.call("update", {"content": "x"})
    assert is_error and value["error"]["details"][0] == {
        "field": "id",
        "message": "Field required",
        "type": "string_type",
    }
    assert mcp.fails("get", {"id": "   "}) == "invalid_input"
    assert mcp.fails("purge", {"id": "x", "confirm": False}) == "invalid_input"
    assert mcp.fails("update", {"id": "nope", "content": "x"}) == "memory_not_found"
    assert mcp.fails("save", {"content": "x", "type": "fact"}) == "invalid_input"
    assert mcp.fails("save_batch", {"memories": [{"content": "ok"}, {"nope": 1}]}) == (
        "invalid_batch"
    )
    assert mcp.ok("list")["results"] == []  # the failed batch saved nothing
    # What is wrong with the request itself, rather than the tool's input, is a protocol error.
    params: dict[str, Any]
    for params in (
        {"name": "no_such_tool", "arguments": {}},
        {"name": "get", "arguments": ["id"]},
        {"arguments": {}},
    ):
        status, error = mcp.error("tools/call", params)
        assert (status, error["code"]) == (200, -32602), params


def test_a_read_only_key_sees_no_write_tools_and_cannot_call_them(
    client: LambdaClient, tenant: Tenant
) -> None:
    kept = Mcp(client).ok("save", {"content": "written with the full key"})
    reader = Mcp(client.as_key(tenant.new_key(read_only=True)))
    visible = [t["name"] for t in reader.tools()]
    assert visible == [n for n in ALL_TOOLS if n not in WRITE_TOOLS]
    assert {"search", "context", "get", "list", "history", "changelog"} <= set(visible)
    for name, arguments in (
        ("save", {"content": "sneaky"}),
        ("save_batch", {"memories": [{"content": "sneaky"}]}),
        ("update", {"id": kept["id"], "content": "changed"}),
        ("archive", {"id": kept["id"]}),
        ("delete", {"id": kept["id"]}),
        ("restore", {"id": kept["id"]}),
        ("purge", {"id": kept["id"], "confirm": True}),
        ("regenerate_summary", {"user_id": "anyone"}),
        ("update", {}),  # refused before its arguments are even looked at
    ):
        assert reader.fails(name, arguments) == "read_only_key", name
    after = client.get(f"/v1/memories/{kept['id']}").json()
    assert (after["content"], after["state"]) == ("written with the full key", "active")
    assert [m["id"] for m in client.get("/v1/memories").json()["results"]] == [kept["id"]]
    assert [h["memory"]["id"] for h in reader.ok("search", {"query": "written"})["results"]] == [
        kept["id"]
    ]


def test_a_call_never_reaches_another_brain(
    client: LambdaClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = Mcp(client)
    secret = mine.ok(
        "save",
        {"content": "the vault code is 0451", "type": "fact", "key": "vault", "user_id": "ada"},
    )
    before = client.get(f"/v1/memories/{secret['id']}").json()
    theirs = Mcp(client.as_key(other_tenant.key))
    for name, arguments in (
        ("get", {"id": secret["id"]}),
        ("update", {"id": secret["id"], "content": "overwritten"}),
        ("archive", {"id": secret["id"]}),
        ("restore", {"id": secret["id"]}),
        ("delete", {"id": secret["id"]}),
        ("purge", {"id": secret["id"], "confirm": True}),
        ("history", {"id": secret["id"]}),
    ):
        assert theirs.fails(name, arguments) == "memory_not_found", name
    assert theirs.fails("get_fact", {"key": "vault", "user_id": "ada"}) == "fact_not_found"
    assert theirs.fails("user_summary", {"user_id": "ada"}) == "user_not_found"
    assert theirs.fails("regenerate_summary", {"user_id": "ada"}) == "user_not_found"
    assert theirs.ok("digest")["memory_count"] == 0
    assert theirs.ok("search", {"query": "vault code 0451"})["results"] == []
    assert theirs.ok("context", {"query": "vault code"})["citations"] == []
    assert theirs.ok("list", {"state": "all"})["results"] == []
    assert theirs.ok("changelog")["results"] == []
    # Nothing they tried changed anything here.
    assert client.get(f"/v1/memories/{secret['id']}").json() == before
    assert len(mine.ok("history", {"id": secret["id"]})["results"]) == 1
    assert len(mine.ok("changelog")["results"]) == 1


def test_a_user_scoped_key_stays_with_its_user(client: LambdaClient, tenant: Tenant) -> None:
    brain = Mcp(client)
    ada = brain.ok("save", {"content": "Ada likes rowing", "user_id": "ada"})
    bob = brain.ok("save", {"content": "Bob likes rowing too", "user_id": "bob"})
    brain.ok("save", {"content": "Bob is in Oslo", "type": "fact", "key": "city", "user_id": "bob"})
    as_ada = Mcp(client.as_key(tenant.new_key(user_id="ada")))
    assert [m["id"] for m in as_ada.ok("list")["results"]] == [ada["id"]]
    assert [h["memory"]["id"] for h in as_ada.ok("search", {"query": "rowing"})["results"]] == [
        ada["id"]
    ]
    assert as_ada.ok("user_memories", {"user_id": "bob"})["results"] == []
    assert as_ada.fails("get", {"id": bob["id"]}) == "memory_not_found"
    assert as_ada.fails("delete", {"id": bob["id"]}) == "memory_not_found"
    assert as_ada.fails("get_fact", {"key": "city", "user_id": "bob"}) == "fact_not_found"
    assert as_ada.fails("user_summary", {"user_id": "bob"}) == "user_not_found"
    assert as_ada.ok("user_summary", {"user_id": "ada"})["user_id"] == "ada"
    assert as_ada.ok("digest")["memory_count"] == 1
    assert as_ada.fails("save", {"content": "x", "user_id": "bob"}) == "user_scope_mismatch"
    assert as_ada.ok("save", {"content": "Ada rows on Sundays"})["user_id"] == "ada"
    assert {e["user_id"] for e in as_ada.ok("changelog")["results"]} == {"ada"}
    assert client.get(f"/v1/memories/{bob['id']}").json()["state"] == "active"


def test_valid_time_and_contradictions_through_the_tools(client: LambdaClient, mcp: Mcp) -> None:
    fact = {"type": "fact", "key": "home city", "user_id": "alice"}
    lyon = mcp.ok("save", {"content": "Alice lives in Lyon", "valid_from": "2024-01-01", **fact})
    mcp.ok("save", {"content": "Alice lives in Paris", "valid_from": "2025-06-01", **fact})
    then = {"query": "where does alice live", "user_id": "alice", "as_of": "2025-01-01"}
    assert mcp.ok("search", then)["results"][0]["memory"]["id"] == lyon["id"]
    assert "Lyon" in mcp.ok("context", then)["text"]
    was = mcp.ok("get_fact", {"key": "home city", "user_id": "alice", "as_of": "2025-01-01"})
    assert (
        was
        == client.get(
            "/v1/facts/home city", query={"user_id": "alice", "as_of": "2025-01-01"}
        ).json()
    )
    listed = mcp.ok("list", {"user_id": "alice", "as_of": "2025-01-01"})
    assert [m["id"] for m in listed["results"]] == [lyon["id"]]
    summary = mcp.ok("user_summary", {"user_id": "alice", "as_of": "2025-01-01"})
    assert "Lyon" in summary["summary"] and "Paris" not in summary["summary"]
    # What the store held when only Lyon had been saved (Paris came after, in a later call).
    known = mcp.ok("user_summary", {"user_id": "alice", "known_at": lyon["created_at"]})
    assert known["known_at"] == lyon["created_at"]
    assert "Lyon" in known["summary"] and "Paris" not in known["summary"]

    first = mcp.ok("save", {"content": "Dana is allergic to peanuts", "user_id": "dana"})
    second = mcp.ok("save", {"content": "Dana is not allergic to peanuts", "user_id": "dana"})
    assert [c["with_id"] for c in second["conflicts"]] == [first["id"]]
