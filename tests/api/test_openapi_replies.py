"""The success replies fuzzing seldom reaches (accounts, brains, members, sessions, OAuth, MCP,
OpenMemory, export and import) are checked against /openapi.json: a scripted walk through
them, each reply validated against the schema the document gives its operation and status."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from core.kernel.config import Settings
from handlers.api import create_app
from tests.oauth_fixtures import PASSWORD, auth_settings, new_email

_CONVERTOR = re.compile(r"\{(\w+)\}")


class Checked:
    """A client whose every reply is validated against the operation's documented schema."""

    def __init__(self, app: Any) -> None:
        self.http = TestClient(app, base_url="https://testserver")
        self.spec: dict[str, Any] = self.http.get("/openapi.json").json()
        self.seen: list[str] = []
        self.templates = [
            (re.compile("^" + _CONVERTOR.sub(r"[^/]+", path) + "$"), path)
            for path in self.spec["paths"]
        ]

    def _operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        for pattern, template in self.templates:
            op = self.spec["paths"][template].get(method.lower())
            if op is not None and pattern.match(path):
                return template, op
        raise AssertionError(f"{method} {path} is not in /openapi.json")

    def call(self, method: str, path: str, *, status: int, **kw: Any) -> httpx.Response:
        reply = self.http.request(method, path, **kw)
        assert reply.status_code == status, (method, path, reply.status_code, reply.text)
        template, op = self._operation(method, path)
        documented = op["responses"].get(str(status)) or op["responses"]["default"]
        content = documented.get("content")
        if content is None:
            assert not reply.content, f"{method} {template}: a body where none is documented"
        else:
            media = reply.headers["content-type"].split(";")[0]
            assert media in content, f"{method} {template}: {media} is not documented"
            if media == "application/json":
                schema = {**content[media]["schema"], "components": self.spec["components"]}
                errors = list(Draft202012Validator(schema).iter_errors(reply.json()))
                assert not errors, f"{method} {template} {status}: {errors[0].message}"
        self.seen.append(f"{method} {template} {status}")
        return reply


def test_success_replies_match_the_document(settings: Settings, engine: object) -> None:
    key = f"owner-{uuid.uuid4().hex}"
    app = create_app(
        auth_settings(settings).with_(api_key=key, default_brain=f"d-{uuid.uuid4().hex[:8]}")
    )
    c = Checked(app)
    email, other = new_email(), new_email()
    body = {"email": email, "password": PASSWORD, "brain_name": "Walk"}
    signed = c.call("POST", "/auth/signup", status=201, json=body).json()
    c.call("POST", "/auth/signup", status=200, json=body)  # the same account again
    c.call("POST", "/auth/signup", status=201, json={"email": other, "password": PASSWORD})
    login = c.call(
        "POST", "/auth/login", status=200, json={"email": email, "password": PASSWORD}
    ).json()
    session = {"authorization": f"Bearer {signed['access_token']}"}
    c.call("GET", "/auth/me", status=200, headers=session)
    assert c.call("GET", "/auth/sessions", status=200, headers=session).json()["results"]
    brain = c.call("POST", "/v1/brains", status=201, headers=session, json={"name": "B2"}).json()
    c.call("GET", "/v1/brains", status=200, headers=session)
    c.call("GET", f"/v1/brains/{brain['id']}", status=200, headers=session)
    c.call("PATCH", f"/v1/brains/{brain['id']}", status=200, headers=session, json={"name": "B3"})
    member = c.call(
        "POST",
        f"/v1/brains/{brain['id']}/members",
        status=201,
        headers=session,
        json={"email": other},
    ).json()
    c.call("GET", f"/v1/brains/{brain['id']}/members", status=200, headers=session)
    member_path = f"/v1/brains/{brain['id']}/members/{member['account_id']}"
    c.call("PATCH", member_path, status=200, headers=session, json={"role": "owner"})
    c.call("DELETE", member_path, status=200, headers=session)
    c.call(
        "POST", "/auth/session/brain", status=200, headers=session, json={"brain_id": brain["id"]}
    )
    made = c.call("POST", "/v1/keys", status=201, headers=session, json={"name": "k"}).json()
    c.call("GET", "/v1/keys", status=200, headers=session)
    c.call("DELETE", f"/v1/keys/{made['id']}", status=200, headers=session)
    c.call(
        "DELETE",
        f"/v1/brains/{brain['id']}",
        status=200,
        headers=session,
        json={"confirm": brain["slug"]},
    )
    c.call("DELETE", f"/auth/sessions/{login['session_id']}", status=200, headers=session)
    c.call("POST", "/auth/sessions/revoke-others", status=200, headers=session)
    refreshed = c.call(
        "POST", "/auth/refresh", status=200, json={"refresh_token": signed["refresh_token"]}
    ).json()
    fresh = {"authorization": f"Bearer {refreshed['access_token']}"}
    c.call("POST", "/auth/logout", status=200, headers=fresh)

    # The brain-key API: memories (a duplicate is a 200), links, trust, export and import.
    api = {"authorization": f"Bearer {key}"}
    first = c.call("POST", "/v1/memories", status=201, headers=api, json={"content": "walk a"})
    c.call("POST", "/v1/memories", status=200, headers=api, json={"content": "walk a"})
    second = c.call("POST", "/v1/memories", status=201, headers=api, json={"content": "walk b"})
    link = {"from_id": first.json()["id"], "to_id": second.json()["id"], "relation": "related"}
    c.call("POST", "/v1/links", status=201, headers=api, json=link)
    c.call("POST", "/v1/links", status=200, headers=api, json=link)
    c.call("PUT", "/v1/trust/feed", status=200, headers=api, json={"trust": 0.9})
    c.call("DELETE", "/v1/trust/feed", status=200, headers=api)
    exported = c.call("GET", "/v1/export", status=200, headers=api)
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    c.call(
        "POST",
        "/v1/import",
        status=200,
        headers={**api, "content-type": "application/x-ndjson"},
        params={"strategy": "skip_existing"},
        content=exported.content,
    )

    # OpenMemory's routes, with their own error shape.
    c.call("POST", "/memory/add", status=200, headers=api, json={"content": "om", "user_id": "u"})
    c.call("POST", "/memory/query", status=200, headers=api, json={"query": "om", "k": 3})
    c.call("GET", "/users/u/memories", status=200, headers=api, params={"l": 5})
    c.call("GET", "/users/nobody/summary", status=404, headers=api)
    c.call("POST", "/memory/add", status=400, headers=api, json={"user_id": "u"})

    # MCP: a JSON-RPC result, a notification's 202, and JSON-RPC's error shape on a 415.
    mcp = {**api, "accept": "application/json, text/event-stream"}
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "walk", "version": "1"},
        },
    }
    c.call("POST", "/mcp", status=200, headers=mcp, json=hello)
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    c.call(
        "POST", "/mcp", status=202, headers={**mcp, "mcp-protocol-version": "2025-06-18"}, json=note
    )
    c.call("POST", "/mcp", status=415, headers={**mcp, "content-type": "text/plain"}, content="x")

    # OAuth: discovery, registration, and RFC 6749 errors at the token endpoint.
    c.call("GET", "/.well-known/oauth-authorization-server", status=200)
    c.call("GET", "/.well-known/oauth-protected-resource/mcp", status=200)
    client = c.call(
        "POST",
        "/oauth/register",
        status=201,
        json={"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"},
    ).json()
    form = {"grant_type": "authorization_code", "code": "nope", "client_id": client["client_id"]}
    c.call("POST", "/oauth/token", status=400, data=form)
    revoke = {"token": "nope", "client_id": client["client_id"]}
    c.call("POST", "/oauth/revoke", status=200, data=revoke)
    c.call("GET", "/oauth/authorize", status=400, params={"client_id": "unknown"})

    assert len(c.seen) >= 45
