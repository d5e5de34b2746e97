"""GET /health: version, schema version and store kind. No auth: load balancers call it."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from core import __version__
from handlers.context import services
from handlers.http import ApiRoute, Doc, json_response


class Health(BaseModel):
    status: str
    version: str
    schema_version: int
    store: str


async def health(request: Request) -> Response:
    svc = services(request)
    version = await svc.call(svc.schema_version)
    return json_response(
        {
            "status": "ok",
            "version": __version__,
            "schema_version": version,
            "store": svc.settings.store_kind,
        }
    )


routes = [
    ApiRoute(
        "/health",
        health,
        method="GET",
        doc=Doc("Service health", "service", response=Health, auth=False),
    )
]
