"""ASGI middleware: a request id, one access log line, and the request body limit.

Plain ASGI rather than BaseHTTPMiddleware: it adds a few microseconds, not a task per request.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.kernel.errors import TooLarge
from handlers.http import NUL_MESSAGE, error_response, failure_response
from handlers.logs import request_id

access_log = logging.getLogger("mnemo.access")


class RequestContext:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        token = request_id.set(rid)
        status = 500
        replied = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, replied
            if message["type"] == "http.response.start":
                status, replied = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            declared = _content_length(scope)
            if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
                # An id or a filter with NUL in it would reach SQL, which PostgreSQL refuses.
                await error_response(400, "invalid_character", f"the URL: {NUL_MESSAGE}")(
                    scope, receive, send_with_id
                )
            elif declared is not None and declared > self.max_body_bytes:
                # Refused before a byte of the body is read.
                await error_response(
                    413,
                    "body_too_large",
                    f"the request body is {declared} bytes; the limit is {self.max_body_bytes}",
                    {"limit": self.max_body_bytes},
                )(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception as exc:
            # Whatever no handler took. Answered here and not re-raised: Starlette's own last
            # resort re-raises after its reply, and the server then closes the connection under
            # a keep-alive client, whose next request on it dies with a reset. After a reply
            # has started there is nothing to fix up; the server ends the connection.
            if replied:
                raise
            await failure_response(exc, scope["method"], scope["path"])(
                scope, receive, send_with_id
            )
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        }
                    },
                )
            request_id.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        """Counts what a chunked body delivers; the endpoint reading past the limit gets a 413."""
        limit = self.max_body_bytes
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(
                        f"the request body is over the {limit} byte limit",
                        code="body_too_large",
                        details={"limit": limit},
                    )
            return message

        return receive_limited


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and 0 < len(value) <= 128:
            return str(value.decode("latin-1"))
    context = scope.get("aws.context")
    aws_id = getattr(context, "aws_request_id", None)
    if isinstance(aws_id, str):
        return aws_id
    return uuid.uuid4().hex
