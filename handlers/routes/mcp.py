"""POST /mcp: the Model Context Protocol over Streamable HTTP, without sessions.

Every POST is answered from itself and its bearer token, with one JSON body (never an SSE
stream), so the endpoint works the same inside a Lambda invocation and under uvicorn. Which
protocol era a request speaks is read from the `MCP-Protocol-Version` header:
- absent or a handshake revision (2024-11-05 to 2025-11-25): `initialize`, `ping`, `tools/*`;
  JSON-RPC batches only at 2025-03-26, the one revision that had them;
- 2026-07-28: `server/discover`, `tools/*`, each request carrying `_meta` that must agree with
  the routing headers; errors map to HTTP statuses as that revision's transport says;
- anything else: 400 with the versions we speak.
GET and DELETE get 405: there is no server stream and no session to end.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.identity.oauth.metadata import MCP, base_url
from core.kernel.config import Limits, RankingSettings, Settings
from core.kernel.errors import Unauthorized
from core.kernel.scope import Scope
from core.memory.indexing import Indexer
from core.memory.models import MemoryIn
from core.retrieval.search import QueryVector
from handlers.context import Context, authorize, services
from handlers.http import NO_BODY, ApiRoute, Doc, error_response, parse_json
from handlers.mcp import protocol
from handlers.mcp.protocol import (
    ASSUMED_VERSION,
    BATCH_VERSIONS,
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    Message,
    RequestId,
    RpcError,
)
from handlers.mcp.server import Server
from handlers.mcp.tools import REGISTRY
from handlers.routes.oauth import www_authenticate_for

P = ParamSpec("P")
T = TypeVar("T")

SERVER = Server(REGISTRY)

# 2026-07-28 Streamable HTTP: the HTTP status that goes with a JSON-RPC error code.
_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    -32021: 400,  # MissingRequiredClientCapability
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
# The methods whose name the Mcp-Name header mirrors, and the param it mirrors.
_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_ROUTING_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name")
_B64 = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class _Runner:
    """handlers.mcp's Runner over the REST handlers' Context: tools read, write and embed exactly
    as their REST twins do."""

    ctx: Context

    @property
    def scope(self) -> Scope:
        return self.ctx.scope

    @property
    def settings(self) -> Settings:
        return self.ctx.services.settings

    @property
    def limits(self) -> Limits:
        return self.ctx.limits

    @property
    def ranking(self) -> RankingSettings:
        return self.ctx.services.settings.ranking

    async def read(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        return await self.ctx.read(fn, *args, **kw)

    async def read_each(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        return await self.ctx.read_each(fn, *args, **kw)

    async def write(
        self, fn: Callable[Concatenate[Connection, Scope, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        return await self.ctx.write(fn, *args, **kw)

    async def own_transactions(
        self,
        fn: Callable[Concatenate[Engine, Settings, Scope, P], T],
        *args: P.args,
        **kw: P.kwargs,
    ) -> T:
        ctx = self.ctx
        return await ctx.services.call(
            lambda: fn(ctx.engine, ctx.services.settings, ctx.scope, *args, **kw)
        )

    async def indexer(self, items: Sequence[MemoryIn]) -> Indexer:
        return await self.ctx.indexer(items)

    async def text_indexer(self, texts: Sequence[str]) -> Indexer:
        return await self.ctx.text_indexer(texts)

    async def query_vector(self, query: str) -> QueryVector:
        return await self.ctx.query_vector(query)


def _json(status: int, body: Any) -> Response:
    return Response(protocol.encode(body), status, headers=_NO_STORE, media_type="application/json")


def _rpc_error(
    status: int,
    request_id: RequestId | None,
    exc: RpcError,
    headers: dict[str, str] | None = None,
) -> Response:
    response = _json(status, protocol.error(request_id, exc))
    response.headers.update(headers or {})
    return response


def _accepted() -> Response:
    # Notifications and responses: accepted, no body (Streamable HTTP, "Sending Messages").
    return Response(status_code=202)


# -- the transport's checks ---------------------------------------------------------------------


def _origin_allowed(request: Request, settings: Settings) -> bool:
    """Streamable HTTP: servers must validate Origin against DNS rebinding. Non-browser clients
    send none. Browsers may call from this service's own origin (pin MNEMO_PUBLIC_URL, or a
    rebinding page's Host makes its own origin look like ours), from a loopback page, or from
    an origin in MNEMO_MCP_ALLOWED_ORIGINS."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = settings.mcp.allowed_origins
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    sent = urlsplit(origin.lower())
    if sent.scheme in ("http", "https") and sent.hostname in _LOOPBACK:
        return True
    ours = urlsplit(base_url(settings.auth.public_url, str(request.base_url)).lower())
    return bool(sent.scheme) and (sent.scheme, sent.netloc) == (ours.scheme, ours.netloc)


def _accepts_json(request: Request) -> bool:
    accept = request.headers.get("accept")
    if not accept:
        return True
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(types & {"*/*", "application/*", "application/json"})


def _unauthorized(request: Request, exc: Unauthorized) -> Response:
    # MCP authorization: a 401 names the protected resource metadata, from which a client
    # discovers this authorization server. RFC 6750: no error code when no token was sent.
    if exc.code == "missing_credentials":
        challenge = www_authenticate_for(request)
    else:
        challenge = www_authenticate_for(request, "invalid_token", exc.message)
    return error_response(
        401, exc.code, exc.message, exc.details, {"WWW-Authenticate": challenge, **_NO_STORE}
    )


def _decode_header(value: str | None) -> str | None:
    """An Mcp-Name value, unwrapping the `=?base64?...?=` form clients use for values that are
    not plain ASCII; None for a malformed one, so it never matches by accident."""
    if value is None:
        return None
    found = _B64.fullmatch(value)
    if found is None:
        return value
    payload = found.group("payload")
    try:
        raw = base64.b64decode(payload, validate=True)
        if base64.b64encode(raw).decode("ascii") != payload:
            return None
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _check_envelope(request: Request, message: Message) -> None:
    """2026-07-28: the per-request `_meta`, and the routing headers agreeing with the body
    (order as the SDKs check it: envelope, headers, then the version)."""
    for name in _ROUTING_HEADERS:
        if len(request.headers.getlist(name)) > 1:
            raise RpcError(HEADER_MISMATCH, f"{name} header appears more than once")
    params = message.params if isinstance(message.params, dict) else {}
    meta = params.get("_meta")
    if not isinstance(meta, dict) or any(
        key not in meta for key in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES)
    ):
        raise RpcError(
            INVALID_PARAMS,
            f"params._meta must carry {META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r}",
        )
    version = meta[META_PROTOCOL_VERSION]
    if request.headers.get("mcp-protocol-version") != version:
        raise RpcError(HEADER_MISMATCH, "MCP-Protocol-Version header does not match _meta")
    if request.headers.get("mcp-method") != message.method:
        raise RpcError(HEADER_MISMATCH, "Mcp-Method header does not match the method")
    named = _NAMED.get(message.method)
    sent_name = _decode_header(request.headers.get("mcp-name"))
    if named is not None and params.get(named) is not None and sent_name != params[named]:
        raise RpcError(HEADER_MISMATCH, f"Mcp-Name header does not match params.{named}")
    # No tool declares x-mcp-header, so no Mcp-Param-* header is ours to check.
    if not isinstance(version, str):
        raise RpcError(INVALID_PARAMS, "the protocol version in _meta must be a string")
    if version not in MODERN_VERSIONS:
        raise protocol.unsupported_version(version)


# -- the eras -----------------------------------------------------------------------------------


async def _handshake_era(data: Any, version: str, runner: _Runner, page_size: int) -> Response:
    if isinstance(data, list):
        if version not in BATCH_VERSIONS:
            problem = RpcError(
                INVALID_REQUEST,
                f"JSON-RPC batches are not part of MCP {version}; send one message per POST",
            )
            return _rpc_error(400, None, problem)
        if not data:
            return _rpc_error(400, None, RpcError(INVALID_REQUEST, "the batch is empty"))
        replies = []
        for item in data:
            reply = await _batch_item(item, runner, page_size)
            if reply is not None:
                replies.append(reply)
        return _json(200, replies) if replies else _accepted()
    try:
        message = protocol.parse(data)
    except RpcError as exc:
        return _rpc_error(400, protocol.request_id_of(exc), exc)
    if message.kind != "request":
        return _accepted()
    reply = await SERVER.handle(message, modern=False, runner=runner, page_size=page_size)
    return _json(200, reply)


async def _batch_item(item: Any, runner: _Runner, page_size: int) -> dict[str, Any] | None:
    try:
        message = protocol.parse(item)
    except RpcError as exc:
        return protocol.error(protocol.request_id_of(exc), exc)
    if message.kind != "request":
        return None
    if message.method == "initialize":
        # 2025-03-26 lifecycle: initialize must not be part of a batch.
        problem = RpcError(INVALID_REQUEST, "initialize must be sent on its own, not in a batch")
        return protocol.error(message.id, problem)
    return await SERVER.handle(message, modern=False, runner=runner, page_size=page_size)


async def _modern_era(request: Request, data: Any, runner: _Runner, page_size: int) -> Response:
    if not isinstance(data, dict):
        problem = RpcError(INVALID_REQUEST, "the body must be one JSON-RPC request or notification")
        return _rpc_error(400, None, problem)
    try:
        message = protocol.parse(data)
    except RpcError as exc:
        return _rpc_error(400, protocol.request_id_of(exc), exc)
    if message.kind == "notification":
        return _accepted()
    if message.kind == "response":
        problem = RpcError(INVALID_REQUEST, "clients send no JSON-RPC responses at 2026-07-28")
        return _rpc_error(400, message.id, problem)
    try:
        _check_envelope(request, message)
    except RpcError as exc:
        return _rpc_error(_STATUS.get(exc.code, 400), message.id, exc)
    reply = await SERVER.handle(message, modern=True, runner=runner, page_size=page_size)
    status = _STATUS.get(reply["error"]["code"], 200) if "error" in reply else 200
    return _json(status, reply)


async def mcp(request: Request) -> Response:
    settings = services(request).settings
    if not _origin_allowed(request, settings):
        problem = RpcError(INVALID_REQUEST, "this Origin may not call the MCP endpoint")
        return _rpc_error(403, None, problem)
    if request.method != "POST":
        problem = RpcError(INVALID_REQUEST, "POST JSON-RPC messages here; there is no GET stream")
        return _rpc_error(405, None, problem, {"Allow": "POST"})
    try:
        ctx = await authorize(request, MCP)
    except Unauthorized as exc:
        return _unauthorized(request, exc)
    if not _accepts_json(request):
        problem = RpcError(INVALID_REQUEST, "accept application/json: answers are JSON")
        return _rpc_error(406, None, problem)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        problem = RpcError(
            INVALID_REQUEST, "send the body as JSON (Content-Type: application/json)"
        )
        return _rpc_error(415, None, problem)
    try:
        data = parse_json(await request.body())
    except (ValueError, RecursionError) as exc:
        return _rpc_error(400, None, RpcError(PARSE_ERROR, f"Parse error: {exc}"))
    header = request.headers.get("mcp-protocol-version")
    runner, page_size = _Runner(ctx), settings.mcp.page_size
    if header is None or header in HANDSHAKE_VERSIONS:
        return await _handshake_era(data, header or ASSUMED_VERSION, runner, page_size)
    if header in MODERN_VERSIONS:
        return await _modern_era(request, data, runner, page_size)
    # Streamable HTTP: an unsupported or invalid MCP-Protocol-Version is a 400.
    ident = data.get("id") if isinstance(data, dict) else None
    known = ident if protocol.valid_id(ident) else None
    return _rpc_error(400, known, protocol.unsupported_version(header))


_RPC_ERROR_OBJECT = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
}
_RPC_ERROR = {
    "type": "object",
    "description": "A JSON-RPC 2.0 error response",
    "required": ["jsonrpc", "id", "error"],
    "properties": {"jsonrpc": {"const": "2.0"}, "id": {}, "error": _RPC_ERROR_OBJECT},
}
_RPC_RESULT = {
    "type": "object",
    "description": "A JSON-RPC 2.0 response: a result or an error",
    "required": ["jsonrpc", "id"],
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {},
        "result": {"type": "object"},
        "error": _RPC_ERROR_OBJECT,
    },
}
_RPC_REQUEST = {
    "description": "A JSON-RPC 2.0 request or notification (a batch, for 2025-03-26 clients)",
    "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
}
routes = [
    ApiRoute(
        "/mcp",
        mcp,
        method="POST",
        doc=Doc(
            "Model Context Protocol: JSON-RPC over Streamable HTTP, stateless",
            "mcp",
            body=_RPC_REQUEST,
            response={"anyOf": [_RPC_RESULT, {"type": "array", "items": _RPC_RESULT}]},
            also={202: NO_BODY},  # notifications and responses sent to the server
            errors=_RPC_ERROR,
        ),
    ),
    Route("/mcp", mcp, methods=["GET", "DELETE"]),
]
