"""Conversation ingestion jobs: GET /v1/jobs/{id} (POST /v1/memories with messages and
async_mode answers 202 with one)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.app import jobs
from core.memory.models import Job
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response


async def get_job(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(jobs.get, request.path_params["id"]))


routes = [
    ApiRoute(
        "/v1/jobs/{id}",
        get_job,
        method="GET",
        doc=Doc(
            "A conversation ingestion job: status, and results once done", "memories", response=Job
        ),
    ),
]
