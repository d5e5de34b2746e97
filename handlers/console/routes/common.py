"""What every console endpoint shares: errors as HTML pages (not the API's JSON), the sign-in
redirect, and rendering inside a brain's navigation."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from core.kernel.errors import MnemoError
from core.kernel.ratelimit import RateLimited
from handlers.console.html import Html, with_query
from handlers.console.session import (
    SIGN_IN,
    CsrfRejected,
    InBrain,
    SignInRequired,
    renewed_access,
)
from handlers.console.templates.layout import (
    MEMBER_SECTIONS,
    OWNER_SECTIONS,
    Nav,
    document,
    error_page,
    notice,
    respond,
    see_other,
)
from handlers.http import STATUS
from handlers.routes.auth import set_access_cookie

Endpoint = Callable[[Request], Awaitable[Response]]

CSRF_MESSAGE = (
    "This form expired or did not come from this page (the CSRF check failed). "
    "Go back, reload the page and try again."
)


def status_of(err: MnemoError) -> int:
    return next((s for cls, s in STATUS.items() if isinstance(err, cls)), 400)


def first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid value')}" if where else error.get("msg", "")


NUL_MESSAGE = (
    "The address holds a NUL character (%00), which no name, id or search can contain: "
    "remove it and try again."
)


def _has_nul(request: Request) -> bool:
    # Decoded values: %00 in a path or query reaches SQL as a NUL, which PostgreSQL refuses.
    values = [
        *request.path_params.values(),
        *(v for kv in request.query_params.multi_items() for v in kv),
    ]
    return any("\x00" in str(value) for value in values)


def page(fn: Endpoint) -> Endpoint:
    """Wraps an endpoint so that what goes wrong is shown as a page a person can act on."""

    @functools.wraps(fn)
    async def endpoint(request: Request) -> Response:
        if _has_nul(request):
            return respond(error_page(400, NUL_MESSAGE), 400)
        try:
            response = await fn(request)
        except SignInRequired:
            back = request.url.path
            if request.url.query:
                back += "?" + request.url.query
            return see_other(with_query(SIGN_IN, {"next": back if request.method == "GET" else ""}))
        except CsrfRejected:
            return respond(error_page(403, CSRF_MESSAGE), 403)
        except RateLimited as exc:
            response = respond(error_page(429, exc.message), 429)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except MnemoError as err:
            status = status_of(err)
            return respond(error_page(status, err.message), status)
        except ValidationError as exc:
            return respond(error_page(422, first_problem(exc)), 422)
        renewed = renewed_access(request)
        if renewed is not None:
            set_access_cookie(response, *renewed)
        return response

    return endpoint


def nav(view: InBrain, section: str) -> Nav:
    sections = MEMBER_SECTIONS + (OWNER_SECTIONS if view.is_owner else ())
    return Nav(
        email=view.visitor.email,
        csrf=view.visitor.csrf,
        brain_id=view.brain_id,
        brain_name=view.brain["name"],
        role=view.brain["role"],
        section=section,
        sections=sections,
    )


def render(view: InBrain, section: str, title: str, body: Html, status: int = 200) -> Response:
    return respond(document(title, body, nav(view, section)), status)


def done(request: Request) -> Html:
    return notice(request.query_params.get("done"))


def to(path: str, done_code: str | None = None) -> Response:
    return see_other(with_query(path, {"done": done_code}))
