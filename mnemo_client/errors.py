"""Exceptions: every failure the server reports carries its status, error code and message."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "InvalidRequestError",
    "MnemoAPIError",
    "MnemoConnectionError",
    "MnemoError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
]


class MnemoError(Exception):
    """Anything the client raises."""


class MnemoConnectionError(MnemoError):
    """The server could not be reached (or timed out) on every attempt."""


class MnemoAPIError(MnemoError):
    """The server answered with an error.

    `code` is the server's machine-readable code: Mnemo's `error.code` (e.g. `memory_not_found`),
    or on the OpenMemory routes their `err` (e.g. `user_id required`)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.body = body


class InvalidRequestError(MnemoAPIError):
    """400, 413, 415 or 422: the request is wrong; `details` says which field when it can."""


class AuthenticationError(MnemoAPIError):
    """401: no key, or a key that is not valid."""


class PermissionDeniedError(MnemoAPIError):
    """403: a read-only key writing, or a user-scoped key reaching for another user."""


class NotFoundError(MnemoAPIError):
    """404: nothing there, or nothing this key may see."""


class ConflictError(MnemoAPIError):
    """409: e.g. the same content is already an active memory."""


class RateLimitError(MnemoAPIError):
    """429 after every retry; `retry_after` is the server's hint in seconds, if it gave one."""

    retry_after: float | None = None


class ServerError(MnemoAPIError):
    """5xx after every retry."""


_BY_STATUS: dict[int, type[MnemoAPIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def error_from(
    status: int, body: Any, text: str, *, request_id: str | None, retry_after: float | None
) -> MnemoAPIError:
    """The exception for an error response, from either error shape the server uses."""
    code, message, details = f"http_{status}", text.strip()[:500] or f"HTTP {status}", None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    elif isinstance(body, dict) and "err" in body:
        code = str(body["err"])
        message = str(body.get("msg") or body["err"])
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else MnemoAPIError)
    exc = cls(status, code, message, details=details, request_id=request_id, body=body)
    if isinstance(exc, RateLimitError):
        exc.retry_after = retry_after
    return exc
