"""User summaries and the brain digest through the Lambda handler, on both stores: quality on
a 60-memory, four-theme fixture (tests/summary_fixtures.py), refresh every N memories (on read
and in the maintenance run), scope, the optional LLM summariser against real local HTTP servers
(one that answers, ones that fail), and why the refresh is not a BackgroundTask (Mangum runs it
before the response). The summarisers alone, determinism and the token budget included:
tests/unit/test_extractive_summary.py and test_summary_llm.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.app import maintenance
from core.curation.summaries.extractive import statement_text
from core.kernel.config import Settings, SummarySettings
from core.kernel.db.engine import transaction
from core.retrieval.context import estimate_tokens
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient, LambdaContext, http_event
from tests.summary_fixtures import (
    DANA,
    DANA_UPDATES,
    SUPERSEDED,
    SUPERSEDED_WORDS,
)


def _payload(row: tuple[str, str, str, str | None, list[str], float], user: str) -> dict[str, Any]:
    _, content, kind, key, tags, importance = row
    body: dict[str, Any] = {"content": content, "type": kind, "tags": tags, "user_id": user}
    body["importance"] = importance
    if key:
        body["key"] = key
    return body


def _save_dana(client: LambdaClient, user: str = "dana") -> None:
    for rows in (DANA, DANA_UPDATES):  # the updates after, so that they supersede
        reply = client.post(
            "/v1/memories/batch", json_body={"memories": [_payload(r, user) for r in rows]}
        )
        assert reply.status == 201, reply.body


def _summary(client: LambdaClient, user: str = "dana") -> dict[str, Any]:
    reply = client.get(f"/v1/users/{user}/summary")
    assert reply.status == 200, reply.body
    found: dict[str, Any] = reply.json()
    return found


def _regenerate(client: LambdaClient, user: str = "dana") -> dict[str, Any]:
    reply = client.post(f"/v1/users/{user}/summary/regenerate")
    assert reply.status == 200, reply.body
    found: dict[str, Any] = reply.json()
    return found


def _current_by_theme() -> dict[str, list[str]]:
    themes: dict[str, list[str]] = {}
    for theme, content, *_ in [r for r in DANA if r[1] not in SUPERSEDED] + DANA_UPDATES:
        themes.setdefault(theme, []).append(statement_text(content))
    return themes


# --- quality ------------------------------------------------------------------------------------


def test_sixty_memories_four_themes_each_theme_mentioned_no_superseded_fact(
    client: LambdaClient,
) -> None:
    _save_dana(client)
    made = _summary(client)
    summary = made["summary"]
    assert made["source"] == "extractive" and made["reflection_count"] == 1
    assert made["new_memories"] == 0 and made["summarized_at"] is not None
    assert 0 < estimate_tokens(summary) <= 200

    for theme, statements in _current_by_theme().items():
        assert any(s in summary for s in statements), f"theme {theme} missing:\n{summary}"
    for old in SUPERSEDED:
        assert statement_text(old) not in summary
    for word in SUPERSEDED_WORDS:
        assert word not in summary
    # One line per theme, each labelled, and no statement twice.
    lines = summary.splitlines()
    assert 4 <= len(lines) <= 8
    sentences = [s for line in lines for s in line.split(": ", 1)[-1].split(". ")]
    assert len(sentences) == len(set(sentences))

    # Regenerating without new memories: the same text, one more reflection.
    again = _regenerate(client)
    assert again["summary"] == summary
    assert again["reflection_count"] == 2
    assert _summary(client)["summary"] == summary


# --- the routes, refresh and scope --------------------------------------------------------------


def test_a_users_first_summary_is_made_on_first_read(client: LambdaClient) -> None:
    client.post(
        "/v1/memories",
        json_body={"content": "Completed React tutorial", "tags": ["learning"], "user_id": "u1"},
    )
    made = _summary(client, "u1")
    assert made["summary"] == "Learning: Completed React tutorial."
    assert made["reflection_count"] == 1 and made["refresh_interval"] == 30
    # Read again: nothing new, nothing remade.
    assert _summary(client, "u1") == made


def test_unknown_users_and_other_users_are_404(client: LambdaClient, tenant: Tenant) -> None:
    reply = client.get("/v1/users/nobody/summary")
    assert reply.status == 404 and reply.error_code == "user_not_found"
    client.post("/v1/memories", json_body={"content": "Bob likes chess", "user_id": "bob"})
    client.post("/v1/memories", json_body={"content": "Eve likes go", "user_id": "eve"})
    as_bob = client.as_key(tenant.new_key(user_id="bob"))
    assert "chess" in _summary(as_bob, "bob")["summary"]
    for reply in (
        as_bob.get("/v1/users/eve/summary"),
        as_bob.post("/v1/users/eve/summary/regenerate"),
    ):
        assert reply.status == 404 and reply.error_code == "user_not_found"
    # A read-only key reads summaries (made when due) but cannot ask for one to be remade.
    reader = client.as_key(tenant.new_key(read_only=True))
    assert "go" in _summary(reader, "eve")["summary"]
    denied = reader.post("/v1/users/eve/summary/regenerate")
    assert denied.status == 403 and denied.error_code == "read_only_key"


def test_refreshed_every_interval_memories_on_read_and_by_maintenance(
    settings: Settings, tenant: Tenant, engine: Engine
) -> None:
    every5 = settings.with_(summaries=SummarySettings(user_interval=5))
    client = LambdaClient(every5, key=tenant.key)

    def add(n: int, start: int) -> None:
        rows = [
            {"content": f"Sam note {i}: practising violin scale {i}.", "user_id": "sam"}
            for i in range(start, start + n)
        ]
        assert client.post("/v1/memories/batch", json_body={"memories": rows}).status == 201

    add(3, 0)
    first = _summary(client, "sam")
    assert first["reflection_count"] == 1 and first["new_memories"] == 0
    add(4, 3)
    waiting = _summary(client, "sam")
    assert waiting["reflection_count"] == 1 and waiting["new_memories"] == 4
    assert waiting["summary"] == first["summary"]
    add(1, 7)  # the fifth since the summary: due, remade on the next read
    due = _summary(client, "sam")
    assert due["reflection_count"] == 2 and due["new_memories"] == 0

    # The maintenance run refreshes every due user of every brain, once.
    add(5, 8)
    client.post("/v1/memories", json_body={"content": "Kim plays drums", "user_id": "kim"})
    tasks = maintenance.run(engine, every5)["user_summaries"]
    assert tasks["refreshed"] >= 1 and tasks["failed"] == 0 and tasks["complete"] is True
    after = _summary(client, "sam")
    assert after["reflection_count"] == 3 and after["new_memories"] == 0
    again = maintenance.run(engine, every5)["user_summaries"]
    assert _summary(client, "sam")["reflection_count"] == 3
    assert again["failed"] == 0
    # kim has one memory, below the interval: left to its first read.
    with transaction(engine, write=False) as conn:
        kim = conn.execute(
            text(
                "SELECT summary, reflection_count FROM users "
                "WHERE user_id = 'kim' AND brain_id = :b"
            ),
            {"b": tenant.brain_id},
        ).one()
    assert tuple(kim) == (None, 0)


def test_saving_a_memory_writes_nothing_for_summaries(
    client: LambdaClient, tenant: Tenant, engine: Engine
) -> None:
    client.post("/v1/memories", json_body={"content": "Ann sings", "user_id": "ann"})
    _summary(client, "ann")

    def row() -> tuple[Any, ...]:
        with transaction(engine, write=False) as conn:
            return tuple(
                conn.execute(
                    text(
                        "SELECT summary, reflection_count, summarized_at, updated_at FROM users "
                        "WHERE brain_id = :b AND user_id = 'ann'"
                    ),
                    {"b": tenant.brain_id},
                ).one()
            )

    before = row()
    client.post("/v1/memories", json_body={"content": "Ann plays the cello", "user_id": "ann"})
    assert row() == before


def test_racing_refreshes_store_one_summary(
    settings: Settings, tenant: Tenant, engine: Engine
) -> None:
    from core.curation.summaries import service

    client = LambdaClient(settings, key=tenant.key)
    client.post("/v1/memories", json_body={"content": "Raj collects stamps", "user_id": "raj"})
    first = service.make_user_summary(engine, settings, tenant.brain_id, "raj")
    second = service.make_user_summary(engine, settings, tenant.brain_id, "raj")
    with transaction(engine) as conn:
        assert service._store(conn, tenant.brain_id, "raj", first, None) is True
        assert service._store(conn, tenant.brain_id, "raj", second, None) is False
    assert _summary(client, "raj")["reflection_count"] == 1


def test_memories_without_a_stored_vector_are_embedded_for_the_summary(
    client: LambdaClient, tenant: Tenant, engine: Engine
) -> None:
    client.post("/v1/memories", json_body={"content": "Lea paints watercolours", "user_id": "lea"})
    with transaction(engine) as conn:
        conn.execute(text("DELETE FROM memory_vectors WHERE brain_id = :b"), {"b": tenant.brain_id})
    assert "watercolours" in _summary(client, "lea")["summary"]


def test_the_brain_digest_lists_themes_and_important_memories(
    client: LambdaClient, tenant: Tenant
) -> None:
    _save_dana(client)
    client.post("/v1/memories", json_body={"content": "Office wifi password rotates monthly"})
    reply = client.get("/v1/summary", query={"important": 5, "max_tokens": 150})
    assert reply.status == 200, reply.body
    digest = reply.json()
    assert digest["memory_count"] == 61 and digest["considered"] == 61
    assert estimate_tokens(digest["summary"]) <= 150
    assert len(digest["themes"]) >= 4 and all(t["examples"] for t in digest["themes"])
    assert {"Food", "Running", "Work", "Travel"} <= {t["label"] for t in digest["themes"]}
    important = [m["importance"] for m in digest["important"]]
    assert len(important) == 5 and important == sorted(important, reverse=True)
    assert digest["important"][0]["content"] == "Dana is allergic to peanuts and carries an epipen."
    # A key scoped to one user digests that user's memories only.
    as_other = client.as_key(tenant.new_key(user_id="someone-else"))
    empty = as_other.get("/v1/summary").json()
    assert empty["memory_count"] == 0 and empty["themes"] == [] and empty["summary"] == ""
    bad = client.get("/v1/summary", query={"max_tokens": 5})
    assert bad.status == 422


# --- the optional LLM ---------------------------------------------------------------------------


@dataclass
class FakeChat:
    """An OpenAI-compatible /v1/chat/completions server on 127.0.0.1 answering `answer`, or
    failing as scripted: "500", "garbage" or "empty"."""

    answer: str = "Dana is a vegetarian staff engineer in Lisbon training for Berlin."
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if fake.mode == "500":
                    return self._send(500, {"error": {"message": "model overloaded"}})
                if fake.mode == "garbage":
                    return self._send(200, {"object": "chat.completion", "oops": True})
                content = "" if fake.mode == "empty" else fake.answer
                message = {"role": "assistant", "content": content}
                self._send(200, {"choices": [{"index": 0, "message": message}]})

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_chat() -> Iterator[FakeChat]:
    server = FakeChat()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _with_llm(settings: Settings, url: str) -> Settings:
    return settings.with_(
        summaries=SummarySettings(
            summarizer="openai",
            llm_model="tiny-chat",
            llm_base_url=url,
            llm_api_key="sk-test",
            llm_timeout_seconds=2.0,
        )
    )


def test_the_llm_writes_the_summary_when_it_answers(
    settings: Settings, tenant: Tenant, fake_chat: FakeChat
) -> None:
    client = LambdaClient(_with_llm(settings, fake_chat.url), key=tenant.key)
    _save_dana(client)
    made = _summary(client)
    assert made["summary"] == fake_chat.answer and made["source"] == "llm"
    request = fake_chat.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "tiny-chat" and body["max_tokens"] == 200 and body["temperature"] == 0
    system, user = body["messages"]
    assert system["role"] == "system" and "200 tokens" in system["content"]
    assert "Dana works at Acme Robotics as a staff engineer." in user["content"]
    assert "Initech" not in user["content"]  # superseded facts never reach the model


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", ["500", "garbage", "empty", "down"])
def test_any_llm_failure_falls_back_to_the_extractive_summary(
    settings: Settings, tenant: Tenant, fake_chat: FakeChat, mode: str
) -> None:
    plain = LambdaClient(settings, key=tenant.key)
    _save_dana(plain)
    extractive = _regenerate(plain)["summary"]
    # "down": nothing listens on the discard port, the connection is refused.
    url = "http://127.0.0.1:9/v1" if mode == "down" else fake_chat.url
    fake_chat.mode = mode
    client = LambdaClient(_with_llm(settings, url), key=tenant.key)
    made = _regenerate(client)
    assert made["summary"] == extractive and made["source"] == "extractive"
    if mode != "down":
        assert fake_chat.requests  # it did ask


# --- why the refresh is not a BackgroundTask ---------------------------------------------------


def test_mangum_runs_background_tasks_before_it_returns_the_response() -> None:
    """The reason the automatic refresh lives in the maintenance run and on read: under Mangum
    a BackgroundTask is not after the response, it delays it."""
    from mangum import Mangum
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    finished: list[float] = []

    def slow_work() -> None:
        time.sleep(0.3)
        finished.append(time.monotonic())

    async def endpoint(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True}, background=BackgroundTask(slow_work))

    handler = Mangum(Starlette(routes=[Route("/add", endpoint, methods=["POST"])]), lifespan="off")
    started = time.monotonic()
    result = handler(http_event("POST", "/add", body="{}"), LambdaContext())
    returned = time.monotonic()
    assert result["statusCode"] == 200
    assert finished and finished[0] <= returned  # the task ran before the response came back
    assert returned - started >= 0.3
