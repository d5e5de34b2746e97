"""OpenMemory compatibility, on both stores: the requests of OpenMemory's user-management
documentation (shared/seeds/openmemory-user-management.md) replayed as its curl lines and its
Python and TypeScript SDKs send them, answered field for field, errors included."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.kernel.db.engine import transaction
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient

ADD_KEYS = {"id", "primary_sector", "sectors", "chunks"}
MATCH_KEYS = {
    "id",
    "content",
    "score",
    "sectors",
    "primary_sector",
    "path",
    "salience",
    "last_seen_at",
}
ITEM_KEYS = {
    "id",
    "content",
    "tags",
    "metadata",
    "created_at",
    "updated_at",
    "last_seen_at",
    "salience",
    "decay_lambda",
    "primary_sector",
    "version",
}


def _add(client: LambdaClient, content: str, **fields: Any) -> dict[str, Any]:
    reply = client.post("/memory/add", json_body={"content": content, **fields})
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    assert set(body) == ADD_KEYS
    return body


@pytest.fixture
def user_123(client: LambdaClient) -> dict[str, str]:
    """The documentation's two adds for user_123 (Python, then TypeScript), and another user."""
    dark = _add(
        client,
        "User prefers dark mode in applications",
        tags=["preferences", "ui"],
        user_id="user_123",
    )
    course = _add(
        client, "User completed Python course", tags=["learning", "achievement"], user_id="user_123"
    )
    other = _add(client, "User prefers light mode in applications", user_id="user_456")
    return {"dark": dark["id"], "course": course["id"], "other": other["id"]}


def test_add_memory_with_user_id(client: LambdaClient) -> None:
    result = _add(
        client,
        "User prefers dark mode in applications",
        tags=["preferences", "ui"],
        user_id="user_123",
    )
    assert result["primary_sector"] == "semantic" and result["sectors"] == ["semantic"]
    assert result["chunks"] == 1
    stored = client.get(f"/v1/memories/{result['id']}").json()
    assert stored["user_id"] == "user_123" and stored["tags"] == ["preferences", "ui"]
    assert stored["type"] == "note"
    # The same content again is the same memory (Mnemo's dedup), metadata goes through.
    again = _add(
        client,
        "User prefers dark mode in applications",
        tags=["preferences", "ui"],
        user_id="user_123",
    )
    assert again["id"] == result["id"]
    meta = _add(client, "Uses a 4k monitor", metadata={"source": "ide"}, user_id="user_123")
    assert client.get(f"/v1/memories/{meta['id']}").json()["metadata"] == {"source": "ide"}


def test_query_user_memories(client: LambdaClient, user_123: dict[str, str]) -> None:
    reply = client.post(
        "/memory/query",
        json_body={
            "query": "What are the user's preferences?",
            "k": 10,
            "filters": {"user_id": "user_123"},
        },
    )
    assert reply.status == 200, reply.body
    result = reply.json()
    assert set(result) == {"query", "matches"} and result["query"] == (
        "What are the user's preferences?"
    )
    lines = [f"{match['score']:.2f} - {match['content']}" for match in result["matches"]]
    assert lines and lines[0].endswith(" - User prefers dark mode in applications")
    assert {m["id"] for m in result["matches"]} <= {user_123["dark"], user_123["course"]}
    for match in result["matches"]:
        assert set(match) == MATCH_KEYS
        assert 0.0 < match["score"] <= 1.0 and match["path"] == [match["id"]]
        assert match["primary_sector"] == "semantic" and isinstance(match["last_seen_at"], int)

    # The TypeScript SDK's call: om.query('user preferences', {k: 10, filters: {user_id}}).
    ts = client.post(
        "/memory/query",
        json_body={"query": "user preferences", "k": 10, "filters": {"user_id": "user_123"}},
    ).json()
    assert [m["id"] for m in ts["matches"]][:1] == [user_123["dark"]]

    # Best practice 2, the "bad" way: without the user filter, every user's memories.
    everyone = client.post("/memory/query", json_body={"query": "prefers mode"}).json()
    assert {user_123["dark"], user_123["other"]} <= {m["id"] for m in everyone["matches"]}
    assert len(everyone["matches"]) <= 8  # OpenMemory's default k


def test_query_k_min_score_and_sectors(
    client: LambdaClient, user_123: dict[str, str], tenant: Tenant
) -> None:
    one = client.post(
        "/memory/query", json_body={"query": "prefers mode", "k": 1, "filters": {}}
    ).json()
    assert len(one["matches"]) == 1
    strict = client.post(
        "/memory/query", json_body={"query": "prefers mode", "filters": {"min_score": 0.99}}
    ).json()
    assert strict["matches"] == []

    # Sectors: a sector tag files a memory there; a journal entry is episodic.
    how = _add(client, "To deploy, run make release then tag", tags=["procedural"])
    assert how["primary_sector"] == "procedural"
    diary = client.post(
        "/v1/memories", json_body={"content": "Deployed the release today", "type": "journal"}
    ).json()

    def sector_ids(sector: str) -> list[str]:
        reply = client.post(
            "/memory/query", json_body={"query": "deploy release", "filters": {"sector": sector}}
        )
        assert reply.status == 200, reply.body
        return [m["id"] for m in reply.json()["matches"]]

    assert sector_ids("procedural") == [how["id"]]
    assert sector_ids("episodic") == [diary["id"]]
    assert sector_ids("semantic") == []
    assert sector_ids("emotional") == []
    assert sector_ids("no-such-sector") == []


def test_get_user_memories_paginated(client: LambdaClient, user_123: dict[str, str]) -> None:
    # curl -X GET "http://localhost:8080/users/user_123/memories?l=50&u=0"
    reply = client.get("/users/user_123/memories", query={"l": "50", "u": "0"})
    assert reply.status == 200, reply.body
    result = reply.json()
    assert set(result) == {"user_id", "items"} and result["user_id"] == "user_123"
    assert f"User {result['user_id']} has {len(result['items'])} memories" == (
        "User user_123 has 2 memories"
    )
    assert [m["id"] for m in result["items"]] == [user_123["course"], user_123["dark"]]
    for memory in result["items"]:
        assert set(memory) == ITEM_KEYS
        assert f"- {memory['content'][:50]}..."
        assert isinstance(memory["created_at"], int) and memory["version"] == 1
    assert result["items"][1]["tags"] == ["preferences", "ui"]

    # Defaults (l=100, u=0), then one page at a time.
    assert len(client.get("/users/user_123/memories").json()["items"]) == 2
    first = client.get("/users/user_123/memories", query={"l": 1, "u": 0}).json()["items"]
    second = client.get("/users/user_123/memories", query={"l": 1, "u": 1}).json()["items"]
    past = client.get("/users/user_123/memories", query={"l": 1, "u": 2}).json()["items"]
    assert [m["id"] for m in first + second] == [user_123["course"], user_123["dark"]]
    assert past == []

    # An edit shows as a new version.
    client.patch(f"/v1/memories/{user_123['dark']}", json_body={"content": "Dark mode, always"})
    edited = client.get("/users/user_123/memories").json()["items"][1]
    assert edited["version"] == 2 and edited["content"] == "Dark mode, always"


def test_user_not_found_is_an_empty_list(client: LambdaClient) -> None:
    reply = client.get("/users/nonexistent_user/memories")
    assert reply.status == 200
    assert reply.json() == {"user_id": "nonexistent_user", "items": []}


def test_invalid_user_id_is_400_user_id_required(client: LambdaClient) -> None:
    for reply in (
        client.get("/users//memories"),
        client.get("/users/%20/memories"),
        client.get("/users//summary"),
        client.post("/users//summary/regenerate"),
        client.post("/memory/add", json_body={"content": "x", "user_id": ""}),
        client.post("/memory/query", json_body={"query": "x", "filters": {"user_id": " "}}),
    ):
        assert reply.status == 400, reply.body
        assert reply.json() == {"err": "user_id required"}


def test_get_and_regenerate_user_summary(client: LambdaClient, user_123: dict[str, str]) -> None:
    # curl -X GET "http://localhost:8080/users/user_123/summary"
    reply = client.get("/users/user_123/summary")
    assert reply.status == 200, reply.body
    summary = reply.json()
    assert set(summary) == {"user_id", "summary", "reflection_count", "updated_at"}
    assert summary["user_id"] == "user_123" and summary["reflection_count"] == 1
    assert isinstance(summary["updated_at"], int)
    assert "User prefers dark mode in applications." in summary["summary"]
    assert "User completed Python course." in summary["summary"]
    assert "light mode" not in summary["summary"]  # user_456's

    # curl -X POST "http://localhost:8080/users/user_123/summary/regenerate"
    reply = client.post("/users/user_123/summary/regenerate")
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result == {
        "ok": True,
        "user_id": "user_123",
        "summary": summary["summary"],
        "reflection_count": 2,
    }
    assert f"Summary regenerated: {result['ok']}" == "Summary regenerated: True"
    again = client.get("/users/user_123/summary").json()
    assert again["reflection_count"] == 2 and again["updated_at"] >= summary["updated_at"]


def test_errors_take_openmemorys_shape(
    client: LambdaClient, tenant: Tenant, user_123: dict[str, str]
) -> None:
    def err(reply: Any, status: int, code: str) -> dict[str, Any]:
        assert reply.status == status, reply.body
        body: dict[str, Any] = reply.json()
        assert body["err"] == code and set(body) <= {"err", "msg"}
        return body

    assert client.post("/memory/add", json_body={"tags": ["x"]}).json() == {"err": "content"}
    assert client.post("/memory/add", json_body={"content": "  "}).status == 400
    assert client.post("/memory/add").json() == {"err": "content"}
    err(
        client.post("/memory/add", body="{not json", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    err(client.post("/memory/add", json_body={"content": "x", "tags": "ui"}), 400, "tags")
    err(client.post("/memory/add", json_body={"content": "x", "metadata": []}), 400, "metadata")
    err(client.post("/memory/add", json_body={"content": "x" * 70_000}), 413, "content_too_large")
    err(client.post("/memory/query", json_body={"k": 3}), 400, "query")
    err(client.post("/memory/query", json_body={"query": "x", "k": "ten"}), 400, "k")
    err(client.get("/users/user_123/memories", query={"l": "ten"}), 400, "invalid_pagination")
    err(client.get("/users/user_123/memories", query={"u": "-1"}), 400, "invalid_pagination")
    assert client.get("/users/nobody/summary").json() == {"err": "user not found"}
    assert client.get("/users/nobody/summary").status == 404
    assert client.post("/users/nobody/summary/regenerate").json() == {"err": "user not found"}

    # Same bearer keys as /v1.
    missing = err(client.as_key(None).get("/users/user_123/memories"), 401, "missing_credentials")
    assert missing["msg"]
    err(
        client.as_key("mnemo_wrong").post("/memory/add", json_body={"content": "x"}),
        401,
        "invalid_key",
    )
    reader = client.as_key(tenant.new_key(read_only=True))
    err(reader.post("/memory/add", json_body={"content": "x"}), 403, "read_only_key")
    err(reader.post("/users/user_123/summary/regenerate"), 403, "read_only_key")
    assert reader.get("/users/user_123/memories").status == 200


def test_a_user_scoped_key_sees_only_its_user(
    client: LambdaClient, tenant: Tenant, user_123: dict[str, str]
) -> None:
    as_456 = client.as_key(tenant.new_key(user_id="user_456"))
    assert as_456.get("/users/user_123/memories").json() == {"user_id": "user_123", "items": []}
    assert as_456.get("/users/user_123/summary").json() == {"err": "user not found"}
    found = as_456.post("/memory/query", json_body={"query": "prefers mode", "k": 10}).json()
    assert [m["id"] for m in found["matches"]] == [user_123["other"]]
    denied = as_456.post("/memory/add", json_body={"content": "x", "user_id": "user_123"})
    assert denied.status == 403 and denied.json()["err"] == "user_scope_mismatch"
    mine = as_456.post("/memory/add", json_body={"content": "User likes tea"}).json()
    assert client.get(f"/v1/memories/{mine['id']}").json()["user_id"] == "user_456"


def test_an_unexpected_error_is_a_500_err_internal(
    client: LambdaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.memory import openmemory

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(openmemory, "user_memories", boom)
    reply = client.get("/users/user_123/memories")
    assert reply.status == 500 and reply.json() == {"err": "internal"}


def test_archived_and_deleted_memories_are_not_listed(
    client: LambdaClient, user_123: dict[str, str], engine: Engine, tenant: Tenant
) -> None:
    client.post(f"/v1/memories/{user_123['course']}/archive")
    items = client.get("/users/user_123/memories").json()["items"]
    assert [m["id"] for m in items] == [user_123["dark"]]
    with transaction(engine, write=False) as conn:
        users = conn.execute(
            text("SELECT user_id FROM users WHERE brain_id = :b ORDER BY user_id"),
            {"b": tenant.brain_id},
        ).scalars()
        assert list(users) == ["user_123", "user_456"]
