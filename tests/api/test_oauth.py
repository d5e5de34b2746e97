"""The OAuth 2.1 authorization server, in-process through the Lambda handler, on both stores:
discovery, registration, the authorization page, the token endpoint, revocation, and the
attacks the MCP authorization spec and RFC 9700 tell a server to stop."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.identity.oauth import clients, codes
from core.identity.sessions import Lifetimes, token_hash
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from tests.conftest import Tenant
from tests.oauth_fixtures import (
    ADMIN,
    BASE,
    PASSWORD,
    REDIRECT,
    Web,
    authorize_params,
    basic,
    exchange,
    get_code,
    new_email,
    oauth_settings,
    parse_form,
    pkce_pair,
    query_of,
    refresh,
    register_client,
)


@pytest.fixture
def web(settings: Settings, engine: Engine) -> Web:
    return Web(oauth_settings(settings))


@pytest.fixture
def client(web: Web) -> dict[str, Any]:
    return register_client(web)


def _tokens(web: Web, client: dict[str, Any], **kw: Any) -> dict[str, Any]:
    grant = get_code(web, client, **kw)
    reply = exchange(web, grant)
    assert reply.status == 200, reply.body
    return dict(reply.json())


# -- discovery --------------------------------------------------------------------------------


def test_authorization_server_metadata(web: Web) -> None:
    reply = web.call("GET", "/.well-known/oauth-authorization-server")
    assert reply.status == 200
    meta = reply.json()
    assert meta["issuer"] == BASE
    assert meta["authorization_endpoint"] == BASE + "/oauth/authorize"
    assert meta["token_endpoint"] == BASE + "/oauth/token"
    assert meta["registration_endpoint"] == BASE + "/oauth/register"
    assert meta["revocation_endpoint"] == BASE + "/oauth/revoke"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "none",
        "client_secret_basic",
        "client_secret_post",
    }


def test_protected_resource_metadata_names_the_mcp_endpoint(web: Web) -> None:
    for path in (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ):
        meta = web.call("GET", path).json()
        assert meta["resource"] == BASE + "/mcp"
        assert meta["authorization_servers"] == [BASE]
        assert meta["bearer_methods_supported"] == ["header"]


def test_a_configured_public_url_wins_over_the_host_header(
    settings: Settings, engine: Engine
) -> None:
    from dataclasses import replace

    s = oauth_settings(settings)
    s = s.with_(auth=replace(s.auth, public_url="https://memory.example.org"))
    meta = Web(s).call("GET", "/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == "https://memory.example.org"


# -- registration -----------------------------------------------------------------------------


def test_open_registration_for_loopback_redirects(web: Web) -> None:
    reply = web.call(
        "POST",
        "/oauth/register",
        json_body={
            "client_name": "Desktop app",
            "redirect_uris": ["http://127.0.0.1:33418/callback", "http://localhost/cb"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert reply.status == 201, reply.body
    body = reply.json()
    assert body["client_id"].startswith("mcp_")
    assert "client_secret" not in body
    assert body["redirect_uris"] == ["http://127.0.0.1:33418/callback", "http://localhost/cb"]
    assert body["grant_types"] == ["authorization_code"]
    assert reply.headers["cache-control"] == "no-store"


def test_registration_outside_the_allowlist_needs_the_registration_token(web: Web) -> None:
    meta = {"redirect_uris": ["https://app.example.net/cb"], "token_endpoint_auth_method": "none"}
    refused = web.call("POST", "/oauth/register", json_body=meta)
    assert refused.status == 403 and refused.json()["error"] == "access_denied"
    wrong = web.call(
        "POST", "/oauth/register", json_body=meta, headers={"authorization": "Bearer nope"}
    )
    assert wrong.status == 401 and wrong.json()["error"] == "invalid_token"
    allowed = web.call("POST", "/oauth/register", json_body=meta, headers=ADMIN)
    assert allowed.status == 201


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.net/cb",  # plain http off loopback
        "https://app.example.net/cb#fragment",
        "https://user:pw@app.example.net/cb",
        "javascript:alert(1)",
        "app.example.net/cb",
        "custom-scheme://cb",
    ],
)
def test_registration_refuses_bad_redirect_uris(web: Web, uri: str) -> None:
    reply = web.call("POST", "/oauth/register", json_body={"redirect_uris": [uri]}, headers=ADMIN)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "body",
    [
        {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"},
        {"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]},
        {"redirect_uris": [REDIRECT], "response_types": ["token"]},
        {"redirect_uris": [REDIRECT], "scope": "admin"},
        {"redirect_uris": []},
        {},
    ],
)
def test_registration_refuses_bad_metadata(web: Web, body: dict[str, Any]) -> None:
    reply = web.call("POST", "/oauth/register", json_body=body, headers=ADMIN)
    assert reply.status == 400
    assert reply.json()["error"] in ("invalid_client_metadata", "invalid_redirect_uri")


def test_a_confidential_client_gets_a_secret_once(web: Web, engine: Engine) -> None:
    body = register_client(web, token_endpoint_auth_method="client_secret_basic")
    assert body["client_secret"] and body["client_secret_expires_at"] == 0
    with transaction(engine, write=False) as conn:
        found = clients.get_client(conn, body["client_id"])
    assert found is not None and found.secret_hash is not None
    assert body["client_secret"] not in found.secret_hash


# -- the authorization page -------------------------------------------------------------------


def test_the_page_shows_the_client_and_escapes_everything(web: Web) -> None:
    hostile = '<script>alert("x")</script>'
    client = register_client(web, client_name=hostile)
    _, challenge = pkce_pair()
    params = authorize_params(client, challenge, state='"><img src=x onerror=alert(1)>')
    page = web.call("GET", "/oauth/authorize", query=params)
    assert page.status == 200
    assert "<script>" not in page.body and "<img" not in page.body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.body
    assert "client.example.com" in page.body  # the redirect host is shown
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # no scripts at all (default-src 'none')
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    form = parse_form(page.body)
    assert form.fields["state"] == params["state"]
    assert form.fields["csrf_token"]


def test_the_whole_flow_in_process(web: Web, client: dict[str, Any]) -> None:
    tokens = _tokens(web, client)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "memories:read memories:write"
    access = tokens["access_token"]
    saved = web.call("POST", "/v1/memories", json_body={"content": "via oauth"}, token=access)
    assert saved.status == 201
    listed = web.call("GET", "/v1/memories", token=access).json()["results"]
    assert [m["content"] for m in listed] == ["via oauth"]

    rotated = refresh(web, client, tokens["refresh_token"])
    assert rotated.status == 200, rotated.body
    new = rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert web.call("GET", "/v1/memories", token=new["access_token"]).status == 200

    revoked = web.call(
        "POST",
        "/oauth/revoke",
        form={"token": new["refresh_token"], "client_id": client["client_id"]},
    )
    assert revoked.status == 200
    assert web.call("GET", "/v1/memories", token=new["access_token"]).status == 401
    assert refresh(web, client, new["refresh_token"]).status == 400


def test_a_logged_in_browser_goes_straight_to_consent(web: Web, client: dict[str, Any]) -> None:
    first = get_code(web, client)
    _, challenge = pkce_pair()
    again = web.call(
        "GET", "/oauth/authorize", query=authorize_params(client, challenge), keep_cookies=True
    )
    form = parse_form(again.body)
    assert ("action", "approve") in form.buttons
    assert first.email.lower() in again.body


def test_deny_sends_access_denied_back(web: Web, client: dict[str, Any]) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(client, challenge)
    page = web.call("GET", "/oauth/authorize", query=params, keep_cookies=True)
    fields = {**parse_form(page.body).fields, "email": new_email(), "password": PASSWORD}
    consent = web.call(
        "POST", "/oauth/authorize", form={**fields, "action": "signup"}, keep_cookies=True
    )
    denied = web.call(
        "POST",
        "/oauth/authorize",
        form={**parse_form(consent.body).fields, "action": "deny"},
        keep_cookies=True,
    )
    assert denied.status == 303
    got = query_of(denied.location)
    assert got["error"] == "access_denied" and got["state"] == params["state"]
    assert "code" not in got


def test_wrong_password_on_the_page_is_a_page_not_a_redirect(
    web: Web, client: dict[str, Any]
) -> None:
    email = new_email()
    web.signup(email)
    _, challenge = pkce_pair()
    page = web.call(
        "GET", "/oauth/authorize", query=authorize_params(client, challenge), keep_cookies=True
    )
    fields = {**parse_form(page.body).fields, "email": email, "password": "wrong password"}
    reply = web.call(
        "POST", "/oauth/authorize", form={**fields, "action": "login"}, keep_cookies=True
    )
    assert reply.status == 401
    assert "wrong email or password" in reply.body
    assert parse_form(reply.body).fields["email"] == email


def test_the_form_posted_without_its_csrf_token_is_refused(
    web: Web, client: dict[str, Any]
) -> None:
    email = new_email()
    web.signup(email)
    _, challenge = pkce_pair()
    page = web.call(
        "GET", "/oauth/authorize", query=authorize_params(client, challenge), keep_cookies=True
    )
    fields = {**parse_form(page.body).fields, "email": email, "password": PASSWORD}
    fields["action"] = "login"
    without = {k: v for k, v in fields.items() if k != "csrf_token"}
    assert web.call("POST", "/oauth/authorize", form=without, keep_cookies=True).status == 403
    forged = {**fields, "csrf_token": "attacker-chosen"}
    assert web.call("POST", "/oauth/authorize", form=forged, keep_cookies=True).status == 403
    # The token without the cookie it pairs with (a cross-site post carries no cookie).
    assert web.call("POST", "/oauth/authorize", form=fields).status == 403
    # Another origin, even with both.
    evil = web.call(
        "POST",
        "/oauth/authorize",
        form=fields,
        keep_cookies=True,
        headers={"origin": "https://evil.example"},
    )
    assert evil.status == 403
    ok = web.call("POST", "/oauth/authorize", form=fields, keep_cookies=True)
    assert ok.status == 200


# -- attacks at the authorization endpoint ------------------------------------------------


def _authorize(web: Web, params: dict[str, str]) -> Any:
    return web.call("GET", "/oauth/authorize", query=params)


def test_pkce_missing_is_refused(web: Web, client: dict[str, Any]) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(client, challenge)
    del params["code_challenge"], params["code_challenge_method"]
    reply = _authorize(web, params)
    assert reply.status == 303
    got = query_of(reply.location)
    assert got["error"] == "invalid_request" and "PKCE" in got["error_description"]
    assert got["state"] == params["state"]


def test_pkce_plain_is_refused(web: Web, client: dict[str, Any]) -> None:
    verifier, _ = pkce_pair()
    params = authorize_params(client, verifier, code_challenge_method="plain")
    reply = _authorize(web, params)
    assert reply.status == 303
    assert query_of(reply.location)["error"] == "invalid_request"
    params = authorize_params(client, verifier)
    del params["code_challenge_method"]  # the RFC 7636 default is plain: refused too
    assert query_of(_authorize(web, params).location)["error"] == "invalid_request"


def test_a_redirect_uri_not_registered_is_never_redirected_to(
    web: Web, client: dict[str, Any]
) -> None:
    _, challenge = pkce_pair()
    for uri in (
        "https://evil.example/callback",
        REDIRECT + "/extra",
        REDIRECT + "?x=1",
        REDIRECT.upper(),
        "https://client.example.com.evil.example/callback",
    ):
        reply = _authorize(web, authorize_params(client, challenge, redirect_uri=uri))
        assert reply.status == 400, uri
        assert "location" not in reply.headers
        assert "not one this application registered" in reply.body


def test_a_redirect_uri_with_a_fragment_is_refused(web: Web, client: dict[str, Any]) -> None:
    _, challenge = pkce_pair()
    reply = _authorize(web, authorize_params(client, challenge, redirect_uri=REDIRECT + "#x"))
    assert reply.status == 400 and "location" not in reply.headers


def test_an_unknown_client_is_a_page_not_a_redirect(web: Web) -> None:
    _, challenge = pkce_pair()
    fake = {"client_id": "mcp_unknown", "redirect_uris": [REDIRECT]}
    reply = _authorize(web, authorize_params(fake, challenge))
    assert reply.status == 400 and "location" not in reply.headers


def test_a_resource_other_than_this_server_is_refused(web: Web, client: dict[str, Any]) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(client, challenge, resource="https://other.example/mcp")
    assert query_of(_authorize(web, params).location)["error"] == "invalid_target"


# -- attacks at the token endpoint ----------------------------------------------------------


def test_a_wrong_pkce_verifier_is_refused(web: Web, client: dict[str, Any]) -> None:
    grant = get_code(web, client)
    other_verifier, _ = pkce_pair()
    reply = exchange(web, grant, code_verifier=other_verifier)
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant"
    assert exchange(web, grant, code_verifier="").json()["error"] == "invalid_request"
    # The right verifier still works: a failed guess does not burn the code.
    assert exchange(web, grant).status == 200


def test_the_pkce_challenge_itself_is_not_a_verifier(web: Web, client: dict[str, Any]) -> None:
    # A token endpoint comparing the verifier with the stored challenge (rather than its S256
    # hash) would let anyone who saw the authorization request redeem the code.
    grant = get_code(web, client)
    challenge = codes.s256(grant.verifier)
    reply = exchange(web, grant, code_verifier=challenge)
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant"
    # The refusal did not burn the code: its owner still redeems it with the real verifier.
    assert exchange(web, grant).status == 200


def test_a_code_redeemed_twice_revokes_the_first_tokens(web: Web, client: dict[str, Any]) -> None:
    grant = get_code(web, client)
    first = exchange(web, grant)
    assert first.status == 200
    tokens = first.json()
    assert web.call("GET", "/v1/memories", token=tokens["access_token"]).status == 200
    second = exchange(web, grant)
    assert second.status == 400 and second.json()["error"] == "invalid_grant"
    assert web.call("GET", "/v1/memories", token=tokens["access_token"]).status == 401
    assert refresh(web, client, tokens["refresh_token"]).status == 400


def test_concurrent_redemptions_of_one_code_exactly_one_wins(
    web: Web, client: dict[str, Any], settings: Settings, engine: Engine
) -> None:
    grant = get_code(web, client)
    life = Lifetimes.of(oauth_settings(settings).auth)
    start = threading.Barrier(3)
    outcomes: list[Any] = []

    def race() -> None:
        start.wait(timeout=30)
        with transaction(engine) as conn:
            found = clients.get_client(conn, client["client_id"])
            assert found is not None
            outcomes.append(
                codes.exchange(
                    conn,
                    found,
                    code=grant.code,
                    redirect_uri=grant.redirect_uri,
                    verifier=grant.verifier,
                    resources=[],
                    life=life,
                )
            )

    threads = [threading.Thread(target=race) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    issued = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(outcomes) == 3 and len(issued) == 1
    # The replays revoked the winner's grant: a code is good for one redemption, ever.
    assert web.call("GET", "/v1/memories", token=issued[0].access_token).status == 401


def test_a_code_used_by_another_client_is_refused(web: Web, client: dict[str, Any]) -> None:
    grant = get_code(web, client)
    thief = register_client(web)
    reply = exchange(web, grant, client_id=thief["client_id"])
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant"
    assert exchange(web, grant).status == 200


def test_a_code_with_another_redirect_uri_is_refused(web: Web) -> None:
    client = register_client(web, redirect_uris=[REDIRECT, REDIRECT + "2"])
    grant = get_code(web, client)
    for uri in (REDIRECT + "2", REDIRECT + "/", ""):
        reply = exchange(web, grant, redirect_uri=uri)
        assert reply.status == 400, uri
        assert reply.json()["error"] in ("invalid_grant", "invalid_request")
    assert exchange(web, grant).status == 200


def test_an_expired_code_is_refused(web: Web, client: dict[str, Any], engine: Engine) -> None:
    from sqlalchemy import text

    grant = get_code(web, client)
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE oauth_codes SET expires_at = 1 WHERE client_id = :c"),
            {"c": client["client_id"]},
        )
    reply = exchange(web, grant)
    assert reply.status == 400 and "expired" in reply.json()["error_description"]


def test_a_refresh_token_replayed_after_rotation_revokes_the_family(
    web: Web, client: dict[str, Any]
) -> None:
    tokens = _tokens(web, client)
    rotated = refresh(web, client, tokens["refresh_token"]).json()
    assert web.call("GET", "/v1/memories", token=rotated["access_token"]).status == 200
    replay = refresh(web, client, tokens["refresh_token"])
    assert replay.status == 400 and replay.json()["error"] == "invalid_grant"
    assert web.call("GET", "/v1/memories", token=rotated["access_token"]).status == 401
    assert refresh(web, client, rotated["refresh_token"]).status == 400


def test_a_refresh_token_is_bound_to_its_client(web: Web, client: dict[str, Any]) -> None:
    tokens = _tokens(web, client)
    thief = register_client(web)
    assert refresh(web, thief, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(web, client, tokens["refresh_token"]).status == 200


def test_token_requests_with_duplicate_parameters_are_refused(
    web: Web, client: dict[str, Any]
) -> None:
    grant = get_code(web, client)
    form = [
        ("grant_type", "authorization_code"),
        ("code", grant.code),
        ("code", grant.code),
        ("redirect_uri", grant.redirect_uri),
        ("code_verifier", grant.verifier),
        ("client_id", client["client_id"]),
    ]
    reply = web.call("POST", "/oauth/token", form=form)
    assert reply.status == 400 and reply.json()["error"] == "invalid_request"


def test_unsupported_grants_are_refused(web: Web, client: dict[str, Any]) -> None:
    for grant_type in ("password", "client_credentials", "implicit"):
        reply = web.call(
            "POST",
            "/oauth/token",
            form={"grant_type": grant_type, "client_id": client["client_id"]},
        )
        # Grants this server does not have at all: unsupported_grant_type, not a complaint
        # about the client (RFC 6749 section 5.2).
        assert reply.status == 400
        assert reply.json()["error"] == "unsupported_grant_type", grant_type


# -- confidential clients ----------------------------------------------------------------------


def test_client_secret_basic(web: Web) -> None:
    client = register_client(web, token_endpoint_auth_method="client_secret_basic")
    grant = get_code(web, client)
    base_form = {
        "grant_type": "authorization_code",
        "code": grant.code,
        "redirect_uri": grant.redirect_uri,
        "code_verifier": grant.verifier,
    }
    no_secret = web.call(
        "POST", "/oauth/token", form={**base_form, "client_id": client["client_id"]}
    )
    assert no_secret.status == 401 and no_secret.json()["error"] == "invalid_client"
    wrong = web.call(
        "POST", "/oauth/token", form=base_form, headers=basic(client["client_id"], "wrong")
    )
    assert wrong.status == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    as_post = web.call(
        "POST",
        "/oauth/token",
        form={
            **base_form,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert as_post.status == 401  # registered for Basic, so Basic it is
    ok = web.call(
        "POST",
        "/oauth/token",
        form=base_form,
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert ok.status == 200, ok.body


def test_client_secret_post(web: Web) -> None:
    client = register_client(web, token_endpoint_auth_method="client_secret_post")
    tokens_grant = get_code(web, client)
    form = {
        "grant_type": "authorization_code",
        "code": tokens_grant.code,
        "redirect_uri": tokens_grant.redirect_uri,
        "code_verifier": tokens_grant.verifier,
        "client_id": client["client_id"],
    }
    wrong = web.call("POST", "/oauth/token", form={**form, "client_secret": "nope"})
    assert wrong.status == 401
    ok = web.call("POST", "/oauth/token", form={**form, "client_secret": client["client_secret"]})
    assert ok.status == 200
    tokens = ok.json()
    # Refresh and revoke authenticate the same way.
    rotated = web.call(
        "POST",
        "/oauth/token",
        form={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert rotated.status == 200
    bad_revoke = web.call(
        "POST",
        "/oauth/revoke",
        form={"token": rotated.json()["access_token"], "client_id": client["client_id"]},
    )
    assert bad_revoke.status == 401


# -- tokens on the API --------------------------------------------------------------------------


def test_a_token_for_brain_a_does_not_reach_brain_b(web: Web, client: dict[str, Any]) -> None:
    # One account with two brains; the grant is for brain A.
    email = new_email()
    owner = web.signup(email, brain_name="Brain B")
    brain_b = owner["brain"]["id"]
    b_token = owner["access_token"]
    in_b = web.call("POST", "/v1/memories", json_body={"content": "only in B"}, token=b_token)
    memory_b = in_b.json()["id"]
    brain_a = web.call("POST", "/v1/brains", json_body={"name": "Brain A"}, token=b_token).json()
    tokens = _tokens(web, client, email=email, action="login", brain_id=brain_a["id"])
    token_a = tokens["access_token"]
    assert web.call("GET", f"/v1/memories/{memory_b}", token=token_a).status == 404
    assert web.call("GET", "/v1/memories", token=token_a).json()["results"] == []
    patched = web.call(
        "PATCH", f"/v1/memories/{memory_b}", json_body={"content": "x"}, token=token_a
    )
    assert patched.status == 404
    # Nor can the grant manage brains or switch itself over to B.
    assert web.call("GET", f"/v1/brains/{brain_b}", token=token_a).status == 403
    switched = web.call(
        "POST", "/auth/session/brain", json_body={"brain_id": brain_b}, token=token_a
    )
    assert switched.status == 403
    assert web.call("GET", f"/v1/memories/{memory_b}", token=b_token).status == 200


def test_a_read_only_grant_cannot_write(web: Web, client: dict[str, Any]) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(client, challenge, scope="memories:read")
    page = web.call("GET", "/oauth/authorize", query=params, keep_cookies=True)
    fields = {**parse_form(page.body).fields, "email": new_email(), "password": PASSWORD}
    consent = web.call(
        "POST", "/oauth/authorize", form={**fields, "action": "signup"}, keep_cookies=True
    )
    form = parse_form(consent.body)
    approved = web.call(
        "POST",
        "/oauth/authorize",
        form={**form.fields, "brain_id": form.radios["brain_id"][0], "action": "approve"},
        keep_cookies=True,
    )
    code = query_of(approved.location)["code"]
    reply = web.call(
        "POST",
        "/oauth/token",
        form={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": client["client_id"],
        },
    )
    token = reply.json()["access_token"]
    assert reply.json()["scope"] == "memories:read"
    assert web.call("GET", "/v1/memories", token=token).status == 200
    refused = web.call("POST", "/v1/memories", json_body={"content": "x"}, token=token)
    assert refused.status == 403 and refused.error_code == "read_only_key"
    # The account owns the brain, but a read-only grant changes nothing, the policy included.
    policy = web.call("PUT", "/v1/policy", json_body={"retention_days": 1}, token=token)
    assert policy.status == 403 and policy.error_code == "read_only_key"
    # Nor anything else only owners manage: a watch would post the brain to any URL.
    for method, path, body in (
        ("POST", "/v1/watches", {"name": "w", "webhook_url": "https://example.org/hook"}),
        ("POST", "/v1/hooks/sources", {"name": "ci"}),
        ("DELETE", "/v1/snapshots/unknown", None),
        ("POST", "/v1/snapshots/unknown/restore", {"mode": "merge"}),
    ):
        refused = web.call(method, path, json_body=body, token=token)
        assert refused.status == 403 and refused.error_code == "read_only_key", path
    assert web.call("GET", "/v1/watches", token=token).status == 200


def test_a_token_bound_to_another_host_is_refused(
    settings: Settings, engine: Engine, client: dict[str, Any], web: Web
) -> None:
    tokens = _tokens(web, client)
    other_host = web.call(
        "GET",
        "/v1/memories",
        token=tokens["access_token"],
        headers={"host": "another-deployment.example.com"},
    )
    assert other_host.status == 401 and other_host.error_code == "invalid_token"


def _mcp_call(web: Web, token: str) -> Any:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    return web.call(
        "POST", "/mcp", json_body=ping, token=token, headers={"accept": "application/json"}
    )


def test_a_token_is_bound_to_the_resources_it_was_issued_for(
    web: Web, client: dict[str, Any]
) -> None:
    # RFC 8707: a token an MCP client got for /mcp does not drive the REST API.
    mcp_only = _tokens(web, client, resource=BASE + "/mcp")["access_token"]
    assert _mcp_call(web, mcp_only).status == 200
    refused = web.call("GET", "/v1/memories", token=mcp_only)
    assert refused.status == 401 and refused.error_code == "invalid_token"
    assert "another resource" in refused.json()["error"]["message"]
    api_only = _tokens(web, client, resource=BASE + "/v1")["access_token"]
    assert web.call("GET", "/v1/memories", token=api_only).status == 200
    assert _mcp_call(web, api_only).status == 401
    # Issued for both (two resource parameters), or for the whole service: both work.
    for resource in (f"{BASE}/mcp {BASE}/v1", BASE):
        both = _tokens(web, client, resource=resource)["access_token"]
        assert web.call("GET", "/v1/memories", token=both).status == 200, resource
        assert _mcp_call(web, both).status == 200, resource


def test_the_token_request_may_narrow_the_resources_never_widen_them(
    web: Web, client: dict[str, Any]
) -> None:
    grant = get_code(web, client, resource=f"{BASE}/mcp {BASE}/v1")
    narrowed = exchange(web, grant, resource=BASE + "/mcp")
    assert narrowed.status == 200, narrowed.body
    token = narrowed.json()["access_token"]
    assert web.call("GET", "/v1/memories", token=token).status == 401
    assert _mcp_call(web, token).status == 200
    # The refresh token keeps the grant's resources; naming one outside them is
    # invalid_target, and leaves the refresh token unspent.
    widened = _refresh_for(web, client, narrowed.json()["refresh_token"], "https://other.example")
    assert widened.status == 400 and widened.json()["error"] == "invalid_target"
    # Without `resource` the refresh is for the whole grant again, /v1 included.
    full = refresh(web, client, narrowed.json()["refresh_token"])
    assert full.status == 200, full.body
    assert web.call("GET", "/v1/memories", token=full.json()["access_token"]).status == 200
    mcp_grant = get_code(web, client, resource=BASE + "/mcp")
    wider = exchange(web, mcp_grant, resource=BASE + "/v1")
    assert wider.status == 400 and wider.json()["error"] == "invalid_target"


def _refresh_for(web: Web, client: dict[str, Any], refresh_token: str, resource: str) -> Any:
    return web.call(
        "POST",
        "/oauth/token",
        form=[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client["client_id"]),
            *(("resource", r) for r in resource.split()),
        ],
    )


def test_a_refresh_narrows_the_access_token_and_the_grant_stays_whole(
    web: Web, client: dict[str, Any]
) -> None:
    # RFC 8707 section 2.2: each refresh may ask for some of the grant's resources.
    tokens = exchange(web, get_code(web, client, resource=f"{BASE}/mcp {BASE}/v1")).json()
    mcp = _refresh_for(web, client, tokens["refresh_token"], BASE + "/mcp/")
    assert mcp.status == 200, mcp.body
    refused = web.call("GET", "/v1/memories", token=mcp.json()["access_token"])
    assert refused.status == 401 and refused.error_code == "invalid_token"
    assert refused.headers["www-authenticate"].startswith(
        'Bearer realm="mnemo", error="invalid_token", error_description="this token was issued'
    )
    assert _mcp_call(web, mcp.json()["access_token"]).status == 200
    # Both resources named: both surfaces.
    both = _refresh_for(web, client, mcp.json()["refresh_token"], f"{BASE}/v1 {BASE}/mcp")
    assert both.status == 200, both.body
    assert web.call("GET", "/v1/memories", token=both.json()["access_token"]).status == 200
    assert _mcp_call(web, both.json()["access_token"]).status == 200
    # The whole service is more than this grant holds.
    wider = _refresh_for(web, client, both.json()["refresh_token"], BASE)
    assert wider.status == 400 and wider.json()["error"] == "invalid_target"
    # A narrowed token from an earlier refresh is still bound to what it was issued for.
    assert _mcp_call(web, mcp.json()["access_token"]).status == 200
    assert web.call("GET", "/v1/memories", token=mcp.json()["access_token"]).status == 401


def test_a_grant_for_the_whole_service_narrows_to_either_surface(
    web: Web, client: dict[str, Any]
) -> None:
    # `<base>` covers /mcp and /v1, so a token for one of them is a narrowing of it.
    grant = get_code(web, client, resource=BASE)
    api = exchange(web, grant, resource=BASE + "/v1")
    assert api.status == 200, api.body
    assert web.call("GET", "/v1/memories", token=api.json()["access_token"]).status == 200
    assert _mcp_call(web, api.json()["access_token"]).status == 401
    mcp = _refresh_for(web, client, api.json()["refresh_token"], BASE + "/mcp")
    assert mcp.status == 200, mcp.body
    assert _mcp_call(web, mcp.json()["access_token"]).status == 200
    assert web.call("GET", "/v1/memories", token=mcp.json()["access_token"]).status == 401
    # Only this service's surfaces: a path under it that is no resource is not.
    other = _refresh_for(web, client, mcp.json()["refresh_token"], BASE + "/v1/memories")
    assert other.status == 400 and other.json()["error"] == "invalid_target"


def test_revocation_answers_200_for_unknown_and_foreign_tokens(
    web: Web, client: dict[str, Any]
) -> None:
    tokens = _tokens(web, client)
    thief = register_client(web)
    unknown = web.call(
        "POST",
        "/oauth/revoke",
        form={"token": "mnemo_rt_nothing", "client_id": client["client_id"]},
    )
    assert unknown.status == 200
    foreign = web.call(
        "POST",
        "/oauth/revoke",
        form={"token": tokens["access_token"], "client_id": thief["client_id"]},
    )
    assert foreign.status == 200
    # Another client cannot revoke this client's grant.
    assert web.call("GET", "/v1/memories", token=tokens["access_token"]).status == 200
    own = web.call(
        "POST",
        "/oauth/revoke",
        form={
            "token": tokens["access_token"],
            "token_type_hint": "access_token",
            "client_id": client["client_id"],
        },
    )
    assert own.status == 200
    assert web.call("GET", "/v1/memories", token=tokens["access_token"]).status == 401


def test_oauth_grants_appear_in_the_accounts_session_list(web: Web, client: dict[str, Any]) -> None:
    email = new_email()
    account = web.signup(email)
    _tokens(web, client, email=email, action="login")
    listed = web.call("GET", "/auth/sessions", token=account["access_token"]).json()["results"]
    grant = [s for s in listed if s["client_id"] == client["client_id"]]
    assert len(grant) == 1 and grant[0]["client_name"] == "Test MCP client"
    # The person can end the grant from their account.
    gone = web.call("DELETE", f"/auth/sessions/{grant[0]['id']}", token=account["access_token"])
    assert gone.status == 200


def test_api_keys_still_work_beside_tokens(web: Web, tenant: Tenant) -> None:
    assert web.call("GET", "/v1/memories", token=tenant.key).status == 200


def test_the_challenge_helper_uses_the_requests_base_url(settings: Settings) -> None:
    from starlette.requests import Request

    from handlers.api import create_app
    from handlers.routes.oauth import www_authenticate_for

    app = create_app(oauth_settings(settings))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/mcp",
        "root_path": "",
        "scheme": "https",
        "server": ("mnemo.example.com", 443),
        "headers": [(b"host", b"mnemo.example.com")],
        "query_string": b"",
        "app": app,
    }
    header = www_authenticate_for(Request(scope), "invalid_token")
    assert header == (
        'Bearer resource_metadata="https://mnemo.example.com/.well-known/'
        'oauth-protected-resource/mcp", scope="memories:read memories:write", '
        'error="invalid_token"'
    )


# -- native apps (RFC 8252): private-use schemes, loopback redirects on any port ------------

CURSOR = "cursor://anysphere.cursor-retrieval/oauth/user-mnemo/callback"


def _native(web: Web, *uris: str, **metadata: Any) -> dict[str, Any]:
    return register_client(web, redirect_uris=list(uris), **metadata)


def test_a_private_use_scheme_registers_openly_when_its_scheme_is_listed(
    settings: Settings, engine: Engine
) -> None:
    s = oauth_settings(settings)
    opened = Web(s.with_(auth=replace(s.auth, open_registration_domains=("127.0.0.1", "cursor:"))))
    body = {"redirect_uris": [CURSOR], "token_endpoint_auth_method": "none"}
    reply = opened.call("POST", "/oauth/register", json_body=body)
    assert reply.status == 201, reply.body
    assert reply.json()["redirect_uris"] == [CURSOR]
    # The default allowlist (loopback only) does not cover it: the reply names the app scheme.
    closed = Web(s).call("POST", "/oauth/register", json_body=body)
    assert closed.status == 403
    assert "cursor://anysphere.cursor-retrieval" in closed.json()["error_description"]


@pytest.mark.parametrize(
    "uri",
    [
        "javascript://x/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox",
        "cursor:",  # a scheme and nothing else
        "1cursor://x/cb",  # not a scheme (RFC 3986: a letter first)
    ],
)
def test_browser_schemes_are_never_redirect_uris(web: Web, uri: str) -> None:
    body = {"redirect_uris": [uri], "token_endpoint_auth_method": "none"}
    reply = web.call("POST", "/oauth/register", json_body=body, headers=ADMIN)
    assert reply.status == 400, uri
    assert reply.json()["error"] == "invalid_redirect_uri"


def test_a_private_use_scheme_is_for_public_clients_only(web: Web) -> None:
    body = {"redirect_uris": [CURSOR], "token_endpoint_auth_method": "client_secret_basic"}
    reply = web.call("POST", "/oauth/register", json_body=body, headers=ADMIN)
    assert reply.status == 400
    assert "public clients" in reply.json()["error_description"]


def test_the_whole_flow_back_to_a_private_use_scheme(web: Web) -> None:
    client = _native(web, CURSOR, "com.example.mnemo:/oauth2redirect")
    _, challenge = pkce_pair()
    page = web.call("GET", "/oauth/authorize", query=authorize_params(client, challenge))
    assert page.status == 200, page.body
    # The consent page names where the user goes back to: the app's scheme and host.
    assert "cursor://anysphere.cursor-retrieval" in page.body
    tokens = _tokens(web, client)
    assert web.call("GET", "/v1/memories", token=tokens["access_token"]).status == 200
    # A scheme without a host (RFC 8252's reverse-domain form) works the same way.
    reverse = {**client, "redirect_uris": ["com.example.mnemo:/oauth2redirect"]}
    grant = get_code(web, reverse)
    assert exchange(web, grant).status == 200


def test_the_consent_page_lets_the_form_hand_off_to_the_app(web: Web) -> None:
    client = _native(web, CURSOR)
    _, challenge = pkce_pair()
    web.jar.clear()
    page = web.call(
        "GET", "/oauth/authorize", query=authorize_params(client, challenge), keep_cookies=True
    )
    fields = {**parse_form(page.body).fields, "email": new_email(), "password": PASSWORD}
    consent = web.call(
        "POST", "/oauth/authorize", form={**fields, "action": "signup"}, keep_cookies=True
    )
    assert consent.status == 200
    assert "cursor:" in consent.headers["content-security-policy"].split("form-action")[1]


def test_a_loopback_redirect_may_use_any_port(web: Web) -> None:
    client = _native(web, "http://127.0.0.1/callback", "http://localhost:8080/cb")
    for requested in ("http://127.0.0.1:51234/callback", "http://localhost:33418/cb"):
        grant = get_code(web, {**client, "redirect_uris": [requested]})
        # The code is bound to the redirect the request used, port and all.
        assert grant.redirect_uri == requested
        other_port = requested.replace(":51234", ":51235").replace(":33418", ":33419")
        assert exchange(web, grant, redirect_uri=other_port).status == 400
        grant = get_code(web, {**client, "redirect_uris": [requested]})
        assert exchange(web, grant).status == 200


@pytest.mark.parametrize(
    "requested",
    [
        "http://127.0.0.1:51234/other",  # another path
        "http://127.0.0.1:51234/callback?x=1",  # another query
        "http://localhost:51234/callback",  # another loopback host than registered
        "https://127.0.0.1:51234/callback",  # another scheme
        "http://127.0.0.1.evil.example:51234/callback",
    ],
)
def test_only_the_port_of_a_loopback_redirect_may_change(web: Web, requested: str) -> None:
    client = _native(web, "http://127.0.0.1/callback")
    _, challenge = pkce_pair()
    reply = _authorize(web, authorize_params(client, challenge, redirect_uri=requested))
    assert reply.status == 400, requested
    assert "location" not in reply.headers


def test_a_confidential_clients_loopback_redirect_is_matched_exactly(web: Web) -> None:
    client = _native(
        web, "http://127.0.0.1:8000/callback", token_endpoint_auth_method="client_secret_post"
    )
    _, challenge = pkce_pair()
    moved = authorize_params(client, challenge, redirect_uri="http://127.0.0.1:8001/callback")
    assert _authorize(web, moved).status == 400
    same = authorize_params(client, challenge)
    assert _authorize(web, same).status == 200


def test_a_token_without_its_own_audience_is_bound_to_its_grants(
    web: Web, client: dict[str, Any], engine: Engine
) -> None:
    # As code older than migration 18 writes them during a rolling deployment: such a token
    # is bound to its session's resources, never to none (which would let it in everywhere).
    tokens = _tokens(web, client, resource=BASE + "/mcp")
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE auth_tokens SET audience = NULL WHERE token_hash IN (:a, :r)"),
            {"a": token_hash(tokens["access_token"]), "r": token_hash(tokens["refresh_token"])},
        )
    assert _mcp_call(web, tokens["access_token"]).status == 200
    assert web.call("GET", "/v1/memories", token=tokens["access_token"]).status == 401
    api = _refresh_for(web, client, tokens["refresh_token"], BASE + "/v1")
    assert api.status == 400 and api.json()["error"] == "invalid_target"
