"""The reply checker the whole suite runs under (tests/contract.py) catches what it is for: a
field, a status or an error the document does not name, and a route it does not document."""

from __future__ import annotations

import asyncio
import gzip
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from tests import contract as contracts
from tests.contract import ContractViolation, Reply, contract

MEMORY = {
    "id": "m1",
    "user_id": None,
    "agent_id": None,
    "run_id": None,
    "type": "note",
    "title": None,
    "key": None,
    "content": "hello",
    "tags": [],
    "source": None,
    "confidence": 0.7,
    "importance": 0.5,
    "metadata": {},
    "state": "active",
    "superseded_by": None,
    "occurred_at": None,
    "valid_from": "2026-12-06T08:00:00.000Z",
    "valid_to": None,
    "created_at": "2026-12-06T08:00:00.000Z",
    "updated_at": "2026-12-06T08:00:00.000Z",
    "archived_at": None,
    "deleted_at": None,
    "access_count": 0,
    "last_accessed_at": None,
}


def _reply(
    method: str, path: str, status: int, body: Any, media: str = "application/json"
) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Reply(method, path, status, media, raw)


def test_a_documented_reply_passes() -> None:
    contract().check(_reply("GET", "/v1/memories/m1", 200, MEMORY))
    page = {"results": [MEMORY], "next_cursor": None}
    contract().check(_reply("GET", "/v1/memories", 200, page))


def test_a_field_the_document_does_not_name_fails() -> None:
    with pytest.raises(ContractViolation, match=r"GET /v1/memories/\{id\} 200.*'l_weight'"):
        contract().check(_reply("GET", "/v1/memories/m1", 200, {**MEMORY, "l_weight": 1.0}))


def test_a_missing_field_or_a_wrong_type_fails() -> None:
    with pytest.raises(ContractViolation, match='at content: null is not of type "string"'):
        contract().check(_reply("GET", "/v1/memories/m1", 200, {**MEMORY, "content": None}))
    missing = {k: v for k, v in MEMORY.items() if k != "content"}
    with pytest.raises(ContractViolation, match='"content" is a required property'):
        contract().check(_reply("GET", "/v1/memories/m1", 200, missing))


def test_a_success_status_the_document_does_not_list_fails() -> None:
    with pytest.raises(ContractViolation, match="206: status not documented"):
        contract().check(_reply("GET", "/v1/memories/m1", 206, MEMORY))


def test_errors_must_be_the_error_envelope() -> None:
    good = {"error": {"code": "memory_not_found", "message": "no memory", "details": None}}
    contract().check(_reply("GET", "/v1/memories/m1", 404, good))
    with pytest.raises(ContractViolation, match="404"):
        contract().check(_reply("GET", "/v1/memories/m1", 404, {"detail": "not found"}))
    # No route at all: still the envelope.
    contract().check(_reply("GET", "/v9/nothing", 404, good))
    with pytest.raises(ContractViolation, match="not the error envelope"):
        contract().check(_reply("GET", "/v9/nothing", 404, {"oops": 1}))


def test_a_route_with_its_own_error_shape_is_held_to_it() -> None:
    contract().check(_reply("POST", "/memory/add", 400, {"err": "content", "msg": "missing"}))
    with pytest.raises(ContractViolation, match="POST /memory/add 400"):
        contract().check(_reply("POST", "/memory/add", 400, {"nope": True}))


def test_a_route_the_document_leaves_out_fails_unless_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = contract()
    stray = Route("/v1/stray", lambda request: None, methods=["GET"])

    def route(method: str, path: str) -> Any:
        from starlette.routing import Match

        return Match.FULL, stray

    monkeypatch.setattr(checker, "_route", route)
    with pytest.raises(ContractViolation, match="ALLOWED"):
        checker.check(_reply("GET", "/v1/stray", 200, {}))
    # The console's pages are allowed, with their reason.
    console = Route("/console/brains", lambda request: None, methods=["GET"])
    monkeypatch.setattr(checker, "_route", lambda method, path: (route(method, path)[0], console))
    checker.check(_reply("GET", "/console/brains", 200, b"<html></html>", "text/html"))


class _Canned(http.server.BaseHTTPRequestHandler):
    """A stand-in for `mnemo serve` that answers every GET with the canned reply."""

    reply: tuple[int, bytes, dict[str, str]] = (200, b"{}", {})

    def do_GET(self) -> None:
        status, body, headers = self.reply
        self.send_response(status)
        for name, value in {"content-length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[str, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.unchecked_replies("turns checking on and off itself, to see it catch a served reply")
def test_a_served_reply_is_checked_when_the_test_ends(
    canned: tuple[str, type[_Canned]],
) -> None:
    base, handler = canned
    wrong = json.dumps({**MEMORY, "l_weight": 1.0}).encode()
    handler.reply = (
        200,
        gzip.compress(wrong),
        {"content-type": "application/json", "content-encoding": "gzip"},
    )
    # Not a served origin: not checked.
    with contracts.checking(True):
        assert httpx.get(f"{base}/v1/memories/m1").json()["l_weight"] == 1.0
    with contracts.serving(base):
        # The client still gets the reply, decoded as sent; the test fails at its end.
        caught = pytest.raises(ContractViolation, match=r"(?s)1 reply of `mnemo serve`.*'l_weight'")
        with caught, contracts.checking(True):
            assert httpx.get(f"{base}/v1/memories/m1").json()["l_weight"] == 1.0
        handler.reply = (200, json.dumps(MEMORY).encode(), {"content-type": "application/json"})

        async def fetch() -> Any:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/v1/memories/m1")).json()

        with contracts.checking(True):
            # On the thread's own loop (Mangum's): asyncio.run would leave it unclosed.
            loop = asyncio.get_event_loop_policy().get_event_loop()
            assert loop.run_until_complete(fetch())["content"] == "hello"
