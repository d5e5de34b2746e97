"""Conversations in (POST /v1/memories with `messages`, mem0's add), on both stores: one memory
per selected turn without an LLM; with one, mem0's extraction against a local
OpenAI-compatible stub that plays recorded replies (no network). The prompts and the parsing
of malformed replies: tests/unit/test_extraction_parsing.py."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.app import extraction, jobs
from core.curation.summaries.llm import OpenAIChat
from core.kernel.config import ExtractionSettings, Settings
from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory.models import Conversation
from tests.conftest import Tenant, embeds_during
from tests.lambda_client import LambdaClient

CHAT = [
    {"role": "user", "content": "I moved from Paris to Lyon, and I gave my dog Rex away."},
    {"role": "assistant", "content": "Lyon is lovely. Still on green tea?"},
    {"role": "user", "content": "Yes, green tea every morning."},
]
# What the stub's model "said" when these replies were recorded.
FACTS = '```json\n{"facts": ["Lives in Lyon", "Likes green tea", "No longer has a dog"]}\n```'
Reply = Callable[[dict[str, Any]], tuple[int, str]]


class StubLLM:
    """An OpenAI-compatible chat endpoint on loopback: each request is kept, each answer comes
    from `reply` (status, message text) after `delay` seconds."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: Reply = lambda body: (200, '{"facts": []}')
        self.delay = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                time.sleep(stub.delay)
                status, content = stub.reply(body)
                payload = (
                    {"choices": [{"message": {"role": "assistant", "content": content}}]}
                    if status == 200
                    else {"error": {"message": content}}
                )
                raw = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up (the timeout test)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def recorded(decide: dict[str, tuple[str, str | None]], facts: str = FACTS) -> Reply:
    """Facts first; then, for the update prompt, a decision per stored memory by its text
    (event, new text), and an ADD for each fact no stored memory took."""

    def reply(body: dict[str, Any]) -> tuple[int, str]:
        system, prompt = (m["content"] for m in body["messages"])
        if system.startswith("You extract facts"):
            return 200, facts
        stored = json.loads(re.search(r"Stored memories:\n(.*)\n\nNew facts", prompt, re.S)[1])
        out = []
        for memory in stored:
            if memory["text"] in decide:
                event, new = decide[memory["text"]]
                out.append({"id": memory["id"], "event": event, "text": new or memory["text"]})
        out.append({"id": "new", "event": "ADD", "text": "Gave away a dog named Rex"})
        return 200, json.dumps({"memory": out})

    return reply


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    server = StubLLM()
    yield server
    server.close()


def llm_client(settings: Settings, tenant: Tenant, stub: StubLLM, **kw: Any) -> LambdaClient:
    extraction_settings = ExtractionSettings(llm="openai", base_url=stub.url, **kw)
    return LambdaClient(settings.with_(extraction=extraction_settings), key=tenant.key)


def _state(engine: Engine, tenant: Tenant) -> tuple[Any, ...]:
    with transaction(engine, write=False) as conn:
        brain = {"b": tenant.brain_id}
        return tuple(
            conn.execute(text(f"SELECT {what} FROM {table} WHERE brain_id = :b"), brain).all()
            for what, table in (
                ("id, content, state, updated_at", "memories"),
                ("id", "memory_history"),
                ("id", "changelog"),
            )
        )


def _seed(client: LambdaClient, user: str, *contents: str) -> list[str]:
    ids = []
    for content in contents:
        reply = client.post("/v1/memories", {"content": content, "user_id": user})
        assert reply.status == 201, reply.body
        ids.append(reply.json()["id"])
    return ids


# --- without an LLM ---------------------------------------------------------------------------


def test_each_user_turn_becomes_a_memory_traceable_to_it(client: LambdaClient) -> None:
    reply = client.post(
        "/v1/memories",
        {"messages": CHAT, "user_id": "u1", "timestamp": "2026-01-02T03:04:05Z", "tags": ["chat"]},
    )
    assert reply.status == 201, reply.body
    results = reply.json()["results"]
    assert [r["event"] for r in results] == ["ADD", "ADD"]
    memories = [r["memory"] for r in results]
    assert [m["content"] for m in memories] == [CHAT[0]["content"], CHAT[2]["content"]]
    assert [m["metadata"]["conversation"]["position"] for m in memories] == [0, 2]
    assert {m["metadata"]["conversation"]["role"] for m in memories} == {"user"}
    assert {m["occurred_at"] for m in memories} == {"2026-01-02T03:04:05.000Z"}
    assert memories[0]["tags"] == ["chat"] and memories[0]["user_id"] == "u1"
    history = client.get(f"/v1/memories/{memories[0]['id']}/history").json()["results"]
    assert [(h["event"], h["role"]) for h in history] == [("ADD", "user")]

    chosen = client.post(
        "/v1/memories", {"messages": CHAT, "user_id": "u1", "roles": ["assistant"]}
    ).json()["results"]
    assert [r["memory"]["content"] for r in chosen] == [CHAT[1]["content"]]

    again = client.post("/v1/memories", {"messages": CHAT[:1], "user_id": "u1"}).json()
    assert [r["event"] for r in again["results"]] == ["NONE"]  # already stored


def test_a_bad_conversation_is_refused_whole(client: LambdaClient) -> None:
    reply = client.post("/v1/memories", {"messages": [], "user_id": "u1"})
    assert reply.status == 422 and reply.error_code == "invalid_input"
    reply = client.post("/v1/memories", {"messages": [{"content": "no role"}]})
    assert reply.status == 422
    assert reply.json()["error"]["details"][0]["field"] == "messages.0.role"


# --- with an LLM ------------------------------------------------------------------------------


def test_facts_are_extracted_and_added(
    settings: Settings, tenant: Tenant, stub: StubLLM, engine: Engine
) -> None:
    client = llm_client(settings, tenant, stub)
    stub.reply = recorded({})
    reply = client.post("/v1/memories", {"messages": CHAT, "user_id": "u2"})
    assert reply.status == 201, reply.body
    results = reply.json()["results"]
    assert [(r["event"], r["memory"]["content"]) for r in results] == [
        ("ADD", "Lives in Lyon"),
        ("ADD", "Likes green tea"),
        ("ADD", "No longer has a dog"),
    ]
    assert results[0]["memory"]["metadata"]["conversation"]["extracted"] is True
    [call] = stub.requests  # nothing stored yet: no update prompt
    assert call["messages"][1]["content"].startswith("Conversation:\nuser: I moved from Paris")
    history = client.get(f"/v1/memories/{results[0]['memory']['id']}/history").json()
    assert [h["event"] for h in history["results"]] == ["ADD"]


def test_decisions_update_delete_and_keep_in_one_transaction(
    settings: Settings, tenant: Tenant, stub: StubLLM
) -> None:
    client = llm_client(settings, tenant, stub)
    paris, tea, rex = _seed(
        client, "u3", "Lives in Paris", "Likes green tea", "Has a dog named Rex"
    )
    _seed(client, "someone-else", "Lives in Paris too")
    stub.reply = recorded(
        {
            "Lives in Paris": ("UPDATE", "Lives in Lyon (moved from Paris)"),
            "Likes green tea": ("NONE", None),
            "Has a dog named Rex": ("DELETE", None),
        }
    )
    reply = client.post("/v1/memories", {"messages": CHAT, "user_id": "u3", "actor_id": "bot"})
    assert reply.status == 201, reply.body
    by_event = {r["event"]: r for r in reply.json()["results"]}
    assert set(by_event) == {"UPDATE", "NONE", "DELETE", "ADD"}
    assert by_event["UPDATE"]["memory"]["id"] == paris
    assert by_event["UPDATE"]["previous_content"] == "Lives in Paris"
    assert by_event["NONE"]["memory"]["id"] == tea
    assert by_event["DELETE"]["memory"]["state"] == "deleted"
    assert by_event["ADD"]["memory"]["content"] == "Gave away a dog named Rex"

    update_prompt = stub.requests[1]["messages"][1]["content"]
    assert "Lives in Paris" in update_prompt and "Paris too" not in update_prompt  # one user
    assert paris not in update_prompt  # the LLM sees "0", "1", ..., never an id
    rows = client.get(f"/v1/memories/{paris}/history").json()["results"]
    assert [(r["event"], r["old_memory"], r["new_memory"]) for r in rows][-1] == (
        "UPDATE",
        "Lives in Paris",
        "Lives in Lyon (moved from Paris)",
    )
    assert rows[-1]["actor_id"] == "bot"
    assert client.get(f"/v1/memories/{rex}/history").json()["results"][-1]["event"] == "DELETE"
    assert client.get(f"/v1/memories/{tea}/history").json()["results"][-1]["event"] == "ADD"


@pytest.mark.parametrize(
    "failure",
    ["prose", "wrong_shape", "unknown_id", "http_500", "slow"],
)
def test_a_failing_llm_changes_nothing_and_says_why(
    settings: Settings, tenant: Tenant, stub: StubLLM, engine: Engine, failure: str
) -> None:
    client = llm_client(settings, tenant, stub, timeout_seconds=0.3)
    _seed(client, "u4", "Lives in Paris")
    replies: dict[str, Reply] = {
        "prose": lambda body: (200, "Sure! The user lives in Lyon."),
        "wrong_shape": lambda body: (200, '{"facts": "Lives in Lyon"}'),
        "unknown_id": lambda body: (
            (200, FACTS)
            if len(stub.requests) == 1
            else (200, '{"memory": [{"id": "7", "event": "DELETE"}]}')
        ),
        "http_500": lambda body: (500, "overloaded"),
        "slow": lambda body: (200, FACTS),
    }
    stub.reply = replies[failure]
    stub.delay = 1.0 if failure == "slow" else 0.0
    before = _state(engine, tenant)
    reply = client.post("/v1/memories", {"messages": CHAT, "user_id": "u4"})
    assert reply.status == 502, reply.body
    assert reply.error_code == "extraction_failed"
    assert reply.json()["error"]["message"]
    assert _state(engine, tenant) == before


def test_the_llm_is_never_called_while_a_write_is_open(
    settings: Settings, tenant: Tenant, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = llm_client(settings, tenant, stub)
    _seed(client, "u5", "Lives in Paris")
    stub.reply = recorded({"Lives in Paris": ("UPDATE", "Lives in Lyon")})
    writing = False
    during: list[bool] = []
    complete, apply = OpenAIChat.complete, extraction.apply

    def spy_complete(self: OpenAIChat, *args: Any) -> str:
        during.append(writing)
        return complete(self, *args)

    def spy_apply(*args: Any, **kw: Any) -> Any:
        nonlocal writing
        writing = True
        try:
            return apply(*args, **kw)
        finally:
            writing = False

    monkeypatch.setattr(OpenAIChat, "complete", spy_complete)
    monkeypatch.setattr(extraction, "apply", spy_apply)
    assert client.post("/v1/memories", {"messages": CHAT, "user_id": "u5"}).status == 201
    assert during == [False, False]


def test_an_update_is_embedded_before_the_write_opens(
    settings: Settings, tenant: Tenant, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A memory's vector is made of its title, key and tags with its content: an UPDATE of one
    that has them must be embedded with them before the transaction, not inside it."""
    client = llm_client(settings, tenant, stub)
    created = client.post(
        "/v1/memories",
        {
            "content": "Lives in Paris",
            "user_id": "u9",
            "title": "Home",
            "key": "home.city",
            "tags": ["home", "city"],
        },
    )
    assert created.status == 201, created.body
    stub.reply = recorded({"Lives in Paris": ("UPDATE", "Lives in Lyon")})
    during = embeds_during(monkeypatch, extraction, "apply")
    reply = client.post("/v1/memories", {"messages": CHAT, "user_id": "u9"})
    assert reply.status == 201, reply.body
    assert "UPDATE" in {r["event"] for r in reply.json()["results"]}
    assert during and True not in during, during


def test_async_mode_answers_with_a_job(
    settings: Settings, tenant: Tenant, stub: StubLLM, engine: Engine
) -> None:
    client = llm_client(settings, tenant, stub)
    stub.reply = recorded({})
    reply = client.post("/v1/memories", {"messages": CHAT, "user_id": "u6", "async_mode": True})
    assert reply.status == 202, reply.body
    job = reply.json()["job"]
    assert job["status"] == "pending" and job["results"] is None
    done = client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded"
    assert done["results"][0]["memory"]["content"] == "Lives in Lyon"

    stub.reply = lambda body: (200, "no JSON here")
    before = _state(engine, tenant)
    failed = client.post(
        "/v3/memories/add/", {"messages": CHAT, "user_id": "u6", "async_mode": True}
    )
    assert failed.status == 200, failed.body
    [queued] = failed.json()["results"]
    assert queued["status"] == "PENDING"
    event = client.get(f"/v1/event/{queued['event_id']}/").json()
    assert event["status"] == "FAILED" and event["error"]["code"] == "extraction_failed"
    assert _state(engine, tenant)[0] == before[0]  # no memory changed

    other = LambdaClient(settings, key=tenant.new_key(user_id="someone"))
    assert other.get(f"/v1/jobs/{job['id']}").status == 404  # another user's job


def test_a_procedure_is_written_by_the_llm(
    settings: Settings, tenant: Tenant, stub: StubLLM
) -> None:
    client = llm_client(settings, tenant, stub)
    stub.reply = lambda body: (200, "Goal: deploy. 1. Built the site. 2. Synced dist/.")
    reply = client.post(
        "/v3/memories/add/",
        {"messages": CHAT, "agent_id": "deployer", "memory_type": "procedural_memory"},
    )
    [result] = reply.json()["results"]
    assert result["memory"] == "Goal: deploy. 1. Built the site. 2. Synced dist/."
    assert result["memory_type"] == "procedural_memory" and result["agent_id"] == "deployer"
    assert stub.requests[0]["messages"][0]["content"].startswith("You record how a task")


def test_a_conversation_of_no_user_never_touches_a_users_memories(
    settings: Settings, tenant: Tenant, stub: StubLLM
) -> None:
    client = llm_client(settings, tenant, stub)
    _seed(client, "someone", "Lives in Paris", "Likes green tea")
    stub.reply = recorded({"Lives in Paris": ("DELETE", None)})
    reply = client.post("/v1/memories", {"messages": CHAT})
    assert reply.status == 201, reply.body
    assert len(stub.requests) == 1  # nothing of no user to compare with: no update prompt
    assert {r["event"] for r in reply.json()["results"]} == {"ADD"}
    assert {r["memory"]["user_id"] for r in reply.json()["results"]} == {None}


def test_a_job_is_done_once(
    settings: Settings, tenant: Tenant, stub: StubLLM, engine: Engine
) -> None:
    client = llm_client(settings, tenant, stub)
    stub.reply = recorded({})
    job = client.post(
        "/v1/memories", {"messages": CHAT, "user_id": "u7", "async_mode": True}
    ).json()["job"]
    before = _state(engine, tenant)
    calls = len(stub.requests)
    llm = ExtractionSettings(llm="openai", base_url=stub.url)
    ran = jobs.run(engine, settings.with_(extraction=llm), tenant.brain_id, job["id"])
    assert ran == "skipped"
    assert len(stub.requests) == calls and _state(engine, tenant) == before
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"


def test_a_job_whose_process_died_is_reported_failed(
    settings: Settings, tenant: Tenant, engine: Engine
) -> None:
    scope = Scope(brain_id=tenant.brain_id, principal="test", role="owner")
    with transaction(engine) as conn:
        job = jobs.create(conn, scope, Conversation.model_validate({"messages": CHAT}))
    client = LambdaClient(settings, key=tenant.key)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "pending"
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE ingest_jobs SET updated_at = updated_at - :age WHERE id = :id"),
            {"age": jobs.ABANDONED_MS + 1, "id": job["id"]},
        )
    reported = client.get(f"/v1/jobs/{job['id']}").json()
    assert reported["status"] == "failed" and reported["error"]["code"] == "job_abandoned"
