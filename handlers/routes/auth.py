"""Accounts and sessions: /auth/signup, /auth/login, /auth/refresh, /auth/logout, /auth/me,
/auth/sessions..., /auth/session/brain.

Tokens travel as JSON (bearer transport, for programs) or as HttpOnly cookies (cookie
transport, for browsers: the body then carries no token at all). Account routes need an
account session: API keys and OAuth grants are refused, since they stand for one brain, not
for a person.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from starlette.requests import Request
from starlette.responses import Response

from core.identity import accounts, memberships, sessions
from core.identity.models import (
    BrainSwitched,
    LoginIn,
    MeOut,
    RefreshIn,
    RevokedCount,
    SessionRevoked,
    SessionsOut,
    SignedInOut,
    SignupIn,
    SwitchBrainIn,
    TokensOut,
)
from core.identity.throttle import LoginThrottle
from core.kernel import ratelimit
from core.kernel.db.engine import transaction
from core.kernel.errors import Forbidden, Unauthorized
from core.kernel.ids import iso
from handlers.context import Services, bearer_token, services
from handlers.http import (
    ApiRoute,
    Doc,
    json_response,
    read_body,
    read_optional_body,
)

P = ParamSpec("P")
T = TypeVar("T")


def client_ip(request: Request) -> str:
    """The caller's address as rate limits and sign-in throttling count it.

    Mangum fills `client` from the API Gateway / Function URL source IP, which the caller
    cannot forge, and under uvicorn it is the socket peer. For an ALB event it is the whole
    X-Forwarded-For header, whose left part the caller writes: only the last entry, added by
    the load balancer, is trusted. An IPv6 host commonly holds a whole /64, so that network
    counts as one source (else one host would have 2**64 fresh addresses to guess from)."""
    host = request.client.host if request.client else ""
    host = host.rsplit(",", 1)[-1].strip()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def limit(svc: Services, engine: Engine, rule: str, subject: str | None) -> None:
    settings = svc.settings.rate_limits
    ratelimit.enforce(ratelimit.limiter_for(settings, engine), settings, rule, subject)


def login_throttle(svc: Services, engine: Engine, action: str) -> LoginThrottle:
    """Failed sign-ins counted per account and address (core/identity/throttle.py)."""
    settings = svc.settings.rate_limits
    return LoginThrottle(ratelimit.limiter_for(settings, engine), settings, action)


# -- browser transport -------------------------------------------------------------------


def set_access_cookie(response: Response, token: str, seconds: int) -> None:
    response.set_cookie(
        sessions.ACCESS_COOKIE,
        token,
        max_age=seconds,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )


def set_session_cookies(response: Response, issued: sessions.Issued, svc: Services) -> None:
    refresh_seconds = svc.settings.auth.refresh_token_days * 86_400
    set_access_cookie(response, issued.access_token, issued.expires_in)
    response.set_cookie(
        sessions.REFRESH_COOKIE,
        issued.refresh_token,
        max_age=refresh_seconds,
        path="/auth",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(sessions.ACCESS_COOKIE, path="/", secure=True, httponly=True)
    response.delete_cookie(sessions.REFRESH_COOKIE, path="/auth", secure=True, httponly=True)


def _signed_in_response(
    signed: accounts.SignedIn, transport: str, svc: Services, status: int
) -> Response:
    body: dict[str, Any] = {
        "account": signed.account.public(),
        "brain": signed.brain,
        "session_id": signed.issued.session_id,
        **_token_body(signed.issued, transport),
    }
    response = json_response(body, status, headers={"Cache-Control": "no-store"})
    if transport == "cookie":
        set_session_cookies(response, signed.issued, svc)
    return response


def _token_body(issued: sessions.Issued, transport: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "refresh_expires_at": iso(issued.refresh_expires_at),
    }
    if transport == "bearer":
        body["access_token"] = issued.access_token
        body["refresh_token"] = issued.refresh_token
    return body


# -- account sessions ----------------------------------------------------------------------


@dataclass(frozen=True)
class AccountContext:
    """An authenticated account session (first-party: not an API key, not an OAuth grant)."""

    services: Services
    engine: Engine
    session: sessions.Verified

    @property
    def account_id(self) -> str:
        return self.session.account_id

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        def run() -> T:
            with transaction(self.engine) as conn:
                return fn(conn, *args, **kw)

        return await self.services.call(run)

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        def run() -> T:
            with transaction(self.engine, write=False) as conn:
                return fn(conn, *args, **kw)

        return await self.services.call(run)


async def account_session(request: Request) -> AccountContext:
    svc = services(request)
    token = bearer_token(request)

    def resolve() -> AccountContext:
        engine = svc.ready_engine()
        found = None
        if token.startswith(sessions.ACCESS_PREFIX):
            with transaction(engine, write=False) as conn:
                found = sessions.verify_access(conn, token)
        if found is None:
            if not token.startswith(sessions.ACCESS_PREFIX):
                raise Forbidden(
                    "this route needs an account session (log in at /auth/login); "
                    "API keys stand for a brain, not a person",
                    code="account_session_required",
                )
            raise Unauthorized(
                "the access token is not valid, has expired or was revoked",
                code="invalid_token",
            )
        if found.client_id is not None:
            raise Forbidden(
                "this route needs an account session (log in at /auth/login); an OAuth "
                "grant reaches only the brain it was granted for",
                code="account_session_required",
            )
        return AccountContext(svc, engine, found)

    return await svc.call(resolve)


# -- endpoints -----------------------------------------------------------------------------


def _client(request: Request) -> accounts.Client:
    return accounts.Client(request.headers.get("user-agent"), client_ip(request))


async def signup(request: Request) -> Response:
    svc = services(request)
    data = await read_body(request, SignupIn)
    if not svc.settings.auth.signup_enabled:
        raise Forbidden("signup is closed on this server", code="signup_disabled")
    email = accounts.normalize_email(data.email)
    accounts.check_password(data.password)

    def run() -> accounts.SignedIn:
        engine = svc.ready_engine()
        limit(svc, engine, "signup.ip", client_ip(request))
        limit(svc, engine, "signup.account", email)
        return accounts.signup(
            engine,
            email,
            data.password,
            svc.settings.auth,
            _client(request),
            display_name=data.display_name,
            brain_name=data.brain_name,
        )

    signed = await svc.call(run)
    return _signed_in_response(signed, data.transport, svc, 201 if signed.created else 200)


async def login(request: Request) -> Response:
    svc = services(request)
    data = await read_body(request, LoginIn)
    email = accounts.normalize_email(data.email)

    def run() -> accounts.SignedIn | None:
        engine = svc.ready_engine()
        ip = client_ip(request)
        limit(svc, engine, "login.ip", ip)
        return login_throttle(svc, engine, "login").attempt(
            email,
            ip,
            lambda: accounts.login(
                engine, email, data.password, svc.settings.auth, _client(request), data.brain_id
            ),
        )

    signed = await svc.call(run)
    if signed is None:
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    return _signed_in_response(signed, data.transport, svc, 200)


async def refresh(request: Request) -> Response:
    svc = services(request)
    data = await read_optional_body(request, RefreshIn)
    from_cookie = data.refresh_token is None
    token = data.refresh_token or request.cookies.get(sessions.REFRESH_COOKIE)
    if not token:
        raise Unauthorized("send refresh_token, or the refresh cookie", code="missing_credentials")
    transport = "cookie" if from_cookie else data.transport

    def run() -> sessions.Rotation:
        engine = svc.ready_engine()
        limit(svc, engine, "token.ip", client_ip(request))
        with transaction(engine) as conn:
            # Committed even on failure: a detected replay has revoked the family.
            return sessions.rotate(
                conn, token, sessions.Lifetimes.of(svc.settings.auth), client_id=None
            )

    rotation = await svc.call(run)
    if rotation.issued is None:
        message = {
            "reused": "this refresh token was already used: the session has been revoked",
            "expired": "the refresh token has expired: log in again",
            "revoked": "the session was revoked: log in again",
        }.get(rotation.error or "", "the refresh token is not valid")
        raise Unauthorized(message, code="invalid_refresh_token")
    body = {"session_id": rotation.issued.session_id, **_token_body(rotation.issued, transport)}
    response = json_response(body, headers={"Cache-Control": "no-store"})
    if transport == "cookie":
        set_session_cookies(response, rotation.issued, svc)
    return response


async def logout(request: Request) -> Response:
    ctx = await account_session(request)
    await ctx.write(sessions.revoke, ctx.session.session_id, "logout")
    response = json_response({"session_id": ctx.session.session_id, "revoked": True})
    clear_session_cookies(response)
    return response


def _me(conn: Connection, found: sessions.Verified) -> dict[str, Any]:
    brain = None
    if found.brain_id is not None:
        brain = memberships.get_brain(conn, found.account_id, found.brain_id)
    return {
        "account": accounts.get(conn, found.account_id).public(),
        "brain": brain,
        "session_id": found.session_id,
    }


async def me(request: Request) -> Response:
    ctx = await account_session(request)
    return json_response(await ctx.read(_me, ctx.session))


async def list_sessions(request: Request) -> Response:
    ctx = await account_session(request)
    rows = await ctx.read(sessions.list_sessions, ctx.account_id, ctx.session.session_id)
    return json_response({"results": rows})


async def revoke_session(request: Request) -> Response:
    ctx = await account_session(request)
    session_id = request.path_params["id"]
    await ctx.write(sessions.revoke_own, ctx.account_id, session_id)
    response = json_response({"session_id": session_id, "revoked": True})
    if session_id == ctx.session.session_id:
        clear_session_cookies(response)
    return response


async def revoke_others(request: Request) -> Response:
    ctx = await account_session(request)
    count = await ctx.write(sessions.revoke_others, ctx.account_id, ctx.session.session_id)
    return json_response({"revoked": count})


def _switch(conn: Connection, found: sessions.Verified, brain_id: str) -> dict[str, Any]:
    brain = memberships.get_brain(conn, found.account_id, brain_id)  # 404 unless a member
    sessions.switch_brain(conn, found.session_id, brain_id)
    return {"session_id": found.session_id, "brain": brain}


async def switch_brain(request: Request) -> Response:
    ctx = await account_session(request)
    data = await read_body(request, SwitchBrainIn)
    return json_response(await ctx.write(_switch, ctx.session, data.brain_id))


_TAG = "auth"
routes = [
    ApiRoute(
        "/auth/signup",
        signup,
        method="POST",
        doc=Doc(
            "Create an account with a first brain, and a session on it",
            _TAG,
            body=SignupIn,
            response=SignedInOut,
            status=201,
            also={200: SignedInOut},  # the account existed and the password matched
            auth=False,
        ),
    ),
    ApiRoute(
        "/auth/login",
        login,
        method="POST",
        doc=Doc("Log in: a new session", _TAG, body=LoginIn, response=SignedInOut, auth=False),
    ),
    ApiRoute(
        "/auth/refresh",
        refresh,
        method="POST",
        doc=Doc(
            "Swap a refresh token for a new pair (rotation; a replay revokes the session)",
            _TAG,
            body=RefreshIn,
            response=TokensOut,
            auth=False,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/auth/logout",
        logout,
        method="POST",
        doc=Doc("End this session", _TAG, response=SessionRevoked),
    ),
    ApiRoute(
        "/auth/me",
        me,
        method="GET",
        doc=Doc("The account and its active brain", _TAG, response=MeOut),
    ),
    ApiRoute(
        "/auth/sessions",
        list_sessions,
        method="GET",
        doc=Doc("The account's live sessions", _TAG, response=SessionsOut),
    ),
    ApiRoute(
        "/auth/sessions/{id}",
        revoke_session,
        method="DELETE",
        doc=Doc("Revoke one of the account's sessions", _TAG, response=SessionRevoked),
    ),
    ApiRoute(
        "/auth/sessions/revoke-others",
        revoke_others,
        method="POST",
        doc=Doc("Revoke every session of the account but this one", _TAG, response=RevokedCount),
    ),
    ApiRoute(
        "/auth/session/brain",
        switch_brain,
        method="POST",
        doc=Doc(
            "Switch this session's active brain",
            _TAG,
            body=SwitchBrainIn,
            response=BrainSwitched,
        ),
    ),
]
