"""CORS rules in-process (the browser's view of them is tests/test_cors_browser.py): which
origins, methods and headers each route family allows, and the credentials rule."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from core.kernel.config import settings_from_env
from handlers.api import create_app

APP = "https://app.example.com"


def _client(tmp_path: Path, **env: str) -> TestClient:
    settings = settings_from_env({"MNEMO_DATABASE_URL": f"sqlite:///{tmp_path}/m.db", **env})
    return TestClient(create_app(settings))


def _preflight(client: TestClient, path: str, method: str = "POST", headers: str = "") -> object:
    asked = {"origin": APP, "access-control-request-method": method}
    if headers:
        asked["access-control-request-headers"] = headers
    return client.options(path, headers=asked)


def test_the_api_echoes_a_listed_origin_with_credentials_when_asked(tmp_path: Path) -> None:
    client = _client(tmp_path, MNEMO_API_ALLOWED_ORIGINS=APP, MNEMO_API_ALLOW_CREDENTIALS="true")
    reply = _preflight(client, "/v1/memories/abc", "PATCH", "content-type")
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == APP
    assert reply.headers["access-control-allow-credentials"] == "true"
    assert "PATCH" in reply.headers["access-control-allow-methods"]
    answer = client.get("/v1/memories", headers={"origin": APP})
    assert answer.status_code == 401
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "WWW-Authenticate" in answer.headers["access-control-expose-headers"]
    # /mcp is not in MNEMO_MCP_ALLOWED_ORIGINS for this origin.
    assert _preflight(client, "/mcp").status_code == 403
    # The OAuth endpoints allow the API's origins too, never with credentials.
    token = _preflight(client, "/oauth/token", headers="content-type")
    assert token.status_code == 204 and "access-control-allow-credentials" not in token.headers


def test_a_wildcard_answers_star_without_credentials(tmp_path: Path) -> None:
    client = _client(tmp_path, MNEMO_MCP_ALLOWED_ORIGINS="*")
    reply = _preflight(client, "/mcp", headers="authorization, mcp-param-region")
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in reply.headers
    # The REST API stays closed: its list is separate.
    assert _preflight(client, "/v1/search").status_code == 403


def test_what_a_preflight_refuses(tmp_path: Path) -> None:
    client = _client(tmp_path, MNEMO_MCP_ALLOWED_ORIGINS=APP)
    method = _preflight(client, "/mcp", "DELETE")
    assert method.status_code == 403 and method.json()["error"]["code"] == "method_not_allowed"
    header = _preflight(client, "/mcp", headers="authorization, x-forwarded-host")
    assert header.status_code == 403
    assert header.json()["error"]["details"] == {"headers": ["x-forwarded-host"]}
    # Same-origin pages (the console, /auth) get no CORS at all.
    console = client.options(
        "/auth/login", headers={"origin": APP, "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in console.headers
