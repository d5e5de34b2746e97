"""Domain errors. Each carries a machine-readable code; handlers map the class to a status."""

from __future__ import annotations

from typing import Any, TypedDict


class MnemoError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class InvalidInput(MnemoError):
    """The request is well-formed but a field is wrong (422)."""

    code = "invalid_input"


class BadRequest(MnemoError):
    """The request cannot be read at all (400)."""

    code = "bad_request"


class TooLarge(MnemoError):
    """A body or a field exceeds its configured limit (413)."""

    code = "too_large"


class NotFound(MnemoError):
    code = "not_found"


class Conflict(MnemoError):
    code = "conflict"


class Unauthorized(MnemoError):
    code = "unauthorized"


class Forbidden(MnemoError):
    code = "forbidden"


class UpstreamError(MnemoError):
    """A service Mnemo depends on (an LLM) failed or answered nonsense (502)."""

    code = "upstream_failed"


class FieldError(TypedDict):
    """One field's problem, as a 422's `details` lists them."""

    field: str | None  # "a.b.0"; None: the body as a whole
    message: str
    type: str  # pydantic's error type: missing, string_too_long, ...


def field_errors(errors: list[Any], *, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """pydantic's error list -> [{"field": "a.b.0", "message": ..., "type": ...}]."""
    out: list[FieldError] = []
    for error in errors:
        loc = (*prefix, *error.get("loc", ()))
        out.append(
            {
                "field": ".".join(str(part) for part in loc) or None,
                "message": error.get("msg", "invalid value"),
                "type": error.get("type", "value_error"),
            }
        )
    return out
