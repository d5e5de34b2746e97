"""CORS for the routes browsers may call from another origin: /mcp (browser MCP clients), the
OAuth endpoints those clients log in with, the discovery documents and the REST API.

Plain ASGI, outside the router: a preflight (OPTIONS with Access-Control-Request-Method) is
answered here, before any route could 405 it, and every answer to an allowed origin gets its
Access-Control-* headers, errors included (a browser client must be able to read a 401's
WWW-Authenticate to start the OAuth flow). Other paths (the console, /auth, /health) are
same-origin only and untouched.

Credentials: cross-origin callers authenticate with a bearer token. Only the REST API may,
when configured for listed origins, also take the session cookie; the origin is then echoed,
never `*` (core/kernel/config.py refuses the combination).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.kernel.config import Settings
from handlers.http import error_response

# Request headers a cross-origin caller may send. Simple headers (Accept, Content-Language,
# form Content-Type) need no listing; JSON's Content-Type does.
_HEADERS = frozenset(
    {
        "accept",
        "authorization",
        "content-type",
        "x-request-id",
        "mcp-protocol-version",
        "mcp-session-id",
        "mcp-method",
        "mcp-name",
        "last-event-id",
    }
)
# Tools may ask clients to mirror a parameter in an Mcp-Param-<Name> header (MCP 2026-07-28).
_MCP_PARAM = "mcp-param-"
# Response headers a browser script may read.
_EXPOSE = "WWW-Authenticate, Retry-After, X-Request-Id, Location, Mcp-Session-Id"


@dataclass(frozen=True)
class Policy:
    methods: tuple[str, ...]
    origins: frozenset[str]
    any_origin: bool = False
    credentials: bool = False
    mcp_headers: bool = False

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/") in self.origins

    def header_allowed(self, name: str) -> bool:
        return name in _HEADERS or (self.mcp_headers and name.startswith(_MCP_PARAM))


def _policy(methods: Iterable[str], origins: Iterable[str], **kw: bool) -> Policy:
    listed = frozenset(origins)
    return Policy(tuple(methods), listed - {"*"}, any_origin="*" in listed, **kw)


def policies(settings: Settings) -> tuple[tuple[tuple[str, ...], Policy], ...]:
    """Path prefixes and their policy, first match wins."""
    mcp = settings.mcp.allowed_origins
    api = settings.cors.api_origins
    rest = ("GET", "POST", "PUT", "PATCH", "DELETE")
    return (
        (("/mcp",), _policy(("POST",), mcp, mcp_headers=True)),
        # Public documents: any origin may read them, never with credentials.
        (("/.well-known/",), _policy(("GET",), ("*",))),
        # A browser MCP client registers and fetches tokens from the page it runs on.
        (("/oauth/token", "/oauth/register", "/oauth/revoke"), _policy(("POST",), (*mcp, *api))),
        (
            # The native API, and mem0's and OpenMemory's under their own paths.
            ("/v1/", "/v2/", "/v3/", "/api/v1/", "/memory/", "/users/", "/sectors"),
            _policy(rest, api, credentials=settings.cors.api_credentials),
        ),
    )


class Cors:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.policies = policies(settings)
        self.max_age = str(settings.cors.max_age_seconds)

    def _policy_for(self, path: str) -> Policy | None:
        for prefixes, policy in self.policies:
            if any(path == p.rstrip("/") or path.startswith(p) for p in prefixes):
                return policy
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self._policy_for(scope["path"])
        if policy is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(policy, origin, headers, scope, receive, send)
            return
        allowed = policy.allows(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                # Caches must keep answers for different origins apart, allowed or not.
                out.add_vary_header("Origin")
                if allowed:
                    out.update(self._origin_headers(policy, origin))
                    out["Access-Control-Expose-Headers"] = _EXPOSE
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _origin_headers(self, policy: Policy, origin: str) -> dict[str, str]:
        if policy.any_origin and not policy.credentials:
            return {"Access-Control-Allow-Origin": "*"}
        out = {"Access-Control-Allow-Origin": origin}
        if policy.credentials:
            out["Access-Control-Allow-Credentials"] = "true"
        return out

    async def _preflight(
        self,
        policy: Policy,
        origin: str,
        headers: Headers,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        method = headers["access-control-request-method"].strip().upper()
        asked = [
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        ]
        refused = [h for h in asked if not policy.header_allowed(h)]
        vary = {"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
        # Refusals carry no Access-Control-Allow-Origin, so the browser stops the request;
        # the body says why to whoever reads the network panel.
        if not policy.allows(origin):
            response = error_response(
                403,
                "origin_not_allowed",
                f"the origin {origin} may not call {scope['path']} from a browser: the operator "
                "lists allowed origins in MNEMO_MCP_ALLOWED_ORIGINS (/mcp) or "
                "MNEMO_API_ALLOWED_ORIGINS (the REST API)",
                {"origin": origin},
                vary,
            )
        elif method not in policy.methods:
            response = error_response(
                403,
                "method_not_allowed",
                f"{method} is not allowed cross-origin on {scope['path']}",
                {"allowed": list(policy.methods)},
                vary,
            )
        elif refused:
            response = error_response(
                403,
                "header_not_allowed",
                f"these request headers are not allowed cross-origin: {', '.join(refused)}",
                {"headers": refused},
                vary,
            )
        else:
            allow = {
                **self._origin_headers(policy, origin),
                "Access-Control-Allow-Methods": ", ".join(policy.methods),
                "Access-Control-Max-Age": self.max_age,
                **vary,
            }
            if asked:
                allow["Access-Control-Allow-Headers"] = ", ".join(asked)
            response = Response(status_code=204, headers=allow)
        await response(scope, receive, send)
