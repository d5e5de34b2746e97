"""Helpers for the account, session, brain, key, rate-limit and OAuth tests.

`Web` drives the real Mangum handler with API Gateway v2 events, like tests/lambda_client.py,
and adds what these tests need: a chosen source IP (rate limits are per IP), cookies (the
browser transport and the authorization page's CSRF cookie) and form posts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from mangum import Mangum

from core.kernel.config import DEFAULT_RATES, Rate, RateLimitSettings, Settings
from handlers.api import create_app
from tests.lambda_client import LambdaContext, http_event

PASSWORD = "correct horse battery"
# Fast hashing for most tests; tests/unit/test_passwords.py keeps one on the real 600,000.
FAST_ITERATIONS = 1_000
HOST = "abcdef1234.execute-api.us-east-1.amazonaws.com"  # the Host of events/http_api_v2.json
BASE = f"https://{HOST}"
REDIRECT = "https://client.example.com/callback"


def auth_settings(settings: Settings, **rules: Rate | None) -> Settings:
    """Fast hashing, and every rate limit off except the ones a test turns on (the PostgreSQL
    database is shared by the session, so limits left on would leak between tests)."""
    all_rules: dict[str, Rate | None] = dict.fromkeys(DEFAULT_RATES)
    all_rules.update({name.replace("__", "."): rate for name, rate in rules.items()})
    return settings.with_(
        auth=replace(settings.auth, password_iterations=FAST_ITERATIONS),
        rate_limits=RateLimitSettings(rules=all_rules),
    )


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@Example.com"


def new_ip() -> str:
    # Documentation range (RFC 3849): no real host, unique per test.
    # A /64 of its own: rate limits count an IPv6 caller by its /64.
    return f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: str
    cookies: dict[str, str] = field(default_factory=dict)
    raw_cookies: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        data = self.json()
        error = data.get("error") if isinstance(data, dict) else None
        return error.get("code") if isinstance(error, dict) else error

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


class Web:
    def __init__(self, settings: Settings, ip: str | None = None) -> None:
        self.app = create_app(settings)
        self.handler = Mangum(self.app, lifespan="off")
        self.ip = ip or new_ip()
        self.jar: dict[str, str] = {}  # a browser's cookies, when a test wants them kept

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | list[tuple[str, str]] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        ip: str | None = None,
        keep_cookies: bool = False,
    ) -> Resp:
        all_headers = dict(headers or {})
        body: str | None = None
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body)
            all_headers.setdefault("content-type", "application/json")
        if form is not None:
            body = urlencode(form)
            all_headers.setdefault("content-type", "application/x-www-form-urlencoded")
        jar = {**(self.jar if keep_cookies else {}), **(cookies or {})}
        if jar:
            all_headers["cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        event = http_event(method, path, query=query, headers=all_headers, body=body)
        event["requestContext"]["http"]["sourceIp"] = ip or self.ip
        result = self.handler(event, LambdaContext())
        text = result.get("body") or ""
        if result.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        raw = list(result.get("cookies") or [])
        set_cookies = {}
        for line in raw:
            name, _, rest = line.partition("=")
            set_cookies[name] = rest.split(";")[0].strip('"')
        if keep_cookies:
            for name, value in set_cookies.items():
                if value:
                    self.jar[name] = value
                else:
                    self.jar.pop(name, None)
        headers_out = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        return Resp(result["statusCode"], headers_out, text, set_cookies, raw)

    # -- accounts ----------------------------------------------------------------------

    def signup(self, email: str | None = None, password: str = PASSWORD, **extra: Any) -> Any:
        reply = self.call(
            "POST",
            "/auth/signup",
            json_body={"email": email or new_email(), "password": password, **extra},
        )
        assert reply.status == 201, reply.body
        return reply.json()

    def login(
        self, email: str, password: str = PASSWORD, *, ip: str | None = None, **extra: Any
    ) -> Resp:
        return self.call(
            "POST", "/auth/login", json_body={"email": email, "password": password, **extra}, ip=ip
        )


# -- OAuth helpers ---------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class FormParser(HTMLParser):
    """The forms of a page: hidden and text inputs, radio choices and submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self.buttons: list[tuple[str, str]] = []
        self.forms = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms += 1
        if tag == "input" and a.get("name"):
            if a.get("type") == "radio":
                self.radios.setdefault(a["name"], []).append(a.get("value", ""))
            elif a.get("type") in ("hidden", "text", "email"):
                self.fields[a["name"]] = a.get("value", "")
        if tag == "button" and a.get("name"):
            self.buttons.append((a["name"], a.get("value", "")))


def parse_form(html_text: str) -> FormParser:
    parser = FormParser()
    parser.feed(html_text)
    return parser


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def register_client(web: Web, **metadata: Any) -> dict[str, Any]:
    body = {
        "client_name": "Test MCP client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        **metadata,
    }
    reply = web.call("POST", "/oauth/register", json_body=body, headers=ADMIN)
    assert reply.status == 201, reply.body
    return dict(reply.json())


REGISTRATION_TOKEN = "registration-token-for-tests"
ADMIN = {"authorization": f"Bearer {REGISTRATION_TOKEN}"}


def oauth_settings(settings: Settings, **rules: Rate | None) -> Settings:
    s = auth_settings(settings, **rules)
    return s.with_(auth=replace(s.auth, registration_token=REGISTRATION_TOKEN))


@dataclass
class Grant:
    """The result of driving the authorization page to a code."""

    client: dict[str, Any]
    verifier: str
    code: str
    redirect_uri: str
    email: str
    brain_id: str


def authorize_params(client: dict[str, Any], challenge: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": client["redirect_uris"][0],
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(8),
        # The whole service: most tests call /v1 with the token (RFC 8707 binding is tested
        # on its own in tests/test_oauth.py).
        "resource": BASE,
    }
    params.update(extra)
    return params


def get_code(
    web: Web,
    client: dict[str, Any],
    *,
    email: str | None = None,
    action: str = "signup",
    brain_id: str | None = None,
    resource: str = BASE,
) -> Grant:
    """Open the authorization page, sign up (or log in), approve, and return the code.
    `resource`: the resources asked for, separated by spaces."""
    verifier, challenge = pkce_pair()
    params = authorize_params(client, challenge, resource=resource)
    web.jar.clear()
    page = web.call("GET", "/oauth/authorize", query=params, keep_cookies=True)
    assert page.status == 200, page.body
    form = parse_form(page.body)
    email = email or new_email()
    fields = {**form.fields, "email": email, "password": PASSWORD, "action": action}
    consent = web.call("POST", "/oauth/authorize", form=fields, keep_cookies=True)
    assert consent.status == 200, consent.body
    form = parse_form(consent.body)
    assert ("action", "approve") in form.buttons
    chosen = brain_id or form.radios["brain_id"][0]
    approved = web.call(
        "POST",
        "/oauth/authorize",
        form={**form.fields, "brain_id": chosen, "action": "approve"},
        keep_cookies=True,
    )
    assert approved.status == 303, approved.body
    got = query_of(approved.location)
    assert got["state"] == params["state"]
    assert got["iss"] == BASE
    assert approved.location.startswith(params["redirect_uri"] + "?")
    return Grant(client, verifier, got["code"], params["redirect_uri"], email, chosen)


def exchange(web: Web, grant: Grant, **overrides: str) -> Resp:
    form = {
        "grant_type": "authorization_code",
        "code": grant.code,
        "redirect_uri": grant.redirect_uri,
        "code_verifier": grant.verifier,
        "client_id": grant.client["client_id"],
        **overrides,
    }
    return web.call("POST", "/oauth/token", form={k: v for k, v in form.items() if v != ""})


def refresh(web: Web, client: dict[str, Any], refresh_token: str) -> Resp:
    return web.call(
        "POST",
        "/oauth/token",
        form={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client["client_id"],
        },
    )


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


def has_tag(html_text: str, pattern: str) -> bool:
    return re.search(pattern, html_text) is not None
