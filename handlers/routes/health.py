"""GET /health: version, schema version and store kind. No auth: load balancers call it.
503 database_unavailable, with Retry-After, while the database cannot be reached."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from core import __version__
from core.kernel.db.engine import single_read, sql
from handlers.context import services
from handlers.http import ApiRoute, Doc, json_response


class Health(BaseModel):
    status: str
    version: str
    schema_version: int
    store: str


async def health(request: Request) -> Response:
    svc = services(request)

    def check() -> int:
        version = svc.schema_version()
        # The schema version is memoised for a few seconds: ask the database itself, so a
        # store that went away is a 503 here at once (handlers/http.py), not an "ok".
        with single_read(svc.engine()) as conn:
            conn.execute(sql("SELECT 1"))
        return version

    version = await svc.call(check)
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
