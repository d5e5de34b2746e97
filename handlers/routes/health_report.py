"""GET /v1/health/report: what the brain (or one user) holds that it should not."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.curation import health
from core.curation.models import HealthQuery, HealthReport
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_query


async def report(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, HealthQuery)
    model = ctx.services.embedder().name
    return json_response(await ctx.read(health.report, user_id=query.user_id, model=model))


routes = [
    ApiRoute(
        "/v1/health/report",
        report,
        method="GET",
        doc=Doc(
            "Near-duplicates, quarantine, conflicts, stale facts, unretrieved memories, "
            "orphan links, junk estimate and ages",
            "health",
            query=HealthQuery,
            response=HealthReport,
        ),
    )
]
