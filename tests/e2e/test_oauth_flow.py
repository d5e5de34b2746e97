"""The whole OAuth flow with a real client library (authlib's OAuth2Client, PKCE S256) against
`mnemo serve` in a subprocess, as an MCP client would run it: discover the metadata, register,
drive the HTML authorization page, exchange the code, call /v1, refresh, revoke.

Discovery starts from the resource metadata URL that the WWW-Authenticate helper names (the
header /mcp sends with its 401).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from core.identity.oauth.metadata import www_authenticate
from tests.oauth_fixtures import PASSWORD, new_email, parse_form
from tests.serve import mnemo_serve


@pytest.fixture
def served(empty_database_url: str) -> Iterator[str]:
    with mnemo_serve(empty_database_url, MNEMO_PASSWORD_ITERATIONS="1000") as base:
        yield base


class Browser:
    """Just enough of a browser for the authorization page. The page's cookies are Secure
    (as they must be in production); over plain http on loopback httpx would drop them, so
    this browser keeps them itself, as browsers do for localhost."""

    def __init__(self) -> None:
        self.http = httpx.Client(follow_redirects=False, timeout=10)
        self.cookies: dict[str, str] = {}

    def _keep(self, reply: httpx.Response) -> httpx.Response:
        for line in reply.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";")[0].strip('"')
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return reply

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def get(self, url: str) -> httpx.Response:
        return self._keep(self.http.get(url, headers=self._headers()))

    def post_form(self, url: str, form: dict[str, str], origin: str) -> httpx.Response:
        return self._keep(self.http.post(url, data=form, headers=self._headers({"origin": origin})))

    def close(self) -> None:
        self.http.close()


def _discover(base: str) -> tuple[dict[str, object], dict[str, object]]:
    header = www_authenticate(base)
    resource_metadata_url = header.split('resource_metadata="')[1].split('"')[0]
    resource = httpx.get(resource_metadata_url).json()
    assert resource["resource"] == base + "/mcp"
    issuer = resource["authorization_servers"][0]
    server = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == issuer
    assert "S256" in server["code_challenge_methods_supported"]
    return resource, server


def _log_in_and_approve(browser: Browser, authorize_url: str, base: str) -> str:
    page = browser.get(authorize_url)
    assert page.status_code == 200, page.text
    assert "Sign in to Mnemo" in page.text and "authlib test client" in page.text
    form = parse_form(page.text)
    assert form.forms == 1 and form.fields["csrf_token"]
    fields = {**form.fields, "email": new_email(), "password": PASSWORD, "action": "signup"}
    consent = browser.post_form(authorize_url, fields, base)
    assert consent.status_code == 200, consent.text
    form = parse_form(consent.text)
    assert ("action", "approve") in form.buttons
    approved = browser.post_form(
        authorize_url,
        {**form.fields, "brain_id": form.radios["brain_id"][0], "action": "approve"},
        base,
    )
    assert approved.status_code == 303, approved.text
    return approved.headers["location"]


@pytest.mark.parametrize("auth_method", ["none", "client_secret_basic"])
def test_the_whole_flow_with_authlib_against_mnemo_serve(served: str, auth_method: str) -> None:
    base = served
    resource, server = _discover(base)
    redirect_uri = "http://127.0.0.1:8765/callback"

    registered = httpx.post(
        str(server["registration_endpoint"]),
        json={
            "client_name": "authlib test client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": auth_method,
        },
    )
    assert registered.status_code == 201, registered.text
    reg = registered.json()
    assert reg["client_id"].startswith("mcp_")

    client = OAuth2Client(
        client_id=reg["client_id"],
        client_secret=reg.get("client_secret"),
        token_endpoint_auth_method=auth_method,
        revocation_endpoint_auth_method=auth_method,
        redirect_uri=redirect_uri,
        scope="memories:read memories:write",
        code_challenge_method="S256",
    )
    browser = Browser()
    try:
        verifier = generate_token(64)
        # Two resource parameters (RFC 8707): the token is for /mcp and for the REST API.
        resources = [resource["resource"], f"{base}/v1"]
        authorize_url, state = client.create_authorization_url(
            str(server["authorization_endpoint"]),
            code_verifier=verifier,
            resource=resources,
        )
        assert "code_challenge=" in authorize_url and "code_challenge_method=S256" in authorize_url
        callback = _log_in_and_approve(browser, authorize_url, base)
        assert callback.startswith(redirect_uri + "?")
        assert parse_qs(urlsplit(callback).query)["iss"] == [server["issuer"]]

        token = client.fetch_token(
            str(server["token_endpoint"]),
            authorization_response=callback,
            state=state,
            code_verifier=verifier,
        )
        assert token["token_type"] == "Bearer" and token["refresh_token"]

        saved = client.post(f"{base}/v1/memories", json={"content": "remembered via authlib"})
        assert saved.status_code == 201, saved.text
        listed = client.get(f"{base}/v1/memories").json()["results"]
        assert [m["content"] for m in listed] == ["remembered via authlib"]

        first_refresh = token["refresh_token"]
        renewed = client.refresh_token(str(server["token_endpoint"]))
        assert renewed["access_token"] != token["access_token"]
        assert renewed["refresh_token"] != first_refresh
        assert client.get(f"{base}/v1/memories").status_code == 200

        # The code was single-use: redeeming it again fails and kills the grant.
        again = httpx.post(
            str(server["token_endpoint"]),
            data={
                "grant_type": "authorization_code",
                "code": parse_qs(urlsplit(callback).query)["code"][0],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
                "client_id": reg["client_id"],
            },
            auth=(reg["client_id"], reg["client_secret"]) if "client_secret" in reg else None,
        )
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        assert client.get(f"{base}/v1/memories").status_code == 401
    finally:
        browser.close()
        client.close()


def _public_client(
    server: dict[str, object], redirect_uri: str, scope: str | None = None
) -> OAuth2Client:
    """An authlib client registered (RFC 7591) as a public client with PKCE."""
    reg = httpx.post(
        str(server["registration_endpoint"]),
        json={
            "client_name": "authlib test client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        },
    ).json()
    return OAuth2Client(
        client_id=reg["client_id"],
        token_endpoint_auth_method="none",
        revocation_endpoint_auth_method="none",
        redirect_uri=redirect_uri,
        scope=scope,
        code_challenge_method="S256",
    )


def test_refresh_then_revoke_with_authlib(served: str) -> None:
    base = served
    resource, server = _discover(base)
    client = _public_client(server, "http://localhost:8766/cb")
    browser = Browser()
    try:
        verifier = generate_token(64)
        url, state = client.create_authorization_url(
            str(server["authorization_endpoint"]),
            code_verifier=verifier,
            resource=[resource["resource"], f"{base}/v1"],
        )
        callback = _log_in_and_approve(browser, url, base)
        client.fetch_token(
            str(server["token_endpoint"]),
            authorization_response=callback,
            state=state,
            code_verifier=verifier,
        )
        client.refresh_token(str(server["token_endpoint"]))
        assert client.get(f"{base}/v1/memories").status_code == 200
        revoked = client.revoke_token(
            str(server["revocation_endpoint"]),
            token=client.token["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert revoked.status_code == 200
        after = client.get(f"{base}/v1/memories")
        assert after.status_code == 401
        assert after.json()["error"]["code"] == "invalid_token"
    finally:
        browser.close()
        client.close()


def _ping(client: OAuth2Client, base: str) -> httpx.Response:
    return client.post(
        f"{base}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"accept": "application/json, text/event-stream"},
    )


def test_a_refresh_narrows_the_access_token_to_the_resource_asked_for(served: str) -> None:
    """RFC 8707 section 2.2 with authlib: a grant for /mcp and /v1; each refresh may ask for an
    access token bound to one of them, and the refresh token keeps both, so the next refresh
    can ask for the other, or (without `resource`) for both again."""
    base = served
    resource, server = _discover(base)
    mcp, api = resource["resource"], f"{base}/v1"
    token_endpoint = str(server["token_endpoint"])
    client = _public_client(server, "http://127.0.0.1:8767/cb")
    browser = Browser()
    try:
        verifier = generate_token(64)
        url, state = client.create_authorization_url(
            str(server["authorization_endpoint"]), code_verifier=verifier, resource=[mcp, api]
        )
        callback = _log_in_and_approve(browser, url, base)
        # The code exchange narrows too: this first access token is for /mcp alone.
        client.fetch_token(
            token_endpoint,
            authorization_response=callback,
            state=state,
            code_verifier=verifier,
            resource=mcp,
        )
        assert _ping(client, base).status_code == 200
        refused = client.get(f"{base}/v1/memories")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_token"
        challenge = refused.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="mnemo", error="invalid_token"'), challenge
        assert "another resource" in challenge

        # The refresh token kept the whole grant: /v1 can be asked for now.
        client.refresh_token(token_endpoint, resource=api)
        assert client.get(f"{base}/v1/memories").status_code == 200
        at_mcp = _ping(client, base)
        assert at_mcp.status_code == 401, at_mcp.text
        # /mcp's 401 points the client at the resource metadata (RFC 9728), error named.
        challenge = at_mcp.headers["www-authenticate"]
        assert 'resource_metadata="' in challenge and 'error="invalid_token"' in challenge

        # A resource outside the grant (the whole service, or another server) is refused,
        # and the refresh token is not spent by the refusal.
        before = dict(client.token)
        for outside in (base, "https://other.example/mcp"):
            with pytest.raises(OAuthError) as refused_refresh:
                client.refresh_token(token_endpoint, resource=outside)
            assert refused_refresh.value.error == "invalid_target"
        assert client.token["refresh_token"] == before["refresh_token"]

        client.refresh_token(token_endpoint, resource=mcp)
        assert _ping(client, base).status_code == 200
        assert client.get(f"{base}/v1/memories").status_code == 401

        # Without `resource`, the access token is for the whole original grant again.
        client.refresh_token(token_endpoint)
        assert _ping(client, base).status_code == 200
        assert client.get(f"{base}/v1/memories").status_code == 200
    finally:
        browser.close()
        client.close()


def test_a_refresh_narrows_the_access_token_to_the_scopes_asked_for(served: str) -> None:
    """RFC 6749 section 6 with authlib: a refresh may ask for fewer scopes than the grant; the
    access token it issues holds only those, and the refresh token keeps the grant's."""
    base = served
    _, server = _discover(base)
    token_endpoint = str(server["token_endpoint"])
    client = _public_client(server, "http://127.0.0.1:8768/cb", "memories:read memories:write")
    browser = Browser()
    try:
        verifier = generate_token(64)
        url, state = client.create_authorization_url(
            str(server["authorization_endpoint"]), code_verifier=verifier, resource=f"{base}/v1"
        )
        callback = _log_in_and_approve(browser, url, base)
        client.fetch_token(
            token_endpoint, authorization_response=callback, state=state, code_verifier=verifier
        )
        written = client.post(f"{base}/v1/memories", json={"content": "granted to write"})
        assert written.status_code == 201, written.text

        narrowed = client.refresh_token(token_endpoint, scope="memories:read")
        assert narrowed["scope"] == "memories:read"
        assert client.get(f"{base}/v1/memories").status_code == 200
        refused = client.post(f"{base}/v1/memories", json={"content": "read only now"})
        assert refused.status_code == 403, refused.text
        listed = client.get(f"{base}/v1/memories").json()["results"]
        assert [m["content"] for m in listed] == ["granted to write"]

        # A scope the grant does not hold is refused, and the refresh token is not spent.
        before = client.token["refresh_token"]
        with pytest.raises(OAuthError) as outside:
            client.refresh_token(token_endpoint, scope="memories:read admin")
        assert outside.value.error == "invalid_scope"
        assert client.token["refresh_token"] == before

        # The refresh token kept the grant: without `scope`, the next token may write again.
        whole = client.refresh_token(token_endpoint)
        assert set(whole["scope"].split()) == {"memories:read", "memories:write"}
        again = client.post(f"{base}/v1/memories", json={"content": "writing again"})
        assert again.status_code == 201, again.text
    finally:
        browser.close()
        client.close()
