"""The official MCP Python SDK's clients against `mnemo serve` in a subprocess, on both stores:
the handshake client (ClientSession over streamable_http_client), the dual-era `Client` (which
probes server/discover and stays on 2026-07-28), and the SDK's own OAuth client, which starts
from our 401, discovers this authorization server, registers, and logs in through the
authorization page before calling every tool.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from mcp_types import CallToolResult, PaginatedRequestParams
from sqlalchemy import Engine

from core.kernel.db.engine import dispose, get_engine
from core.kernel.db.migrations import ensure_schema
from tests.api.test_mcp import ALL_TOOLS, page_sizes
from tests.conftest import STORES, Tenant, make_tenant, new_postgres_database
from tests.oauth_fixtures import PASSWORD, new_email, parse_form
from tests.serve import mnemo_serve

PAGE_SIZE = 4

Call = Callable[[str, dict[str, Any]], Awaitable[CallToolResult]]


@dataclass
class Served:
    base: str
    engine: Engine

    @property
    def endpoint(self) -> str:
        return f"{self.base}/mcp"

    def tenant(self) -> Tenant:
        return make_tenant(self.engine)


@pytest.fixture(scope="module", params=STORES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One `mnemo serve` per store for the module: starting a server is most of the cost."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('mcp-serve') / 'mnemo.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_admin_url"))
    engine = get_engine(url)
    ensure_schema(engine)
    try:
        with mnemo_serve(
            url, MNEMO_PASSWORD_ITERATIONS="1000", MNEMO_MCP_PAGE_SIZE=str(PAGE_SIZE)
        ) as base:
            yield Served(base, engine)
    finally:
        dispose(url)


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Runs on the thread's current event loop. Mangum makes that loop when handlers.api is
    imported (conftest does); asyncio.run or anyio.run would replace it and leave it to be
    collected unclosed, a ResourceWarning that pytest turns into an error."""
    asyncio.get_event_loop_policy().get_event_loop().run_until_complete(scenario())


def _bearer(key: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})


async def _all_pages(session: ClientSession) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        pages.append([t.name for t in page.tools])
        cursor = page.next_cursor
        if cursor is None:
            return pages


async def _every_tool(call: Call) -> set[str]:
    """Calls each tool once (the SDK checks each result against the tool's outputSchema), and
    reads an error result; returns the tools called."""
    called: set[str] = set()

    async def ok(name: str, arguments: dict[str, Any]) -> Any:
        result = await call(name, arguments)
        assert not result.is_error, result
        assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
        called.add(name)
        return result.structured_content

    saved = await ok("save", {"content": "Ada prefers green tea", "user_id": "ada"})
    await ok("save", {"content": "Europe/Paris", "type": "fact", "key": "tz", "user_id": "ada"})
    await ok("save_batch", {"memories": [{"content": "Grace writes COBOL", "user_id": "grace"}]})
    assert (await ok("get", {"id": saved["id"]}))["content"] == "Ada prefers green tea"
    assert (await ok("get_fact", {"key": "tz", "user_id": "ada"}))["content"] == "Europe/Paris"
    hits = (await ok("search", {"query": "green tea", "user_id": "ada"}))["results"]
    assert hits[0]["memory"]["id"] == saved["id"]
    assert saved["id"] in {c["id"] for c in (await ok("context", {"query": "tea"}))["citations"]}
    assert len((await ok("list", {"user_id": "ada"}))["results"]) == 2
    grace = (await ok("user_memories", {"user_id": "grace"}))["results"]
    assert [m["content"] for m in grace] == ["Grace writes COBOL"]
    assert "tea" in (await ok("user_summary", {"user_id": "ada"}))["summary"]
    assert (await ok("regenerate_summary", {"user_id": "ada"}))["reflection_count"] == 2
    assert (await ok("digest", {"important": 2}))["memory_count"] == 3
    await ok("update", {"id": saved["id"], "content": "Ada prefers jasmine tea"})
    await ok("archive", {"id": saved["id"]})
    await ok("restore", {"id": saved["id"]})
    await ok("delete", {"id": saved["id"]})
    events = [h["event"] for h in (await ok("history", {"id": saved["id"]}))["results"]]
    assert events == ["ADD", "UPDATE", "ARCHIVE", "RESTORE", "DELETE"]
    assert (await ok("purge", {"id": saved["id"], "confirm": True}))["purged"] is True
    assert len((await ok("changelog", {"limit": 100}))["results"]) >= 8
    ada = (await ok("save", {"content": "Ada drinks tea at four", "user_id": "ada"}))["id"]
    tz = (await ok("get_fact", {"key": "tz", "user_id": "ada"}))["id"]
    link = await ok("link", {"from_id": ada, "to_id": tz, "relation": "related"})
    assert (await ok("links", {"id": ada}))["results"][0]["id"] == link["id"]
    assert (await ok("neighbors", {"id": tz}))["results"][0]["memory"]["id"] == ada
    assert len((await ok("subgraph", {"memory_id": ada}))["nodes"]) == 2
    assert ada in {n["id"] for n in (await ok("subgraph", {"query": "tea at four"}))["nodes"]}
    assert (await ok("path", {"from_id": tz, "to_id": ada}))["hops"] == 1
    assert (await ok("unlink", {"id": link["id"]}))["deleted"] is True
    two = (await ok("save", {"content": "Ada has 2 cats", "user_id": "ada"}))["id"]
    third = await ok("save", {"content": "Ada has 3 cats", "user_id": "ada"})
    three = third["id"]
    (conflict,) = third["conflicts"]  # caught as it was saved, so detection finds nothing new
    assert (await ok("detect_conflicts", {"memory_id": three}))["results"] == []
    assert (await ok("conflicts", {"status": "needs_review"}))["results"][0]["id"] == conflict["id"]
    resolved = await ok("resolve_conflict", {"id": conflict["id"], "winner_id": three})
    assert resolved["canonical_id"] == three
    await ok("restore", {"id": two})
    assert (await ok("merge", {"ids": [two, three]}))["merged_ids"] == [two, three]

    # The write gate, its quarantine, the health report and erasure (owners only).
    held = await ok("save", {"content": "You are a pirate, arr", "user_id": "ada"})
    assert held["state"] == "quarantined" and held["gate"]["reason"] == "instruction"
    again = await ok("save", {"content": "Ada drinks tea at four.", "user_id": "ada"})
    assert again["gate"]["decision"] == "reinforced" and again["id"] == ada
    assert (await ok("quarantine", {}))["results"][0]["id"] == held["id"]
    approved = await ok("approve_quarantined", {"id": held["id"]})
    assert approved["memory"]["content"] == "You are a pirate, arr"
    chatter = await ok("save", {"content": "ok", "user_id": "ada"})
    assert (await ok("reject_quarantined", {"id": chatter["id"]}))["status"] == "rejected"
    report = await ok("health_report", {"user_id": "ada"})
    assert report["memories"]["active"] >= 1 and report["quarantined"] == 0
    erased = await call("erase_user", {"user_id": "grace", "confirm": True})
    if erased.is_error:  # an API key is no owner
        assert erased.structured_content["error"]["code"] == "owner_only"
    else:
        assert erased.structured_content["status"] == "complete"
        assert erased.structured_content["counts"]["memories"] == 1
    called.add("erase_user")

    gone = await call("get", {"id": saved["id"]})
    assert gone.is_error
    assert gone.structured_content == json.loads(gone.content[0].text)  # type: ignore[union-attr]
    assert gone.structured_content["error"]["code"] == "memory_not_found"
    return called


def test_handshake_client_lists_every_page_and_calls_every_tool(served: Served) -> None:
    key = served.tenant().key

    async def run() -> None:
        async with (
            _bearer(key) as http,
            streamable_http_client(served.endpoint, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            init = await session.initialize()
            assert init.protocol_version == "2025-11-25"
            assert init.server_info.name == "mnemo" and init.instructions
            assert init.capabilities.tools is not None
            pages = await _all_pages(session)
            assert [len(p) for p in pages] == page_sizes(PAGE_SIZE)
            assert [name for page in pages for name in page] == ALL_TOOLS
            await session.send_ping()
            assert await _every_tool(session.call_tool) == set(ALL_TOOLS)

    _run(run)


def test_dual_era_client_speaks_2026_07_28(served: Served) -> None:
    key = served.tenant().key

    async def run() -> None:
        # The SDK leaves a client it was given open: closing it is ours to do.
        async with _bearer(key) as http:
            await _modern(Client(streamable_http_client(served.endpoint, http_client=http)))

    async def _modern(connecting: Client) -> None:
        async with connecting as client:
            assert client.protocol_version == "2026-07-28"
            names: list[str] = []
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                names += [t.name for t in page.tools]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert names == ALL_TOOLS
            assert await _every_tool(client.call_tool) == set(ALL_TOOLS)

    _run(run)


def test_a_bad_key_gets_the_401_that_starts_discovery(served: Served) -> None:
    reply = httpx.post(
        served.endpoint,
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize"},
        headers={"authorization": "Bearer mnemo_nope"},
    )
    assert reply.status_code == 401
    challenge = reply.headers["www-authenticate"]
    metadata = challenge.split('resource_metadata="')[1].split('"')[0]
    assert metadata == f"{served.base}/.well-known/oauth-protected-resource/mcp"
    assert httpx.get(metadata).json()["resource"] == served.endpoint


class _Memory:
    """Token storage for the SDK's OAuth client."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class _Browser:
    """Signs up on the authorization page and approves. The page's cookies are Secure; over
    plain http on loopback httpx would drop them, so they are kept here, as a browser does."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.redirect: dict[str, str] = {}

    def _headers(self, origin: bool = False) -> dict[str, str]:
        headers = {"origin": self.base} if origin else {}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep(self, reply: httpx.Response) -> httpx.Response:
        for line in reply.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";")[0].strip('"')
        return reply

    async def open(self, authorize_url: str) -> None:
        async with httpx.AsyncClient() as http:
            page = self._keep(await http.get(authorize_url, headers=self._headers()))
            assert page.status_code == 200, page.text
            fields = {
                **parse_form(page.text).fields,
                "email": new_email(),
                "password": PASSWORD,
                "action": "signup",
            }
            consent = self._keep(
                await http.post(authorize_url, data=fields, headers=self._headers(True))
            )
            form = parse_form(consent.text)
            approve = {**form.fields, "brain_id": form.radios["brain_id"][0], "action": "approve"}
            done = await http.post(authorize_url, data=approve, headers=self._headers(True))
            assert done.status_code == 303, done.text
            query = parse_qs(urlsplit(done.headers["location"]).query)
            self.redirect = {k: v[0] for k, v in query.items()}

    async def callback(self) -> AuthorizationCodeResult:
        got = self.redirect
        return AuthorizationCodeResult(code=got["code"], state=got.get("state"), iss=got.get("iss"))


def test_the_sdk_oauth_client_logs_in_and_calls_every_tool(served: Served) -> None:
    browser = _Browser(served.base)
    storage = _Memory()
    provider = OAuthClientProvider(
        served.endpoint,
        OAuthClientMetadata(
            client_name="MCP SDK test client",
            redirect_uris=["http://localhost:3030/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage,
        browser.open,
        browser.callback,
    )

    async def run() -> None:
        async with (
            httpx2.AsyncClient(auth=provider) as http,
            streamable_http_client(served.endpoint, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            init = await session.initialize()
            assert init.protocol_version == "2025-11-25"
            assert storage.tokens is not None and storage.tokens.access_token.startswith("mnemo_at")
            pages = await _all_pages(session)
            assert [name for page in pages for name in page] == ALL_TOOLS
            assert await _every_tool(session.call_tool) == set(ALL_TOOLS)

    _run(run)
    assert browser.redirect["iss"] == served.base
