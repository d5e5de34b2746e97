"""Signing in and out, and the brain picker."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.identity import accounts, memberships, sessions
from core.identity.models import BrainRecord
from core.kernel.db.engine import transaction
from core.kernel.errors import Forbidden, MnemoError
from core.kernel.ratelimit import RateLimited
from handlers.console import session
from handlers.console.html import Html
from handlers.console.routes.common import done, page, status_of, to
from handlers.console.session import PRE_SESSION_COOKIE, SignInRequired
from handlers.console.templates import pages
from handlers.console.templates.layout import Nav, document, notice, respond, see_other
from handlers.context import services
from handlers.routes.auth import (
    clear_session_cookies,
    client_ip,
    limit,
    login_throttle,
    set_session_cookies,
)


@page
async def index(request: Request) -> Response:
    return see_other("/console/brains")


def _sign_in_page(
    request: Request,
    csrf: str,
    next_path: str,
    *,
    status: int = 200,
    error: str | None = None,
    email: str = "",
) -> Response:
    svc = services(request)
    body = notice(request.query_params.get("done")) + pages.sign_in(
        csrf,
        next_path,
        error=error,
        email=email,
        signup_enabled=svc.settings.auth.signup_enabled,
    )
    response = respond(document("Sign in", body), status)
    response.set_cookie(
        PRE_SESSION_COOKIE,
        csrf,
        max_age=3600,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@page
async def sign_in_form(request: Request) -> Response:
    next_path = session.safe_next(request.query_params.get("next"))
    try:
        await session.visitor(request)
        return see_other(next_path)
    except SignInRequired:
        pass
    return _sign_in_page(request, session.pre_session_csrf(request), next_path)


@page
async def sign_in(request: Request) -> Response:
    svc = services(request)
    form = await session.checked_sign_in_form(request)
    csrf = form.get("csrf_token")
    next_path = session.safe_next(form.get("next"))
    raw_email, password = form.get("email"), form.get("password")
    action = form.get("action", "login")
    auth = svc.settings.auth

    def run() -> accounts.SignedIn | None:
        engine = svc.ready_engine()
        ip = client_ip(request)
        limit(svc, engine, "login.ip", ip)
        email = accounts.normalize_email(raw_email)
        who = accounts.Client(request.headers.get("user-agent"), ip)
        if action == "signup":
            if not auth.signup_enabled:
                raise Forbidden("signup is closed on this server", code="signup_disabled")
            limit(svc, engine, "signup.ip", ip)
            limit(svc, engine, "signup.account", email)
            return accounts.signup(engine, email, password, auth, who)
        return login_throttle(svc, engine, "login").attempt(
            email, ip, lambda: accounts.login(engine, email, password, auth, who)
        )

    try:
        signed = await svc.call(run)
    except RateLimited:
        raise
    except MnemoError as err:
        return _sign_in_page(
            request, csrf, next_path, status=status_of(err), error=err.message, email=raw_email
        )
    if signed is None:
        return _sign_in_page(
            request, csrf, next_path, status=401, error="Wrong email or password.", email=raw_email
        )
    response = see_other(next_path)
    set_session_cookies(response, signed.issued, svc)
    return response


@page
async def sign_out(request: Request) -> Response:
    who = await session.visitor(request)
    await session.checked_form(request, who.csrf)

    def run() -> None:
        with transaction(who.engine) as conn:
            sessions.revoke(conn, who.session.session_id, "logout")

    await who.services.call(run)
    response = to("/console/login", "signed_out")
    clear_session_cookies(response)
    return response


@page
async def brains(request: Request) -> Response:
    who = await session.visitor(request)
    rows = await _read_brains(who)
    return _brains_page(who, rows, done(request))


async def _read_brains(who: session.Visitor) -> list[BrainRecord]:
    def run() -> list[BrainRecord]:
        with transaction(who.engine, write=False) as conn:
            return memberships.list_brains(conn, who.account_id)

    return await who.services.call(run)


def _brains_page(
    who: session.Visitor,
    rows: list[BrainRecord],
    shown_notice: Html,
    error: str | None = None,
    status: int = 200,
) -> Response:
    body = pages.brains(rows, who.csrf, shown_notice, error)
    return respond(document("Your brains", body, Nav(email=who.email, csrf=who.csrf)), status)


@page
async def create_brain(request: Request) -> Response:
    who = await session.visitor(request)
    form = await session.checked_form(request, who.csrf)

    def run() -> BrainRecord:
        with transaction(who.engine) as conn:
            return memberships.create_brain(conn, who.account_id, form.get("name"))

    try:
        brain = await who.services.call(run)
    except MnemoError as err:
        rows = await _read_brains(who)
        return _brains_page(who, rows, Html(""), err.message, status_of(err))
    return to(f"/console/b/{brain['id']}/memories", "brain")


@page
async def brain_home(request: Request) -> Response:
    view = await session.in_brain(request)
    return see_other(f"{view.base}/memories")


routes = [
    Route("/console", index, methods=["GET"]),
    Route("/console/", index, methods=["GET"]),
    Route("/console/login", sign_in_form, methods=["GET"]),
    Route("/console/login", sign_in, methods=["POST"]),
    Route("/console/logout", sign_out, methods=["POST"]),
    Route("/console/brains", brains, methods=["GET"]),
    Route("/console/brains", create_brain, methods=["POST"]),
    Route("/console/b/{brain}", brain_home, methods=["GET"]),
]
