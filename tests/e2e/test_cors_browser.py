"""CORS from a real page: headless Chromium (Playwright driving Debian's chromium) loads a page
from another origin and calls `mnemo serve` with fetch, as a browser MCP client or a web app
would. The browser, not the test, decides whether the script may read each answer.

The page is served twice by one small static server, under two origins: http://localhost:<p>
is allowed (MNEMO_MCP_ALLOWED_ORIGINS and MNEMO_API_ALLOWED_ORIGINS), http://127.0.0.1:<p> is
not. Both differ from mnemo's own origin (another port), so every call is cross-origin.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.serve import free_port, mnemo_serve

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("MNEMO_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
KEY = "mnemo_cors_test_key_0123456789abcdef"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (scripts/test installs it)"
)


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>app</title><p>a page on another origin"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Setup:
    api: str  # mnemo serve
    allowed: str  # the page's origin that may call it
    refused: str  # one that may not


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    allowed = f"http://localhost:{port}"
    folder = tmp_path_factory.mktemp("cors")
    try:
        with mnemo_serve(
            f"sqlite:///{folder}/mnemo.db",
            MNEMO_API_KEY=KEY,
            MNEMO_MCP_ALLOWED_ORIGINS=allowed,
            MNEMO_API_ALLOWED_ORIGINS=allowed,
        ) as api:
            yield Setup(api, allowed, f"http://127.0.0.1:{port}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def _page_at(browser: Any, origin: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(origin + "/")
    return page


# fetch from the page; a CORS refusal is a TypeError the script sees as {"blocked": ...}.
_FETCH = """async ([url, init]) => {
  try {
    const r = await fetch(url, init);
    return {status: r.status, body: await r.text(),
            challenge: r.headers.get('www-authenticate'), rid: r.headers.get('x-request-id')};
  } catch (e) { return {blocked: String(e)}; }
}"""

_PING = '{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
_MCP_HEADERS = {
    "authorization": f"Bearer {KEY}",
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-06-18",
}


def test_an_allowed_page_calls_mcp_the_api_and_the_token_endpoint(
    browser: Any, setup: Setup
) -> None:
    page = _page_at(browser, setup.allowed)
    try:
        # A preflighted POST (Authorization, JSON, MCP-Protocol-Version) to /mcp.
        mcp = page.evaluate(
            _FETCH, [f"{setup.api}/mcp", {"method": "POST", "headers": _MCP_HEADERS, "body": _PING}]
        )
        assert mcp.get("status") == 200, mcp
        assert '"result"' in mcp["body"] and mcp["rid"]
        # Without a token the 401's challenge is readable, so the client can start OAuth.
        anonymous = {k: v for k, v in _MCP_HEADERS.items() if k != "authorization"}
        challenge = page.evaluate(
            _FETCH, [f"{setup.api}/mcp", {"method": "POST", "headers": anonymous, "body": _PING}]
        )
        assert challenge.get("status") == 401, challenge
        assert 'scope="memories:read memories:write"' in challenge["challenge"]
        # The REST API with a bearer token, a write and a read.
        saved = page.evaluate(
            _FETCH,
            [
                f"{setup.api}/v1/memories",
                {
                    "method": "POST",
                    "headers": {
                        "authorization": f"Bearer {KEY}",
                        "content-type": "application/json",
                    },
                    "body": '{"content": "written from a browser page"}',
                },
            ],
        )
        assert saved.get("status") == 201, saved
        listed = page.evaluate(
            _FETCH,
            [f"{setup.api}/v1/memories", {"headers": {"authorization": f"Bearer {KEY}"}}],
        )
        assert "written from a browser page" in listed["body"]
        # The token endpoint answers the page (here: its error, in the OAuth shape).
        token = page.evaluate(
            _FETCH,
            [
                f"{setup.api}/oauth/token",
                {
                    "method": "POST",
                    "headers": {"content-type": "application/x-www-form-urlencoded"},
                    "body": "grant_type=client_credentials&client_id=nobody",
                },
            ],
        )
        assert token.get("status") == 401 and '"invalid_client"' in token["body"], token
        # Discovery documents are public.
        meta = page.evaluate(_FETCH, [f"{setup.api}/.well-known/oauth-protected-resource/mcp", {}])
        assert meta.get("status") == 200 and "/mcp" in meta["body"]
    finally:
        page.context.close()


def test_a_page_from_another_origin_is_refused(browser: Any, setup: Setup) -> None:
    page = _page_at(browser, setup.refused)
    try:
        mcp = page.evaluate(
            _FETCH, [f"{setup.api}/mcp", {"method": "POST", "headers": _MCP_HEADERS, "body": _PING}]
        )
        assert "blocked" in mcp, mcp
        api = page.evaluate(
            _FETCH, [f"{setup.api}/v1/memories", {"headers": {"authorization": f"Bearer {KEY}"}}]
        )
        assert "blocked" in api, api
        # Even a request a browser sends without preflight cannot be read.
        simple = page.evaluate(_FETCH, [f"{setup.api}/v1/memories", {}])
        assert "blocked" in simple, simple
        # The public discovery document stays readable from anywhere.
        meta = page.evaluate(_FETCH, [f"{setup.api}/.well-known/oauth-authorization-server", {}])
        assert meta.get("status") == 200
    finally:
        page.context.close()


def test_the_preflight_answer(setup: Setup) -> None:
    asked = {
        "origin": setup.allowed,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, mcp-protocol-version",
    }
    reply = httpx.options(f"{setup.api}/mcp", headers=asked)
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == setup.allowed
    assert reply.headers["access-control-allow-methods"] == "POST"
    allowed_headers = reply.headers["access-control-allow-headers"].split(", ")
    assert {"authorization", "content-type", "mcp-protocol-version"} <= set(allowed_headers)
    assert reply.headers["access-control-max-age"] == "600"
    assert "Origin" in reply.headers["vary"]
    # Bearer tokens only: no credentials, so no cookie rides along cross-origin.
    assert "access-control-allow-credentials" not in reply.headers
    refused = httpx.options(f"{setup.api}/mcp", headers={**asked, "origin": setup.refused})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    # An actual answer to a disallowed origin still varies on Origin, for shared caches.
    plain = httpx.get(f"{setup.api}/v1/memories", headers={"origin": setup.refused})
    assert "access-control-allow-origin" not in plain.headers and "Origin" in plain.headers["vary"]
