"""Accounts and sessions: signup and login, password hashing, refresh rotation with reuse
detection, revocation, cookies. On both stores, through the real Lambda handler."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.identity import passwords, sessions
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from tests.conftest import Tenant
from tests.oauth_fixtures import PASSWORD, Web, auth_settings, new_email


@pytest.fixture
def web(settings: Settings, engine: Engine) -> Web:
    return Web(auth_settings(settings))


def _stored_hash(engine: Engine, email: str) -> str:
    with transaction(engine, write=False) as conn:
        return str(
            conn.execute(
                text("SELECT password_hash FROM accounts WHERE email = :e"), {"e": email}
            ).scalar()
        )


# -- password hashing -----------------------------------------------------------------------


def test_a_memoryvault_hash_logs_in_and_is_upgraded(web: Web, engine: Engine) -> None:
    email = new_email().lower()
    web.signup(email)
    key = bytes.fromhex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
    imported = "pbkdf2_sha256$1$c2FsdA$" + base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE accounts SET password_hash = :h WHERE email = :e"),
            {"h": imported, "e": email},
        )
    assert web.login(email, "passwd").status == 200
    upgraded = _stored_hash(engine, email)
    assert upgraded.startswith("pbkdf2_sha256$1000$")
    assert passwords.verify_password("passwd", upgraded, 1_000).ok
    assert web.login(email, "passwd").status == 200


# -- signup and login -----------------------------------------------------------------------


def test_signup_gives_an_account_a_brain_and_a_working_session(web: Web) -> None:
    email = new_email()
    body = web.signup(f"  {email.upper()} ", display_name="Ada", brain_name="Work notes")
    assert body["account"]["email"] == email.lower()
    assert body["account"]["display_name"] == "Ada"
    assert body["brain"]["name"] == "Work notes" and body["brain"]["role"] == "owner"
    assert body["access_token"].startswith("mnemo_at_")
    assert body["refresh_token"].startswith("mnemo_rt_")
    token = body["access_token"]
    saved = web.call("POST", "/v1/memories", json_body={"content": "mine"}, token=token)
    assert saved.status == 201
    me = web.call("GET", "/auth/me", token=token).json()
    assert me["brain"]["id"] == body["brain"]["id"]
    assert me["account"]["id"] == body["account"]["id"]
    # The normalised email logs in however it is typed.
    assert web.login(email.lower()).status == 200
    assert web.login(f"\t{email.title()}").status == 200


@pytest.mark.parametrize(
    ("email", "password", "code"),
    [
        ("not-an-email", PASSWORD, "invalid_input"),
        ("a@b", PASSWORD, "invalid_input"),
        ("x@example.com", "short", "weak_password"),
        ("x@example.com", "123456789", "weak_password"),
    ],
)
def test_signup_refuses_bad_emails_and_short_passwords(
    web: Web, email: str, password: str, code: str
) -> None:
    reply = web.call("POST", "/auth/signup", json_body={"email": email, "password": password})
    assert reply.status == 422 and reply.error_code == code


def test_login_does_not_say_whether_the_email_exists(web: Web) -> None:
    email = new_email()
    web.signup(email)
    wrong_password = web.login(email, "wrong password!!")
    unknown_email = web.login(new_email(), PASSWORD)
    assert wrong_password.status == unknown_email.status == 401
    assert wrong_password.body == unknown_email.body
    assert wrong_password.error_code == "invalid_credentials"


def test_signing_up_twice_reveals_no_more_than_the_flow_must(web: Web, engine: Engine) -> None:
    email = new_email()
    first = web.signup(email)
    # The right password again: simply a login into the same account, no second account.
    again = web.call("POST", "/auth/signup", json_body={"email": email, "password": PASSWORD})
    assert again.status == 200
    assert again.json()["account"]["id"] == first["account"]["id"]
    # A wrong password: one answer, whatever the reason.
    taken = web.call(
        "POST", "/auth/signup", json_body={"email": email, "password": "another password"}
    )
    assert taken.status == 409 and taken.error_code == "signup_failed"
    assert "log in" in taken.json()["error"]["message"]
    with transaction(engine, write=False) as conn:
        count = conn.execute(
            text("SELECT count(*) FROM accounts WHERE email = :e"), {"e": email.lower()}
        ).scalar()
    assert count == 1


def test_signup_can_be_closed(settings: Settings, engine: Engine) -> None:
    closed = auth_settings(settings)
    closed = closed.with_(auth=replace(closed.auth, signup_enabled=False))
    reply = Web(closed).call(
        "POST", "/auth/signup", json_body={"email": new_email(), "password": PASSWORD}
    )
    assert reply.status == 403 and reply.error_code == "signup_disabled"


# -- sessions -------------------------------------------------------------------------------


def test_sessions_list_and_revoke_one_or_all_others(web: Web) -> None:
    email = new_email()
    first = web.signup(email)
    second = web.login(email).json()
    third = web.login(email).json()
    listed = web.call("GET", "/auth/sessions", token=second["access_token"]).json()["results"]
    assert {s["id"] for s in listed} == {
        first["session_id"],
        second["session_id"],
        third["session_id"],
    }
    assert [s["current"] for s in listed if s["id"] == second["session_id"]] == [True]

    gone = web.call("DELETE", f"/auth/sessions/{first['session_id']}", token=second["access_token"])
    assert gone.status == 200
    assert web.call("GET", "/auth/me", token=first["access_token"]).status == 401

    others = web.call("POST", "/auth/sessions/revoke-others", token=second["access_token"])
    assert others.json() == {"revoked": 1}
    assert web.call("GET", "/auth/me", token=third["access_token"]).status == 401
    assert web.call("GET", "/auth/me", token=second["access_token"]).status == 200


def test_another_accounts_session_cannot_be_revoked(web: Web) -> None:
    mine = web.signup()
    theirs = web.signup()
    reply = web.call("DELETE", f"/auth/sessions/{theirs['session_id']}", token=mine["access_token"])
    assert reply.status == 404
    assert web.call("GET", "/auth/me", token=theirs["access_token"]).status == 200


def test_a_revoked_sessions_access_token_is_refused_on_the_next_request(web: Web) -> None:
    body = web.signup()
    token = body["access_token"]
    assert web.call("GET", "/v1/memories", token=token).status == 200
    assert web.call("POST", "/auth/logout", token=token).status == 200
    refused = web.call("GET", "/v1/memories", token=token)
    assert refused.status == 401 and refused.error_code == "invalid_token"
    again = web.call("POST", "/auth/refresh", json_body={"refresh_token": body["refresh_token"]})
    assert again.status == 401


def test_refresh_rotates_and_a_replayed_refresh_token_revokes_the_family(web: Web) -> None:
    body = web.signup()
    rotated = web.call("POST", "/auth/refresh", json_body={"refresh_token": body["refresh_token"]})
    assert rotated.status == 200
    fresh = rotated.json()
    assert fresh["refresh_token"] != body["refresh_token"]
    assert fresh["session_id"] == body["session_id"]
    assert web.call("GET", "/v1/memories", token=fresh["access_token"]).status == 200

    # The old refresh token again: somebody kept a copy. The whole family dies.
    replay = web.call("POST", "/auth/refresh", json_body={"refresh_token": body["refresh_token"]})
    assert replay.status == 401 and replay.error_code == "invalid_refresh_token"
    assert "revoked" in replay.json()["error"]["message"]
    assert web.call("GET", "/v1/memories", token=fresh["access_token"]).status == 401
    latest = web.call("POST", "/auth/refresh", json_body={"refresh_token": fresh["refresh_token"]})
    assert latest.status == 401


def test_concurrent_refreshes_of_one_token_exactly_one_wins(
    settings: Settings, engine: Engine
) -> None:
    s = auth_settings(settings)
    web = Web(s)
    body = web.signup()
    life = sessions.Lifetimes.of(s.auth)
    start = threading.Barrier(4)
    outcomes: list[sessions.Rotation] = []

    def race() -> None:
        # What each concurrent /auth/refresh request runs: the rotation in its own transaction.
        start.wait(timeout=30)
        with transaction(engine) as conn:
            outcomes.append(sessions.rotate(conn, body["refresh_token"], life, client_id=None))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [o for o in outcomes if o.issued is not None]
    assert len(outcomes) == 4 and len(winners) == 1
    errors = [o.error for o in outcomes if o.issued is None]
    # Each loser saw the token used (reused), or the family already revoked by another loser.
    assert "reused" in errors and set(errors) <= {"reused", "revoked"}
    with transaction(engine, write=False) as conn:
        issued = conn.execute(
            text("SELECT count(*) FROM auth_tokens WHERE session_id = :s AND kind = 'refresh'"),
            {"s": body["session_id"]},
        ).scalar()
    assert issued == 2  # the original and the one winner's: no double issue
    # The losers presented a rotated token, which is what a replay looks like: the family is
    # revoked (strict reuse detection, RFC 9700 section 4.14.2).
    winner = winners[0].issued
    assert winner is not None
    again = web.call("POST", "/auth/refresh", json_body={"refresh_token": winner.refresh_token})
    assert again.status == 401


def _expire_access_tokens(engine: Engine, session_id: str) -> None:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "UPDATE auth_tokens SET expires_at = :past "
                "WHERE session_id = :s AND kind = 'access'"
            ),
            {"past": 1, "s": session_id},
        )


def test_an_expired_access_token_is_refused(web: Web, engine: Engine) -> None:
    body = web.signup()
    _expire_access_tokens(engine, body["session_id"])
    reply = web.call("GET", "/v1/memories", token=body["access_token"])
    assert reply.status == 401 and reply.error_code == "invalid_token"
    # The refresh token still works: that is what it is for.
    fresh = web.call("POST", "/auth/refresh", json_body={"refresh_token": body["refresh_token"]})
    assert web.call("GET", "/v1/memories", token=fresh.json()["access_token"]).status == 200


def test_a_tampered_access_token_is_refused(web: Web) -> None:
    token = web.signup()["access_token"]
    last = token[-1]
    tampered = token[:-1] + ("A" if last != "A" else "B")
    for bad in (tampered, token + "x", token[:-1], token.upper()):
        reply = web.call("GET", "/v1/memories", token=bad)
        assert reply.status == 401, bad


def _jwt(header: dict[str, Any], payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


def test_an_alg_none_token_is_refused(web: Web) -> None:
    body = web.signup()
    claims = {
        "sub": body["account"]["id"],
        "sid": body["session_id"],
        "bid": body["brain"]["id"],
        "exp": int(time.time()) + 3600,
        "iss": "mnemo",
        "aud": "mnemo",
    }
    for alg in ("none", "None", "HS256"):
        forged = _jwt({"alg": alg, "typ": "JWT"}, claims)
        for token in (forged, sessions.ACCESS_PREFIX + forged):
            reply = web.call("GET", "/v1/memories", token=token)
            assert reply.status == 401, (alg, token)


def test_account_routes_refuse_api_keys(web: Web, tenant: Tenant) -> None:
    reply = web.call("GET", "/auth/sessions", token=tenant.key)
    assert reply.status == 403 and reply.error_code == "account_session_required"
    assert web.call("GET", "/auth/sessions").status == 401


# -- cookie transport -------------------------------------------------------------------------


def test_cookie_transport_sets_httponly_secure_samesite_cookies(web: Web) -> None:
    email = new_email()
    web.signup(email)
    reply = web.call(
        "POST",
        "/auth/login",
        json_body={"email": email, "password": PASSWORD, "transport": "cookie"},
        keep_cookies=True,
    )
    assert reply.status == 200
    body = reply.json()
    assert "access_token" not in body and "refresh_token" not in body
    access = next(c for c in reply.raw_cookies if c.startswith(sessions.ACCESS_COOKIE + "="))
    refresh = next(c for c in reply.raw_cookies if c.startswith(sessions.REFRESH_COOKIE + "="))
    for cookie, path, same_site in ((access, "/", "lax"), (refresh, "/auth", "strict")):
        attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "secure", f"path={path}", f"samesite={same_site}"} <= attributes

    # The cookie alone authenticates, and refreshes through the refresh cookie.
    assert web.call("GET", "/v1/memories", keep_cookies=True).status == 200
    rotated = web.call("POST", "/auth/refresh", keep_cookies=True)
    assert rotated.status == 200 and "access_token" not in rotated.json()
    assert web.call("GET", "/auth/me", keep_cookies=True).status == 200
    # Logout clears the cookies.
    out = web.call("POST", "/auth/logout", keep_cookies=True)
    assert out.status == 200
    assert sessions.ACCESS_COOKIE not in web.jar
    assert web.call("GET", "/v1/memories", keep_cookies=True).status == 401


def test_expired_and_long_revoked_sessions_are_purged(empty_database_url: str) -> None:
    # A database of its own: purging the shared PostgreSQL database would pull expired rows
    # out from under other tests running at the same time.
    from core.kernel.db.engine import dispose, get_engine

    web = Web(auth_settings(Settings(database_url=empty_database_url, log_level="WARNING")))
    live = web.signup()
    engine = get_engine(empty_database_url)
    old = web.signup()
    ended = web.signup()
    web.call("POST", "/auth/logout", token=ended["access_token"])
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE auth_sessions SET expires_at = 1 WHERE id = :s"), {"s": old["session_id"]}
        )
        conn.execute(
            text("UPDATE auth_sessions SET revoked_at = 1 WHERE id = :s"),
            {"s": ended["session_id"]},
        )
    # The scheduled maintenance run is what purges them.
    from core.app import maintenance

    tasks = maintenance.run(engine, Settings(database_url=empty_database_url))
    assert tasks["expired_sessions_purged"] >= 2
    with transaction(engine) as conn:
        left = {
            r[0]
            for r in conn.execute(
                text("SELECT id FROM auth_sessions WHERE id IN (:a, :b, :c)"),
                {"a": live["session_id"], "b": old["session_id"], "c": ended["session_id"]},
            )
        }
        tokens = conn.execute(
            text("SELECT count(*) FROM auth_tokens WHERE session_id = :s"),
            {"s": old["session_id"]},
        ).scalar()
    assert left == {live["session_id"]} and tokens == 0
    assert web.call("GET", "/auth/me", token=live["access_token"]).status == 200
    dispose(empty_database_url)
