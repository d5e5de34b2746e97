"""User summaries and the brain digest through the Lambda handler, on both stores: quality on
a 60-memory, four-theme fixture, determinism, the token budget, refresh every N memories (on
read and in the maintenance run), scope, the optional LLM summariser against real local HTTP
servers (one that answers, ones that fail) and Bedrock's Converse API (botocore's Stubber),
and why the refresh is not a BackgroundTask (Mangum runs it before the response)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from core.app import maintenance
from core.curation.summaries import llm
from core.curation.summaries.extractive import Candidate, extract, statement_text
from core.embeddings import BuiltinEmbedder
from core.kernel.config import Settings, SummarySettings
from core.kernel.db.engine import transaction
from core.memory.indexing import document_text
from core.retrieval.context import estimate_tokens
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient, LambdaContext, http_event

FOOD, RUN, WORK, TRAVEL = "food", "running", "work", "travel"
# (theme, content, type, key, tags, importance): 15 memories a theme, some tagged, some facts.
# fmt: off
DANA: list[tuple[str, str, str, str | None, list[str], float]] = [
    (FOOD, "Dana eats meat and fish most days.",
     "fact", "diet", [], 0.6),
    (FOOD, "Dana bakes sourdough bread every Sunday morning.",
     "note", None, ["food"], 0.6),
    (FOOD, "Dana's favourite dish is green Thai curry with tofu.",
     "note", None, ["food"], 0.7),
    (FOOD, "Dana is allergic to peanuts and carries an epipen.",
     "fact", "allergy", [], 0.9),
    (FOOD, "Dana tried a new ramen recipe with miso broth and liked it.",
     "journal", None, [], 0.4),
    (FOOD, "Dana prefers oat milk in coffee.",
     "note", None, ["food"], 0.5),
    (FOOD, "Dana wants to learn to make fresh pasta by hand.",
     "note", None, [], 0.5),
    (FOOD, "Dana hosted a dinner party and cooked mushroom risotto for six.",
     "journal", None, [], 0.4),
    (FOOD, "Dana dislikes coriander; leave it out of recipes.",
     "note", None, ["food"], 0.6),
    (FOOD, "Dana grows basil, mint and chillies on the balcony for cooking.",
     "note", None, [], 0.4),
    (FOOD, "Dana's sourdough starter is called Bubbles and is three years old.",
     "note", None, ["food"], 0.3),
    (FOOD, "Dana orders vegetable dumplings from the Chinese place on Fridays.",
     "journal", None, [], 0.3),
    (FOOD, "Dana is learning to cook Indian dal and chapati.",
     "note", None, [], 0.5),
    (FOOD, "Dana bought a cast iron pan to sear vegetables and bake cornbread.",
     "journal", None, [], 0.3),
    (FOOD, "Dana drinks green tea in the afternoon instead of coffee.",
     "note", None, ["food"], 0.4),
    (RUN, "Dana aims to run the Boston marathon in under 4 hours.",
     "fact", "marathon goal", ["running"], 0.7),
    (RUN, "Dana runs five mornings a week before work.",
     "note", None, ["running"], 0.6),
    (RUN, "Dana ran a 10k race in 48 minutes, a personal best.",
     "journal", None, ["running"], 0.6),
    (RUN, "Dana's running shoes are Nike Pegasus, replaced every 600 km.",
     "note", None, [], 0.4),
    (RUN, "Dana strained a knee on a trail run and is doing physio exercises.",
     "journal", None, [], 0.6),
    (RUN, "Dana does a long run of 30 km on Saturdays.",
     "note", None, ["running"], 0.5),
    (RUN, "Dana joined the Riverside running club and trains with them on Tuesdays.",
     "note", None, [], 0.5),
    (RUN, "Dana tracks training pace and heart rate with a Garmin watch.",
     "note", None, [], 0.4),
    (RUN, "Dana stretches and does yoga after every run to avoid injury.",
     "note", None, [], 0.4),
    (RUN, "Dana's easy pace is 5:45 per km and tempo pace is 4:50 per km.",
     "fact", "running pace", [], 0.5),
    (RUN, "Dana ran intervals on the track: 8 x 400 m.",
     "journal", None, [], 0.3),
    (RUN, "Dana wants to try an ultramarathon trail race next year.",
     "note", None, ["running"], 0.5),
    (RUN, "Dana carbo-loads with pasta the night before a race.",
     "note", None, [], 0.3),
    (RUN, "Dana finished a half marathon in 1 hour 49 minutes.",
     "journal", None, ["running"], 0.5),
    (RUN, "Dana uses energy gels every 45 minutes on long runs.",
     "note", None, [], 0.3),
    (WORK, "Dana works at Initech as a backend developer.",
     "fact", "employer", ["work"], 0.7),
    (WORK, "Dana writes Python and Rust services for the data platform team.",
     "note", None, ["work"], 0.7),
    (WORK, "Dana leads a team of four engineers since January.",
     "note", None, ["work"], 0.7),
    (WORK, "Dana is on call one week a month for the payments service.",
     "note", None, [], 0.5),
    (WORK, "Dana prefers code reviews to be small pull requests with tests.",
     "note", None, ["work"], 0.6),
    (WORK, "Dana migrated the billing service from PostgreSQL 12 to 16 without downtime.",
     "journal", None, [], 0.5),
    (WORK, "Dana gave a talk about observability and tracing at the all-hands.",
     "journal", None, [], 0.4),
    (WORK, "Dana uses Neovim with dark mode and a split terminal for coding.",
     "note", None, [], 0.4),
    (WORK, "Dana's goal this quarter is to cut API latency by half.",
     "note", None, ["work"], 0.7),
    (WORK, "Dana mentors a junior developer in Rust every Thursday.",
     "note", None, [], 0.4),
    (WORK, "Dana dislikes meetings before 10 am and blocks mornings for deep work.",
     "note", None, [], 0.5),
    (WORK, "Dana wrote the design document for the new event queue on Kafka.",
     "journal", None, [], 0.4),
    (WORK, "Dana is studying for the AWS solutions architect certification.",
     "note", None, [], 0.5),
    (WORK, "Dana debugged a memory leak in the Python ingestion workers.",
     "journal", None, [], 0.3),
    (WORK, "Dana's manager is Priya, who runs the platform group.",
     "fact", "manager", [], 0.5),
    (TRAVEL, "Dana lives in Boston.",
     "fact", "home city", [], 0.8),
    (TRAVEL, "Dana is planning a two-week trip to Japan in April: Tokyo, Kyoto and Osaka.",
     "note", None, ["travel"], 0.7),
    (TRAVEL, "Dana booked a ryokan with an onsen in Hakone for the Japan trip.",
     "journal", None, ["travel"], 0.5),
    (TRAVEL, "Dana prefers window seats and always flies with carry-on luggage only.",
     "note", None, ["travel"], 0.6),
    (TRAVEL, "Dana's passport expires in 2031.",
     "fact", "passport expiry", [], 0.5),
    (TRAVEL, "Dana hiked the W trek in Patagonia in 2022.",
     "journal", None, [], 0.4),
    (TRAVEL, "Dana wants to visit Iceland to see the northern lights.",
     "note", None, ["travel"], 0.5),
    (TRAVEL, "Dana collects postcards from every city visited.",
     "note", None, [], 0.3),
    (TRAVEL, "Dana took the night train from Vienna to Venice last summer.",
     "journal", None, [], 0.4),
    (TRAVEL, "Dana uses a rail pass for European trips and avoids short flights.",
     "note", None, ["travel"], 0.5),
    (TRAVEL, "Dana got travel insurance and a Japan Rail pass for the April trip.",
     "journal", None, [], 0.4),
    (TRAVEL, "Dana learned basic Japanese phrases with an app before the trip.",
     "journal", None, [], 0.3),
    (TRAVEL, "Dana stays in small guesthouses rather than hotel chains.",
     "note", None, [], 0.4),
    (TRAVEL, "Dana's dream destination is New Zealand's South Island.",
     "note", None, [], 0.4),
    (TRAVEL, "Dana visited Lisbon and Porto and loved the tiled buildings.",
     "journal", None, ["travel"], 0.4),
]
# Saved later with the same keys: each supersedes a fact above, which is archived.
DANA_UPDATES: list[tuple[str, str, str, str | None, list[str], float]] = [
    (FOOD, "Dana has been vegetarian since March.",
     "fact", "diet", ["food"], 0.8),
    (RUN, "Dana aims to run the Berlin marathon in under 3 hours 45 minutes.",
     "fact", "marathon goal", ["running"], 0.8),
    (WORK, "Dana works at Acme Robotics as a staff engineer.",
     "fact", "employer", ["work"], 0.8),
    (TRAVEL, "Dana moved to Lisbon and lives there now.",
     "fact", "home city", [], 0.8),
]
# fmt: on
SUPERSEDED_KEYS = {row[3] for row in DANA_UPDATES}
SUPERSEDED = [row[1] for row in DANA if row[3] in SUPERSEDED_KEYS]
# Words only the superseded facts use.
SUPERSEDED_WORDS = ["Initech", "Boston", "meat", "4 hours"]


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


def test_the_extractive_summary_is_deterministic_and_order_free() -> None:
    rows = [r for r in DANA if r[1] not in SUPERSEDED] + DANA_UPDATES
    embedder = BuiltinEmbedder()
    vectors = embedder.embed([document_text(None, r[3], r[4], r[1]) for r in rows])
    items = [
        Candidate(
            id=f"m{i:03d}", content=r[1], type=r[2], tags=tuple(r[4]), importance=r[5], when=i
        )
        for i, r in enumerate(rows)
    ]
    first = extract(items, vectors, 200)
    order = list(range(len(items)))
    random.Random(7).shuffle(order)
    shuffled = extract([items[i] for i in order], vectors[order], 200)
    assert shuffled.text == first.text
    assert [t.label for t in shuffled.themes] == [t.label for t in first.themes]
    assert first.considered == 60 and sum(t.memory_count for t in first.themes) == 60
    # Most memories sit with their own theme's majority.
    theme_of = {f"m{i:03d}": r[0] for i, r in enumerate(rows)}
    majority = sum(
        max(
            sum(1 for m in t.member_ids if theme_of[m] == name)
            for name in (FOOD, RUN, WORK, TRAVEL)
        )
        for t in first.themes
    )
    assert majority / 60 >= 0.6


@pytest.mark.parametrize("budget", [12, 40, 80, 200, 400])
def test_the_summary_keeps_to_its_token_budget(budget: int) -> None:
    rows = DANA_UPDATES + DANA[:20]
    vectors = BuiltinEmbedder().embed([r[1] for r in rows])
    items = [Candidate(id=f"m{i:03d}", content=r[1], when=i) for i, r in enumerate(rows)]
    made = extract(items, vectors, budget)
    assert made.text and estimate_tokens(made.text) <= budget
    assert made.tokens == estimate_tokens(made.text)


def test_long_and_blank_memories_make_short_statements() -> None:
    long = "First sentence of a long memory. " + "word " * 400
    assert statement_text(long) == "First sentence of a long memory."
    assert statement_text("no punctuation here") == "no punctuation here."
    assert statement_text("x" * 1000).endswith("…") and len(statement_text("x" * 1000)) <= 240
    assert statement_text("   \n ") == ""
    items = [Candidate(id="a", content="   "), Candidate(id="b", content="Only one memory")]
    made = extract(items, np.zeros((2, 8), np.float32), 200)
    assert made.text == "Only one memory." and made.considered == 1
    assert extract([], np.zeros((0, 8), np.float32), 200).text == ""


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


def test_an_over_long_llm_answer_is_cut_to_the_budget() -> None:
    answer = "Dana cooks. " * 100
    fitted = llm.fit(answer, 20)
    assert estimate_tokens(fitted) <= 20 and fitted.endswith("cooks.")
    assert llm.fit("one two three " * 50, 10).endswith("…")


def test_bedrock_converse_request_and_answer() -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    model = llm.BedrockChat(model="anthropic.claude-3-haiku-20240307-v1:0", client=client)
    rows = DANA_UPDATES
    items = [Candidate(id=f"m{i}", content=r[1], tags=tuple(r[4])) for i, r in enumerate(rows)]
    found = extract(items, BuiltinEmbedder().embed([r[1] for r in rows]), 200)
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [{"text": "Dana, vegetarian, in Lisbon."}],
                    }
                },
                "stopReason": "end_turn",
                "usage": {"inputTokens": 100, "outputTokens": 9, "totalTokens": 109},
                "metrics": {"latencyMs": 300},
            },
            {
                "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
                "system": [{"text": llm.SYSTEM_PROMPT.format(max_tokens=200)}],
                "messages": [{"role": "user", "content": [{"text": llm.prompt_from(found)}]}],
                "inferenceConfig": {"maxTokens": 200, "temperature": 0.0},
            },
        )
        stub.add_client_error("converse", "ThrottlingException", "slow down")
        assert llm.summarise(model, found, 200) == "Dana, vegetarian, in Lisbon."
        with pytest.raises(llm.SummaryError, match="ThrottlingException"):
            llm.summarise(model, found, 200)


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
