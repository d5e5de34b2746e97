"""The Starlette app and the Lambda entry point.

`handler` is what template.yaml names: non-HTTP events (schedules, SQS) are routed before
Mangum, which only ever sees HTTP events (HTTP API v2, REST v1, Function URL, ALB).
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.kernel.config import Settings, get_settings
from core.kernel.db.engine import check_driver
from handlers import events, logs, openapi
from handlers.context import Services
from handlers.cors import Cors
from handlers.http import EXCEPTION_HANDLERS, json_response
from handlers.lazy import LazyRoutes, RouteModule
from handlers.middleware import RequestContext
from handlers.routes import health


def _module(name: str, *prefixes: str) -> RouteModule:
    return RouteModule(f"handlers.routes.{name}:routes", prefixes)


# In matching order. A module is imported by the first request whose path starts with one of
# its prefixes (handlers/lazy.py): a cold start pays only for what its request needs.
ROUTE_MODULES = (
    # MCP clients call /mcp for everything, so it comes early.
    _module("mcp", "/mcp"),
    # Before memories: /v1/memories/merge is not a memory id.
    _module("merges", "/v1/aliases", "/v1/consolidate", "/v1/memories/"),
    _module("memories", "/v1/memories", "/v1/facts/"),
    _module("conflicts", "/v1/conflicts"),
    _module("links", "/v1/links", "/v1/graph/", "/v1/memories/"),
    _module(
        "hygiene",
        "/v1/policy",
        "/v1/trust",
        "/v1/decay",
        "/v1/forget",
        "/v1/maintenance/",
        "/v1/memories/",
    ),
    _module("search", "/v1/search", "/v1/context", "/v1/reindex"),
    _module("users", "/v1/users/"),
    _module("erasure", "/v1/users/", "/v1/erasures"),
    _module("quarantine", "/v1/quarantine"),
    _module("health_report", "/v1/health/"),
    _module("summaries", "/v1/summary", "/v1/users/"),
    _module(
        "openmemory", "/memory/", "/users/", "/sectors", "/api/ide/", "/api/compression/", "/lgm/"
    ),
    _module("changelog", "/v1/changelog"),
    _module("auth", "/auth/"),
    _module("brains", "/v1/brains"),
    _module("keys", "/v1/keys"),
    _module("watches", "/v1/watches"),
    _module("snapshots", "/v1/snapshots"),
    _module("transfer", "/v1/export", "/v1/import"),
    _module("hooks", "/v1/hooks/"),
    _module("oauth", "/oauth/", "/.well-known/"),
    _module("jobs", "/v1/jobs/"),
    # mem0's platform paths (trailing slashes; /v1/memories/{id}/ is not a native path).
    _module(
        "mem0",
        "/v1/ping",
        "/v3/memories",
        "/v1/memories/",
        "/v1/batch",
        "/v1/entities",
        "/v2/",
        "/v1/event/",
        "/v1/exports",
        "/v1/summary",
        "/v1/feedback",
        "/api/v1/",
    ),
    RouteModule("handlers.console.routes:console_routes", ("/console",)),
)


def create_app(settings: Settings | None = None, *, offload: bool = False) -> Starlette:
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    check_driver(settings.database_url)
    lazy = LazyRoutes(ROUTE_MODULES)
    spec: dict[str, Any] = {}

    async def openapi_json(_request: Request) -> Response:
        # Built on first request: generating every model's JSON Schema costs ~40 ms, which
        # a cold Lambda start should not pay for a document few invocations ask for.
        if not spec:
            spec.update(openapi.build([*health.routes, *lazy.all_routes()]))
        return json_response(spec)

    app = Starlette(
        routes=[*health.routes, lazy, Route("/openapi.json", openapi_json, methods=["GET"])],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    # Outside RequestContext, so its early answers (413, a NUL in the URL) carry CORS too.
    app.add_middleware(Cors, settings=settings)
    app.state.services = Services(settings, offload=offload)
    if settings.snap_start:
        lazy.all_routes()
        # The local model too (MiniLM: ~0.7 s to read and lay out its weights, the largest
        # part of a cold first search): loaded once before the snapshot, every restored
        # instance has it. Not the remote embedders: they hold credentials, which no
        # snapshot may.
        if settings.embedder.kind == "minilm":
            app.state.services.embedder()
    if settings.webhooks.queue_url:
        from core.events import outbox
        from core.webhooks import queue

        # On AWS: a commit that wrote webhook deliveries sends the DeliveryFunction a message.
        outbox.set_notifier(queue.notifier(settings.webhooks.queue_url))
    return app


def before_snapshot() -> None:
    """Lambda SnapStart snapshots the initialised process once per version and restores it
    on every cold start: nothing connected or secret may be in it. Init opens no connection
    (engines connect on first use), but should anything have, it is closed here, and cached
    secrets are dropped so a restored instance reads the current ones."""
    from core.kernel.db import credentials
    from core.kernel.db.engine import dispose_all

    dispose_all()
    credentials.forget()


def _register_snapshot_hooks() -> None:
    try:
        # Only in Lambda's Python runtime (3.12+), where SnapStart runs.
        from snapshot_restore_py import register_before_snapshot  # type: ignore[import-not-found]
    except ImportError:
        return
    register_before_snapshot(before_snapshot)


app = create_app()
_http = Mangum(app, lifespan="off")
_register_snapshot_hooks()


def handler(event: dict[str, Any], context: Any) -> Any:
    return events.dispatch(event, context, http=_http, services=app.state.services)
