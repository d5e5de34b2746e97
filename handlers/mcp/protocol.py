"""JSON-RPC 2.0 messages and the MCP protocol revisions Mnemo speaks.

Two eras (MCP 2026-07-28, "Versioning and Compatibility"):
- handshake: 2024-11-05 to 2025-11-25. The client opens with `initialize`; the version it
  negotiates comes back on every later HTTP request in the `MCP-Protocol-Version` header.
  Mnemo keeps no session, so each request is served from that header alone.
- modern: 2026-07-28. No handshake: every request carries its version and the client's
  capabilities in `params._meta`; `server/discover` replaces `initialize`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[-1]
# Newest first: what an UnsupportedProtocolVersion error and server/discover advertise.
SUPPORTED_VERSIONS = (*reversed(MODERN_VERSIONS), *reversed(HANDSHAKE_VERSIONS))
# Streamable HTTP (2025-06-18 on): without an MCP-Protocol-Version header and no other way to
# tell, a server should assume 2025-03-26.
ASSUMED_VERSION = "2025-03-26"
# JSON-RPC batches came with 2025-03-26 and went with 2025-06-18.
BATCH_VERSIONS = frozenset({"2025-03-26"})

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

RequestId = str | int


class RpcError(Exception):
    """A JSON-RPC error response (a protocol error, as opposed to a tool's error result)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


def unsupported_version(requested: Any) -> RpcError:
    return RpcError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(SUPPORTED_VERSIONS), "requested": requested},
    )


@dataclass(frozen=True)
class Message:
    """One JSON-RPC message from the client."""

    kind: Literal["request", "notification", "response"]
    id: RequestId | None = None
    method: str = ""
    params: Any = None


def valid_id(value: Any) -> bool:
    # MCP: a string or an integer, never null (and a JSON true is not the integer 1).
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse(raw: Any) -> Message:
    """Classify a decoded JSON value; RpcError(INVALID_REQUEST) when it is no JSON-RPC message
    (carrying the request id when one could be read)."""
    if not isinstance(raw, dict):
        raise RpcError(INVALID_REQUEST, "a JSON-RPC message must be an object")
    ident = raw.get("id")
    known = ident if valid_id(ident) else None
    if raw.get("jsonrpc") != "2.0":
        raise _invalid('"jsonrpc" must be "2.0"', known)
    if "method" in raw:
        method = raw["method"]
        if not isinstance(method, str) or not method:
            raise _invalid('"method" must be a non-empty string', known)
        if "id" not in raw:
            return Message("notification", method=method, params=raw.get("params"))
        if known is None:
            raise _invalid('"id" must be a string or an integer')
        return Message("request", known, method, raw.get("params"))
    if "id" in raw and ("result" in raw) != ("error" in raw):
        return Message("response", known)
    raise _invalid("not a JSON-RPC request, notification or response", known)


class _Invalid(RpcError):
    def __init__(self, message: str, request_id: RequestId | None) -> None:
        super().__init__(INVALID_REQUEST, message)
        self.request_id = request_id


def _invalid(message: str, request_id: RequestId | None = None) -> RpcError:
    return _Invalid(message, request_id)


def request_id_of(exc: RpcError) -> RequestId | None:
    return exc.request_id if isinstance(exc, _Invalid) else None


def result(request_id: RequestId, value: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def error(request_id: RequestId | None, exc: RpcError) -> dict[str, Any]:
    # `id` stays on the wire as null when the request's id could not be read (JSON-RPC 5.1).
    return {"jsonrpc": "2.0", "id": request_id, "error": exc.error()}


def params_object(params: Any) -> dict[str, Any]:
    """MCP params are an object when present (JSON-RPC would also allow an array)."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object")
    return params


class Encoded(str):
    """A result member that is already JSON text: `encode` splices it in as it is, so a tool's
    structured content is serialized once for both its text and its structured copy."""


def to_json(value: Any) -> str:
    # The same encoding Starlette's JSONResponse gives the REST API.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode(reply: Any) -> str:
    """A response (or a batch of them) as JSON text."""
    if isinstance(reply, list):
        return "[" + ",".join(encode(r) for r in reply) + "]"
    value = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(value, dict) or not any(isinstance(v, Encoded) for v in value.values()):
        return to_json(reply)
    members = ",".join(
        f"{to_json(k)}:{v if isinstance(v, Encoded) else to_json(v)}" for k, v in value.items()
    )
    envelope = to_json({k: v for k, v in reply.items() if k != "result"})
    return f'{envelope[:-1]},"result":{{{members}}}}}'
