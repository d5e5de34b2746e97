"""Snapshots of a brain: /v1/snapshots... (restore and delete are for owners)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.transfer import snapshots
from core.transfer.models import (
    RestoreIn,
    RestoreResult,
    Snapshot,
    SnapshotDeleted,
    SnapshotIn,
    SnapshotListQuery,
    SnapshotPage,
)
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_body, read_optional_body, read_query


async def create(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, SnapshotIn)
    settings = ctx.services.settings.snapshots
    created = await ctx.services.call(
        lambda: snapshots.create(
            ctx.engine,
            ctx.scope,
            settings,
            label=data.label,
            note=data.note,
            include_archived=data.include_archived,
        )
    )
    return json_response(created, 201)


async def list_(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, SnapshotListQuery)
    page = await ctx.read(snapshots.list_snapshots, limit=query.limit, cursor=query.cursor)
    return json_response(page)


async def get(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(snapshots.get, request.path_params["id"]))


async def restore(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, RestoreIn)
    settings = ctx.services.settings.snapshots
    embedder = ctx.services.embedder()
    result = await ctx.services.call(
        lambda: snapshots.restore(
            ctx.engine,
            ctx.scope,
            request.path_params["id"],
            settings,
            mode=data.mode,
            embedder=embedder,
        )
    )
    return json_response(result)


async def delete(request: Request) -> Response:
    ctx = await authorize(request)
    settings = ctx.services.settings.snapshots
    result = await ctx.services.call(
        lambda: snapshots.delete(ctx.engine, ctx.scope, request.path_params["id"], settings)
    )
    return json_response(result)


_TAG = "snapshots"
routes = [
    ApiRoute(
        "/v1/snapshots",
        create,
        method="POST",
        doc=Doc(
            "Snapshot the brain (older ones beyond the policy's snapshot_retention go)",
            _TAG,
            body=SnapshotIn,
            response=Snapshot,
            status=201,
        ),
    ),
    ApiRoute(
        "/v1/snapshots",
        list_,
        method="GET",
        doc=Doc(
            "List snapshots, newest first", _TAG, query=SnapshotListQuery, response=SnapshotPage
        ),
    ),
    ApiRoute(
        "/v1/snapshots/{id}",
        get,
        method="GET",
        doc=Doc("Get a snapshot's description", _TAG, response=Snapshot),
    ),
    ApiRoute(
        "/v1/snapshots/{id}/restore",
        restore,
        method="POST",
        doc=Doc(
            "Restore a snapshot in one transaction, merge or replace (owners)",
            _TAG,
            body=RestoreIn,
            response=RestoreResult,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/snapshots/{id}",
        delete,
        method="DELETE",
        doc=Doc("Delete a snapshot (owners)", _TAG, response=SnapshotDeleted),
    ),
]
