"""The reply checker the whole suite runs under (tests/contract.py) catches what it is for: a
field, a status or an error the document does not name, and a route it does not document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tests import contract as contracts
from tests.checked_serve import CheckedReplies
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


def _stand_in(body: bytes, media: str = "application/json") -> Starlette:
    """A stand-in for Mnemo's app answering every GET /v1/memories/{id} with `body`; not
    Mnemo's, so the in-process hooks leave its replies to the middleware under test."""

    async def reply(request: Request) -> Response:
        return Response(body, media_type=media)

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"n": 1}\n'
            yield b"not JSON: a stream is not read\n"

        return StreamingResponse(chunks(), media_type=media)

    return Starlette(
        routes=[
            Route("/v1/memories/{id}", reply, methods=["GET"]),
            Route("/v1/export", stream, methods=["GET"]),
        ]
    )


@pytest.mark.unchecked_replies("turns checking on and off itself, to see it catch a served reply")
def test_a_served_reply_is_checked_in_the_server_and_fails_the_test(tmp_path: Path) -> None:
    log = tmp_path / "violations.jsonl"
    wrong = json.dumps({**MEMORY, "l_weight": 1.0}).encode()
    with contracts.serving(log):
        served = TestClient(CheckedReplies(_stand_in(wrong), log))
        # The client still gets the reply as sent; the test fails at its end.
        caught = pytest.raises(ContractViolation, match=r"(?s)1 reply of `mnemo serve`.*'l_weight'")
        with caught, contracts.checking(True):
            assert served.get("/v1/memories/m1").json()["l_weight"] == 1.0
        right = TestClient(CheckedReplies(_stand_in(json.dumps(MEMORY).encode()), log))
        with contracts.checking(True):
            assert right.get("/v1/memories/m1").json()["content"] == "hello"
        # A test that opted out claims what its requests caused.
        with contracts.checking(False):
            served.get("/v1/memories/m1")
    # Left unclaimed until the server stops: the block around it fails.
    log = tmp_path / "unclaimed.jsonl"
    with pytest.raises(ContractViolation, match="1 reply"), contracts.serving(log):
        TestClient(CheckedReplies(_stand_in(wrong), log)).get("/v1/memories/m1")


@pytest.mark.unchecked_replies("checks the checker's log itself")
def test_a_stream_is_held_to_its_media_type_and_passed_on_unread(tmp_path: Path) -> None:
    log = tmp_path / "violations.jsonl"
    stream = _stand_in(b"", "application/x-ndjson")
    with TestClient(CheckedReplies(stream, log)).stream("GET", "/v1/export") as reply:
        assert list(reply.iter_lines()) == ['{"n": 1}', "not JSON: a stream is not read"]
    assert not log.exists()
    html = _stand_in(b"<p>hi</p>", "text/html")
    assert TestClient(CheckedReplies(html, log)).get("/v1/memories/m1").text == "<p>hi</p>"
    (line,) = log.read_text().splitlines()
    assert "text/html is not documented" in json.loads(line)["violation"]
