"""Inbound triggers: signed webhooks to /v1/hooks/{source} and 'Mnemo Memory' EventBridge
events add memories; bad signatures, stale timestamps and replays are refused."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine

from core.identity.keys import create_key
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.webhooks import signing
from handlers import events
from tests.lambda_client import EVENTS, LambdaClient, LambdaContext

OWNER_KEY = "owner-key-for-hook-tests"


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.with_(api_key=OWNER_KEY, default_brain=f"h-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def owner(hook_settings: Settings, engine: Engine) -> LambdaClient:
    return LambdaClient(hook_settings, key=OWNER_KEY)


def make_source(owner: LambdaClient, name: str = "crm", **fields: Any) -> dict[str, Any]:
    reply = owner.post("/v1/hooks/sources", {"name": name, **fields})
    assert reply.status == 201, reply.body
    data: dict[str, Any] = reply.json()
    return data


def send(
    client: LambdaClient,
    source: dict[str, Any],
    memory: dict[str, Any],
    *,
    delivery_id: str | None = None,
    timestamp: int | None = None,
    secret: str | None = None,
    tamper: bool = False,
) -> Any:
    body = json.dumps(memory).encode()
    headers = {
        "Mnemo-Signature": signing.sign(secret or source["secret"], body, timestamp=timestamp),
        "Content-Type": "application/json",
    }
    if delivery_id is not None:
        headers["Mnemo-Delivery-Id"] = delivery_id
    if tamper:
        body = body.replace(b"tea", b"tee")
    return client.as_key(None).request("POST", source["path"], headers=headers, body=body)


def test_sources_are_managed_by_owners(
    owner: LambdaClient, engine: Engine, hook_settings: Settings
) -> None:
    made = make_source(owner, user_id="alice")
    assert made["secret"].startswith("whsec_")
    assert made["path"] == f"/v1/hooks/{made['id']}"
    listed = owner.get("/v1/hooks/sources").json()["results"]
    assert [(s["id"], s["user_id"]) for s in listed] == [(made["id"], "alice")]
    assert "secret" not in listed[0]
    assert owner.post("/v1/hooks/sources", {"name": "crm"}).error_code == "source_exists"
    with transaction(engine) as conn:
        member_key = create_key(conn, hook_settings.default_brain).secret
    assert owner.as_key(member_key).get("/v1/hooks/sources").error_code == "owner_only"
    assert owner.delete(f"/v1/hooks/sources/{made['id']}").json()["deleted"] is True
    gone = send(owner, made, {"content": "too late"}, delivery_id="d0")
    assert gone.status == 404


def test_a_signed_delivery_adds_a_memory_once(owner: LambdaClient) -> None:
    source = make_source(owner, user_id="alice")
    memory = {"content": "Alice prefers green tea", "tags": ["crm"], "metadata": {"id": 7}}
    reply = send(owner, source, memory, delivery_id="evt-1")
    assert reply.status == 201, reply.body
    made = reply.json()
    assert (made["content"], made["user_id"], made["source"]) == (
        "Alice prefers green tea",
        "alice",
        "hook:crm",
    )
    assert owner.get(f"/v1/memories/{made['id']}").status == 200

    replay = send(owner, source, memory, delivery_id="evt-1")
    assert (replay.status, replay.error_code) == (409, "replayed_delivery")
    # Without a delivery id the signature is the id: the very same request twice is refused.
    again = {"content": "Alice renewed her plan"}
    stamp = int(time.time())
    assert send(owner, source, again, timestamp=stamp).status == 201
    assert send(owner, source, again, timestamp=stamp).error_code == "replayed_delivery"
    # A user-scoped source cannot write another user.
    other_user = send(owner, source, {"content": "x", "user_id": "bob"}, delivery_id="evt-2")
    assert other_user.status == 403


def test_bad_signatures_stale_timestamps_and_bad_bodies(owner: LambdaClient) -> None:
    source = make_source(owner)
    memory = {"content": "Bob likes tea"}
    tampered = send(owner, source, memory, delivery_id="a", tamper=True)
    assert (tampered.status, tampered.error_code) == (401, "bad_signature")
    wrong_key = send(owner, source, memory, delivery_id="b", secret="whsec_wrong")
    assert (wrong_key.status, wrong_key.error_code) == (401, "bad_signature")
    stale = send(owner, source, memory, delivery_id="c", timestamp=int(time.time()) - 301)
    assert (stale.status, stale.error_code) == (401, "stale_signature")
    future = send(owner, source, memory, delivery_id="d", timestamp=int(time.time()) + 301)
    assert future.error_code == "stale_signature"
    unsigned = owner.as_key(None).request(
        "POST", source["path"], body=json.dumps(memory), headers={"Mnemo-Delivery-Id": "e"}
    )
    assert (unsigned.status, unsigned.error_code) == (401, "missing_signature")
    unknown = send(owner, {**source, "path": "/v1/hooks/nope"}, memory, delivery_id="f")
    assert unknown.status == 404
    # A refused memory leaves no receipt: the sender may fix it and send the same id again.
    invalid = send(owner, source, {"content": ""}, delivery_id="g")
    assert invalid.status == 422
    assert send(owner, source, memory, delivery_id="g").status == 201
    # Nothing was stored by the refused ones.
    listed = owner.get("/v1/memories").json()["results"]
    assert [m["content"] for m in listed] == ["Bob likes tea"]


def test_a_captured_request_cannot_be_replayed_under_another_delivery_id(
    owner: LambdaClient,
) -> None:
    """The delivery id header and extra v1 values are not signed: changing them must not make
    a captured request new again within the window."""
    source = make_source(owner)
    body = json.dumps({"content": "Carol pays by card"}).encode()
    signature = signing.sign(source["secret"], body)

    def post(headers: dict[str, str]) -> Any:
        headers = {"Content-Type": "application/json", **headers}
        return owner.as_key(None).request("POST", source["path"], headers=headers, body=body)

    first = post({"Mnemo-Signature": signature, "Mnemo-Delivery-Id": "evt-9"})
    assert first.status == 201, first.body
    renamed = post({"Mnemo-Signature": signature, "Mnemo-Delivery-Id": "evt-9-again"})
    assert (renamed.status, renamed.error_code) == (409, "replayed_delivery")
    padded = post({"Mnemo-Signature": signature.replace(",v1=", ",v1=00,v1=")})
    assert (padded.status, padded.error_code) == (409, "replayed_delivery")
    assert len(owner.get("/v1/memories").json()["results"]) == 1


def test_a_brain_has_a_bounded_number_of_hook_sources(owner: LambdaClient, engine: Engine) -> None:
    from sqlalchemy import text

    from core.webhooks import hooks

    made = make_source(owner)
    with transaction(engine, write=False) as conn:
        brain = conn.execute(
            text("SELECT brain_id FROM hook_sources WHERE id = :id"), {"id": made["id"]}
        ).scalar()
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO hook_sources (id, brain_id, name, secret, active, created_at, "
                "updated_at) VALUES (:id, :b, :name, 'whsec_x', 1, 1, 1)"
            ),
            [
                {"id": uuid.uuid4().hex, "b": brain, "name": f"s{n}"}
                for n in range(hooks.MAX_SOURCES - 1)
            ],
        )
    full = owner.post("/v1/hooks/sources", {"name": "one-more"})
    assert (full.status, full.error_code) == (409, "source_limit"), full.body


def _memory_event(brain: str, **detail: Any) -> dict[str, Any]:
    event = json.loads((EVENTS / "eventbridge.json").read_text())
    event["detail"] = {**event["detail"], "brain": brain, **detail}
    return dict(event)


def test_eventbridge_memory_event_adds_a_memory(
    owner: LambdaClient, hook_settings: Settings
) -> None:
    services = owner.app.state.services
    event = _memory_event(hook_settings.default_brain)
    assert events.is_memory_event(event) and not events.is_schedule(event)
    owner.get("/v1/memories")  # creates the default brain
    result = events.dispatch(event, LambdaContext(), http=owner.handler, services=services)
    assert result["ok"] is True, result
    memory = result["memory"]
    assert (memory["content"], memory["user_id"], memory["source"], memory["tags"]) == (
        "Alice renewed her plan for another year",
        "alice",
        "eventbridge:mnemo.crm",
        ["billing", "crm"],
    )
    assert owner.get(f"/v1/memories/{memory['id']}").json()["metadata"]["crm_id"] == "A-1042"
    # Delivered twice (EventBridge is at-least-once): the same memory, not a second one.
    twice = events.dispatch(event, LambdaContext(), http=owner.handler, services=services)
    assert twice["memory"]["id"] == memory["id"] and twice["memory"]["deduplicated"] is True

    # An event the app cannot apply raises, so Lambda retries it and then dead-letters it.
    with pytest.raises(events.EventRefused) as unknown:
        events.dispatch(
            _memory_event("no-such-brain"), LambdaContext(), http=owner.handler, services=services
        )
    assert (unknown.value.result["ok"], unknown.value.result["error"]["code"]) == (
        False,
        "not_found",
    )
    with pytest.raises(events.EventRefused) as invalid:
        events.dispatch(
            _memory_event(hook_settings.default_brain, content=""),
            LambdaContext(),
            http=owner.handler,
            services=services,
        )
    assert invalid.value.result["error"]["code"] == "invalid_input"


def test_a_rotated_source_secret_is_accepted_until_its_window_ends(
    owner: LambdaClient, engine: Engine
) -> None:
    source = make_source(owner, "rotating")
    rotated = owner.post(f"/v1/hooks/sources/{source['id']}/rotate-secret", {})
    assert rotated.status == 200, rotated.body
    new = rotated.json()
    assert new["secret"] != source["secret"] and new["previous_secret_expires_at"] is not None
    # Both secrets sign during the overlap (a day by default).
    assert (
        send(owner, source, {"content": "signed with the old secret"}, delivery_id="r1").status
        == 201
    )
    assert (
        send(
            owner,
            source,
            {"content": "signed with the new"},
            delivery_id="r2",
            secret=new["secret"],
        ).status
        == 201
    )
    # A replay that keeps only the other secret's signature is still a replay.
    body = json.dumps({"content": "signed by hand"}).encode()
    t = int(time.time())
    old_only = f"t={t},v1={signing.digest(source['secret'], t, body)}"
    new_only = f"t={t},v1={signing.digest(new['secret'], t, body)}"
    hostless = owner.as_key(None)
    first = hostless.request(
        "POST",
        source["path"],
        headers={"Mnemo-Signature": new_only, "Content-Type": "application/json"},
        body=body,
    )
    assert first.status == 201
    replay = hostless.request(
        "POST",
        source["path"],
        headers={"Mnemo-Signature": old_only, "Content-Type": "application/json"},
        body=body,
    )
    assert replay.status == 409 and replay.error_code == "replayed_delivery"
    # Rotating with no overlap retires the old secret at once.
    newest = owner.post(
        f"/v1/hooks/sources/{source['id']}/rotate-secret", {"overlap_seconds": 0}
    ).json()
    stale = send(
        owner, source, {"content": "old secret, after"}, delivery_id="r3", secret=new["secret"]
    )
    assert stale.status == 401 and stale.error_code == "bad_signature"
    assert (
        send(owner, source, {"content": "newest"}, delivery_id="r4", secret=newest["secret"]).status
        == 201
    )
    listed = owner.get("/v1/hooks/sources").json()["results"]
    assert [s["previous_secret_expires_at"] for s in listed if s["id"] == source["id"]] == [None]


def test_inbound_hooks_are_rate_limited(hook_settings: Settings, engine: Engine) -> None:
    from dataclasses import replace

    from core.kernel.config import Rate
    from tests.oauth_fixtures import Web

    def web_with(**rules: Rate | None) -> Web:
        all_rules = {**hook_settings.rate_limits.rules, **rules}
        limits = replace(hook_settings.rate_limits, rules=all_rules)
        return Web(hook_settings.with_(rate_limits=limits))  # a fresh source address

    def post(web: Web, source: dict[str, Any], n: int, secret: str | None = None) -> int:
        memory = {"content": f"{source['name']} note {n}"}
        signature = signing.sign(secret or source["secret"], json.dumps(memory).encode())
        headers = {"Mnemo-Signature": signature, "Mnemo-Delivery-Id": f"{source['id']}-{n}"}
        return web.call("POST", source["path"], json_body=memory, headers=headers).status

    client = LambdaClient(hook_settings, key=OWNER_KEY)
    source = make_source(client, "flood")
    web = web_with(**{"hook.ip": Rate(3, 60), "hook.source": None})
    # Forged or not, an address gets 3 a minute; then 429.
    statuses = [post(web, source, i, "whsec_forged" if i == 0 else None) for i in range(4)]
    assert statuses == [401, 201, 201, 429]
    other = make_source(client, "chatty")
    web = web_with(**{"hook.ip": None, "hook.source": Rate(2, 60)})
    # A stranger's forgeries do not spend the source's allowance; its own sends do.
    assert [post(web, other, i, "whsec_forged") for i in range(3)] == [401, 401, 401]
    assert [post(web, other, i) for i in range(3)] == [201, 201, 429]
