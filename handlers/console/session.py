"""Who is looking at the console, in which brain, and whether a form really came from us.

The console rides on the account sessions of /auth: the access token travels in the HttpOnly
`__Host-mnemo_access` cookie (SameSite=Lax), set by the console's own sign-in form. OAuth grants
are refused: they stand for an MCP client, not for the person at the browser.

CSRF: every form that changes something carries a token derived from the session's access
token (HMAC keyed by the token, which only this browser and the store's hash ever see), so it
is bound to the session and dies with it, and no server secret is needed. The sign-in form,
before there is a session, uses the double-submit cookie of the OAuth authorization page. A
browser that sends an Origin must send ours as well.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Connection, Engine
from starlette.requests import Request

from core.identity import accounts, memberships, sessions
from core.identity.models import BrainRecord
from core.identity.oauth.metadata import base_url
from core.kernel.db.engine import transaction
from core.kernel.errors import BadRequest
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from handlers.context import Context, Services, services

SIGN_IN = "/console/login"
PRE_SESSION_COOKIE = "__Host-mnemo_csrf"  # shared with the OAuth authorization page
_MAX_FORM_BYTES = 256 * 1024


class SignInRequired(Exception):
    """No live account session: the browser is sent to the sign-in page."""


class CsrfRejected(Exception):
    """A form posted without its token, with another session's, or from another origin."""


def csrf_token(access_token: str, session_id: str) -> str:
    digest = hmac.new(
        access_token.encode(), b"mnemo-console-csrf:" + session_id.encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Visitor:
    """A signed-in person (a first-party account session)."""

    services: Services
    engine: Engine
    session: sessions.Verified
    email: str
    csrf: str

    @property
    def account_id(self) -> str:
        return self.session.account_id


@dataclass(frozen=True)
class InBrain:
    """A signed-in person inside one of their brains, with the scope core calls run under."""

    visitor: Visitor
    brain: BrainRecord
    ctx: Context

    @property
    def brain_id(self) -> str:
        return str(self.brain["id"])

    @property
    def is_owner(self) -> bool:
        return bool(self.brain["role"] == "owner")

    @property
    def base(self) -> str:
        return f"/console/b/{self.brain_id}"

    @property
    def scope(self) -> Scope:
        return self.ctx.scope


def _access_cookie(request: Request) -> str:
    token = request.cookies.get(sessions.ACCESS_COOKIE, "")
    if not token.startswith(sessions.ACCESS_PREFIX):
        raise SignInRequired
    return token


def _verified(conn: Connection, token: str) -> sessions.Verified:
    found = sessions.verify_access(conn, token)
    if found is None or found.client_id is not None:
        raise SignInRequired
    return found


def _renewed(request: Request, engine: Engine, found: sessions.Verified, token: str) -> str:
    """The access token the page goes on with. The console never sees the refresh cookie (it is
    scoped to /auth), so while the console is in use its access token is renewed here: a page
    load (GET) in the last quarter of the token's life gets a fresh one, set as the cookie by
    the `page` wrapper. Only on GET: a form posted from an older page keeps the token its CSRF
    field was made from. Idle for a whole token lifetime, the visitor signs in again."""
    life = sessions.Lifetimes.of(services(request).settings.auth)
    left = found.access_expires_at - now_ms()
    if request.method != "GET" or left > life.access_ms // 4 or found.expires_at <= now_ms():
        return token
    with transaction(engine, write=True) as conn:
        fresh, seconds = sessions.renew_access(conn, found, life)
    request.state.renewed_access = (fresh, seconds)
    return fresh


def renewed_access(request: Request) -> tuple[str, int] | None:
    """The access token `_renewed` made for this request, if it made one."""
    found: tuple[str, int] | None = getattr(request.state, "renewed_access", None)
    return found


async def visitor(request: Request) -> Visitor:
    svc = services(request)
    token = _access_cookie(request)

    def run() -> Visitor:
        engine = svc.ready_engine()
        with transaction(engine, write=False) as conn:
            found = _verified(conn, token)
            email = accounts.get(conn, found.account_id).email
        _touch(engine, found)
        current = _renewed(request, engine, found, token)
        return Visitor(svc, engine, found, email, csrf_token(current, found.session_id))

    return await svc.call(run)


async def in_brain(request: Request) -> InBrain:
    """The visitor inside the brain named by the path: 404 unless they are a member."""
    svc = services(request)
    token = _access_cookie(request)
    brain_id = request.path_params["brain"]

    def run() -> InBrain:
        engine = svc.ready_engine()
        with transaction(engine, write=False) as conn:
            found = _verified(conn, token)
            email = accounts.get(conn, found.account_id).email
            brain = memberships.get_brain(conn, found.account_id, brain_id)  # 404 unless member
        _touch(engine, found)
        current = _renewed(request, engine, found, token)
        who = Visitor(svc, engine, found, email, csrf_token(current, found.session_id))
        scope = Scope(
            brain_id=brain["id"],
            principal=f"account:{found.account_id}",
            role=brain["role"],
            account_id=found.account_id,
            session_id=found.session_id,
        )
        return InBrain(who, brain, Context(svc, engine, scope))

    return await svc.call(run)


def _touch(engine: Engine, found: sessions.Verified) -> None:
    if found.stale:
        with transaction(engine, write=True) as conn:
            sessions.touch(conn, found.session_id)


class Form:
    """A urlencoded form body: the first value of a field, or all of them."""

    def __init__(self, fields: Mapping[str, list[str]]) -> None:
        self.fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def optional(self, name: str) -> str | None:
        """The field trimmed, or None when it is missing or blank."""
        value = self.get(name).strip()
        return value or None

    def checked(self, name: str) -> bool:
        return bool(self.fields.get(name))


async def read_form(request: Request) -> Form:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise BadRequest("send the form as application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > _MAX_FORM_BYTES:
        raise BadRequest("the form is too large")
    try:
        return Form(parse_qs(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None


def _origin_ok(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    base = urlsplit(base_url(services(request).settings.auth.public_url, str(request.base_url)))
    return origin == f"{base.scheme}://{base.netloc}"


async def checked_form(request: Request, expected: str) -> Form:
    """The posted form, once its CSRF token matches `expected` and its origin is ours. A body
    that is not a form at all is refused the same way: it cannot carry the token."""
    try:
        form = await read_form(request)
    except BadRequest:
        raise CsrfRejected from None
    sent = form.get("csrf_token")
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected
    if not _origin_ok(request):
        raise CsrfRejected
    if any("\x00" in text for name, values in form.fields.items() for text in (name, *values)):
        # PostgreSQL refuses NUL in text: say so here rather than fail in SQL.
        raise BadRequest("a field holds a NUL character (\\x00): remove it and send the form again")
    return form


def pre_session_csrf(request: Request) -> str:
    return request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(32)


async def checked_sign_in_form(request: Request) -> Form:
    cookie = request.cookies.get(PRE_SESSION_COOKIE, "")
    if not cookie:
        raise CsrfRejected
    return await checked_form(request, cookie)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of ours, never another site."""
    if (
        target
        and target.startswith("/console/")
        and not any(c in target for c in ("\\", "\n", "\r"))
    ):
        return target
    return "/console/brains"
