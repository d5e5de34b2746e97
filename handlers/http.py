"""Request parsing, the one error shape, and the declared routes the OpenAPI spec is made from."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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


async def on_mnemo_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MnemoError)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="mnemo"'}
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


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "something went wrong on our side; try again")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    MnemoError: on_mnemo_error,
    ValidationError: on_validation_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}


def _not_json(constant: str) -> Any:
    # Python's json reads NaN and Infinity; JSON has neither, and a stored NaN made every later
    # reply that carried the memory fail to serialise (a 500 for the brain's whole list).
    raise ValueError(f"{constant} is not a JSON value")


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


def parse_json(raw: bytes | str) -> Any:
    """A request body's JSON, refusing what JSON or the store cannot hold: NaN and Infinity
    (not JSON), and the NUL character in any string (PostgreSQL text cannot hold it)."""
    data = json.loads(raw, parse_constant=_not_json)
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


@dataclass(frozen=True)
class Doc:
    """What the OpenAPI spec says of a route."""

    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: bool = True
    body_required: bool = True


class ApiRoute(Route):
    def __init__(self, path: str, endpoint: Endpoint, *, method: str, doc: Doc) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.doc = doc
