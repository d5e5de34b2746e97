"""Watches (webhook subscriptions) of the caller's brain, owners only: /v1/watches..."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.webhooks import watches
from core.webhooks.models import (
    DeliveryOut,
    DeliveryPage,
    DeliveryPageRecord,
    DeliveryQuery,
    NewWatchOut,
    RotatedOut,
    RotateIn,
    WatchDeleted,
    WatchIn,
    WatchList,
    WatchOut,
    WatchPatch,
)
from core.webhooks.ssrf import Target, check_url
from handlers.context import Context, authorize
from handlers.http import ApiRoute, Doc, json_response, read_body, read_optional_body, read_query


async def _owner(request: Request, *, write: bool = False) -> Context:
    """The owner's context; for a change, refused up front to a read-only key or grant, before
    the SSRF guard resolves anything."""
    ctx = await authorize(request)
    if write:
        ctx.scope.require_owner_write()
    else:
        ctx.scope.require_owner()
    return ctx


async def _checked(ctx: Context, url: str) -> Target:
    """The SSRF guard's verdict, outside any transaction: it resolves the host."""
    svc = ctx.services
    return await svc.call(lambda: check_url(url, svc.settings.webhooks, svc.resolver))


async def create(request: Request) -> Response:
    ctx = await _owner(request, write=True)
    data = await read_body(request, WatchIn)
    checked = await _checked(ctx, data.webhook_url)
    return json_response(await ctx.write(watches.create, data, checked), 201)


async def list_(request: Request) -> Response:
    ctx = await _owner(request)
    return json_response({"results": await ctx.read(watches.list_watches)})


async def get(request: Request) -> Response:
    ctx = await _owner(request)
    return json_response(await ctx.read(watches.get, request.path_params["id"]))


async def patch(request: Request) -> Response:
    ctx = await _owner(request, write=True)
    data = await read_body(request, WatchPatch)
    checked = None if data.webhook_url is None else await _checked(ctx, data.webhook_url)
    watch_id = request.path_params["id"]
    return json_response(await ctx.write(watches.update, watch_id, data, checked))


async def delete(request: Request) -> Response:
    ctx = await _owner(request)
    return json_response(await ctx.write(watches.delete, request.path_params["id"]))


async def rotate_secret(request: Request) -> Response:
    ctx = await _owner(request)
    data = await read_optional_body(request, RotateIn)
    return json_response(
        await ctx.write(watches.rotate_secret, request.path_params["id"], data),
        headers={"Cache-Control": "no-store"},
    )


async def test(request: Request) -> Response:
    ctx = await _owner(request)
    return json_response(await ctx.write(watches.test, request.path_params["id"]), 202)


async def deliveries(request: Request) -> Response:
    ctx = await _owner(request)
    query = read_query(request, DeliveryQuery)
    page: DeliveryPageRecord = await ctx.read(
        watches.deliveries,
        request.path_params["id"],
        status=query.status,
        limit=query.limit,
        cursor=query.cursor,
    )
    return json_response(page)


_TAG = "watches"
routes = [
    ApiRoute(
        "/v1/watches",
        create,
        method="POST",
        doc=Doc(
            "Create a watch: changes matching it are POSTed, signed, to its webhook URL "
            "(the secret is shown once)",
            _TAG,
            body=WatchIn,
            response=NewWatchOut,
            status=201,
        ),
    ),
    ApiRoute("/v1/watches", list_, method="GET", doc=Doc("List watches", _TAG, response=WatchList)),
    ApiRoute(
        "/v1/watches/{id}", get, method="GET", doc=Doc("Get a watch", _TAG, response=WatchOut)
    ),
    ApiRoute(
        "/v1/watches/{id}",
        patch,
        method="PATCH",
        doc=Doc("Update a watch", _TAG, body=WatchPatch, response=WatchOut),
    ),
    ApiRoute(
        "/v1/watches/{id}",
        delete,
        method="DELETE",
        doc=Doc("Delete a watch and its delivery log", _TAG, response=WatchDeleted),
    ),
    ApiRoute(
        "/v1/watches/{id}/test",
        test,
        method="POST",
        doc=Doc(
            "Queue a watch.test delivery",
            _TAG,
            response=DeliveryOut,
            status=202,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/watches/{id}/deliveries",
        deliveries,
        method="GET",
        doc=Doc(
            "A watch's deliveries, newest first", _TAG, query=DeliveryQuery, response=DeliveryPage
        ),
    ),
    ApiRoute(
        "/v1/watches/{id}/rotate-secret",
        rotate_secret,
        method="POST",
        doc=Doc(
            "Rotate the signing secret (shown once); the old one keeps signing beside it for "
            "overlap_seconds",
            _TAG,
            body=RotateIn,
            response=RotatedOut,
            body_required=False,
        ),
    ),
]
