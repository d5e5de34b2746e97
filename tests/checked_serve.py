"""`mnemo serve` that checks its own replies against /openapi.json (test-only).

    python -m tests.checked_serve VIOLATIONS_FILE [--host H] [--port P]

Runs the `mnemo serve` command itself (handlers/cli.py `cmd_serve`: the same app, settings
and webhook drainer) with one ASGI middleware around the app. It holds every reply to what
the document promises, with tests/contract.py's checker, whoever the client is: httpx in the
test, the headless browser under the console, the Node openmemory-js client. A reply that is
not what the document says is appended to VIOLATIONS_FILE as one JSON line, before its last
byte goes out, so a client that has read the whole reply finds it written; the test process
reads the file (tests/serve.py, tests/contract.py `serving`) and fails the test.

A JSON reply (or one with no content type) is read as it passes and checked in full; any
other (an event stream, an export, a page) is held to its status and media type alone, and
passed on unbuffered.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from handlers.cli import cmd_serve, parser
from tests.contract import BUFFERED, ContractViolation, Reply, contract

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class CheckedReplies:
    """ASGI middleware: each HTTP reply checked, each violation one JSON line in `log`."""

    def __init__(self, app: App, log: Path) -> None:
        self.app = app
        self.log = log
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        media = ""
        chunks: list[bytes] | None = None

        async def checked(message: Message) -> None:
            nonlocal status, media, chunks
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = {k.decode("latin-1").lower(): v for k, v in message.get("headers", ())}
                media = headers.get("content-type", b"").decode("latin-1")
                media = media.split(";")[0].strip().lower()
                if media in BUFFERED:
                    chunks = []
                else:
                    self.check(scope, status, media, b"")
            elif message["type"] == "http.response.body" and chunks is not None:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.check(scope, status, media, b"".join(chunks))
                    chunks = None
            await send(message)

        await self.app(scope, receive, checked)

    def check(self, scope: Scope, status: int, media: str, body: bytes) -> None:
        reply = Reply(scope["method"], scope["path"], status, media, body)
        try:
            contract().check(reply)
        except ContractViolation as exc:
            self.record(str(exc))
        except Exception as exc:  # a checker fault must reach the test, too
            self.record(f"{reply.method} {reply.path} {status}: the checker failed: {exc!r}")

    def record(self, violation: str) -> None:
        line = json.dumps({"violation": violation}) + "\n"
        with self.lock, self.log.open("a") as out:
            out.write(line)


def main(argv: list[str]) -> int:
    log, *rest = argv
    args = parser().parse_args(["serve", *rest])
    return cmd_serve(args, wrap=lambda app: CheckedReplies(app, Path(log)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
