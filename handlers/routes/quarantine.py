"""The write gate's quarantine: /v1/quarantine... (list, read, approve, reject)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.memory import quarantine
from core.memory.models import Approved, DecisionIn, QuarantineItem, QuarantinePage, QuarantineQuery
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_optional_body, read_query


async def list_(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, QuarantineQuery)
    return json_response(await ctx.read(quarantine.list_items, query))


async def get(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(quarantine.get, request.path_params["id"]))


async def approve(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, DecisionIn)
    item_id = request.path_params["id"]
    held = await ctx.read(quarantine.request_of, item_id)
    index = await ctx.indexer([held])
    result = await ctx.write(quarantine.approve, item_id, ctx.limits, index, data)
    return json_response(result)


async def reject(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, DecisionIn)
    return json_response(await ctx.write(quarantine.reject, request.path_params["id"], data))


_TAG = "quarantine"
routes = [
    ApiRoute(
        "/v1/quarantine",
        list_,
        method="GET",
        doc=Doc(
            "Writes the gate held back (newest first; status pending by default)",
            _TAG,
            query=QuarantineQuery,
            response=QuarantinePage,
        ),
    ),
    ApiRoute(
        "/v1/quarantine/{id}",
        get,
        method="GET",
        doc=Doc("One quarantined write", _TAG, response=QuarantineItem),
    ),
    ApiRoute(
        "/v1/quarantine/{id}/approve",
        approve,
        method="POST",
        doc=Doc(
            "Save a quarantined write as a memory, as it was asked for",
            _TAG,
            body=DecisionIn,
            response=Approved,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/quarantine/{id}/reject",
        reject,
        method="POST",
        doc=Doc(
            "Reject a quarantined write: it never becomes a memory",
            _TAG,
            body=DecisionIn,
            response=QuarantineItem,
            body_required=False,
        ),
    ),
]
