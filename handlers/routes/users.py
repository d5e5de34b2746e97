"""End users inside a brain (OpenMemory's users): /v1/users/{user_id}/memories."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.memory import store as memories
from core.memory.models import MemoryFilters, UserMemoriesQuery, UserMemoryPage
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_query


async def user_memories(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, UserMemoriesQuery)
    filters = MemoryFilters(user_id=request.path_params["user_id"], state=query.state)
    page = await ctx.read(
        memories.list_memories,
        filters,
        limit=query.limit,
        cursor=query.cursor,
        include_total=query.include_total,
    )
    return json_response({"user_id": request.path_params["user_id"], **page})


routes = [
    ApiRoute(
        "/v1/users/{user_id}/memories",
        user_memories,
        method="GET",
        doc=Doc(
            "Page through one user's memories",
            "users",
            query=UserMemoriesQuery,
            response=UserMemoryPage,
        ),
    )
]
