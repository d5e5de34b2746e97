"""The OAuth authorization page's requests: GET shows the login or consent form, POST handles
its actions (log in, sign up, approve, deny, use another account).

The page is protected by a double-submit CSRF token (a __Host- cookie that must match the
form's hidden field, plus an Origin check when the browser sends one); the OAuth parameters
ride along as hidden fields and are validated again on every post, so tampering with them is no
different from crafting a new authorization request.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.identity import accounts, memberships, sessions
from core.identity.models import BrainRecord
from core.identity.oauth import clients, codes, metadata
from core.identity.oauth.errors import OAuthError, PageError, RedirectError
from core.kernel.config import AuthSettings
from core.kernel.db.engine import transaction
from core.kernel.errors import MnemoError
from core.kernel.ratelimit import RateLimited
from handlers.context import services
from handlers.pages import authorize as pages
from handlers.routes.auth import (
    clear_session_cookies,
    client_ip,
    limit,
    login_throttle,
    set_session_cookies,
)

CSRF_COOKIE = "__Host-mnemo_csrf"
_MAX_FORM_BYTES = 64 * 1024


def base_of(request: Request) -> str:
    svc = services(request)
    return metadata.base_url(svc.settings.auth.public_url, str(request.base_url))


async def read_form(request: Request) -> dict[str, list[str]]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the body as application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > _MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the body is too large")
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the body is not UTF-8") from None


def _with_params(uri: str, params: Mapping[str, str | None]) -> str:
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    if clients.is_private_use(uri):
        # CSP's scheme-source: the redirect hands off to the app that owns the scheme.
        return f"{parts.scheme}:"
    return f"{parts.scheme}://{parts.netloc}"


def _redirect_error(err: RedirectError, base: str) -> Response:
    target = _with_params(
        err.redirect_uri,
        {"error": err.error, "error_description": err.description, "state": err.state, "iss": base},
    )
    # 303: after a form post the browser must follow with a GET, never re-post the password.
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


@dataclass
class _Page:
    """What the authorization page needs to render for one request."""

    req: codes.AuthRequest
    csrf: str
    base: str

    def login(
        self, status: int = 200, error: str | None = None, email: str = "", *, signup: bool = True
    ) -> Response:
        content = pages.login_page(
            client_name=self.req.client.display_name,
            client_id=self.req.client.client_id,
            redirect_uri=self.req.redirect_uri,
            params=self.req.params(),
            csrf=self.csrf,
            error=error,
            email=email,
            signup_enabled=signup,
        )
        return pages.respond(content, status, redirect_origin=_origin(self.req.redirect_uri))

    def consent(
        self, email: str, brains: list[BrainRecord], status: int = 200, error: str | None = None
    ) -> Response:
        content = pages.consent_page(
            client_name=self.req.client.display_name,
            client_id=self.req.client.client_id,
            redirect_uri=self.req.redirect_uri,
            params=self.req.params(),
            csrf=self.csrf,
            email=email,
            brains=brains,
            scope=self.req.scope,
            error=error,
        )
        return pages.respond(content, status, redirect_origin=_origin(self.req.redirect_uri))


def _set_csrf(response: Response, csrf: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=3600, path="/", secure=True, httponly=True, samesite="lax"
    )


def _browser_session(engine: Engine, request: Request) -> sessions.Verified | None:
    cookie = request.cookies.get(sessions.ACCESS_COOKIE)
    if not cookie:
        return None
    with transaction(engine, write=False) as conn:
        found = sessions.verify_access(conn, cookie)
    return found if found is not None and found.client_id is None else None


def _account_view(engine: Engine, account_id: str) -> tuple[str, list[BrainRecord]]:
    with transaction(engine, write=False) as conn:
        email = accounts.get(conn, account_id).email
        return email, memberships.list_brains(conn, account_id)


async def authorize_get(request: Request) -> Response:
    svc = services(request)
    base = base_of(request)
    params = parse_qs(request.url.query, keep_blank_values=True)
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)

    def run() -> Response:
        engine = svc.ready_engine()
        with transaction(engine, write=False) as conn:
            req = codes.validate_request(conn, params, base)
        page = _Page(req, csrf, base)
        found = _browser_session(engine, request)
        if found is None:
            return page.login(signup=svc.settings.auth.signup_enabled)
        email, brains = _account_view(engine, found.account_id)
        return page.consent(email, brains)

    try:
        response = await svc.call(run)
    except PageError as err:
        return pages.respond(pages.error_page(err.description), 400)
    except RedirectError as err:
        return _redirect_error(err, base)
    _set_csrf(response, csrf)
    return response


def _csrf_ok(request: Request, form: Mapping[str, list[str]], base: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = (form.get("csrf_token") or [""])[0]
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return False
    # Defence in depth: a browser that names the origin must name ours.
    origin = request.headers.get("origin")
    return origin is None or origin == _origin(base)


async def authorize_post(request: Request) -> Response:
    svc = services(request)
    base = base_of(request)
    try:
        form = await read_form(request)
    except OAuthError as err:
        return pages.respond(pages.error_page(err.description), 400)
    if not _csrf_ok(request, form, base):
        return pages.respond(
            pages.error_page(
                "this form expired or did not come from this page (CSRF check failed)"
            ),
            403,
        )
    csrf = (form.get("csrf_token") or [""])[0]
    action = (form.get("action") or [""])[0]

    def field(name: str) -> str:
        return (form.get(name) or [""])[0]

    def run() -> Response:
        engine = svc.ready_engine()
        with transaction(engine, write=False) as conn:
            req = codes.validate_request(conn, form, base)
        page = _Page(req, csrf, base)
        auth = svc.settings.auth
        if action == "deny":
            raise RedirectError(req.redirect_uri, req.state, "access_denied", "the user said no")
        if action == "switch_account":
            response = page.login(signup=auth.signup_enabled)
            clear_session_cookies(response)
            return response
        if action in ("login", "signup"):
            return _log_in(request, engine, page, action, field("email"), field("password"))
        if action == "approve":
            found = _browser_session(engine, request)
            if found is None:
                return page.login(401, "your session has ended: log in again")
            limit(svc, engine, "authorize.ip", client_ip(request))
            return _approve(engine, page, found, field("brain_id"), field("new_brain_name"), auth)
        return page.login(400, "unknown action")

    try:
        return await svc.call(run)
    except PageError as err:
        return pages.respond(pages.error_page(err.description), 400)
    except RedirectError as err:
        return _redirect_error(err, base)
    except RateLimited as exc:
        response = pages.respond(pages.error_page(exc.message), 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response


def _log_in(
    request: Request, engine: Engine, page: _Page, action: str, raw_email: str, password: str
) -> Response:
    svc = services(request)
    auth = svc.settings.auth
    ip = client_ip(request)
    limit(svc, engine, "authorize.ip", ip)
    try:
        email = accounts.normalize_email(raw_email)
        who = accounts.Client(request.headers.get("user-agent"), ip)
        if action == "signup":
            if not auth.signup_enabled:
                return page.login(403, "signup is closed on this server", raw_email, signup=False)
            limit(svc, engine, "signup.account", email)
            signed: accounts.SignedIn | None = accounts.signup(engine, email, password, auth, who)
        else:
            signed = login_throttle(svc, engine, "authorize").attempt(
                email, ip, lambda: accounts.login(engine, email, password, auth, who)
            )
    except RateLimited:
        raise
    except MnemoError as err:
        status = 409 if err.code == "signup_failed" else 422
        return page.login(status, err.message, raw_email, signup=auth.signup_enabled)
    if signed is None:
        return page.login(401, "wrong email or password", raw_email, signup=auth.signup_enabled)
    email_shown, brains = _account_view(engine, signed.account.id)
    response = page.consent(email_shown, brains)
    set_session_cookies(response, signed.issued, svc)
    return response


def _approve(
    engine: Engine,
    page: _Page,
    found: sessions.Verified,
    brain_id: str,
    new_brain_name: str,
    auth: AuthSettings,
) -> Response:
    try:
        with transaction(engine) as conn:
            if new_brain_name.strip():
                brain = memberships.create_brain(conn, found.account_id, new_brain_name)
            elif brain_id:
                brain = memberships.get_brain(conn, found.account_id, brain_id)  # 404 unless member
            else:
                raise MnemoError("pick a brain, or name a new one", code="brain_required")
            code = codes.issue_code(
                conn, page.req, found.account_id, brain["id"], auth.code_seconds * 1000
            )
    except MnemoError as err:
        email, brains = _account_view(engine, found.account_id)
        return page.consent(email, brains, 422, err.message)
    target = _with_params(
        page.req.redirect_uri, {"code": code, "state": page.req.state, "iss": page.base}
    )
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
