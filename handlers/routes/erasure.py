"""Erasing an end user: DELETE /v1/users/{user_id} (owners), and the receipts it leaves."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from core.app.erasure import erase_user
from core.curation import erasure
from core.curation.models import EraseQuery, ErasurePage, ErasureReceipt
from core.kernel.errors import InvalidInput
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_query

# Inside the API function's 30 s: a larger user is finished by calling again (or the CLI).
_ERASE_SECONDS = 20.0


async def erase(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, EraseQuery)
    if not query.confirm:
        raise InvalidInput(
            "add ?confirm=true to erase: an erasure cannot be undone",
            details={"field": "confirm"},
        )
    ctx.scope.require_owner_write()
    user_id = request.path_params["user_id"]
    settings = ctx.services.settings.snapshots
    deadline = time.monotonic() + _ERASE_SECONDS
    receipt = await ctx.services.call(
        lambda: erase_user(ctx.engine, ctx.scope, user_id, settings, deadline=deadline)
    )
    return json_response(receipt, 200 if receipt["status"] == "complete" else 202)


async def list_(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response({"results": await ctx.read(erasure.list_receipts)})


async def get(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(erasure.get, request.path_params["id"]))


_TAG = "users"
routes = [
    ApiRoute(
        "/v1/users/{user_id}",
        erase,
        method="DELETE",
        doc=Doc(
            "Erase an end user everywhere in the brain (owners; ?confirm=true); 202 while "
            "running: call again to finish",
            _TAG,
            query=EraseQuery,
            response=ErasureReceipt,
        ),
    ),
    ApiRoute(
        "/v1/erasures",
        list_,
        method="GET",
        doc=Doc("Erasure receipts, newest first (owners)", _TAG, response=ErasurePage),
    ),
    ApiRoute(
        "/v1/erasures/{id}",
        get,
        method="GET",
        doc=Doc("One erasure receipt (owners)", _TAG, response=ErasureReceipt),
    ),
]
