"""Memories through the Lambda handler, on both stores: every operation, filter and rule."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import text

from core.kernel.config import Settings
from tests.conftest import Tenant, embeds_during
from tests.lambda_client import LambdaClient


def _create(client: LambdaClient, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/memories", json_body=fields)
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.json()
    return body


def _history(client: LambdaClient, memory_id: str) -> list[dict[str, Any]]:
    reply = client.get(f"/v1/memories/{memory_id}/history")
    assert reply.status == 200, reply.body
    rows: list[dict[str, Any]] = reply.json()["results"]
    return rows


def _changelog(client: LambdaClient, **query: Any) -> list[dict[str, Any]]:
    reply = client.get("/v1/changelog", query=query)
    assert reply.status == 200, reply.body
    rows: list[dict[str, Any]] = reply.json()["results"]
    return rows


def test_create_returns_every_field_with_defaults(client: LambdaClient) -> None:
    memory = _create(client, content="  Alice prefers green tea  ", tags=["Drinks", " drinks "])
    assert memory["content"] == "Alice prefers green tea"
    assert memory["type"] == "note"
    assert memory["tags"] == ["drinks"]
    assert (memory["confidence"], memory["importance"]) == (0.7, 0.5)
    assert memory["metadata"] == {}
    assert memory["state"] == "active"
    assert memory["deduplicated"] is False
    assert memory["created_at"] == memory["updated_at"]
    assert memory["created_at"].endswith("Z")
    assert memory["access_count"] == 0 and memory["last_accessed_at"] is None
    for name in ("user_id", "agent_id", "run_id", "title", "key", "source", "archived_at"):
        assert memory[name] is None
    fetched = client.get(f"/v1/memories/{memory['id']}").json()
    assert fetched == {k: v for k, v in memory.items() if k not in ("deduplicated", "gate")}


def test_create_with_all_fields(client: LambdaClient) -> None:
    memory = _create(
        client,
        content="Shipped v2 of the billing service",
        type="journal",
        title="Billing v2",
        tags=["work", "billing"],
        source="slack",
        confidence=0.9,
        importance=0.8,
        metadata={"channel": "#eng", "n": 3},
        user_id="u1",
        agent_id="agent-7",
        run_id="run-42",
        occurred_at="2026-03-01T10:00:00Z",
    )
    assert memory["type"] == "journal"
    assert memory["title"] == "Billing v2"
    assert memory["metadata"] == {"channel": "#eng", "n": 3}
    assert (memory["user_id"], memory["agent_id"], memory["run_id"]) == ("u1", "agent-7", "run-42")
    assert memory["occurred_at"] == "2026-03-01T10:00:00.000Z"


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"content": ""}, 422, "content"),
        ({"content": "x", "type": "dream"}, 422, "type"),
        ({"content": "x", "type": "fact"}, 422, "key"),
        ({"content": "x", "confidence": -0.1}, 422, "confidence"),
        ({"content": "x", "importance": 1.5}, 422, "importance"),
        ({"content": "x", "metadata": [1]}, 422, "metadata"),
        ({"content": "x", "tags": [""]}, 422, "tags"),
        ({"content": "x", "tags": ["t" * 65]}, 422, "tags.0"),
        ({"content": "x", "tags": [f"t{i}" for i in range(65)]}, 422, "tags"),
        ({"content": "x" * (64 * 1024 + 1)}, 413, "content"),
        ({"content": "x", "metadata": {"k": "v" * (16 * 1024)}}, 413, "metadata"),
        ({}, 422, "content"),
    ],
)
def test_invalid_memories_are_refused_with_the_field(
    client: LambdaClient, fields: dict[str, Any], status: int, field: str
) -> None:
    reply = client.post("/v1/memories", json_body=fields)
    assert reply.status == status, reply.body
    details = reply.json()["error"]["details"]
    named = details["field"] if isinstance(details, dict) else details[0]["field"]
    assert named == field
    assert client.get("/v1/memories").json()["results"] == []


def test_limits_are_configurable(settings: Settings, tenant: Tenant) -> None:
    from core.kernel.config import Limits

    tight = LambdaClient(settings.with_(limits=Limits(content_bytes=10, tags=1)), key=tenant.key)
    assert tight.post("/v1/memories", json_body={"content": "0123456789"}).status == 201
    assert tight.post("/v1/memories", json_body={"content": "0123456789a"}).status == 413
    assert tight.post("/v1/memories", json_body={"content": "y", "tags": ["a", "b"]}).status == 422


def test_exact_duplicate_returns_the_existing_memory(client: LambdaClient) -> None:
    first = _create(client, content="The deploy key lives in vault", user_id="u1")
    again = client.post(
        "/v1/memories", json_body={"content": "The deploy key lives in vault", "user_id": "u1"}
    )
    assert again.status == 200
    assert again.json()["id"] == first["id"] and again.json()["deduplicated"] is True
    other_user = _create(client, content="The deploy key lives in vault", user_id="u2")
    no_user = _create(client, content="The deploy key lives in vault")
    assert len({first["id"], other_user["id"], no_user["id"]}) == 3
    assert len(_history(client, first["id"])) == 1
    # An archived memory is not a duplicate: saving the content again makes a new one.
    client.post(f"/v1/memories/{first['id']}/archive")
    assert (
        _create(client, content="The deploy key lives in vault", user_id="u1")["id"] != first["id"]
    )


def test_a_new_fact_supersedes_the_current_one(client: LambdaClient, tenant: Tenant) -> None:
    old = _create(
        client, type="fact", key="home city", content="Alice lives in Paris", user_id="alice"
    )
    other = _create(
        client, type="fact", key="home city", content="Bob lives in Rome", user_id="bob"
    )
    new = _create(
        client, type="fact", key="home  city", content="Alice lives in Lyon", user_id="alice"
    )

    old_now = client.get(f"/v1/memories/{old['id']}").json()
    assert old_now["state"] == "archived" and old_now["superseded_by"] == new["id"]
    assert old_now["archived_at"] is not None
    assert client.get(f"/v1/memories/{other['id']}").json()["state"] == "active"

    current = client.get("/v1/facts/home city", query={"user_id": "alice"})
    assert current.status == 200 and current.json()["id"] == new["id"]
    assert client.get("/v1/facts/home city", query={"user_id": "bob"}).json()["id"] == other["id"]
    assert client.get("/v1/facts/home city").status == 404
    assert client.get("/v1/facts/nothing").json()["error"]["code"] == "fact_not_found"

    old_history = _history(client, old["id"])
    assert [h["event"] for h in old_history] == ["ADD", "ARCHIVE"]
    assert old_history[1]["detail"] == {
        "reason": "superseded",
        "superseded_by": new["id"],
        "from": "active",
    }
    new_history = _history(client, new["id"])
    assert [h["event"] for h in new_history] == ["ADD"]
    assert new_history[0]["detail"] == {"supersedes": old["id"]}

    with tenant.engine.connect() as conn:
        links = conn.execute(
            text("SELECT from_id, to_id, relation FROM memory_links WHERE brain_id = :b"),
            {"b": tenant.brain_id},
        ).all()
    assert [tuple(link) for link in links] == [(new["id"], old["id"], "supersedes")]
    events = [e["event_type"] for e in _changelog(client)]
    assert events.count("memory.superseded") == 1

    # The same fact again is a duplicate, not a new version.
    again = client.post(
        "/v1/memories",
        json_body={
            "type": "fact",
            "key": "home city",
            "content": "Alice lives in Lyon",
            "user_id": "alice",
        },
    )
    assert again.status == 200 and again.json()["id"] == new["id"]


def test_history_rows_have_mem0_semantics(client: LambdaClient) -> None:
    memory = _create(client, content="v1", actor_id="alice", role="user")
    mid = memory["id"]
    assert (
        client.patch(f"/v1/memories/{mid}", json_body={"content": "v2", "role": "assistant"}).status
        == 200
    )
    assert (
        client.post(f"/v1/memories/{mid}/archive", json_body={"actor_id": "janitor"}).status == 200
    )
    assert client.post(f"/v1/memories/{mid}/restore").status == 200
    assert client.delete(f"/v1/memories/{mid}").status == 200
    rows = _history(client, mid)
    expected = [
        ("ADD", None, "v1", "alice", "user", False),
        ("UPDATE", "v1", "v2", None, "assistant", False),
        ("ARCHIVE", "v2", "v2", "janitor", None, False),
        ("RESTORE", "v2", "v2", None, None, False),
        ("DELETE", "v2", None, None, None, True),
    ]
    got = [
        (r["event"], r["old_memory"], r["new_memory"], r["actor_id"], r["role"], r["is_deleted"])
        for r in rows
    ]
    key_principal = rows[1]["actor_id"]
    assert key_principal is not None and key_principal.startswith("key:")
    assert got == [
        (e, o, n, a if a is not None else key_principal, role, d)
        for e, o, n, a, role, d in expected
    ]
    assert rows[1]["detail"] == {"changed": ["content"]}
    assert rows[2]["detail"] == {"from": "active", "to": "archived"}
    assert all(r["memory_id"] == mid for r in rows)
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)
    assert set(rows[0]) == {
        "id",
        "memory_id",
        "event",
        "old_memory",
        "new_memory",
        "detail",
        "actor_id",
        "role",
        "is_deleted",
        "created_at",
        "updated_at",
    }


def test_patch_fields_and_metadata_modes(client: LambdaClient) -> None:
    memory = _create(client, content="c", tags=["a"], metadata={"x": 1, "y": 2}, title="t")
    mid = memory["id"]
    merged = client.patch(f"/v1/memories/{mid}", json_body={"metadata": {"y": None, "z": 3}}).json()
    assert merged["metadata"] == {"x": 1, "z": 3}
    replaced = client.patch(
        f"/v1/memories/{mid}", json_body={"metadata": {"only": True}, "metadata_mode": "replace"}
    ).json()
    assert replaced["metadata"] == {"only": True}
    updated = client.patch(
        f"/v1/memories/{mid}",
        json_body={
            "tags": ["B", "c"],
            "title": None,
            "source": "email",
            "confidence": 0.2,
            "importance": 1,
        },
    ).json()
    assert updated["tags"] == ["b", "c"] and updated["title"] is None
    assert (updated["source"], updated["confidence"], updated["importance"]) == ("email", 0.2, 1.0)
    assert updated["updated_at"] >= memory["updated_at"]
    assert client.get("/v1/memories", query={"tag": "a"}).json()["results"] == []
    assert [m["id"] for m in client.get("/v1/memories", query={"tag": "b"}).json()["results"]] == [
        mid
    ]


def test_patch_refusals(client: LambdaClient) -> None:
    a = _create(client, content="alpha")
    _create(client, content="beta")
    assert (
        client.patch(f"/v1/memories/{a['id']}", json_body={}).json()["error"]["code"]
        == "empty_patch"
    )
    assert client.patch(f"/v1/memories/{a['id']}", json_body={"content": None}).status == 422
    assert client.patch(f"/v1/memories/{a['id']}", json_body={"confidence": 7}).status == 422
    dup = client.patch(f"/v1/memories/{a['id']}", json_body={"content": "beta"})
    assert dup.status == 409 and dup.json()["error"]["code"] == "duplicate_content"
    client.delete(f"/v1/memories/{a['id']}")
    gone = client.patch(f"/v1/memories/{a['id']}", json_body={"content": "gamma"})
    assert gone.status == 409 and gone.json()["error"]["code"] == "memory_deleted"
    assert client.patch("/v1/memories/nope", json_body={"content": "x"}).status == 404


def test_state_changes_are_idempotent_and_restore_checks_conflicts(client: LambdaClient) -> None:
    m = _create(client, content="keep me")
    mid = m["id"]
    archived = client.post(f"/v1/memories/{mid}/archive").json()
    assert archived["state"] == "archived"
    assert client.post(f"/v1/memories/{mid}/archive").json()["updated_at"] == archived["updated_at"]
    deleted = client.delete(f"/v1/memories/{mid}").json()
    assert deleted["state"] == "deleted" and deleted["deleted_at"] is not None
    # The same content saved while it was deleted: restoring would duplicate it.
    twin = _create(client, content="keep me")
    conflict = client.post(f"/v1/memories/{mid}/restore")
    assert (
        conflict.status == 409 and conflict.json()["error"]["details"]["existing_id"] == twin["id"]
    )
    client.delete(f"/v1/memories/{twin['id']}")
    restored = client.post(f"/v1/memories/{mid}/restore").json()
    assert restored["state"] == "active" and restored["deleted_at"] is None
    assert len(_history(client, mid)) == 4  # ADD ARCHIVE DELETE RESTORE


def test_restoring_a_superseded_fact_needs_the_key_free(client: LambdaClient) -> None:
    old = _create(client, type="fact", key="k", content="one")
    new = _create(client, type="fact", key="k", content="two")
    refused = client.post(f"/v1/memories/{old['id']}/restore")
    assert refused.status == 409 and refused.json()["error"]["code"] == "fact_key_taken"
    client.post(f"/v1/memories/{new['id']}/archive")
    back = client.post(f"/v1/memories/{old['id']}/restore").json()
    assert back["state"] == "active" and back["superseded_by"] is None
    assert client.get("/v1/facts/k").json()["id"] == old["id"]


def test_purge_erases_content_everywhere(client: LambdaClient, tenant: Tenant) -> None:
    secret = "my password is hunter2"
    m = _create(client, content=secret, tags=["s"])
    mid = m["id"]
    refused = client.post(f"/v1/memories/{mid}/purge", json_body={"confirm": False})
    assert refused.status == 422 and refused.json()["error"]["details"]["field"] == "confirm"
    assert client.post(f"/v1/memories/{mid}/purge", json_body={}).status == 422
    assert client.post(f"/v1/memories/{mid}/purge", json_body={"confirm": True}).json() == {
        "id": mid,
        "purged": True,
    }
    assert client.get(f"/v1/memories/{mid}").status == 404
    assert client.get(f"/v1/memories/{mid}/history").status == 404
    feed = _changelog(client)
    assert [e["event_type"] for e in feed] == ["memory.created", "memory.purged"]
    assert all("hunter2" not in str(e) for e in feed)
    with tenant.engine.connect() as conn:
        for table in ("memories", "memory_history", "memory_tags"):
            column = "id" if table == "memories" else "memory_id"
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :m"), {"m": mid}
            )
            assert count.scalar() == 0


def test_batch_is_all_or_nothing_with_indexed_errors(client: LambdaClient) -> None:
    items = [{"content": f"item {i}", "tags": ["batch"]} for i in range(5)]
    items[3] = {"content": "bad", "importance": 9}
    items[4] = {"content": "fact without key", "type": "fact"}
    reply = client.post("/v1/memories/batch", json_body={"memories": items})
    assert reply.status == 422 and reply.json()["error"]["code"] == "invalid_batch"
    errors = reply.json()["error"]["details"]["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [
        (3, "memories.3.importance"),
        (4, "memories.4.key"),
    ]
    assert client.get("/v1/memories").json()["results"] == []

    good = [{"content": f"item {i}"} for i in range(3)] + [{"content": "item 0"}]
    reply = client.post("/v1/memories/batch", json_body={"memories": good})
    assert reply.status == 201
    results = reply.json()["results"]
    assert [r["content"] for r in results] == ["item 0", "item 1", "item 2", "item 0"]
    assert results[3]["id"] == results[0]["id"] and results[3]["deduplicated"] is True


def test_batch_limits(settings: Settings, tenant: Tenant) -> None:
    from core.kernel.config import Limits

    small = LambdaClient(settings.with_(limits=Limits(batch_items=3)), key=tenant.key)
    reply = small.post(
        "/v1/memories/batch", json_body={"memories": [{"content": str(i)} for i in range(4)]}
    )
    assert reply.status == 413 and reply.json()["error"]["code"] == "batch_too_large"
    assert small.post("/v1/memories/batch", json_body={"memories": []}).status == 422


def test_list_filters(client: LambdaClient) -> None:
    a = _create(
        client, content="a", type="note", tags=["x", "y"], user_id="u1", agent_id="ag1", source="s1"
    )
    b = _create(client, content="b", type="fact", key="kb", tags=["x"], user_id="u2", run_id="r1")
    c = _create(client, content="c", type="journal", tags=["y"], source="s2")
    d = _create(client, content="d")
    client.post(f"/v1/memories/{d['id']}/archive")

    def ids(**query: Any) -> list[str]:
        reply = client.get("/v1/memories", query=query)
        assert reply.status == 200, reply.body
        return [m["id"] for m in reply.json()["results"]]

    assert ids() == [c["id"], b["id"], a["id"]]  # newest first, active only
    assert ids(type="fact") == [b["id"]]
    assert ids(tag="x") == [b["id"], a["id"]]
    assert ids(tag="x,y") == [c["id"], b["id"], a["id"]]
    assert ids(tag=["x", "y"], tag_mode="all") == [a["id"]]
    assert ids(user_id="u1") == [a["id"]]
    assert ids(agent_id="ag1") == [a["id"]]
    assert ids(run_id="r1") == [b["id"]]
    assert ids(source="s2") == [c["id"]]
    assert ids(state="archived") == [d["id"]]
    assert ids(state="all") == [d["id"], c["id"], b["id"], a["id"]]
    assert ids(created_after=b["created_at"]) == [c["id"], b["id"]]
    assert ids(created_before=b["created_at"]) == [a["id"]]
    assert ids(updated_after=d["created_at"], state="all") == [d["id"]]
    assert ids(updated_before="2000-01-01T00:00:00Z") == []
    for bad in ({"state": "gone"}, {"type": "x"}, {"limit": 0}, {"limit": 501}, {"cursor": "!!"}):
        reply = client.get("/v1/memories", query=bad)
        assert reply.status == 422, (bad, reply.body)


def test_cursor_pagination_and_total(client: LambdaClient) -> None:
    batch = client.post(
        "/v1/memories/batch", json_body={"memories": [{"content": f"m{i}"} for i in range(7)]}
    ).json()["results"]
    expected = [m["id"] for m in reversed(batch)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 3, "include_total": "true"}
        if cursor:
            query["cursor"] = cursor
        page = client.get("/v1/memories", query=query).json()
        assert page["total"] == 7
        seen += [m["id"] for m in page["results"]]
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == expected and pages == 3
    assert "total" not in client.get("/v1/memories").json()


def test_one_tag_pages_newest_first_through_retags_and_state(client: LambdaClient) -> None:
    """A single-tag list is read off the tag's own index: paging, totals, a memory retagged
    after it was created, and filters on the memory itself must all still hold."""
    batch = client.post(
        "/v1/memories/batch",
        json_body={
            "memories": [
                {"content": f"m{i}", "tags": ["t"] if i % 2 == 0 else ["other"]} for i in range(9)
            ]
        },
    ).json()["results"]
    # m1 gains the tag later: it must be listed at its creation time, not its retag time.
    client.patch(f"/v1/memories/{batch[1]['id']}", json_body={"tags": ["t", "other"]})
    client.post(f"/v1/memories/{batch[4]['id']}/archive")
    tagged = [0, 1, 2, 6, 8]
    expected = [batch[i]["id"] for i in reversed(tagged)]
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"tag": "t", "limit": 2, "include_total": "true"}
        if cursor:
            query["cursor"] = cursor
        page = client.get("/v1/memories", query=query).json()
        assert page["total"] == len(tagged)
        seen += [m["id"] for m in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    archived = client.get("/v1/memories", query={"tag": "t", "state": "archived"}).json()
    assert [m["id"] for m in archived["results"]] == [batch[4]["id"]]


def test_users_get_a_row_and_a_memories_page(client: LambdaClient, tenant: Tenant) -> None:
    for i in range(3):
        _create(client, content=f"u1 note {i}", user_id="u1")
    _create(client, content="u2 note", user_id="u2")
    page = client.get("/v1/users/u1/memories", query={"limit": 2}).json()
    assert page["user_id"] == "u1" and len(page["results"]) == 2 and page["next_cursor"]
    rest = client.get("/v1/users/u1/memories", query={"cursor": page["next_cursor"]}).json()
    assert [m["content"] for m in page["results"] + rest["results"]] == [
        "u1 note 2",
        "u1 note 1",
        "u1 note 0",
    ]
    with tenant.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT user_id, reflection_count FROM users WHERE brain_id = :b ORDER BY user_id"
            ),
            {"b": tenant.brain_id},
        ).all()
    assert [tuple(r) for r in rows] == [("u1", 0), ("u2", 0)]


def test_changelog_feed(client: LambdaClient) -> None:
    m = _create(client, content="watch this", type="fact", key="topic")
    client.patch(f"/v1/memories/{m['id']}", json_body={"tags": ["t"]})
    client.post(f"/v1/memories/{m['id']}/archive")
    client.post(f"/v1/memories/{m['id']}/restore")
    client.delete(f"/v1/memories/{m['id']}")
    feed = _changelog(client)
    assert [e["event_type"] for e in feed] == [
        "memory.created",
        "memory.updated",
        "memory.archived",
        "memory.restored",
        "memory.deleted",
    ]
    assert feed[0]["summary"] == "Added fact 'topic': watch this"
    assert feed[0]["payload"] == {"type": "fact", "key": "topic", "tags": []}
    assert all(e["entity_id"] == m["id"] and e["entity_type"] == "memory" for e in feed)
    assert [e["event_type"] for e in _changelog(client, event_type="memory.archived")] == [
        "memory.archived"
    ]
    assert _changelog(client, since=feed[-1]["created_at"])[-1]["id"] == feed[-1]["id"]
    first = client.get("/v1/changelog", query={"limit": 2}).json()
    second = client.get("/v1/changelog", query={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in first["results"] + second["results"]] == [e["id"] for e in feed[:4]]


def test_a_failure_between_memory_and_history_leaves_nothing(
    client: LambdaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.events import history

    def fail(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(history, "entry", fail)  # the row is built after the memory is written
    assert client.post("/v1/memories", json_body={"content": "half written?"}).status == 500
    assert (
        client.post(
            "/v1/memories/batch", json_body={"memories": [{"content": "one"}, {"content": "two"}]}
        ).status
        == 500
    )
    monkeypatch.undo()
    assert client.get("/v1/memories", query={"state": "all"}).json()["results"] == []
    assert _changelog(client) == []
    m = _create(client, content="now it works")
    assert [h["event"] for h in _history(client, m["id"])] == ["ADD"]


def test_timestamps_move_forward(client: LambdaClient) -> None:
    m = _create(client, content="tick")
    time.sleep(0.005)
    later = client.patch(f"/v1/memories/{m['id']}", json_body={"content": "tock"}).json()
    assert later["updated_at"] > m["updated_at"] and later["created_at"] == m["created_at"]


def test_a_patch_embeds_its_new_text_before_the_write_transaction(
    client: LambdaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote embedder is a network call: it must not run while the write holds the store."""
    from core.memory import store as memories

    memory = _create(client, content="Ada drinks tea", tags=["drink"])
    embedded_while_writing = embeds_during(monkeypatch, memories, "update")
    reply = client.patch(f"/v1/memories/{memory['id']}", json_body={"content": "Ada drinks coffee"})
    assert reply.status == 200 and reply.json()["content"] == "Ada drinks coffee"
    assert embedded_while_writing == [False]
    hits = client.post("/v1/search", json_body={"query": "coffee", "mode": "semantic"}).json()
    assert hits["results"][0]["memory"]["id"] == memory["id"]


def test_importance_and_scores_carry_no_float_noise(client: LambdaClient, tenant: Tenant) -> None:
    memory = _create(client, content="Alice orders oat milk flat whites", importance=0.8)
    # What decay leaves behind: 0.8 * 0.9 in binary floating point.
    with tenant.engine.begin() as conn:
        conn.execute(
            text("UPDATE memories SET importance = :v, confidence = :v WHERE id = :id"),
            {"v": 0.8 * 0.9, "id": memory["id"]},
        )
    assert 0.8 * 0.9 == 0.7200000000000001
    read = client.get(f"/v1/memories/{memory['id']}").json()
    assert read["importance"] == 0.72 and read["confidence"] == 0.72
    assert '"importance":0.72,' in client.get(f"/v1/memories/{memory['id']}").body.replace(" ", "")
    hits = client.post("/v1/search", json_body={"query": "oat milk", "explain": True}).json()
    for hit in hits["results"]:
        assert hit["memory"]["importance"] == 0.72
        assert len(repr(hit["score"]).split(".")[-1]) <= 6, hit["score"]
