"""mnemo_client against `mnemo serve` (a real uvicorn subprocess, on both stores): OpenMemory's
multi-user example with only the import line and the class name changed, the native API,
errors carrying the server's code; retries against scripted transports; the async client
in-process through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.identity.keys import create_key
from core.kernel.config import Settings
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema
from handlers.api import create_app
from mnemo_client import (
    AsyncMnemoClient,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    MnemoClient,
    MnemoConnectionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from tests.conftest import STORES, Tenant, new_postgres_database
from tests.serve import mnemo_serve

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seeds" / "openmemory-user-management.md"

# OpenMemory's "Multi-User Application Example", verbatim from its documentation.
SEED_EXAMPLE = '''from openmemory import OpenMemory

om = OpenMemory(api_key="your_api_key", base_url="http://localhost:8080")

class UserMemoryService:
    def __init__(self, user_id: str):
        self.user_id = user_id
        self.om = om

    def add_memory(self, content: str, tags: list = None):
        """Add memory for this user"""
        return self.om.add(
            content=content,
            tags=tags or [],
            user_id=self.user_id
        )

    def search(self, query: str, limit: int = 10):
        """Search user's memories"""
        return self.om.query(
            query=query,
            k=limit,
            filters={"user_id": self.user_id}
        )

    def get_all(self, limit: int = 100):
        """Get all user memories"""
        return self.om.get_user_memories(
            user_id=self.user_id,
            limit=limit
        )

    def get_summary(self):
        """Get user summary"""
        return self.om.get_user_summary(self.user_id)

    def refresh_summary(self):
        """Regenerate user summary"""
        return self.om.regenerate_user_summary(self.user_id)


# Usage
user_service = UserMemoryService("user_123")

# Add memory
user_service.add_memory("Completed React tutorial", ["learning"])

# Search
results = user_service.search("What has user learned?")

# Get summary
summary = user_service.get_summary()
print(f"User profile: {summary['summary']}")
'''
# The same for Mnemo: the README's example.
README_EXAMPLE = SEED_EXAMPLE.replace(
    "from openmemory import OpenMemory", "from mnemo_client import MnemoClient"
).replace("om = OpenMemory(", "om = MnemoClient(")


@dataclass
class Served:
    base: str
    key: str
    url: str
    store: str

    def client(self, **options: Any) -> MnemoClient:
        return MnemoClient(**{"api_key": self.key, "base_url": self.base, **options})

    def key_for(self, **options: Any) -> str:
        with transaction(get_engine(self.url)) as conn:
            return create_key(conn, "client-test", **options).secret


@pytest.fixture(scope="module", params=STORES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`mnemo serve` on a free port over a new database, with a brain-wide key."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('client') / 'mnemo.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_admin_url"))
    engine = get_engine(url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "client-test").secret
    try:
        with mnemo_serve(url) as base:
            yield Served(base, key, url, str(request.param))
    finally:
        dispose(url)


# --- OpenMemory's example -------------------------------------------------------------------------


def test_the_readme_example_is_the_seeds_with_only_import_and_class_changed() -> None:
    changed = [
        (old, new)
        for old, new in zip(SEED_EXAMPLE.splitlines(), README_EXAMPLE.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        ("from openmemory import OpenMemory", "from mnemo_client import MnemoClient"),
        (
            'om = OpenMemory(api_key="your_api_key", base_url="http://localhost:8080")',
            'om = MnemoClient(api_key="your_api_key", base_url="http://localhost:8080")',
        ),
    ]
    if SEED.exists():  # the documentation the example comes from, when it is at hand
        assert SEED_EXAMPLE.strip() in SEED.read_text()


def test_the_multi_user_example_runs_against_mnemo_serve(served: Served) -> None:
    source = README_EXAMPLE.replace("your_api_key", served.key).replace(
        "http://localhost:8080", served.base
    )
    user = f"user_123-{served.store}"
    source = source.replace('"user_123"', repr(user))
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README example", "exec"), namespace)  # noqa: S102

    service = namespace["user_service"]
    other = namespace["UserMemoryService"](f"user_456-{served.store}")
    other.add_memory("Completed Rust course", ["learning"])
    service.add_memory("Prefers TypeScript over JavaScript", ["preferences"])

    results = namespace["results"]
    assert [m["content"] for m in results["matches"]] == ["Completed React tutorial"]
    assert f"{results['matches'][0]['score']:.2f}"
    assert out.getvalue() == "User profile: Learning: Completed React tutorial.\n"

    everything = service.get_all()
    assert everything["user_id"] == user
    assert sorted(m["content"] for m in everything["items"]) == [
        "Completed React tutorial",
        "Prefers TypeScript over JavaScript",
    ]
    found = service.search("programming preferences")
    assert {m["content"] for m in found["matches"]} <= {
        "Completed React tutorial",
        "Prefers TypeScript over JavaScript",
    }
    refreshed = service.refresh_summary()
    assert refreshed["ok"] is True and refreshed["reflection_count"] == 2
    assert "React tutorial" in refreshed["summary"] and "TypeScript" in refreshed["summary"]
    assert "Rust" not in refreshed["summary"]
    summary = service.get_summary()
    assert summary["summary"] == refreshed["summary"] and isinstance(summary["updated_at"], int)
    namespace["om"].close()


# --- the native API ---------------------------------------------------------------------------


def test_native_memories_search_context_history_users(served: Served) -> None:
    user = f"ivy-{served.store}"
    with served.client() as mnemo:
        assert mnemo.health()["status"] == "ok"
        tea = mnemo.create_memory(
            "Ivy drinks green tea every morning", user_id=user, tags=["Habits"], importance=0.8
        )
        assert tea["tags"] == ["habits"] and tea["deduplicated"] is False
        again = mnemo.create_memory(
            "Ivy drinks green tea every morning", user_id=user, tags=["Habits"]
        )
        assert again["id"] == tea["id"] and again["deduplicated"] is True
        city = mnemo.create_memory("Ivy lives in Oslo", type="fact", key="home city", user_id=user)
        moved = mnemo.create_memories(
            [
                {
                    "content": "Ivy lives in Bergen",
                    "type": "fact",
                    "key": "home city",
                    "user_id": user,
                }
            ]
        )[0]
        assert mnemo.get_memory(city["id"])["superseded_by"] == moved["id"]
        assert mnemo.get_fact("home city", user_id=user)["content"] == "Ivy lives in Bergen"

        edited = mnemo.update_memory(tea["id"], content="Ivy drinks sencha every morning")
        assert edited["content"] == "Ivy drinks sencha every morning"
        events = [h["event"] for h in mnemo.memory_history(tea["id"])]
        assert events == ["ADD", "UPDATE"]

        hits = mnemo.search("what does Ivy drink", user_id=user, limit=3)
        assert hits["results"][0]["memory"]["id"] == tea["id"]
        pack = mnemo.context("where does Ivy live", user_id=user, max_tokens=200)
        assert "Bergen" in pack["text"] and "Oslo" not in pack["text"]

        page = mnemo.list_memories(user_id=user, limit=1, include_total=True)
        assert page["total"] == 2 and page["next_cursor"]
        assert {m["id"] for m in mnemo.iter_memories(user_id=user, limit=1)} == {
            tea["id"],
            moved["id"],
        }
        assert mnemo.list_user_memories(user, state="all")["user_id"] == user

        assert mnemo.archive_memory(tea["id"])["state"] == "archived"
        assert mnemo.restore_memory(tea["id"])["state"] == "active"
        assert mnemo.delete_memory(tea["id"])["state"] == "deleted"
        assert mnemo.purge_memory(tea["id"]) == {"id": tea["id"], "purged": True}

        summary = mnemo.user_summary(user)
        assert summary["summary"] == "Ivy lives in Bergen." and summary["source"] == "extractive"
        assert mnemo.regenerate_summary(user)["reflection_count"] == 2
        digest = mnemo.digest(important=3)
        assert digest["memory_count"] >= 1 and len(digest["important"]) <= 3
        feed = mnemo.changelog(limit=500)
        assert any(e["event_type"] == "memory.purged" for e in feed["results"])


def test_errors_carry_the_servers_code(served: Served) -> None:
    with served.client() as mnemo:
        with pytest.raises(NotFoundError) as missing:
            mnemo.get_memory("no-such-memory")
        assert missing.value.status == 404 and missing.value.code == "memory_not_found"
        assert missing.value.request_id and "no-such-memory" in missing.value.message

        with pytest.raises(InvalidRequestError) as invalid:
            mnemo.create_memory("x", importance=7.0)
        assert invalid.value.status == 422 and invalid.value.code == "invalid_input"
        assert invalid.value.details[0]["field"] == "importance"

        with pytest.raises(InvalidRequestError) as blank:
            mnemo.get_user_memories(" ")
        assert blank.value.status == 400 and blank.value.code == "user_id required"
        with pytest.raises(NotFoundError) as nobody:
            mnemo.get_user_summary("nobody-at-all")
        assert nobody.value.code == "user not found"

        made = mnemo.create_memory(f"conflict test {served.store}")
        other = mnemo.create_memory(f"conflict test two {served.store}")
        with pytest.raises(ConflictError) as conflict:
            mnemo.update_memory(other["id"], content=made["content"])
        assert conflict.value.code == "duplicate_content"

    with served.client(api_key="mnemo_not_a_key") as stranger:
        with pytest.raises(AuthenticationError) as bad_key:
            stranger.add("x")
        assert bad_key.value.code == "invalid_key"
    with served.client(api_key=served.key_for(read_only=True)) as reader:
        with pytest.raises(PermissionDeniedError) as read_only:
            reader.add("x", user_id="u")
        assert read_only.value.code == "read_only_key"


# --- retries -------------------------------------------------------------------------------------


def _scripted(
    *replies: httpx.Response | Exception,
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    script = list(replies)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = script.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.MockTransport(handle), seen


def _client(transport: httpx.MockTransport, sleeps: list[float], **options: Any) -> MnemoClient:
    return MnemoClient(
        api_key="k",
        base_url="http://mnemo.test",
        transport=transport,
        sleep=sleeps.append,
        **options,
    )


OK = httpx.Response(200, json={"status": "ok", "version": "0", "schema_version": 6, "store": "x"})


def test_429_and_5xx_are_retried_with_backoff_honouring_retry_after() -> None:
    transport, seen = _scripted(
        httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy"}}),
        httpx.Response(
            429,
            headers={"Retry-After": "2"},
            json={"error": {"code": "rate_limited", "message": "slow"}},
        ),
        httpx.Response(502, text="bad gateway"),
        OK,
    )
    sleeps: list[float] = []
    assert _client(transport, sleeps).health()["status"] == "ok"
    assert len(seen) == 4 and len(sleeps) == 3
    assert 0 <= sleeps[0] <= 0.5 and sleeps[1] >= 2.0 and 0 <= sleeps[2] <= 2.0
    assert seen[0].headers["authorization"] == "Bearer k"


def test_retries_run_out_into_the_servers_error() -> None:
    limited = httpx.Response(
        429,
        headers={"Retry-After": "1"},
        json={"error": {"code": "rate_limited", "message": "slow down"}},
    )
    transport, seen = _scripted(limited, limited, limited)
    sleeps: list[float] = []
    with pytest.raises(RateLimitError) as error:
        _client(transport, sleeps, max_retries=2).health()
    assert len(seen) == 3 and error.value.retry_after == 1.0 and error.value.code == "rate_limited"

    transport, seen = _scripted(*[httpx.Response(500, json={"err": "internal"})] * 4)
    with pytest.raises(ServerError) as server:
        _client(transport, sleeps).health()
    assert len(seen) == 4 and server.value.code == "internal" and server.value.status == 500


def test_client_errors_are_not_retried_and_network_failures_are() -> None:
    transport, seen = _scripted(httpx.Response(400, json={"err": "content"}))
    sleeps: list[float] = []
    with pytest.raises(InvalidRequestError) as error:
        _client(transport, sleeps).add("")
    assert len(seen) == 1 and not sleeps and error.value.code == "content"

    refused = httpx.ConnectError("connection refused")
    transport, seen = _scripted(refused, OK)
    assert _client(transport, sleeps).health()["status"] == "ok" and len(seen) == 2
    transport, seen = _scripted(refused, refused)
    with pytest.raises(MnemoConnectionError):
        _client(transport, sleeps, max_retries=1).health()


# --- the async client ----------------------------------------------------------------------------


def test_the_async_client_has_the_same_calls(settings: Settings, tenant: Tenant) -> None:
    app = create_app(settings)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncMnemoClient(
            api_key=tenant.key, base_url="http://mnemo.test", transport=transport
        ) as om:
            added = await om.add("Async Alice prefers tea", tags=["preferences"], user_id="alice")
            assert added["primary_sector"] == "semantic"
            await om.create_memory("Async Alice plays chess", user_id="alice")
            found = await om.query("tea", k=5, filters={"user_id": "alice"})
            assert found["matches"][0]["content"] == "Async Alice prefers tea"
            items = (await om.get_user_memories("alice", limit=10))["items"]
            assert len(items) == 2
            summary = await om.get_user_summary("alice")
            assert "tea" in summary["summary"] and "chess" in summary["summary"]
            assert (await om.regenerate_user_summary("alice"))["reflection_count"] == 2
            ids = [m["id"] async for m in om.iter_memories(user_id="alice", limit=1)]
            assert len(ids) == 2
            with pytest.raises(NotFoundError):
                await om.get_memory("missing")

    # On the thread's own loop, as Mangum does: asyncio.run would unset it, and the loop
    # handlers.api's Mangum made at import would then be dropped unclosed.
    asyncio.get_event_loop_policy().get_event_loop().run_until_complete(scenario())


def test_valid_time_and_contradictions_through_the_client(
    settings: Settings, tenant: Tenant
) -> None:
    app = create_app(settings)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncMnemoClient(
            api_key=tenant.key, base_url="http://mnemo.test", transport=transport
        ) as mnemo:
            fact = {"type": "fact", "key": "home city", "user_id": "alice"}
            lyon = await mnemo.create_memory("Alice lives in Lyon", valid_from="2024-01-01", **fact)
            await mnemo.create_memory("Alice lives in Paris", valid_from="2025-06-01", **fact)
            then = await mnemo.search("where does alice live", user_id="alice", as_of="2025-01-01")
            assert then["results"][0]["memory"]["id"] == lyon["id"]
            assert then["results"][0]["memory"]["valid_to"] == "2025-06-01T00:00:00.000Z"
            was = await mnemo.get_fact("home city", user_id="alice", as_of="2025-01-01")
            assert was["content"] == "Alice lives in Lyon"
            listed = await mnemo.list_memories(user_id="alice", as_of="2025-01-01")
            assert [m["id"] for m in listed["results"]] == [lyon["id"]]
            pack = await mnemo.context("where does alice live", user_id="alice", as_of="2025-01-01")
            assert "Lyon" in pack["text"]
            summary = await mnemo.user_summary("alice", as_of="2025-01-01")
            assert summary["as_of"] == "2025-01-01T00:00:00.000Z" and "Lyon" in summary["summary"]
            known = await mnemo.user_summary("alice", known_at=lyon["created_at"])
            assert known["known_at"] == lyon["created_at"] and "Lyon" in known["summary"]

            first = await mnemo.create_memory("Dana is allergic to peanuts", user_id="dana")
            second = await mnemo.create_memory("Dana is not allergic to peanuts", user_id="dana")
            assert [c["with_id"] for c in second["conflicts"]] == [first["id"]]

    asyncio.get_event_loop_policy().get_event_loop().run_until_complete(scenario())
