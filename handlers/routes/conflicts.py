"""Conflicts: /v1/conflicts, detection on demand, resolve and dismiss."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.curation import conflicts
from core.curation.models import (
    ConflictListQuery,
    ConflictOut,
    ConflictPage,
    DetectIn,
    DetectOut,
    DismissIn,
    ResolveIn,
)
from handlers.context import Context, authorize
from handlers.http import ApiRoute, Doc, json_response, read_body, read_optional_body, read_query


def vector_space(ctx: Context) -> conflicts.VectorSpace:
    embedder = ctx.services.embedder()
    neighbours = ctx.services.settings.conflicts.neighbours
    return conflicts.VectorSpace(embedder.name, embedder.dims, neighbours)


async def list_(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, ConflictListQuery)
    page = await ctx.read(
        conflicts.list_conflicts,
        status=query.status,
        kind=query.kind,
        memory_id=query.memory_id,
        user_id=query.user_id,
        limit=query.limit,
        cursor=query.cursor,
    )
    return json_response(page)


async def get(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(conflicts.get, request.path_params["id"]))


async def detect(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, DetectIn)
    result = await ctx.write(
        conflicts.detect_now,
        memory_id=data.memory_id,
        user_id=data.user_id,
        limit=data.limit,
        space=vector_space(ctx),
    )
    return json_response(result)


async def resolve(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, ResolveIn)
    result = await ctx.write(
        conflicts.resolve,
        request.path_params["id"],
        winner_id=data.winner_id,
        mode=data.mode,
        note=data.note,
        index=await ctx.indexer([]),
        actor_id=data.actor_id,
        role=data.role,
    )
    return json_response(result)


async def dismiss(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, DismissIn)
    result = await ctx.write(
        conflicts.dismiss, request.path_params["id"], note=data.note, actor_id=data.actor_id
    )
    return json_response(result)


_TAG = "conflicts"
routes = [
    ApiRoute(
        "/v1/conflicts",
        list_,
        method="GET",
        doc=Doc(
            "List conflicts, newest first, with their two memories",
            _TAG,
            query=ConflictListQuery,
            response=ConflictPage,
        ),
    ),
    ApiRoute(
        "/v1/conflicts/detect",
        detect,
        method="POST",
        doc=Doc(
            "Look for conflicts now: one memory, or the most recently changed ones",
            _TAG,
            body=DetectIn,
            response=DetectOut,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/conflicts/{id}",
        get,
        method="GET",
        doc=Doc("Get a conflict", _TAG, response=ConflictOut),
    ),
    ApiRoute(
        "/v1/conflicts/{id}/resolve",
        resolve,
        method="POST",
        doc=Doc(
            "Keep one memory: the other gets a supersedes link and is archived or demoted",
            _TAG,
            body=ResolveIn,
            response=ConflictOut,
        ),
    ),
    ApiRoute(
        "/v1/conflicts/{id}/dismiss",
        dismiss,
        method="POST",
        doc=Doc(
            "Not a conflict: the pair is not flagged again",
            _TAG,
            body=DismissIn,
            response=ConflictOut,
            body_required=False,
        ),
    ),
]
