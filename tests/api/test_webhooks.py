"""Watches and the webhook outbox: the API, the outbox written in the change's transaction,
signed deliveries to a real receiver on 127.0.0.1 with retries, the SSRF guard (stubbed DNS:
no test resolves or connects to a private address), atomic claims, and SQS (moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, text

from core.events import outbox as enqueue
from core.identity.keys import create_key
from core.kernel.config import Limits, Settings, WebhookSettings
from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.models import MemoryIn
from core.retrieval.indexing import SearchIndexer
from core.webhooks import deliver, outbox, queue, signing
from core.webhooks.drainer import BackgroundDrainer
from core.webhooks.ssrf import Target, UnsafeUrl, check_url
from handlers import events
from mnemo_client import WebhookVerificationError, verify_webhook
from tests.lambda_client import EVENTS as EVENTS_DIR
from tests.lambda_client import LambdaClient, LambdaContext
from tests.webhook_receiver import Receiver

OWNER_KEY = "owner-key-for-webhook-tests"
PUBLIC = "93.184.216.34"
DNS = {
    "hooks.example": [PUBLIC],
    "internal.example": ["10.0.0.1"],
    "mixed.example": [PUBLIC, "192.168.1.10"],
}


def stub_resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise UnsafeUrl(f"test resolver: {host!r} is not in the table")
        return table[host]

    return resolve


RESOLVER = stub_resolver(DNS)
# What drains use: it knows no host at all, so a delivery to anything but an IP literal is
# refused before any connection; receivers are reached at 127.0.0.1 only.
NO_DNS = stub_resolver({})


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.with_(
        api_key=OWNER_KEY,
        default_brain=f"w-{uuid.uuid4().hex[:10]}",
        webhooks=WebhookSettings(
            allow_http_loopback=True, backoff_base_seconds=0, max_attempts=4, concurrency=2
        ),
    )


@pytest.fixture
def owner(hook_settings: Settings, engine: Engine) -> Iterator[LambdaClient]:
    client = LambdaClient(hook_settings, key=OWNER_KEY)
    client.app.state.services.resolver = RESOLVER
    yield client
    # The PostgreSQL database is shared by the session: leave no delivery for another test's
    # drain (the maintenance sweep resolves hosts for real).
    with transaction(engine) as conn:
        for table in ("deliveries", "watches"):
            conn.execute(
                text(
                    f"DELETE FROM {table} WHERE brain_id IN "
                    "(SELECT id FROM brains WHERE slug LIKE 'w-%')"
                )
            )


@pytest.fixture(autouse=True)
def _no_notifier() -> Iterator[None]:
    yield
    enqueue.set_notifier(None)


def brain_of(engine: Engine, slug: str) -> str:
    with transaction(engine, write=False) as conn:
        return str(
            conn.execute(text("SELECT id FROM brains WHERE slug = :s"), {"s": slug}).scalar()
        )


def add_memory(client: LambdaClient, content: str, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/memories", {"content": content, **fields})
    assert reply.status == 201, reply.body
    data: dict[str, Any] = reply.json()
    return data


def create_watch(client: LambdaClient, url: str, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v1/watches", {"name": "w", "webhook_url": url, **fields})
    assert reply.status == 201, reply.body
    data: dict[str, Any] = reply.json()
    return data


def deliveries_of(client: LambdaClient, watch_id: str) -> list[dict[str, Any]]:
    reply = client.get(f"/v1/watches/{watch_id}/deliveries")
    assert reply.status == 200, reply.body
    results: list[dict[str, Any]] = reply.json()["results"]
    return results


def drain(engine: Engine, settings: Settings) -> outbox.DrainReport:
    return outbox.drain(engine, settings.webhooks, resolver=NO_DNS, budget_seconds=30)


# --- the SSRF guard ------------------------------------------------------------------------------

LOOPBACK_OK = WebhookSettings(allow_http_loopback=True)


def test_an_attempt_ends_at_its_deadline_however_slowly_the_receiver_trickles() -> None:
    """Each byte comes well inside the socket timeout, so only the attempt's own deadline
    (2 x timeout) can end it: without one, this receiver would hold the worker for minutes."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 10_000:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    target = check_url(f"http://127.0.0.1:{port}/hook", LOOPBACK_OK, RESOLVER)
    started = time.monotonic()
    try:
        outcome = deliver.post(target, b"{}", {}, timeout=0.3)
    finally:
        stop.set()
        server.close()
    took = time.monotonic() - started
    assert not outcome.ok and outcome.status is None
    assert outcome.error is not None and outcome.error.startswith("DeadlineExceeded")
    assert 0.5 <= took < 3.0, took


# --- the API --------------------------------------------------------------------------------


def test_watch_crud_and_owner_only(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    made = create_watch(
        owner,
        "https://hooks.example/in",
        event_types=["memory.created", "memory.created", "link.created"],
        query="Tea",
    )
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 40
    assert made["event_types"] == ["memory.created", "link.created"]
    assert made["secret_hint"] == made["secret"][:10] + "…"
    listed = owner.get("/v1/watches").json()["results"]
    assert [w["id"] for w in listed] == [made["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in owner.get(f"/v1/watches/{made['id']}").json()

    patched = owner.patch(
        f"/v1/watches/{made['id']}", {"event_types": "*", "query": "", "active": False}
    ).json()
    assert (patched["event_types"], patched["query"], patched["active"]) == ("*", None, False)
    refused = owner.patch(f"/v1/watches/{made['id']}", {"webhook_url": "https://internal.example/"})
    assert (refused.status, refused.error_code) == (422, "unsafe_webhook_url")
    bad = owner.post("/v1/watches", {"name": "x", "webhook_url": "https://169.254.169.254/"})
    assert (bad.status, bad.error_code) == (422, "unsafe_webhook_url")
    bad_type = owner.post(
        "/v1/watches",
        {"name": "x", "webhook_url": "https://hooks.example/", "event_types": ["Nope"]},
    )
    assert bad_type.status == 422

    test = owner.post(f"/v1/watches/{made['id']}/test")
    assert test.status == 202, test.body
    assert test.json()["event_type"] == "watch.test"
    assert [d["event_type"] for d in deliveries_of(owner, made["id"])] == ["watch.test"]

    # A brain key (no owner role) cannot manage watches; another brain's watch is a 404.
    with transaction(engine) as conn:
        member_key = create_key(conn, hook_settings.default_brain).secret
    member = owner.as_key(member_key)
    assert member.get("/v1/watches").error_code == "owner_only"
    other = LambdaClient(
        hook_settings.with_(default_brain=f"w-{uuid.uuid4().hex[:10]}"), key=OWNER_KEY
    )
    assert other.get(f"/v1/watches/{made['id']}").status == 404
    assert other.delete(f"/v1/watches/{made['id']}").status == 404

    assert owner.delete(f"/v1/watches/{made['id']}").json() == {"id": made["id"], "deleted": True}
    assert owner.get("/v1/watches").json()["results"] == []
    feed = owner.get("/v1/changelog", query={"event_type": "watch.created"}).json()
    assert "whsec_" not in json.dumps(feed)


def test_a_brain_has_a_bounded_number_of_watches(owner: LambdaClient, engine: Engine) -> None:
    """Every write of the brain reads its active watches, and the list has no page: both stay
    bounded because a brain cannot grow watches without end."""
    from core.webhooks import watches

    made = create_watch(owner, "https://hooks.example/in")
    with transaction(engine, write=False) as conn:
        brain = conn.execute(
            text("SELECT brain_id FROM watches WHERE id = :id"), {"id": made["id"]}
        ).scalar()
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO watches (id, brain_id, name, event_types, webhook_url, secret, "
                "active, created_at, updated_at) VALUES (:id, :b, 'w', '[\"*\"]', "
                "'https://hooks.example/in', 'whsec_x', 1, 1, 1)"
            ),
            [{"id": uuid.uuid4().hex, "b": brain} for _ in range(watches.MAX_WATCHES - 1)],
        )
    full = owner.post("/v1/watches", {"name": "one more", "webhook_url": "https://hooks.example/"})
    assert (full.status, full.error_code) == (409, "watch_limit"), full.body
    assert str(watches.MAX_WATCHES) in full.json()["error"]["message"]


# --- the outbox --------------------------------------------------------------------------------


def _pending(engine: Engine, brain_id: str) -> list[Any]:
    with transaction(engine, write=False) as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, event_type, entity_id, status, attempts FROM deliveries "
                    "WHERE brain_id = :b ORDER BY created_at, id"
                ),
                {"b": brain_id},
            )
        )


def test_a_change_and_its_delivery_commit_or_roll_back_together(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    watch = create_watch(owner, "https://hooks.example/in", event_types=["memory.created"])
    brain_id = brain_of(engine, hook_settings.default_brain)
    scope = Scope(brain_id=brain_id, principal="test")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction(engine) as conn:
        memories.create(conn, scope, MemoryIn(content="rolled back"), Limits(), SearchIndexer(None))
        assert len(_pending_in(conn, brain_id)) == 1  # written, inside the transaction
        raise Boom
    assert _pending(engine, brain_id) == []
    with transaction(engine, write=False) as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM memories WHERE brain_id = :b"), {"b": brain_id}
            ).scalar()
            == 0
        )

    with transaction(engine) as conn:
        made = memories.create(conn, scope, MemoryIn(content="kept"), Limits(), SearchIndexer(None))
    rows = _pending(engine, brain_id)
    assert [(r.event_type, r.entity_id, r.status, r.attempts) for r in rows] == [
        ("memory.created", made["id"], "pending", 0)
    ]
    assert rows[0].id.endswith(":" + watch["id"])


def _pending_in(conn: Any, brain_id: str) -> list[Any]:
    return list(
        conn.execute(text("SELECT id FROM deliveries WHERE brain_id = :b"), {"b": brain_id})
    )


def test_event_type_and_text_filters(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    everything = create_watch(owner, "https://hooks.example/a")
    created_tea = create_watch(
        owner, "https://hooks.example/b", event_types=["memory.created"], query="GREEN tea"
    )
    archived = create_watch(owner, "https://hooks.example/c", event_types=["memory.archived"])
    family = create_watch(owner, "https://hooks.example/e", event_types=["memory.*"])
    paused = create_watch(owner, "https://hooks.example/d", active=False)
    tea = add_memory(owner, "Alice prefers green tea")
    add_memory(owner, "Bob likes coffee")
    assert owner.post(f"/v1/memories/{tea['id']}/archive").status == 200

    def types(watch: dict[str, Any]) -> list[str]:
        return sorted(d["event_type"] for d in deliveries_of(owner, watch["id"]))

    # "*" also sees the later watches being created.
    assert types(everything) == [
        "memory.archived",
        "memory.created",
        "memory.created",
        "watch.created",
        "watch.created",
        "watch.created",
        "watch.created",
        "watch.created",
    ]
    assert types(created_tea) == ["memory.created"]
    assert deliveries_of(owner, created_tea["id"])[0]["entity"] == {
        "type": "memory",
        "id": tea["id"],
    }
    assert types(archived) == ["memory.archived"]
    assert types(family) == ["memory.archived", "memory.created", "memory.created"]
    assert types(paused) == []


def test_a_brain_without_watches_gets_no_deliveries(
    client: LambdaClient, engine: Engine, tenant: Any
) -> None:
    add_memory(client, "nothing watches this")
    assert _pending(engine, tenant.brain_id) == []


def test_receiver_that_fails_twice_gets_one_success_with_one_delivery_id(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    with Receiver(fail_first=2) as receiver:
        watch = create_watch(owner, receiver.url, event_types=["memory.created"])
        memory = add_memory(owner, "Carol moved to Lyon", user_id="carol")
        report = drain(engine, hook_settings)
    mine = [r for r in receiver.received if r.headers["mnemo-delivery-id"].endswith(watch["id"])]
    assert [r.answered for r in mine] == [500, 500, 204]
    assert len({r.headers["mnemo-delivery-id"] for r in mine}) == 1
    assert [r.headers["mnemo-attempt"] for r in mine] == ["1", "2", "3"]
    assert report.delivered >= 1 and report.retrying >= 2
    for r in mine:
        assert r.path == "/hook"
        assert r.headers["mnemo-event"] == "memory.created"
        assert r.headers["content-type"] == "application/json"
        verify_webhook(watch["secret"], r.headers["mnemo-signature"], r.body)
    event = json.loads(mine[-1].body)
    assert set(event) == {"id", "type", "entity", "summary", "payload", "time"}
    assert event["type"] == "memory.created"
    assert event["entity"] == {"type": "memory", "id": memory["id"]}
    assert "Carol moved to Lyon" in event["summary"]
    log = deliveries_of(owner, watch["id"])
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
        ("delivered", 3, 204)
    ]
    assert log[0]["id"] == mine[0].headers["mnemo-delivery-id"]
    got = owner.get(f"/v1/watches/{watch['id']}").json()
    assert got["last_triggered_at"] is not None and got["last_error"] is None


def test_retries_stop_at_max_attempts_then_failed(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    with Receiver(fail_first=100) as receiver:
        watch = create_watch(owner, receiver.url, event_types=["watch.test"])
        assert owner.post(f"/v1/watches/{watch['id']}/test").status == 202
        drain(engine, hook_settings)
    assert len(receiver.received) == hook_settings.webhooks.max_attempts
    [log] = deliveries_of(owner, watch["id"])
    assert (log["status"], log["attempts"], log["last_status_code"]) == ("failed", 4, 500)
    assert log["last_error"].startswith("HTTP 500")
    assert owner.get(f"/v1/watches/{watch['id']}").json()["last_error"].startswith("HTTP 500")


def test_send_time_check_refuses_a_host_that_now_resolves_inside(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    """DNS rebinding: public when the watch was saved, private when the delivery goes out. The
    sender is never called, so no connection is attempted."""
    watch = create_watch(owner, "https://hooks.example/in", event_types=["watch.test"])
    assert owner.post(f"/v1/watches/{watch['id']}/test").status == 202
    calls: list[Target] = []

    def sender(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> Any:
        calls.append(target)
        return deliver.Outcome(True, 204, None)

    rebound = stub_resolver({"hooks.example": ["10.0.0.1"]})
    outbox.drain(engine, hook_settings.webhooks, resolver=rebound, sender=sender)
    assert all(t.host != "hooks.example" for t in calls)
    [log] = deliveries_of(owner, watch["id"])
    assert log["status"] in ("pending", "failed")
    assert "10.0.0.1" in log["last_error"] and "private" in log["last_error"]


def test_a_claim_is_taken_once(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    watch = create_watch(owner, "https://hooks.example/in", event_types=["watch.test"])
    for _ in range(3):
        owner.post(f"/v1/watches/{watch['id']}/test")
    settings = hook_settings.webhooks
    with transaction(engine) as conn:
        # Claims span brains: what earlier tests left pending in this database must not be
        # due now, or it fills the first claim in place of this test's deliveries.
        conn.execute(
            text(
                "UPDATE deliveries SET next_attempt_at = :far "
                "WHERE status = 'pending' AND watch_id <> :watch"
            ),
            {"far": 2**62, "watch": watch["id"]},
        )
    with transaction(engine) as conn:
        first = outbox.claim(conn, settings, 2)
    with transaction(engine) as conn:
        second = outbox.claim(conn, settings, 10)
    with transaction(engine) as conn:
        third = outbox.claim(conn, settings, 10)
    mine = {d["id"] for d in deliveries_of(owner, watch["id"])}
    firsts = {c.id for c in first} & mine
    seconds = {c.id for c in second} & mine
    assert not firsts & seconds
    assert firsts | seconds == mine
    assert not {c.id for c in third} & mine  # leased: not due again until the lease runs out
    # A claim whose lease another drainer took over records nothing.
    with transaction(engine) as conn:
        stale = next(c for c in first if c.id in mine)
        conn.execute(
            text("UPDATE deliveries SET claim_token = 'other' WHERE brain_id = :b AND id = :id"),
            {"b": stale.brain_id, "id": stale.id},
        )
        report = outbox.DrainReport()
        outbox.record(conn, settings, [(stale, deliver.Outcome(True, 200, None))], report)
    assert report.delivered == 0


def test_sqs_message_after_commit_and_the_delivery_function_drains(
    owner: LambdaClient, engine: Engine, hook_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(), Receiver() as receiver:
        queue.forget_clients()
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="mnemo-deliveries")["QueueUrl"]
        settings = hook_settings.with_(
            webhooks=WebhookSettings(allow_http_loopback=True, queue_url=url)
        )
        app = LambdaClient(settings, key=OWNER_KEY)  # installs the SQS notifier
        watch = create_watch(app, receiver.url, event_types=["memory.created"])

        def messages() -> list[dict[str, Any]]:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            for m in got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            return list(got)

        assert messages() == []  # watch.created matched no watch: nothing was written
        add_memory(app, "Dora joined the team")
        [message] = messages()
        assert json.loads(message["Body"]) == {"drain": True}

        # The DeliveryFunction: the SQS event, through the same entry point as every event.
        record = json.loads((EVENTS_DIR / "sqs.json").read_text())["Records"][0]
        event = {"Records": [{**record, "body": message["Body"]}]}
        result = events.dispatch(
            event, LambdaContext(), http=app.handler, services=app.app.state.services
        )
        assert result == {"batchItemFailures": []}
        queue.forget_clients()
    [got] = [r for r in receiver.received if r.headers["mnemo-delivery-id"].endswith(watch["id"])]
    verify_webhook(watch["secret"], got.headers["mnemo-signature"], got.body)
    assert json.loads(got.body)["type"] == "memory.created"
    assert [d["status"] for d in deliveries_of(app, watch["id"])] == ["delivered"]


def test_follow_up_chains_end_when_another_drain_took_their_work(
    owner: LambdaClient,
    engine: Engine,
    hook_settings: Settings,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every drain that schedules a retry starts a chain of delayed follow-ups; a chain whose
    deliveries another drain already sent must end, or chains pile up with every change while
    a receiver keeps failing."""
    from handlers import triggers

    if store != "sqlite":
        pytest.skip("next_due spans every brain of the database: a file of its own only")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # Follow-ups are delayed messages, invisible for up to the retry's wait: the test reads
    # what was sent at the source (the message still goes to the moto queue).
    sent: list[dict[str, Any]] = []
    real_send = queue.send_drain

    def send_drain(queue_url: str, **kw: Any) -> None:
        sent.append(kw)
        real_send(queue_url, **kw)

    monkeypatch.setattr(queue, "send_drain", send_drain)
    with mock_aws(), Receiver(fail_first=100) as receiver:
        queue.forget_clients()
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="mnemo-follow-ups")["QueueUrl"]
        settings = hook_settings.with_(
            webhooks=WebhookSettings(allow_http_loopback=True, queue_url=url)
        )
        app = LambdaClient(settings, key=OWNER_KEY)
        services = app.app.state.services
        watch = create_watch(app, receiver.url, event_types=["watch.test"])
        app.post(f"/v1/watches/{watch['id']}/test")

        def later() -> None:  # the retry waits a minute, whatever the jitter drew
            with transaction(engine) as conn:
                conn.execute(
                    text("UPDATE deliveries SET next_attempt_at = :t WHERE watch_id = :w"),
                    {"t": int(time.time() * 1000) + 60_000, "w": watch["id"]},
                )

        def drain(body: dict[str, Any]) -> dict[str, Any]:
            sent.clear()
            return triggers.drain(services, [{"body": json.dumps(body)}], LambdaContext())

        first = drain({"drain": True})
        assert first["retrying"] == 1 and [s["follow_up"] for s in sent] == [True]
        later()
        # A follow-up that arrives when its work was done by another drain ends its chain...
        done = {"drain": True, "follow_up": True, "until": int(time.time() * 1000) - 1000}
        ended = drain(done)
        assert ended["claimed"] == 0 and "follow_up_in_seconds" not in ended and sent == []
        # ...while one that woke early (SQS delays stop at 15 minutes) waits on.
        early = {**done, "until": int(time.time() * 1000) + 3_600_000}
        waits = drain(early)
        assert "follow_up_in_seconds" in waits and len(sent) == 1
        queue.forget_clients()


def test_background_drainer_sends_soon_after_the_commit(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    """`mnemo serve`'s drainer: woken by the commit that wrote the delivery."""
    with Receiver() as receiver:
        watch = create_watch(owner, receiver.url, event_types=["memory.created"])
        drainer = BackgroundDrainer(
            lambda: engine, hook_settings.webhooks, resolver=NO_DNS, idle_seconds=60
        )
        drainer.start()
        try:
            time.sleep(0.2)  # its first drain, of what was there before
            started = time.monotonic()
            add_memory(owner, "Erin prefers window seats")
            while time.monotonic() - started < 10 and not receiver.received:
                time.sleep(0.02)
            latency = time.monotonic() - started
        finally:
            drainer.stop()
    assert [r.headers["mnemo-event"] for r in receiver.received] == ["memory.created"]
    assert latency < 5  # woken, not the 60 s idle poll
    assert [d["status"] for d in deliveries_of(owner, watch["id"])] == ["delivered"]


def test_mnemo_deliver_drains_once(
    owner: LambdaClient, engine: Engine, hook_settings: Settings, store: str
) -> None:
    if store != "sqlite":
        pytest.skip("a subprocess drains every brain of the database: a file of its own only")
    with Receiver() as receiver:
        watch = create_watch(owner, receiver.url, event_types=["watch.test"])
        owner.post(f"/v1/watches/{watch['id']}/test")
        env = {
            **os.environ,
            "MNEMO_DATABASE_URL": hook_settings.database_url,
            "MNEMO_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
        }
        done = subprocess.run(
            [sys.executable, "-m", "handlers.cli", "deliver"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 attempts: 1 delivered, 0 to retry, 0 failed"), done.stdout
    assert len(receiver.received) == 1


def test_two_drainers_at_once_never_send_the_same_delivery(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    watch = create_watch(owner, "https://hooks.example/in", event_types=["watch.test"])
    brain_id = brain_of(engine, hook_settings.default_brain)
    scope = Scope(brain_id=brain_id, principal="test", role="owner")
    with transaction(engine) as conn:
        for _ in range(60):
            enqueue.enqueue_test(conn, scope, watch["id"])
    sent: list[str] = []
    lock = threading.Lock()

    def sender(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> Any:
        with lock:
            sent.append(headers[signing.DELIVERY_HEADER])
        time.sleep(0.002)
        return deliver.Outcome(True, 204, None)

    settings = WebhookSettings(concurrency=2)

    def run() -> None:
        outbox.drain(engine, settings, resolver=RESOLVER, sender=sender, batch_size=5)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    mine = [d for d in sent if d.endswith(watch["id"])]
    assert len(mine) == 60 and len(set(mine)) == 60
    log = deliveries_of(owner, watch["id"])
    assert {d["status"] for d in log} == {"delivered"}
    assert {d["attempts"] for d in log} == {1}


def test_a_drainer_claims_no_more_than_it_can_send_before_its_lease_runs_out(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    """Each attempt may take two timeouts (connect, then the answer); a batch larger than the
    workers can send within the lease would still be sending when another drainer may claim
    the same deliveries again."""
    watch = create_watch(owner, "https://hooks.example/in", event_types=["watch.test"])
    brain_id = brain_of(engine, hook_settings.default_brain)
    scope = Scope(brain_id=brain_id, principal="test", role="owner")
    with transaction(engine) as conn:
        for _ in range(3):
            enqueue.enqueue_test(conn, scope, watch["id"])
    held: list[int] = []

    def sender(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> Any:
        if headers[signing.DELIVERY_HEADER].endswith(watch["id"]):
            with transaction(engine, write=False) as conn:
                held.append(
                    int(
                        conn.execute(
                            text(
                                "SELECT count(*) FROM deliveries WHERE brain_id = :b AND "
                                "watch_id = :w AND status = 'pending' AND claim_token IS NOT NULL"
                            ),
                            {"b": brain_id, "w": watch["id"]},
                        ).scalar()
                    )
                )
        return deliver.Outcome(True, 204, None)

    settings = WebhookSettings(concurrency=1, lease_seconds=2, timeout_seconds=1)
    outbox.drain(engine, settings, resolver=RESOLVER, sender=sender)
    assert held == [1, 1, 1]


def test_a_purge_scrubs_unsent_deliveries(owner: LambdaClient, engine: Engine) -> None:
    watch = create_watch(owner, "https://hooks.example/in", event_types=["memory.created"])
    memory = add_memory(owner, "Frank's door code is 4321")
    assert owner.post(f"/v1/memories/{memory['id']}/purge", {"confirm": True}).status == 200
    [log] = deliveries_of(owner, watch["id"])
    assert log["summary"] == "(purged)"


def test_the_sweep_purges_old_finished_deliveries_in_bounded_batches(
    owner: LambdaClient, engine: Engine, hook_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the log's retention, delivered and failed deliveries go, a batch per transaction
    (a busy month can leave millions); pending ones and recent ones stay."""
    from core.webhooks import sweep

    watch = create_watch(owner, "https://hooks.example/in", event_types=["watch.test"])
    brain_id = brain_of(engine, hook_settings.default_brain)
    recent = outbox.now_ms()
    rows = [("delivered", 0)] * 8 + [("failed", 0)] * 4 + [("pending", 0), ("delivered", recent)]
    with transaction(engine) as conn:
        for status, at in rows:
            conn.execute(
                text(
                    "INSERT INTO deliveries (id, brain_id, watch_id, event_id, event_type, "
                    "entity_type, entity_id, summary, event_at, status, next_attempt_at, "
                    "created_at, updated_at) VALUES (:id, :b, :w, 'e', 'watch.test', 'watch', "
                    ":w, 's', :at, :status, :due, :at, :at)"
                ),
                {"id": uuid.uuid4().hex, "b": brain_id, "w": watch["id"], "at": at,
                 "status": status, "due": recent + 3_600_000},
            )  # fmt: skip
    batches: list[int] = []
    purge = outbox.purge_finished

    def counted(conn: Any, **kw: Any) -> int:
        batches.append(purge(conn, **kw))
        return batches[-1]

    monkeypatch.setattr(outbox, "PURGE_BATCH", 5)
    monkeypatch.setattr(outbox, "purge_finished", counted)
    # Only the purge: a drain would send what other tests left in a shared database.
    monkeypatch.setattr(outbox, "drain", lambda *_a, **_k: outbox.DrainReport())
    report = sweep.sweep(engine, hook_settings.webhooks, budget_seconds=30)
    assert report["deliveries_purged"] == 12 and batches == [5, 5, 2]
    with transaction(engine, write=False) as conn:
        left = conn.execute(
            text("SELECT status FROM deliveries WHERE watch_id = :w ORDER BY status"),
            {"w": watch["id"]},
        ).scalars()
        assert list(left) == ["delivered", "pending"]


def _readme_recipe() -> Any:
    """The verification function the README tells receivers to use, run as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in readme.split("```python")[1:] if "def verify(" in b)
    namespace: dict[str, Any] = {}
    exec(block.split("```")[0], namespace)  # noqa: S102 (the project's own README)
    return namespace["verify"]


def test_a_rotated_secret_signs_beside_the_new_one_until_its_window_ends(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    with Receiver() as receiver:
        watch = create_watch(owner, receiver.url, event_types=["memory.created"])
        rotated = owner.post(f"/v1/watches/{watch['id']}/rotate-secret", {"overlap_seconds": 3600})
        assert rotated.status == 200, rotated.body
        new = rotated.json()
        assert new["secret"] != watch["secret"] and new["secret"].startswith("whsec_")
        assert new["previous_secret_expires_at"] is not None
        shown = owner.get(f"/v1/watches/{watch['id']}").json()
        assert shown["secret_hint"] == new["secret_hint"] and "secret" not in shown
        assert shown["previous_secret_expires_at"] == new["previous_secret_expires_at"]
        add_memory(owner, "Dana joined the Lyon office")
        drain(engine, hook_settings)
        # A receiver still on the old secret verifies, and so does one already on the new.
        [during] = [
            r for r in receiver.received if r.headers["mnemo-delivery-id"].endswith(watch["id"])
        ]
        header = during.headers["mnemo-signature"]
        assert header.count("v1=") == 2
        verify_webhook(watch["secret"], header, during.body)
        verify_webhook(new["secret"], header, during.body)
        # And so does the README's own recipe, with either secret.
        readme_verify = _readme_recipe()
        assert readme_verify(watch["secret"], header, during.body)
        assert readme_verify(new["secret"], header, during.body)
        assert not readme_verify(signing.new_secret(), header, during.body)
        # No overlap: the old secret stops signing at once.
        again = owner.post(f"/v1/watches/{watch['id']}/rotate-secret", {"overlap_seconds": 0})
        newest = again.json()
        assert newest["previous_secret_expires_at"] is None
        add_memory(owner, "Eve joined the Lyon office")
        drain(engine, hook_settings)
        after = [
            r for r in receiver.received if r.headers["mnemo-delivery-id"].endswith(watch["id"])
        ]
        last = after[-1].headers["mnemo-signature"]
        assert last.count("v1=") == 1
        verify_webhook(newest["secret"], last, after[-1].body)
        with pytest.raises(WebhookVerificationError):
            verify_webhook(new["secret"], last, after[-1].body)
    changes = owner.get("/v1/changelog", query={"event_type": "watch.secret_rotated"}).json()
    assert len(changes["results"]) == 2
    assert (
        owner.post(f"/v1/watches/{watch['id']}/rotate-secret", {"overlap_seconds": 10**9}).status
        == 422
    )
