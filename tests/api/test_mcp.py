"""/mcp through the Lambda handler in-process (Mangum, API Gateway HTTP API v2 events, some from
events/mcp/): the Streamable HTTP transport and the protocol, in both eras. Every result is
checked against the official SDK's wire models for the revision it was served at
(mcp_types.methods), so a shape the specification does not allow fails here.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from mcp_types import methods

from core.kernel.config import McpSettings, Settings
from handlers.mcp.protocol import HANDSHAKE_VERSIONS, SUPPORTED_VERSIONS
from handlers.mcp.tools import TOOLS
from tests.conftest import Tenant
from tests.lambda_client import EVENTS, LambdaClient, Reply

MODERN = "2026-07-28"
LATEST = "2025-11-25"
HOST = "abcdef1234.execute-api.us-east-1.amazonaws.com"  # the Host of the sample events
MCP_EVENTS = EVENTS / "mcp"
ALL_TOOLS = [t.name for t in TOOLS]
WRITE_TOOLS = {t.name for t in TOOLS if t.writes}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def page_sizes(size: int) -> list[int]:
    """How many tools each tools/list page holds at this page size."""
    return [min(size, len(ALL_TOOLS) - i) for i in range(0, len(ALL_TOOLS), size)]


sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


def envelope(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """2026-07-28: what every request carries in params._meta."""
    return {
        **(params or {}),
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "tests", "version": "1"},
        },
    }


class Mcp:
    """A JSON-RPC client for /mcp over a LambdaClient."""

    def __init__(self, client: LambdaClient, version: str | None = LATEST) -> None:
        self.client = client
        self.version = version
        self.ids = 0

    def at(self, version: str | None) -> Mcp:
        return Mcp(self.client, version)

    def post(self, body: Any, headers: dict[str, str] | None = None) -> Reply:
        sent = dict(HEADERS)
        if self.version is not None:
            sent["mcp-protocol-version"] = self.version
        sent.update(headers or {})
        return self.client.request("POST", "/mcp", body=json.dumps(body), headers=sent)

    def send(
        self, method: str, params: dict[str, Any] | None = None, **headers: str
    ) -> tuple[Reply, dict[str, Any]]:
        self.ids += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        sent = dict(headers)
        if self.version == MODERN:
            params = envelope(params)
            sent.setdefault("mcp-method", method)
            if method == "tools/call":
                sent.setdefault("mcp-name", str(params.get("name")))
        if params is not None:
            body["params"] = params
        reply = self.post(body, sent)
        data = reply.json()
        assert data["jsonrpc"] == "2.0" and data["id"] == self.ids, data
        return reply, data

    def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        reply, data = self.send(method, params)
        assert reply.status == 200 and "result" in data, (reply.status, data)
        methods.validate_server_result(method, self.version or "2025-03-26", data["result"])
        return dict(data["result"])

    def error(self, method: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        reply, data = self.send(method, params, **headers)
        assert "error" in data and "result" not in data, data
        return reply.status, data["error"]

    def tools(self) -> list[dict[str, Any]]:
        """Every page of tools/list."""
        found, cursor = [], None
        while True:
            page = self.result("tools/list", {"cursor": cursor} if cursor else None)
            found += page["tools"]
            cursor = page.get("nextCursor")
            if cursor is None:
                return found

    def call(self, name: str, arguments: Any = None) -> tuple[bool, Any]:
        result = self.result("tools/call", {"name": name, "arguments": arguments or {}})
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
        return result["isError"], result["structuredContent"]

    def ok(self, name: str, arguments: Any = None) -> Any:
        is_error, value = self.call(name, arguments)
        assert not is_error, value
        return value

    def fails(self, name: str, arguments: Any = None) -> str:
        """A tool error result: the Mnemo error code it carries."""
        is_error, value = self.call(name, arguments)
        assert is_error, value
        assert set(value["error"]) == {"code", "message", "details"}
        return str(value["error"]["code"])


@pytest.fixture
def mcp(client: LambdaClient) -> Mcp:
    return Mcp(client)


def load_event(name: str, key: str) -> dict[str, Any]:
    event = json.loads((MCP_EVENTS / f"{name}.json").read_text())
    event["headers"]["authorization"] = f"Bearer {key}"
    return dict(event)


def event_body(event: dict[str, Any]) -> Any:
    raw = event["body"]
    return json.loads(base64.b64decode(raw) if event["isBase64Encoded"] else raw)


# -- the sample events ------------------------------------------------------------------------


def test_sample_events_through_the_lambda_handler(client: LambdaClient, tenant: Tenant) -> None:
    init = client.invoke(load_event("initialize", tenant.key))
    assert init.status == 200 and init.headers["content-type"] == "application/json"
    result = init.json()["result"]
    methods.validate_server_result("initialize", LATEST, result)
    assert result["protocolVersion"] == LATEST
    assert result["serverInfo"]["name"] == "mnemo" and result["capabilities"] == {
        "tools": {"listChanged": False}
    }
    assert "Mcp-Session-Id".lower() not in {k.lower() for k in init.headers}  # stateless

    notified = client.invoke(load_event("initialized", tenant.key))
    assert (notified.status, notified.body) == (202, "")

    listed = client.invoke(load_event("tools_list", tenant.key)).json()["result"]
    assert [t["name"] for t in listed["tools"]] == ALL_TOOLS and "nextCursor" not in listed

    event = load_event("tools_call", tenant.key)
    assert event["isBase64Encoded"]
    called = client.invoke(event).json()["result"]
    methods.validate_server_result("tools/call", LATEST, called)
    saved = called["structuredContent"]
    assert saved["content"] == event_body(event)["params"]["arguments"]["content"]
    assert client.get(f"/v1/memories/{saved['id']}").json()["tags"] == ["ops"]

    discovered = client.invoke(load_event("discover", tenant.key))
    assert discovered.status == 200
    methods.validate_server_result("server/discover", MODERN, discovered.json()["result"])

    found = client.invoke(load_event("tools_call_modern", tenant.key)).json()["result"]
    methods.validate_server_result("tools/call", MODERN, found)
    assert [h["memory"]["id"] for h in found["structuredContent"]["results"]] == [saved["id"]]


# -- initialize, ping, notifications ------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("requested", [*HANDSHAKE_VERSIONS, MODERN, "2099-01-01", "banana"])
def test_initialize_answers_the_clients_version_or_the_latest(mcp: Mcp, requested: str) -> None:
    params = {"protocolVersion": requested, "capabilities": {}, "clientInfo": {"name": "t"}}
    result = mcp.at(None).result("initialize", params)
    expected = requested if requested in HANDSHAKE_VERSIONS else LATEST
    assert result["protocolVersion"] == expected
    assert "`search`" in result["instructions"] and "`save`" in result["instructions"]


@sqlite_only
def test_initialize_needs_a_protocol_version(mcp: Mcp) -> None:
    status, error = mcp.at(None).error("initialize", {"capabilities": {}})
    assert (status, error["code"]) == (200, -32602)


@sqlite_only
def test_ping_notifications_and_client_responses(mcp: Mcp) -> None:
    assert mcp.result("ping") == {}
    for body in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}},
        {"jsonrpc": "2.0", "id": 9, "result": {}},  # a response to a request we never sent
    ):
        reply = mcp.post(body)
        assert (reply.status, reply.body) == (202, "")


@sqlite_only
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_no_stream_and_no_session_to_end(client: LambdaClient, method: str) -> None:
    reply = client.request(method, "/mcp", headers={"accept": "text/event-stream"})
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    assert reply.json()["error"]["code"] == -32600 and reply.json()["id"] is None


# -- malformed traffic ---------------------------------------------------------------------------


@sqlite_only
def test_protocol_errors_are_json_rpc_errors(mcp: Mcp, client: LambdaClient) -> None:
    bad_json = client.request("POST", "/mcp", body="{not json", headers=HEADERS)
    assert bad_json.status == 400 and bad_json.json()["error"]["code"] == -32700
    assert bad_json.json()["id"] is None
    for body, ident in (
        ({"hello": "world"}, None),
        (1, None),
        ({"jsonrpc": "1.0", "id": 4, "method": "ping"}, 4),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 5, "method": 12}, 5),
    ):
        reply = mcp.post(body)
        assert reply.status == 400, body
        assert reply.json()["error"]["code"] == -32600 and reply.json()["id"] == ident
    status, error = mcp.error("resources/list")
    assert (status, error["code"]) == (200, -32601)
    reply = mcp.post({"jsonrpc": "2.0", "id": "x", "method": "tools/list", "params": [1]})
    assert reply.json() == {
        "jsonrpc": "2.0",
        "id": "x",
        "error": {"code": -32602, "message": "params must be an object"},
    }


@sqlite_only
def test_accept_and_content_type(client: LambdaClient) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    plain = client.request("POST", "/mcp", body=body, headers={"content-type": "application/json"})
    assert plain.status == 200  # no Accept header at all: JSON is fine
    html = client.request(
        "POST", "/mcp", body=body, headers={**HEADERS, "accept": "text/html, text/event-stream"}
    )
    assert html.status == 406 and html.json()["error"]["code"] == -32600
    text = client.request(
        "POST", "/mcp", body=body, headers={**HEADERS, "content-type": "text/plain"}
    )
    assert text.status == 415


@sqlite_only
@pytest.mark.parametrize("header", ["2000-01-01", "2099-01-01", "not-a-version", ""])
def test_an_unsupported_protocol_version_header_is_a_400(mcp: Mcp, header: str) -> None:
    reply = mcp.at(header).post({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    assert reply.status == 400
    error = reply.json()["error"]
    assert reply.json()["id"] == 3 and error["code"] == -32022
    assert error["data"] == {"supported": list(SUPPORTED_VERSIONS), "requested": header}


@sqlite_only
def test_without_the_header_the_request_is_served_as_2025_03_26(mcp: Mcp) -> None:
    assert [t["name"] for t in mcp.at(None).tools()] == ALL_TOOLS


# -- batches ------------------------------------------------------------------------------------


def _batch() -> list[dict[str, Any]]:
    return [
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": "c",
            "method": "initialize",
            "params": {"protocolVersion": LATEST},
        },
        {"jsonrpc": "2.0", "id": "d", "method": "no/such"},
        {"nonsense": True},
        {"jsonrpc": "2.0", "id": "e", "method": "tools/call", "params": {"name": "list"}},
    ]


@sqlite_only
@pytest.mark.parametrize("version", [None, "2025-03-26"])
def test_batches_at_2025_03_26(mcp: Mcp, version: str | None) -> None:
    reply = mcp.at(version).post(_batch())
    assert reply.status == 200
    answers = reply.json()
    assert [a["id"] for a in answers] == ["a", "b", "c", "d", None, "e"]
    assert answers[0]["result"] == {}
    assert [t["name"] for t in answers[1]["result"]["tools"]] == ALL_TOOLS
    assert answers[2]["error"]["code"] == -32600  # initialize must come on its own
    assert answers[3]["error"]["code"] == -32601
    assert answers[4]["error"]["code"] == -32600
    assert answers[5]["result"]["structuredContent"] == {"results": [], "next_cursor": None}
    only_notifications = mcp.at(version).post([{"jsonrpc": "2.0", "method": "notifications/x"}])
    assert (only_notifications.status, only_notifications.body) == (202, "")
    empty = mcp.at(version).post([])
    assert empty.status == 400 and empty.json()["error"]["code"] == -32600


@sqlite_only
@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18", "2025-11-25", MODERN])
def test_batches_are_refused_where_the_revision_has_none(mcp: Mcp, version: str) -> None:
    reply = mcp.at(version).post(_batch())
    assert reply.status == 400
    assert reply.json()["id"] is None and reply.json()["error"]["code"] == -32600


# -- authorization and Origin -------------------------------------------------------------------


@sqlite_only
def test_401_names_the_protected_resource_metadata(client: LambdaClient, tenant: Tenant) -> None:
    metadata_url = f"https://{HOST}/.well-known/oauth-protected-resource/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize"}
    missing = Mcp(client.as_key(None)).post(body)
    assert missing.status == 401 and missing.error_code == "missing_credentials"
    assert missing.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{metadata_url}", scope="memories:read memories:write"'
    )
    wrong = Mcp(client.as_key("mnemo_not_a_key")).post(body)
    assert wrong.status == 401 and wrong.error_code == "invalid_key"
    assert wrong.headers["www-authenticate"].startswith(
        f'Bearer resource_metadata="{metadata_url}", scope="memories:read memories:write", '
        'error="invalid_token", error_description='
    )
    # The metadata it names is served, and names /mcp as the resource.
    document = client.as_key(None).get("/.well-known/oauth-protected-resource/mcp").json()
    assert document["resource"] == f"https://{HOST}/mcp"
    # A read-only request cannot sneak past auth as a notification either.
    note = Mcp(client.as_key(None)).post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert note.status == 401


@sqlite_only
@pytest.mark.parametrize(
    ("origin", "status"),
    [
        (None, 200),
        (f"https://{HOST}", 200),  # the service's own origin
        ("http://localhost:5173", 200),
        ("http://127.0.0.1:8080", 200),
        ("http://[::1]:3000", 200),
        ("https://app.example.com", 200),  # allowlisted
        ("https://evil.example.net", 403),
        ("null", 403),
        (f"http://{HOST}", 403),  # another scheme is another origin
    ],
)
def test_origin_is_validated(
    settings: Settings, tenant: Tenant, origin: str | None, status: int
) -> None:
    allowing = settings.with_(mcp=McpSettings(allowed_origins=("https://app.example.com",)))
    mcp = Mcp(LambdaClient(allowing, key=tenant.key))
    reply = mcp.post(
        {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"origin": origin} if origin else {}
    )
    assert reply.status == status
    if status == 403:
        assert reply.json()["id"] is None and reply.json()["error"]["code"] == -32600


@sqlite_only
def test_a_pinned_public_url_is_the_only_same_origin(settings: Settings, tenant: Tenant) -> None:
    """DNS rebinding: the page's own name arrives as both Host and Origin, so with the public
    URL pinned, an origin matching the request's Host is not enough."""
    pinned = settings.with_(auth=replace(settings.auth, public_url="https://mnemo.example.org"))
    mcp = Mcp(LambdaClient(pinned, key=tenant.key))
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert mcp.post(ping, {"origin": f"https://{HOST}"}).status == 403
    assert mcp.post(ping, {"origin": "https://mnemo.example.org"}).status == 200
    anyone = pinned.with_(mcp=McpSettings(allowed_origins=("*",)))
    assert Mcp(LambdaClient(anyone, key=tenant.key)).post(
        ping, {"origin": "https://x.y"}
    ).status == (200)


# -- tools/list -----------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("version", [*HANDSHAKE_VERSIONS, MODERN])
def test_tools_list_pages_with_a_cursor(settings: Settings, tenant: Tenant, version: str) -> None:
    small = LambdaClient(settings.with_(mcp=McpSettings(page_size=4)), key=tenant.key)
    mcp = Mcp(small, version)
    pages = []
    cursor = None
    while True:
        page = mcp.result("tools/list", {"cursor": cursor} if cursor else None)
        pages.append([t["name"] for t in page["tools"]])
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert [len(p) for p in pages] == page_sizes(4)
    assert [name for page in pages for name in page] == ALL_TOOLS
    if version == MODERN:
        assert page["resultType"] == "complete" and page["cacheScope"] == "private"
        assert page["ttlMs"] > 0 and page["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
    for bad in ("not-a-cursor", "eyJhZnRlciI6Im5vcGUifQ", 42):
        status, error = mcp.error("tools/list", {"cursor": bad})
        assert error["code"] == -32602 and status == (400 if version == MODERN else 200)


@sqlite_only
def test_tool_definitions(mcp: Mcp) -> None:
    tools = {t["name"]: t for t in mcp.tools()}
    for name, tool in tools.items():
        schema = tool["inputSchema"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        assert tool["outputSchema"]["type"] == "object", name
        assert tool["description"] and tool["title"], name
        assert tool["annotations"]["readOnlyHint"] is (name not in WRITE_TOOLS), name
        # pydantic's generated titles ("User Id") are noise for a model: gone.
        assert '"User Id"' not in json.dumps(tool) and '"Content"' not in json.dumps(tool), name
    # Identifiers REST carries in the path are required arguments here.
    assert tools["get"]["inputSchema"]["required"] == ["id"]
    assert tools["update"]["inputSchema"]["required"] == ["id"]
    assert tools["get_fact"]["inputSchema"]["required"] == ["key"]
    assert tools["purge"]["inputSchema"]["required"] == ["id", "confirm"]
    assert tools["save"]["inputSchema"]["required"] == ["content"]
    assert tools["purge"]["annotations"]["destructiveHint"] is True
    assert tools["save"]["annotations"]["destructiveHint"] is False
    # A batch item is described as a memory, as save takes it.
    items = tools["save_batch"]["inputSchema"]["properties"]["memories"]["items"]
    assert items == {"$ref": "#/$defs/MemoryIn"}
    memory_in = tools["save_batch"]["inputSchema"]["$defs"]["MemoryIn"]
    assert memory_in["properties"] == tools["save"]["inputSchema"]["properties"]


# -- 2026-07-28 -----------------------------------------------------------------------------------


@sqlite_only
def test_discover(mcp: Mcp) -> None:
    result = mcp.at(MODERN).result("server/discover")
    assert result["supportedVersions"] == list(SUPPORTED_VERSIONS)
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["resultType"] == "complete" and result["cacheScope"] == "public"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mnemo"


@sqlite_only
def test_modern_requests_must_agree_with_their_headers(mcp: Mcp) -> None:
    modern = mcp.at(MODERN)
    call = {"name": "list", "arguments": {}}
    assert modern.error("tools/call", call, **{"mcp-name": "search"}) == (
        400,
        {"code": -32020, "message": "Mcp-Name header does not match params.name"},
    )
    status, error = modern.error("tools/list", None, **{"mcp-method": "tools/call"})
    assert (status, error["code"]) == (400, -32020)
    # Mcp-Name may carry a value wrapped in the base64 sentinel; a malformed one never matches.
    encoded = "=?base64?" + base64.b64encode(b"list").decode() + "?="
    reply, data = modern.send("tools/call", call, **{"mcp-name": encoded})
    assert reply.status == 200 and data["result"]["isError"] is False
    reply, data = modern.send("tools/call", call, **{"mcp-name": "=?base64?!!!?="})
    assert reply.status == 400 and data["error"]["code"] == -32020


@sqlite_only
def test_modern_envelope_errors(mcp: Mcp) -> None:
    modern = mcp.at(MODERN)
    headers = {**HEADERS, "mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
    no_meta = modern.client.request(
        "POST",
        "/mcp",
        body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        headers=headers,
    )
    assert no_meta.status == 400 and no_meta.json()["error"]["code"] == -32602
    stale = envelope()
    stale["_meta"]["io.modelcontextprotocol/protocolVersion"] = LATEST
    mismatch = modern.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": stale})
    assert mismatch.status == 400 and mismatch.json()["error"]["code"] == -32020
    # What the 2026 revision dropped is not found (a 404 tells a dual-era client to fall back).
    for method in ("ping", "initialize"):
        status, error = modern.error(method)
        assert (status, error["code"]) == (404, -32601)
    status, error = modern.error("tools/call", {"name": "nope"})
    assert (status, error["code"]) == (400, -32602)
    notified = modern.post({"jsonrpc": "2.0", "method": "notifications/cancelled"})
    assert (notified.status, notified.body) == (202, "")
    posted_result = modern.post({"jsonrpc": "2.0", "id": 3, "result": {}})
    assert posted_result.status == 400


@sqlite_only
def test_a_failing_tool_is_an_internal_error_not_a_leak(
    mcp: Mcp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.memory import store as memories

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(memories, "get", boom)
    status, error = mcp.error("tools/call", {"name": "get", "arguments": {"id": "x"}})
    assert status == 200 and error["code"] == -32603
    assert "secret" not in json.dumps(error)
