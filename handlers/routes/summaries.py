"""User summaries and the brain digest: /v1/users/{user_id}/summary[/regenerate], /v1/summary."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.curation.summaries import service
from core.curation.summaries.models import Digest, DigestQuery, UserSummaryOut, UserSummaryQuery
from core.kernel.ids import parse_time
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_query


async def user_summary(request: Request) -> Response:
    ctx = await authorize(request)
    user_id = request.path_params["user_id"]
    settings = ctx.services.settings
    query = read_query(request, UserSummaryQuery)
    if query.as_of is not None or query.known_at is not None:
        as_of = None if query.as_of is None else parse_time(query.as_of)
        known_at = None if query.known_at is None else parse_time(query.known_at)
        then = await ctx.services.call(
            lambda: service.user_summary_then(
                ctx.engine, settings, ctx.scope, user_id, as_of=as_of, known_at=known_at
            )
        )
        return json_response(then)
    found = await ctx.services.call(
        lambda: service.get_user_summary(ctx.engine, settings, ctx.scope, user_id)
    )
    return json_response(found.as_json())


async def regenerate(request: Request) -> Response:
    ctx = await authorize(request)
    ctx.scope.require_write()
    user_id = request.path_params["user_id"]
    settings = ctx.services.settings
    made = await ctx.services.call(
        lambda: service.regenerate_user_summary(ctx.engine, settings, ctx.scope, user_id)
    )
    return json_response(made.as_json())


async def brain_digest(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, DigestQuery)
    settings = ctx.services.settings
    max_tokens = query.max_tokens or settings.summaries.max_tokens
    found = await ctx.services.call(
        lambda: service.digest(
            ctx.engine, settings, ctx.scope, max_tokens=max_tokens, important=query.important
        )
    )
    return json_response(found)


_TAG = "summaries"
routes = [
    ApiRoute(
        "/v1/users/{user_id}/summary",
        user_summary,
        method="GET",
        doc=Doc(
            "A user's summary (made first when due: every MNEMO_USER_SUMMARY_INTERVAL memories)",
            _TAG,
            query=UserSummaryQuery,
            response=UserSummaryOut,
        ),
    ),
    ApiRoute(
        "/v1/users/{user_id}/summary/regenerate",
        regenerate,
        method="POST",
        doc=Doc(
            "Make a user's summary again now",
            _TAG,
            response=UserSummaryOut,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/summary",
        brain_digest,
        method="GET",
        doc=Doc(
            "The brain digest: its main themes and most important memories",
            _TAG,
            query=DigestQuery,
            response=Digest,
        ),
    ),
]
