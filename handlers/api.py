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
from starlette.routing import BaseRoute, Route

from core.config import Settings, get_settings
from core.webhooks import outbox, queue
from handlers import events, logs, openapi
from handlers.console.routes import console_routes
from handlers.context import Services
from handlers.http import EXCEPTION_HANDLERS, json_response
from handlers.middleware import RequestContext
from handlers.routes import (
    auth,
    brains,
    changelog,
    conflicts,
    health,
    hooks,
    hygiene,
    keys,
    links,
    mcp,
    memories,
    merges,
    oauth,
    openmemory,
    search,
    snapshots,
    summaries,
    transfer,
    users,
    watches,
)


def _routes() -> list[BaseRoute]:
    return [
        *health.routes,
        # Routes are matched in order: MCP clients call /mcp for everything, so it comes early.
        *mcp.routes,
        # Before memories: /v1/memories/merge is not a memory id.
        *merges.routes,
        *memories.routes,
        *conflicts.routes,
        *links.routes,
        *hygiene.routes,
        *search.routes,
        *users.routes,
        *summaries.routes,
        *openmemory.routes,
        *changelog.routes,
        *auth.routes,
        *brains.routes,
        *keys.routes,
        *watches.routes,
        *snapshots.routes,
        *transfer.routes,
        *hooks.routes,
        *oauth.routes,
        *console_routes(),
    ]


def create_app(settings: Settings | None = None, *, offload: bool = False) -> Starlette:
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    routes = _routes()
    spec: dict[str, Any] = {}

    async def openapi_json(_request: Request) -> Response:
        # Built on first request: generating every model's JSON Schema costs ~40 ms, which
        # a cold Lambda start should not pay for a document few invocations ask for.
        if not spec:
            spec.update(openapi.build(routes))
        return json_response(spec)

    app = Starlette(
        routes=[*routes, Route("/openapi.json", openapi_json, methods=["GET"])],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    app.state.services = Services(settings, offload=offload)
    if settings.webhooks.queue_url:
        # On AWS: a commit that wrote webhook deliveries sends the DeliveryFunction a message.
        outbox.set_notifier(queue.notifier(settings.webhooks.queue_url))
    return app


app = create_app()
_http = Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> Any:
    return events.dispatch(event, context, http=_http, services=app.state.services)
