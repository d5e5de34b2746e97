"""mem0's own clients (mem0ai 2.2.1's MemoryClient and AsyncMemoryClient) against `mnemo serve`
on both stores, with only `host=` and the key changed: every call they offer that has a
meaning here, the shapes they read, and a clear error for the ones that have none."""

from __future__ import annotations

import asyncio
import importlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from core.identity.keys import create_key
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema
from tests.conftest import STORES, new_postgres_database
from tests.serve import mnemo_serve

CHAT = [
    {"role": "user", "content": "I love green tea in the morning"},
    {"role": "assistant", "content": "Noted, green tea it is."},
    {"role": "user", "content": "I moved to Lyon last spring"},
]


@pytest.fixture(scope="module")
def m0(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The mem0ai package, imported here rather than at collection (2 s of CPU that every
    test run would pay): its telemetry (PostHog) is read at import and must never phone home
    from a test, and its config directory must not land in the home directory."""
    os.environ["MEM0_TELEMETRY"] = "False"
    os.environ.setdefault("MEM0_DIR", str(tmp_path_factory.mktemp("mem0-config")))
    return importlib.import_module("mem0.client.main")


@dataclass
class Served:
    base: str
    url: str
    store: str

    def key(self, brain: str | None = None, **kw: Any) -> str:
        with transaction(get_engine(self.url)) as conn:
            return create_key(conn, brain or f"m0-{uuid.uuid4().hex[:8]}", **kw).secret


@pytest.fixture(scope="module", params=STORES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('mem0') / 'mnemo.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_admin_url"))
    ensure_schema(get_engine(url))
    try:
        with mnemo_serve(url) as base:
            yield Served(base, url, str(request.param))
    finally:
        dispose(url)


@pytest.fixture
def connect(served: Served, m0: Any) -> Iterator[Callable[[str], Any]]:
    """MemoryClient(api_key=key, host=<mnemo serve>), closed after the test."""
    made: list[Any] = []

    def make(key: str) -> Any:
        made.append(m0.MemoryClient(api_key=key, host=served.base))
        return made[-1]

    yield make
    for mem0 in made:
        mem0.client.close()


@pytest.fixture
def client(served: Served, connect: Callable[[str], Any]) -> Any:
    return connect(served.key())


def _errors() -> Any:
    return importlib.import_module("mem0.exceptions")  # imported by the m0 fixture


def _user() -> str:
    return f"alice-{uuid.uuid4().hex[:6]}"


def test_telemetry_is_off(m0: Any) -> None:
    telemetry = importlib.import_module("mem0.memory.telemetry")
    assert telemetry.MEM0_TELEMETRY is False
    assert telemetry.client_telemetry.posthog is None


def test_the_issue_script_runs_and_search_finds_what_add_stored(client: Any) -> None:
    user = _user()
    added = client.add(CHAT, user_id=user, infer=False, metadata={"source": "chat"})
    events = added["results"]
    assert [e["event"] for e in events] == ["ADD", "ADD"]  # the two user turns
    assert [e["memory"] for e in events] == [CHAT[0]["content"], CHAT[2]["content"]]
    assert events[0]["data"] == {"memory": CHAT[0]["content"]}

    listed = client.get_all(filters={"user_id": user})
    assert listed["count"] == 2 and listed["next"] is None
    assert {r["memory"] for r in listed["results"]} == {CHAT[0]["content"], CHAT[2]["content"]}

    found = client.search("green tea", filters={"AND": [{"user_id": user}]})
    assert found["results"][0]["memory"] == CHAT[0]["content"]
    assert 0 < found["results"][0]["score"] <= 1

    memory_id = events[0]["id"]
    record = client.get(memory_id)
    assert record["memory"] == CHAT[0]["content"] and record["user_id"] == user
    assert record["metadata"]["source"] == "chat"
    assert len(record["hash"]) == 32 and record["categories"] == []
    assert {"id", "memory", "hash", "metadata", "created_at", "updated_at"} <= set(record)

    updated = client.update(memory_id, text="I love oolong tea", metadata={"mood": "calm"})
    assert updated["memory"] == "I love oolong tea"
    assert updated["metadata"]["mood"] == "calm" and updated["metadata"]["source"] == "chat"

    rows = client.history(memory_id)
    assert [r["event"] for r in rows] == ["ADD", "UPDATE"]
    assert rows[1]["old_memory"] == CHAT[0]["content"]
    assert rows[1]["new_memory"] == "I love oolong tea"

    assert client.delete(memory_id) == {"message": "Memory deleted successfully!"}
    with pytest.raises(_errors().MemoryNotFoundError):
        client.get(memory_id)
    assert [r["event"] for r in client.history(memory_id)][-1] == "DELETE"


def test_each_turn_keeps_its_role_time_and_position(
    served: Served, connect: Callable[[str], Any]
) -> None:
    key = served.key()
    mem0 = connect(key)
    user = _user()
    when = 1_700_000_000  # epoch seconds, as mem0's `timestamp`
    turns = [*CHAT, {"role": "user", "content": "  "}]
    added = mem0.add(turns, user_id=user, infer=False, timestamp=when, roles=["user", "assistant"])
    trace = [
        (e["metadata"]["conversation"]["position"], e["metadata"]["conversation"]["role"])
        for e in added["results"]
    ]
    assert trace == [(0, "user"), (1, "assistant"), (2, "user")]  # the empty turn is skipped
    ids = {e["metadata"]["conversation"]["id"] for e in added["results"]}
    assert len(ids) == 1
    native = httpx.get(
        f"{served.base}/v1/memories/{added['results'][1]['id']}",
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert native["occurred_at"] == "2023-11-14T22:13:20.000Z"
    history = mem0.history(native["id"])
    assert history[0]["role"] == "assistant"


def test_v2_filters_top_k_threshold_and_pages(client: Any) -> None:
    alice, bob = _user(), _user()
    for i, text in enumerate(["tea at dawn", "tea with lemon", "tea in Kyoto"]):
        client.add(text, user_id=alice, infer=False, metadata={"rank": i, "kind": "drink"})
    client.add("tea for bob", agent_id="helper", user_id=bob, infer=False, metadata={"rank": 9})
    client.add("coffee for bob", user_id=bob, infer=False, metadata={"rank": 5})

    def memories(**kw: Any) -> list[str]:
        return sorted(r["memory"] for r in client.get_all(**kw)["results"])

    assert memories(filters={"OR": [{"user_id": alice}, {"agent_id": "helper"}]}) == [
        "tea at dawn",
        "tea for bob",
        "tea in Kyoto",
        "tea with lemon",
    ]
    assert memories(filters={"AND": [{"user_id": alice}, {"metadata": {"rank": {"gte": 1}}}]}) == [
        "tea in Kyoto",
        "tea with lemon",
    ]
    assert memories(filters={"user_id": bob, "metadata": {"rank": {"in": [5]}}}) == [
        "coffee for bob"
    ]
    assert memories(filters={"AND": [{"user_id": bob}, {"agent_id": "*"}]}) == ["tea for bob"]
    assert memories(
        filters={"AND": [{"user_id": alice}, {"keywords": {"icontains": "KYOTO"}}]}
    ) == ["tea in Kyoto"]
    assert (
        memories(filters={"AND": [{"user_id": alice}, {"created_at": {"gte": "2000-01-01"}}]}) != []
    )
    assert (
        memories(filters={"AND": [{"user_id": alice}, {"created_at": {"lt": "2000-01-01"}}]}) == []
    )
    assert memories(
        filters={"AND": [{"user_id": alice}, {"NOT": [{"metadata": {"rank": 0}}]}]}
    ) == ["tea in Kyoto", "tea with lemon"]

    first = client.get_all(filters={"user_id": alice}, page=1, page_size=2)
    assert first["count"] == 3 and len(first["results"]) == 2 and first["previous"] is None
    assert "page=2" in first["next"]
    second = client.get_all(filters={"user_id": alice}, page=2, page_size=2)
    assert len(second["results"]) == 1 and second["next"] is None and "page=1" in second["previous"]
    assert {r["id"] for r in first["results"]}.isdisjoint(r["id"] for r in second["results"])

    top = client.search("tea", filters={"user_id": alice}, top_k=2)
    assert len(top["results"]) == 2
    assert client.search("tea", filters={"user_id": alice}, threshold=1.0)["results"] == []
    only = client.search("tea", filters={"user_id": alice}, top_k=1, fields=["memory"])
    assert set(only["results"][0]) == {"id", "memory"}

    with pytest.raises(_errors().ValidationError) as bad:
        client.get_all(filters={"user_id": {"like": "a%"}})
    assert "unknown filter operator" in str(bad.value)


def test_batch_entities_delete_all_and_reset(served: Served, connect: Callable[[str], Any]) -> None:
    mem0 = connect(served.key())
    alice, bob = _user(), _user()
    ids = [e["id"] for e in mem0.add(CHAT, user_id=alice, infer=False)["results"]]
    mem0.add("bob likes chess", user_id=bob, agent_id="coach", run_id="r1", infer=False)

    result = mem0.batch_update(
        [
            {"memory_id": ids[0], "text": "tea, always"},
            {"memory_id": ids[1], "metadata": {"checked": True}},
        ]
    )
    assert result == {"message": "Successfully updated 2 memories"}
    assert mem0.get(ids[0])["memory"] == "tea, always"
    assert mem0.get(ids[1])["metadata"]["checked"] is True
    with pytest.raises(_errors().MemoryNotFoundError):  # one unknown id: nothing changes
        mem0.batch_update(
            [
                {"memory_id": ids[0], "text": "changed"},
                {"memory_id": str(uuid.uuid4()), "text": "x"},
            ]
        )
    assert mem0.get(ids[0])["memory"] == "tea, always"

    entities = {(e["type"], e["name"]): e["total_memories"] for e in mem0.users()["results"]}
    assert entities == {
        ("user", alice): 2,
        ("user", bob): 1,
        ("agent", "coach"): 1,
        ("run", "r1"): 1,
    }

    assert mem0.batch_delete([{"memory_id": ids[1]}]) == {
        "message": "Successfully deleted 1 memories"
    }
    assert mem0.get_all(filters={"user_id": alice})["count"] == 1
    assert mem0.delete_all(user_id=alice)["message"] == "Memories deleted successfully!"
    assert mem0.get_all(filters={"user_id": alice})["count"] == 0
    assert mem0.delete_users(agent_id="coach") == {"message": "Entity deleted successfully."}
    assert mem0.get_all(filters={"user_id": bob})["count"] == 0

    mem0.add("carol likes jazz", user_id="carol", infer=False)
    assert mem0.reset()["message"].startswith("Client reset successful")
    assert mem0.users()["results"] == []
    with pytest.raises(ValueError, match="No entities to delete"):
        mem0.reset()  # the client itself refuses once there is nothing left


def test_token_and_bearer_slashes_and_error_bodies(served: Served, m0: Any) -> None:
    key = served.key()
    for scheme in ("Token", "Bearer"):
        for path in ("/v1/ping/", "/v1/ping"):
            reply = httpx.get(served.base + path, headers={"Authorization": f"{scheme} {key}"})
            assert reply.status_code == 200, (scheme, path, reply.text)
            assert reply.json()["status"] == "ok"
    headers = {"Authorization": f"Token {key}"}
    missing = httpx.get(f"{served.base}/v1/memories/{uuid.uuid4()}/", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("no memory")
    assert missing.json()["error"]["code"] == "memory_not_found"
    bad_key = httpx.get(f"{served.base}/v1/ping/", headers={"Authorization": "Token nope"})
    assert bad_key.status_code == 401 and bad_key.json()["error"]["code"] == "invalid_key"
    with httpx.Client() as http, pytest.raises(ValueError, match="not valid"):
        m0.MemoryClient(api_key="nope", host=served.base, client=http)
    for method, path in [
        ("POST", "/v1/exports/"),
        ("POST", "/v1/summary/"),
        ("GET", "/v2/entities/user/alice/profile/"),
        ("POST", "/v1/feedback/"),
    ]:
        reply = httpx.request(method, served.base + path, headers=headers, json={})
        assert reply.status_code == 501, path
        assert reply.json()["error"]["code"] == "not_supported"
        assert "Mnemo" in reply.json()["detail"]


def test_unsupported_calls_raise_a_clear_error(client: Any) -> None:
    with pytest.raises(_errors().MemoryError, match="does not offer"):
        client.get_summary(filters={"user_id": "alice"})
    with pytest.raises(_errors().MemoryError, match="brains and keys"):
        client.project.get()


def test_procedural_memory_is_stored_and_returned_as_such(
    served: Served, connect: Callable[[str], Any]
) -> None:
    key = served.key()
    mem0 = connect(key)
    steps = [
        {"role": "user", "content": "Deploy the site"},
        {"role": "assistant", "content": "Ran the build, then synced dist/ to the bucket."},
    ]
    added = mem0.add(steps, agent_id="deployer", memory_type="procedural_memory")
    [result] = added["results"]
    assert result["memory_type"] == "procedural_memory"
    assert "procedural" in result["categories"]
    assert "synced dist/" in result["memory"] and "user: Deploy the site" in result["memory"]
    assert mem0.get(result["id"])["memory_type"] == "procedural_memory"
    found = mem0.get_all(
        filters={"AND": [{"agent_id": "deployer"}, {"memory_type": "procedural_memory"}]}
    )
    assert [r["id"] for r in found["results"]] == [result["id"]]
    sector = httpx.get(
        f"{served.base}/memory/all?sector=procedural", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert [i["id"] for i in sector["items"]] == [result["id"]]


def test_keys_keep_their_limits(served: Served, connect: Callable[[str], Any]) -> None:
    brain = f"m0-{uuid.uuid4().hex[:8]}"
    owner = connect(served.key(brain))
    owner.add("alice's secret", user_id="alice", infer=False)
    owner.add("bob's secret", user_id="bob", infer=False)
    alice = connect(served.key(brain, user_id="alice"))
    assert [r["memory"] for r in alice.get_all()["results"]] == ["alice's secret"]
    assert [r["memory"] for r in alice.search("secret")["results"]] == ["alice's secret"]
    assert [(e["type"], e["name"]) for e in alice.users()["results"]] == [("user", "alice")]
    reader = connect(served.key(brain, read_only=True))
    with pytest.raises(_errors().MemoryError):
        reader.add("nope", user_id="alice", infer=False)
    other = connect(served.key())
    assert other.get_all()["count"] == 0  # another brain sees nothing


def test_the_async_client(served: Served, m0: Any) -> None:
    key = served.key()

    async def scenario() -> None:
        async with m0.AsyncMemoryClient(api_key=key, host=served.base) as mem0:
            user = _user()
            added = await mem0.add(CHAT, user_id=user, infer=False)
            ids = [e["id"] for e in added["results"]]
            assert len(ids) == 2
            listed = await mem0.get_all(filters={"user_id": user})
            assert listed["count"] == 2
            found = await mem0.search("Lyon", filters={"user_id": user})
            assert found["results"][0]["memory"] == CHAT[2]["content"]
            updated = await mem0.update(ids[1], text="I live in Lyon")
            assert updated["memory"] == "I live in Lyon"
            assert [r["event"] for r in await mem0.history(ids[1])] == ["ADD", "UPDATE"]
            assert (await mem0.get(ids[0]))["user_id"] == user
            await mem0.batch_update([{"memory_id": ids[0], "text": "tea"}])
            assert (await mem0.users())["results"][0]["name"] == user
            await mem0.delete(ids[0])
            with pytest.raises(_errors().MemoryNotFoundError):
                await mem0.get(ids[0])
            await mem0.batch_delete([{"memory_id": ids[1]}])
            assert (await mem0.get_all(filters={"user_id": user}))["count"] == 0
            await mem0.add("x", user_id=user, infer=False)
            await mem0.delete_all(user_id=user)
            assert (await mem0.get_all(filters={"user_id": user}))["count"] == 0

    # On the thread's own loop, as tests/e2e/test_mcp_sdk.py explains: asyncio.run would replace
    # the loop Mangum set up and leave it unclosed.
    asyncio.get_event_loop_policy().get_event_loop().run_until_complete(scenario())
