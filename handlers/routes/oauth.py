"""The OAuth 2.1 authorization server for MCP clients: discovery documents, /oauth/register,
/oauth/authorize (an HTML page), /oauth/token and /oauth/revoke.

The protocol endpoints answer errors in the RFC shapes that OAuth client libraries parse
({"error": "...", "error_description": "..."}), not in Mnemo's own error shape.
"""

from __future__ import annotations

import hmac
import json
import secrets
from base64 import b64decode
from binascii import Error as Base64Error
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core import accounts, memberships, sessions
from core.db.engine import transaction
from core.errors import MnemoError
from core.oauth import clients, codes, metadata
from core.oauth.errors import OAuthError, PageError, RedirectError
from core.ratelimit import RateLimited
from handlers.context import Services, services
from handlers.http import ApiRoute, Doc, json_response
from handlers.pages import authorize as pages
from handlers.routes.auth import clear_session_cookies, client_ip, limit, set_session_cookies

T = TypeVar("T")
CSRF_COOKIE = "__Host-mnemo_csrf"
_MAX_FORM_BYTES = 64 * 1024


def base_of(request: Request) -> str:
    svc = services(request)
    return metadata.base_url(svc.settings.auth.public_url, str(request.base_url))


def oauth_error(err: OAuthError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(
        err.body(), err.status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def _rate_limited(exc: RateLimited) -> Response:
    return json_response(
        {"error": "rate_limited", "error_description": exc.message},
        429,
        headers={"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"},
    )


async def _form(request: Request) -> dict[str, list[str]]:
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


def _one(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        # RFC 6749 section 3.2: parameters must not be included more than once.
        raise OAuthError("invalid_request", f"{name} was sent more than once")
    return values[0]


# -- discovery ---------------------------------------------------------------------------------

_CORS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"}


async def as_metadata(request: Request) -> Response:
    return json_response(metadata.authorization_server(base_of(request)), headers=_CORS)


async def pr_metadata(request: Request) -> Response:
    return json_response(metadata.protected_resource(base_of(request)), headers=_CORS)


async def pr_metadata_mcp(request: Request) -> Response:
    """The same document at the path-suffixed location RFC 9728 derives from `<base>/mcp`."""
    return await pr_metadata(request)


# -- registration ------------------------------------------------------------------------------


async def register(request: Request) -> Response:
    svc = services(request)
    try:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise OAuthError("invalid_client_metadata", "send client metadata as JSON")
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise OAuthError("invalid_client_metadata", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
        reg = clients.parse_registration(body)
        allowlist = svc.settings.auth.open_registration_domains
        closed = [h for h in reg.hosts() if not clients.host_allowed(h, allowlist)]
        if closed:
            _check_registration_token(request, svc, closed)

        def run() -> dict[str, Any]:
            engine = svc.ready_engine()
            limit(svc, engine, "register.ip", client_ip(request))
            with transaction(engine) as conn:
                return clients.register(conn, reg)

        created = await svc.call(run)
    except OAuthError as err:
        return oauth_error(err)
    except RateLimited as exc:
        return _rate_limited(exc)
    return json_response(created, 201, headers={"Cache-Control": "no-store"})


def _check_registration_token(request: Request, svc: Services, hosts: list[str]) -> None:
    expected = svc.settings.auth.registration_token
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise OAuthError(
            "access_denied",
            f"open registration is not available for {', '.join(sorted(set(hosts)))}: "
            "register with the operator's registration token (Authorization: Bearer ...)",
            status=403,
        )
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise OAuthError("invalid_token", "the registration token is not valid", status=401)


# -- token endpoint ----------------------------------------------------------------------------


def _credentials(request: Request, form: Mapping[str, list[str]]) -> clients.Credentials:
    header = request.headers.get("authorization", "")
    form_id, form_secret = _one(form, "client_id"), _one(form, "client_secret")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError("invalid_client", "use HTTP Basic client authentication", status=401)
        if form_secret is not None:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        try:
            decoded = b64decode(value, validate=True).decode("utf-8")
        except (Base64Error, UnicodeDecodeError, ValueError):
            raise OAuthError("invalid_client", "malformed Basic credentials", status=401) from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise OAuthError("invalid_client", "malformed Basic credentials", status=401)
        # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
        client_id = unquote(user.replace("+", " "))
        if form_id is not None and form_id != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
        return clients.Credentials(
            client_id, unquote(password.replace("+", " ")), "client_secret_basic"
        )
    if form_secret is not None:
        return clients.Credentials(form_id, form_secret, "client_secret_post")
    return clients.Credentials(form_id, None, "none")


def _authenticated(
    request: Request, form: Mapping[str, list[str]], fn: Callable[..., T], *args: Any
) -> Callable[[], T]:
    """Rate-limit, authenticate the client, then run fn(conn, client, *args) in one
    transaction that commits even when fn returns an error (a detected replay has revoked
    something)."""
    svc = services(request)

    def run() -> T:
        creds = _credentials(request, form)
        engine = svc.ready_engine()
        limit(svc, engine, "token.ip", client_ip(request))
        limit(svc, engine, "token.account", creds.client_id)
        with transaction(engine) as conn:
            client = clients.authenticate(conn, creds)
            return fn(conn, client, *args)

    return run


def _grant(
    conn: Any, client: clients.Client, form: Mapping[str, list[str]], life: sessions.Lifetimes
) -> sessions.Issued | OAuthError:
    grant_type = _one(form, "grant_type")
    if grant_type is None:
        return OAuthError("invalid_request", "grant_type is required")
    if grant_type not in client.grant_types:
        return OAuthError("unauthorized_client", f"this client may not use {grant_type}")
    if grant_type == "authorization_code":
        return codes.exchange(
            conn,
            client,
            code=_one(form, "code"),
            redirect_uri=_one(form, "redirect_uri"),
            verifier=_one(form, "code_verifier"),
            resource=_one(form, "resource"),
            life=life,
        )
    if grant_type == "refresh_token":
        token = _one(form, "refresh_token")
        if not token:
            return OAuthError("invalid_request", "refresh_token is required")
        scope = _one(form, "scope")
        resource = _one(form, "resource")
        rotation = sessions.rotate(
            conn,
            token,
            life,
            client_id=client.client_id,
            scope=None if scope is None else scope.split(),
            audience=None if resource is None else resource.rstrip("/"),
        )
        if rotation.issued is None:
            if rotation.error == "scope":
                return OAuthError("invalid_scope", "scope exceeds what was granted")
            if rotation.error == "resource":
                return OAuthError("invalid_target", "resource differs from the original grant")
            return OAuthError(
                "invalid_grant", _REFRESH_ERRORS.get(rotation.error or "", "invalid refresh token")
            )
        return rotation.issued
    return OAuthError(
        "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
    )


_REFRESH_ERRORS = {
    "unknown": "unknown refresh token",
    "wrong_client": "the refresh token was issued to another client",
    "revoked": "the grant was revoked",
    "expired": "the refresh token has expired",
    "reused": "the refresh token was already used: the grant has been revoked",
}


async def token(request: Request) -> Response:
    svc = services(request)
    try:
        form = await _form(request)
        life = sessions.Lifetimes.of(svc.settings.auth)
        result = await svc.call(_authenticated(request, form, _grant, form, life))
    except OAuthError as err:
        basic = request.headers.get("authorization", "").lower().startswith("basic")
        challenge = (
            {"WWW-Authenticate": 'Basic realm="mnemo"'} if err.status == 401 and basic else {}
        )
        return oauth_error(err, challenge)
    except RateLimited as exc:
        return _rate_limited(exc)
    if isinstance(result, OAuthError):
        return oauth_error(result)
    return json_response(
        result.token_response(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _revoke(conn: Any, client: clients.Client, token_value: str) -> None:
    sessions.revoke_token(conn, token_value, client.client_id)


async def revoke(request: Request) -> Response:
    """RFC 7009: 200 whether or not the token was known, so the answer reveals nothing."""
    svc = services(request)
    try:
        form = await _form(request)
        token_value = _one(form, "token")
        if not token_value:
            raise OAuthError("invalid_request", "token is required")
        await svc.call(_authenticated(request, form, _revoke, token_value))
    except OAuthError as err:
        return oauth_error(err)
    except RateLimited as exc:
        return _rate_limited(exc)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


# -- the authorization page ---------------------------------------------------------------------


def _with_params(uri: str, params: Mapping[str, str | None]) -> str:
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
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
        self, email: str, brains: list[dict[str, Any]], status: int = 200, error: str | None = None
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


def _account_view(engine: Engine, account_id: str) -> tuple[str, list[dict[str, Any]]]:
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
        form = await _form(request)
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
    limit(svc, engine, "authorize.ip", client_ip(request))
    try:
        email = accounts.normalize_email(raw_email)
        limit(svc, engine, "authorize.account", email)
        who = accounts.Client(request.headers.get("user-agent"), client_ip(request))
        if action == "signup":
            if not auth.signup_enabled:
                return page.login(403, "signup is closed on this server", raw_email, signup=False)
            signed: accounts.SignedIn | None = accounts.signup(engine, email, password, auth, who)
        else:
            signed = accounts.login(engine, email, password, auth, who)
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
    auth: Any,
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


# -- routes ------------------------------------------------------------------------------------

_TAG = "oauth"
routes = [
    ApiRoute(
        metadata.WELL_KNOWN_AS,
        as_metadata,
        method="GET",
        doc=Doc("OAuth authorization server metadata (RFC 8414)", _TAG, auth=False),
    ),
    ApiRoute(
        metadata.WELL_KNOWN_PR,
        pr_metadata,
        method="GET",
        doc=Doc("Protected resource metadata for /mcp (RFC 9728)", _TAG, auth=False),
    ),
    ApiRoute(
        metadata.WELL_KNOWN_PR + metadata.MCP_PATH,
        pr_metadata_mcp,
        method="GET",
        doc=Doc("Protected resource metadata for /mcp, path form (RFC 9728)", _TAG, auth=False),
    ),
    ApiRoute(
        "/oauth/register",
        register,
        method="POST",
        doc=Doc("Dynamic client registration (RFC 7591)", _TAG, auth=False, status=201),
    ),
    ApiRoute(
        "/oauth/authorize",
        authorize_get,
        method="GET",
        doc=Doc("The authorization page (HTML): log in, pick a brain, consent", _TAG, auth=False),
    ),
    ApiRoute(
        "/oauth/authorize",
        authorize_post,
        method="POST",
        doc=Doc("The authorization page's form posts (HTML)", _TAG, auth=False),
    ),
    ApiRoute(
        "/oauth/token",
        token,
        method="POST",
        doc=Doc(
            "Token endpoint: authorization_code (PKCE) and refresh_token grants", _TAG, auth=False
        ),
    ),
    ApiRoute(
        "/oauth/revoke",
        revoke,
        method="POST",
        doc=Doc("Token revocation (RFC 7009)", _TAG, auth=False),
    ),
]
