"""Inbound hooks: sources managed by owners (/v1/hooks/sources...), and the signed endpoint
other systems POST memories to (/v1/hooks/{source_id}, no bearer key: the HMAC signature)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.kernel.db.engine import transaction
from core.kernel.errors import BadRequest, InvalidInput
from core.memory.models import Memory, MemoryIn
from core.webhooks import hooks, signing
from core.webhooks.models import (
    HookSourceIn,
    HookSourceList,
    NewHookSourceOut,
    RotatedOut,
    RotateIn,
    SourceDeleted,
)
from handlers.context import Context, authorize, services
from handlers.http import ApiRoute, Doc, json_response, parse_json, read_body, read_optional_body
from handlers.routes.auth import client_ip, limit


async def _owner(request: Request) -> Context:
    ctx = await authorize(request)
    ctx.scope.require_owner()
    return ctx


async def create_source(request: Request) -> Response:
    ctx = await _owner(request)
    data = await read_body(request, HookSourceIn)
    return json_response(await ctx.write(hooks.create_source, data), 201)


async def list_sources(request: Request) -> Response:
    ctx = await _owner(request)
    return json_response({"results": await ctx.read(hooks.list_sources)})


async def delete_source(request: Request) -> Response:
    ctx = await _owner(request)
    return json_response(await ctx.write(hooks.delete_source, request.path_params["id"]))


async def rotate_secret(request: Request) -> Response:
    ctx = await _owner(request)
    data = await read_optional_body(request, RotateIn)
    return json_response(
        await ctx.write(hooks.rotate_secret, request.path_params["id"], data),
        headers={"Cache-Control": "no-store"},
    )


async def receive(request: Request) -> Response:
    svc = services(request)
    body = await request.body()
    source_id = request.path_params["source"]
    tolerance = svc.settings.webhooks.inbound_tolerance_seconds

    def authenticate() -> tuple[hooks.Source, tuple[str, ...], Context]:
        engine = svc.ready_engine()
        # Per address before the signature is checked (a flood of forged requests costs a
        # lookup and an HMAC each); per source after, so a stranger cannot spend a source's
        # allowance, while a runaway sender or a leaked secret is still bounded.
        limit(svc, engine, "hook.ip", client_ip(request))
        with transaction(engine, write=False) as conn:
            source = hooks.find_source(conn, source_id)
        receipts = hooks.authenticate(
            source,
            request.headers.get(signing.SIGNATURE_HEADER),
            request.headers.get(signing.DELIVERY_HEADER),
            body,
            tolerance=tolerance,
        )
        limit(svc, engine, "hook.source", source.id)
        return source, receipts, Context(svc, engine, source.scope())

    source, receipts, ctx = await svc.call(authenticate)
    try:
        raw = parse_json(body) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(raw, dict):
        raise InvalidInput("the body must be a JSON object: a memory as for POST /v1/memories")
    data = MemoryIn.model_validate(raw)
    index = await ctx.indexer([data])
    memory = await ctx.write(hooks.receive, source, receipts, data, ctx.limits, index)
    return json_response(memory, 200 if memory["deduplicated"] else 201)


_TAG = "hooks"
routes = [
    ApiRoute(
        "/v1/hooks/sources",
        create_source,
        method="POST",
        doc=Doc(
            "Register an inbound hook source (its HMAC secret is shown once)",
            _TAG,
            body=HookSourceIn,
            response=NewHookSourceOut,
            status=201,
        ),
    ),
    ApiRoute(
        "/v1/hooks/sources",
        list_sources,
        method="GET",
        doc=Doc("List inbound hook sources", _TAG, response=HookSourceList),
    ),
    ApiRoute(
        "/v1/hooks/sources/{id}",
        delete_source,
        method="DELETE",
        doc=Doc("Delete an inbound hook source", _TAG, response=SourceDeleted),
    ),
    ApiRoute(
        "/v1/hooks/sources/{id}/rotate-secret",
        rotate_secret,
        method="POST",
        doc=Doc(
            "Rotate the source's HMAC secret (shown once); the old one is accepted for "
            "overlap_seconds more",
            _TAG,
            body=RotateIn,
            response=RotatedOut,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/hooks/{source}",
        receive,
        method="POST",
        doc=Doc(
            "Add a memory from a signed inbound webhook (Mnemo-Signature, Mnemo-Delivery-Id; "
            "no bearer key)",
            _TAG,
            body=MemoryIn,
            response=Memory,
            status=201,
            also={200: Memory},  # the duplicate that was already there
            auth=False,
        ),
    ),
]
