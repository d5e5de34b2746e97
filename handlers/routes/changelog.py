"""The brain-wide changelog feed: GET /v1/changelog."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.events import changelog
from core.kernel.ids import parse_time
from core.memory.models import ChangelogPage, ChangelogQuery
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_query


async def feed(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, ChangelogQuery)
    entries, next_cursor = await ctx.read(
        changelog.feed,
        since=None if query.since is None else parse_time(query.since),
        event_type=query.event_type,
        cursor=query.cursor,
        limit=query.limit,
    )
    return json_response({"results": entries, "next_cursor": next_cursor})


routes = [
    ApiRoute(
        "/v1/changelog",
        feed,
        method="GET",
        doc=Doc(
            "Every change in the brain, oldest first from `since`",
            "changelog",
            query=ChangelogQuery,
            response=ChangelogPage,
        ),
    )
]
