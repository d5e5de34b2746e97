"""Rate limits: the SQL and DynamoDB limiters (atomic under concurrency), and the limits on
signup, login, the authorize form, the token and registration endpoints and per-brain API
quotas, each answering 429 with Retry-After."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from core.kernel import ratelimit
from core.kernel.config import Rate, RateLimitSettings, Settings
from tests.oauth_fixtures import (
    PASSWORD,
    REDIRECT,
    Web,
    auth_settings,
    authorize_params,
    new_email,
    oauth_settings,
    parse_form,
    pkce_pair,
    register_client,
)


def _bucket() -> str:
    return f"test:{uuid.uuid4().hex}"


def _hammer(
    limiter: ratelimit.Limiter, bucket: str, rate: Rate, threads: int, each: int
) -> list[ratelimit.Decision]:
    start = threading.Barrier(threads)
    decisions: list[ratelimit.Decision] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait(timeout=30)
        for _ in range(each):
            decision = limiter.hit(bucket, rate)
            with lock:
                decisions.append(decision)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    return decisions


def test_the_sql_limiter_is_atomic_under_concurrency(engine: Engine) -> None:
    limiter = ratelimit.SqlLimiter(engine)
    rate = Rate(30, 3600)
    decisions = _hammer(limiter, _bucket(), rate, threads=6, each=10)
    # Every hit got its own count: no two requests saw the same slot.
    assert sorted(d.count for d in decisions) == list(range(1, 61))
    assert sum(d.allowed for d in decisions) == 30
    assert all(1 <= d.retry_after <= 3600 for d in decisions)


def test_a_new_window_starts_afresh(engine: Engine) -> None:
    limiter = ratelimit.SqlLimiter(engine)
    bucket, rate = _bucket(), Rate(2, 60)
    t0 = 1_800_000_000_000  # on a window boundary (a multiple of 60 s)
    assert [limiter.hit(bucket, rate, t0 + i).allowed for i in range(3)] == [True, True, False]
    late = limiter.hit(bucket, rate, t0 + 45_000)
    assert not late.allowed and late.retry_after == 15
    assert limiter.hit(bucket, rate, t0 + 60_000).allowed


def test_expired_rows_are_swept(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import text

    from core.kernel.db.engine import transaction

    limiter = ratelimit.SqlLimiter(engine)
    bucket = _bucket()
    limiter.hit(bucket, Rate(5, 1), now=1_000)  # a window that ended long ago
    monkeypatch.setattr(limiter, "sweep_probability", 1.0)
    limiter.hit(_bucket(), Rate(5, 60))
    with transaction(engine, write=False) as conn:
        left = conn.execute(
            text("SELECT count(*) FROM rate_limits WHERE bucket = :b"), {"b": bucket}
        ).scalar()
    assert left == 0


# -- DynamoDB --------------------------------------------------------------------------------


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        import boto3

        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="mnemo-rate-limits",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ratelimit.forget()
        yield client
        ratelimit.forget()


def test_the_dynamodb_limiter_counts_in_one_update_per_hit(dynamodb: Any) -> None:
    # Atomicity is DynamoDB's: each hit is a single UpdateItem with ADD, which the service
    # applies atomically per item. moto does not lock between threads, so this test checks the
    # counting and the item's shape, sequentially; the SQL test above covers real concurrency.
    limiter = ratelimit.DynamoLimiter("mnemo-rate-limits", client=dynamodb)
    calls: list[str] = []
    real = dynamodb.update_item

    def spy(**kw: Any) -> Any:
        calls.append(kw["UpdateExpression"])
        return real(**kw)

    dynamodb.update_item = spy
    rate = Rate(10, 300)
    t0 = 1_800_000_000_000 - 1_800_000_000_000 % 300_000
    decisions = [limiter.hit("login.ip:abc", rate, t0 + i) for i in range(12)]
    assert [d.count for d in decisions] == list(range(1, 13))
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
    assert decisions[-1].retry_after == 300
    assert len(calls) == 12 and all(c.startswith("ADD #count :one") for c in calls)
    assert limiter.hit("login.ip:abc", rate, t0 + 300_000).count == 1  # the next window
    items = dynamodb.scan(TableName="mnemo-rate-limits")["Items"]
    assert sorted(i["count"]["N"] for i in items) == ["1", "12"]
    assert all(int(i["expires_at"]["N"]) > t0 // 1000 for i in items)  # for the table's TTL


def test_login_brute_force_is_stopped_by_dynamodb_when_configured(
    dynamodb: Any, settings: Settings, engine: Engine
) -> None:
    s = auth_settings(settings, login__account_source=Rate(3, 300))
    s = s.with_(
        rate_limits=RateLimitSettings(
            backend="dynamodb",
            dynamodb_table="mnemo-rate-limits",
            dynamodb_region="us-east-1",
            rules=s.rate_limits.rules,
        )
    )
    web = Web(s)
    email = new_email()
    web.signup(email)
    statuses = [web.login(email, "wrong password!").status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert dynamodb.scan(TableName="mnemo-rate-limits")["Count"] >= 1


# -- the limits on the endpoints ---------------------------------------------------------------


def test_a_guessing_address_is_paused_and_the_owner_still_signs_in(
    settings: Settings, engine: Engine
) -> None:
    web = Web(auth_settings(settings, login__account_source=Rate(5, 300), login__ip=Rate(50, 300)))
    email = new_email()
    web.signup(email)
    for _ in range(5):
        assert web.login(email, "guess number n!").status == 401
    blocked = web.login(email, PASSWORD)  # the guessing address waits, right password or not
    assert blocked.status == 429 and blocked.error_code == "rate_limited"
    assert blocked.json()["error"]["details"]["rule"] == "login.account_source"
    assert 1 <= int(blocked.headers["retry-after"]) <= 300
    # The stranger did not lock the owner out: from another address the password works.
    owner = web.call(
        "POST",
        "/auth/login",
        json_body={"email": email, "password": PASSWORD},
        ip="2001:db8:1:2::1",
    )
    assert owner.status == 200
    # Nor another account from the guessing address.
    other = new_email()
    web.signup(other)
    assert web.login(other, PASSWORD).status == 200
    # One IP trying many accounts hits the per-IP attempt limit.
    spray = Web(auth_settings(settings, login__ip=Rate(3, 300)))
    statuses = [spray.login(new_email(), "wrong password!").status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_a_distributed_attack_pauses_every_address_that_failed(
    settings: Settings, engine: Engine
) -> None:
    web = Web(
        auth_settings(settings, login__account_source=Rate(5, 300), login__account=Rate(3, 300))
    )
    email = new_email()
    web.signup(email)
    botnet = [f"2001:db8:bad:{i}::1" for i in range(4)]
    statuses = [web.login(email, "wrong password!", ip=ip).status for ip in botnet[:3]]
    assert statuses == [401, 401, 401]
    # Past the account-wide line: an address that failed is paused even with the password...
    paused = web.call(
        "POST", "/auth/login", json_body={"email": email, "password": PASSWORD}, ip=botnet[0]
    )
    assert paused.status == 429
    assert paused.json()["error"]["details"]["rule"] == "login.account"
    # ... a fresh address gets one answer, and is paused once it has failed ...
    assert web.login(email, "wrong password!", ip=botnet[3]).status == 401
    assert web.login(email, "wrong password!", ip=botnet[3]).status == 429
    # ... and the owner, from an address that has not failed, signs in.
    assert web.login(email, PASSWORD, ip="2001:db8:600d::1").status == 200


def test_signup_is_limited_per_ip(settings: Settings, engine: Engine) -> None:
    web = Web(auth_settings(settings, signup__ip=Rate(2, 3600)))
    web.signup()
    web.signup()
    third = web.call("POST", "/auth/signup", json_body={"email": new_email(), "password": PASSWORD})
    assert third.status == 429 and "retry-after" in third.headers


def test_registration_is_limited_per_ip(settings: Settings, engine: Engine) -> None:
    web = Web(oauth_settings(settings, register__ip=Rate(1, 3600)))
    register_client(web)
    reply = web.call(
        "POST",
        "/oauth/register",
        json_body={
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert reply.status == 429 and reply.json()["error"] == "rate_limited"
    assert "retry-after" in reply.headers


def test_the_token_endpoint_is_limited_per_client(settings: Settings, engine: Engine) -> None:
    web = Web(oauth_settings(settings, token__account=Rate(2, 60)))
    client = register_client(web)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": "mnemo_rt_x",
        "client_id": client["client_id"],
    }
    statuses = [web.call("POST", "/oauth/token", form=form).status for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_the_authorize_form_is_limited(settings: Settings, engine: Engine) -> None:
    web = Web(oauth_settings(settings, authorize__account_source=Rate(2, 300)))
    client = register_client(web)
    email = new_email()
    web.signup(email)
    _, challenge = pkce_pair()
    page = web.call(
        "GET", "/oauth/authorize", query=authorize_params(client, challenge), keep_cookies=True
    )
    fields = {
        **parse_form(page.body).fields,
        "email": email,
        "password": "not the one!",
        "action": "login",
    }
    statuses = [
        web.call("POST", "/oauth/authorize", form=fields, keep_cookies=True).status
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    assert (
        REDIRECT
        not in web.call("POST", "/oauth/authorize", form=fields, keep_cookies=True).location
    )


def test_per_brain_api_quota(settings: Settings, engine: Engine) -> None:
    web = Web(auth_settings(settings, api__brain=Rate(3, 60)))
    mine = web.signup()["access_token"]
    theirs = web.signup()["access_token"]
    statuses = [web.call("GET", "/v1/memories", token=mine).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = web.call("POST", "/v1/memories", json_body={"content": "x"}, token=mine)
    assert limited.status == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["details"]["rule"] == "api.brain"
    # Another brain has its own quota.
    assert web.call("GET", "/v1/memories", token=theirs).status == 200
