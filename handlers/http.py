"""Request parsing, the one error shape, and the declared routes the OpenAPI spec is made from."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.kernel.db.engine import unavailable as db_unavailable
from core.kernel.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    MnemoError,
    NotFound,
    TooLarge,
    Unauthorized,
    UpstreamError,
    field_errors,
)
from core.kernel.ratelimit import RateLimited

log = logging.getLogger("mnemo.http")

M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]

STATUS: dict[type[MnemoError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    InvalidInput: 422,
    UpstreamError: 502,
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class UnsupportedMediaType(MnemoError):
    code = "unsupported_media_type"


STATUS[UnsupportedMediaType] = 415
STATUS[RateLimited] = 429


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


# The bearer credential was sent but is not good here (RFC 6750 section 3.1: invalid_token
# covers unknown, expired, revoked, and a token bound to another resource).
_INVALID_BEARER = frozenset({"invalid_token", "invalid_key"})


def bearer_challenge(code: str, message: str) -> str:
    """RFC 6750 section 3: the error is named only when a credential was sent and refused."""
    if code not in _INVALID_BEARER:
        return 'Bearer realm="mnemo"'
    description = message.replace('"', "'").replace("\\", "/")
    return f'Bearer realm="mnemo", error="invalid_token", error_description="{description}"'


async def on_mnemo_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MnemoError)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": bearer_challenge(exc.code, exc.message)}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(status, exc.code, exc.message, exc.details, headers)


async def on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    details = field_errors(exc.errors(include_url=False))
    first = details[0]
    where = f" at {first['field']}" if first["field"] else ""
    return error_response(422, "invalid_input", f"{first['message']}{where}", details)


async def on_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = {
        404: "no such route: check the path against /openapi.json",
        405: "method not allowed on this route",
    }.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, code, message, headers=exc.headers)


# What a 503 asks the client to wait: PostgreSQL restarts or fails over in seconds, and the
# pool reconnects on the next request after that.
RETRY_AFTER_SECONDS = 2
UNAVAILABLE_MESSAGE = "the database cannot be reached right now; retry after a few seconds"


def failure_response(exc: BaseException, method: str, path: str) -> Response:
    """The reply to an exception nothing expected: a 503 with Retry-After when the database is
    unreachable or too busy (the client can retry), else a 500 that tells nothing of inside."""
    if db_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", method, path, exc)
        return error_response(
            503,
            "database_unavailable",
            UNAVAILABLE_MESSAGE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(500, "internal_error", "something went wrong on our side; try again")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    return failure_response(exc, request.method, request.url.path)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    MnemoError: on_mnemo_error,
    ValidationError: on_validation_error,
    HTTPException: on_http_exception,
    # Answered here rather than by Starlette's last-resort handler, which re-raises after
    # replying: the server then drops a keep-alive connection the client expects to reuse.
    DBAPIError: on_unexpected,
    SQLAlchemyTimeoutError: on_unexpected,
    Exception: on_unexpected,
}


def _not_json(constant: str) -> Any:
    # Python's json reads NaN and Infinity; JSON has neither, and a stored NaN made every later
    # reply that carried the memory fail to serialise (a 500 for the brain's whole list).
    raise ValueError(f"{constant} is not a JSON value")


def _finite(literal: str) -> float:
    # 1e309 is valid JSON that Python reads as infinity, which no reply could carry back.
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"{literal} is too large for a 64-bit float")
    return value


NUL_MESSAGE = "text may not contain the NUL character (\\u0000); PostgreSQL cannot store it"


class NulCharacter(ValueError):
    pass


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


# Deeper than any memory's metadata or filter needs, and far inside Python's recursion limit:
# every reader after the parser (pydantic, the filter compiler, json.dumps) recurses.
MAX_JSON_DEPTH = 64
DEPTH_MESSAGE = f"JSON nested deeper than {MAX_JSON_DEPTH} levels; flatten it"


class JsonTooDeep(ValueError):
    pass


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` deep; iterative, so any depth is safe."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_json(raw: bytes | str) -> Any:
    """A request body's JSON, refusing what JSON or the store cannot hold: NaN and Infinity
    (not JSON), the NUL character in any string (PostgreSQL text cannot hold it), and nesting
    past MAX_JSON_DEPTH (JsonTooDeep, a ValueError)."""
    try:
        data = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise JsonTooDeep(DEPTH_MESSAGE) from None
    if isinstance(raw, bytes):
        opened = raw.count(b"[") + raw.count(b"{")
    else:
        opened = raw.count("[") + raw.count("{")
    # Fewer brackets than the limit cannot nest past it: most bodies skip the walk.
    if (
        opened > MAX_JSON_DEPTH
        and isinstance(data, dict | list)
        and _deeper_than(data, MAX_JSON_DEPTH)
    ):
        raise JsonTooDeep(DEPTH_MESSAGE)
    escaped = b"\\u0000" in raw if isinstance(raw, bytes) else "\\u0000" in raw
    if escaped and _has_nul(data):
        raise NulCharacter(NUL_MESSAGE)
    return data


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`: 415 for another media type, 400 if it is not JSON, 422 if it
    does not fit the model."""
    return _parse_body(request, await request.body(), model)


async def read_optional_body(request: Request, model: type[M]) -> M:
    """As `read_body`, but a request without a body gets the model's defaults. Whether there is
    one is read from the body itself: a chunked request carries no Content-Length."""
    raw = await request.body()
    return _parse_body(request, raw, model) if raw else model()


async def read_object(request: Request) -> dict[str, Any]:
    """The JSON body as a plain object, for a route that picks its model from the body."""
    return _parse_object(request, await request.body())


def _parse_body(request: Request, raw: bytes, model: type[M]) -> M:
    return model.model_validate(_parse_object(request, raw))


def _parse_object(request: Request, raw: bytes) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json",
            details={"content_type": media_type or None},
        )
    try:
        data = parse_json(raw) if raw else None
    except NulCharacter as exc:
        raise BadRequest(str(exc), code="invalid_character") from None
    except JsonTooDeep as exc:
        raise BadRequest(
            str(exc), code="json_too_deep", details={"limit": MAX_JSON_DEPTH}
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", details={"field": None})
    return data


def read_query(request: Request, model: type[M], *, lists: tuple[str, ...] = ()) -> M:
    """Query parameters as `model`; unknown parameters are refused so typos do not pass."""
    params = request.query_params
    data: dict[str, Any] = {}
    for name in params:
        data[name] = params.getlist(name) if name in lists else params[name]
    return model.model_validate(data)


# A reply or request body in the OpenAPI document: a pydantic model, a TypedDict (a reply that
# is its typed record too, documented through pydantic's TypeAdapter: it must be
# typing_extensions' TypedDict on Python 3.11), or a JSON Schema for what no model describes (a
# JSON-RPC envelope, an HTML page: {"type": "string"}).
Schema = type[BaseModel] | type[Mapping[str, Any]] | dict[str, Any]


class NoBody:
    def __repr__(self) -> str:
        return "NO_BODY"


NO_BODY = NoBody()
"""A success reply without a body (e.g. RFC 7009's revocation 200, MCP's 202)."""


@dataclass(frozen=True)
class Doc:
    """What the OpenAPI document says of a route; /openapi.json is made from these alone.

    Every route names its success body: `response` (a model, a JSON Schema, or NO_BODY) with
    `status`; tests/api/test_openapi_doc.py fails for a route that does not, and schemathesis
    (tests/api/test_openapi_fuzz.py) checks every reply against what is declared here. Errors take
    the one error shape unless `errors` names another (OAuth's, JSON-RPC's, OpenMemory's).
    A route with more than one success reply (the 200 of a deduplicated add beside the 201)
    lists the others in `also`.
    """

    summary: str
    tag: str
    body: Schema | None = None
    query: type[BaseModel] | None = None
    response: Schema | NoBody | None = None
    status: int = 200
    auth: bool = True
    body_required: bool = True
    also: Mapping[int, Schema | NoBody] = field(default_factory=dict)
    errors: Schema | None = None
    media_type: str = "application/json"
    body_media_type: str = "application/json"
    error_media_type: str = "application/json"


class Undocumented(Route):
    """A route /openapi.json leaves out on purpose: the twin of a documented operation under
    another path (without its trailing slash, with an empty segment), or a call of a foreign
    API that Mnemo answers only to say it has no counterpart (501 not_supported, listed in the
    README). Anything else a route serves must be an ApiRoute with its Doc."""

    def __init__(self, path: str, endpoint: Endpoint, *, method: str) -> None:
        super().__init__(path, endpoint, methods=[method])


class ApiRoute(Route):
    def __init__(self, path: str, endpoint: Endpoint, *, method: str, doc: Doc) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.doc = doc
