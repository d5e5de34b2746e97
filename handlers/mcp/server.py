"""The MCP methods Mnemo answers, for both protocol eras (see handlers/mcp/protocol.py).

Stateless: a request is answered from itself and the caller's credentials alone, so any Lambda
instance or uvicorn worker can serve any request, `initialize` included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core import __version__
from handlers.mcp import protocol
from handlers.mcp.protocol import (
    HANDSHAKE_VERSIONS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LATEST_HANDSHAKE,
    META_SERVER_INFO,
    METHOD_NOT_FOUND,
    SUPPORTED_VERSIONS,
    Encoded,
    Message,
    RpcError,
    to_json,
)
from handlers.mcp.registry import Registry, Runner, ToolResult

log = logging.getLogger("mnemo.mcp")

INSTRUCTIONS = (
    "Mnemo is long-term memory that persists across conversations. Before answering anything "
    "that may depend on earlier conversations, preferences or facts about the user, call "
    "`search` (or `context` for prompt-ready text with citations). Keep what is worth "
    "remembering with `save`: a stable truth about something as type 'fact' with a `key` (a "
    "newer fact for the same key replaces the old one), anything else as a note. Pass "
    "`user_id` when a memory concerns one end user. Tool errors carry a machine-readable code."
)
CAPABILITIES: dict[str, Any] = {"tools": {"listChanged": False}}
# 2026-07-28 cache hints. The tool list changes only with a deploy, but it depends on the
# caller's credentials (read-only callers see fewer tools), so it is private to them.
LIST_TTL_MS = 300_000
DISCOVER_TTL_MS = 300_000


@dataclass(frozen=True)
class ServerInfo:
    name: str = "mnemo"
    title: str = "Mnemo"
    version: str = __version__

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "version": self.version}


class Server:
    def __init__(self, registry: Registry, info: ServerInfo | None = None) -> None:
        self.registry = registry
        self.info = info or ServerInfo()

    async def handle(
        self, message: Message, *, modern: bool, runner: Runner, page_size: int
    ) -> dict[str, Any]:
        """The JSON-RPC response to one request: a result, or an error."""
        assert message.id is not None
        try:
            params = protocol.params_object(message.params)
            if modern:
                value = await self._modern(message.method, params, runner, page_size)
                value.setdefault("resultType", "complete")
                # Servers SHOULD name themselves on every 2026-07-28 result (ResultMetaObject).
                value["_meta"] = {META_SERVER_INFO: self.info.as_dict()}
            else:
                value = await self._handshake(message.method, params, runner, page_size)
        except RpcError as exc:
            return protocol.error(message.id, exc)
        except Exception:
            # A bug or an outage, not something the caller can fix: log it, say little.
            log.exception("MCP %s failed", message.method)
            return protocol.error(
                message.id, RpcError(INTERNAL_ERROR, "something went wrong on our side; try again")
            )
        return protocol.result(message.id, value)

    async def _handshake(
        self, method: str, params: dict[str, Any], runner: Runner, page_size: int
    ) -> dict[str, Any]:
        if method == "initialize":
            return self.initialize(params)
        if method == "ping":
            return {}
        if method == "tools/list":
            return self._list(params, runner, page_size)
        if method == "tools/call":
            return await self._call(params, runner)
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")

    async def _modern(
        self, method: str, params: dict[str, Any], runner: Runner, page_size: int
    ) -> dict[str, Any]:
        if method == "server/discover":
            return {
                "supportedVersions": list(SUPPORTED_VERSIONS),
                "capabilities": CAPABILITIES,
                "instructions": INSTRUCTIONS,
                "ttlMs": DISCOVER_TTL_MS,
                "cacheScope": "public",
            }
        if method == "tools/list":
            listed = self._list(params, runner, page_size)
            return {**listed, "ttlMs": LIST_TTL_MS, "cacheScope": "private"}
        if method == "tools/call":
            return await self._call(params, runner)
        # initialize and ping are not methods of this revision.
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")

    def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RpcError(INVALID_PARAMS, "initialize needs params.protocolVersion (a string)")
        # Lifecycle, version negotiation: the client's version when we speak it, else our
        # latest. 2026-07-28 has no handshake, so asking for it here also gets the latest.
        negotiated = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
        return {
            "protocolVersion": negotiated,
            "capabilities": CAPABILITIES,
            "serverInfo": self.info.as_dict(),
            "instructions": INSTRUCTIONS,
        }

    def _list(self, params: dict[str, Any], runner: Runner, page_size: int) -> dict[str, Any]:
        tools, next_cursor = self.registry.page(
            read_only=runner.scope.read_only, cursor=params.get("cursor"), size=page_size
        )
        out: dict[str, Any] = {"tools": tools}
        if next_cursor is not None:
            out["nextCursor"] = next_cursor
        return out

    async def _call(self, params: dict[str, Any], runner: Runner) -> dict[str, Any]:
        result = await self.registry.call(params.get("name"), params.get("arguments"), runner)
        return tool_result(result)


def tool_result(result: ToolResult) -> dict[str, Any]:
    """Structured content, and the same JSON as text for clients that only read text."""
    text = to_json(result.value)
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": Encoded(text),
        "isError": result.is_error,
    }
