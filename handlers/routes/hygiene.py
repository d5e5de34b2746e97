"""Brain policy, source trust and memory hygiene: /v1/policy, /v1/trust..., reinforce, decay,
forget and the maintenance runs."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from core.app import brain_maintenance
from core.app.models import RunPage
from core.curation import hygiene
from core.curation.models import (
    BatchRunOut,
    DecayIn,
    ForgetIn,
    ForgetOut,
    ReinforceIn,
    RunsQuery,
)
from core.kernel.scope import Scope
from core.memory import policy, trust
from core.memory.models import (
    Memory,
    PolicyIn,
    PolicyOut,
    TrustDeleted,
    TrustIn,
    TrustListQuery,
    TrustOut,
    TrustPage,
)
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_body, read_optional_body, read_query

# Time POST /v1/decay may spend on batches, inside the API function's 30 s.
_DECAY_REQUEST_SECONDS = 20.0


def _bounds() -> dict[str, Any]:
    return {
        name: {"min": b.low, "max": b.high, "nullable": b.nullable, "help": b.help}
        for name, b in policy.BOUNDS.items()
    }


def _policy(conn: Connection, scope: Scope) -> dict[str, Any]:
    return {
        "policy": policy.policy_for(conn, scope.brain_id).to_dict(),
        "overrides": policy.stored_values(conn, scope.brain_id),
        "clamped": {},
        "bounds": _bounds(),
    }


def _set_policy(conn: Connection, scope: Scope, values: dict[str, Any]) -> dict[str, Any]:
    scope.require_owner_write()
    update = policy.set_policy(conn, scope, values)
    return {**_policy(conn, scope), "clamped": update.clamped}


async def get_policy(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(_policy))


async def put_policy(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, PolicyIn)
    return json_response(await ctx.write(_set_policy, data.model_dump(exclude_unset=True)))


async def list_trust(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, TrustListQuery)
    return json_response(await ctx.read(trust.list_trust, limit=query.limit, cursor=query.cursor))


async def get_trust(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(trust.get, request.path_params["source"]))


async def put_trust(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, TrustIn)
    source = request.path_params["source"]
    return json_response(await ctx.write(trust.set_trust, source, data.trust, notes=data.notes))


async def delete_trust(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.write(trust.delete, request.path_params["source"]))


async def reinforce(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, ReinforceIn)
    return json_response(await ctx.write(hygiene.reinforce, request.path_params["id"], data))


async def decay(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, DecayIn)
    settings = ctx.services.settings.maintenance
    # Batches, each its own transaction: the call manages them rather than ctx.write. A large
    # brain would outlast API Gateway's 30 s: stop between batches in time and say so
    # (`stopped_early`); the memories done no longer match, so calling again goes on.
    deadline = time.monotonic() + _DECAY_REQUEST_SECONDS
    run = await ctx.services.call(
        lambda: hygiene.decay(
            ctx.engine, ctx.scope, settings, dry_run=data.dry_run, deadline=deadline
        )
    )
    return json_response(run.to_dict())


async def forget(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, ForgetIn)
    settings = ctx.services.settings.maintenance
    index = await ctx.indexer([])
    if data.dry_run:
        return json_response(await ctx.read(hygiene.forget, data, settings, index))
    return json_response(await ctx.write(hygiene.forget, data, settings, index))


async def runs(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, RunsQuery)
    page = await ctx.read(
        brain_maintenance.list_runs, task=query.type, limit=query.limit, cursor=query.cursor
    )
    return json_response(page)


_TAG = "hygiene"
routes = [
    ApiRoute(
        "/v1/policy",
        get_policy,
        method="GET",
        doc=Doc(
            "The brain's effective policy, what it set, and the bounds", _TAG, response=PolicyOut
        ),
    ),
    ApiRoute(
        "/v1/policy",
        put_policy,
        method="PUT",
        doc=Doc(
            "Replace the brain's policy (owners only); out-of-range values are clamped",
            _TAG,
            body=PolicyIn,
            response=PolicyOut,
        ),
    ),
    ApiRoute(
        "/v1/trust",
        list_trust,
        method="GET",
        doc=Doc(
            "Sources with a trust of their own", _TAG, query=TrustListQuery, response=TrustPage
        ),
    ),
    ApiRoute(
        "/v1/trust/{source:path}",
        get_trust,
        method="GET",
        doc=Doc("The trust of a source", _TAG, response=TrustOut),
    ),
    ApiRoute(
        "/v1/trust/{source:path}",
        put_trust,
        method="PUT",
        doc=Doc("Set a source's trust (0..1)", _TAG, body=TrustIn, response=TrustOut),
    ),
    ApiRoute(
        "/v1/trust/{source:path}",
        delete_trust,
        method="DELETE",
        doc=Doc("Remove a source's trust: it counts as neutral again", _TAG, response=TrustDeleted),
    ),
    ApiRoute(
        "/v1/memories/{id}/reinforce",
        reinforce,
        method="POST",
        doc=Doc(
            "Raise a memory's importance by the policy's reinforce step (at most 1)",
            _TAG,
            body=ReinforceIn,
            response=Memory,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/decay",
        decay,
        method="POST",
        doc=Doc(
            "Decay idle memories now (once per decay period; dry_run lists what would change)",
            _TAG,
            body=DecayIn,
            response=BatchRunOut,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/forget",
        forget,
        method="POST",
        doc=Doc(
            "Archive or purge memories by ids or filters (bounded; dry_run lists them)",
            _TAG,
            body=ForgetIn,
            response=ForgetOut,
        ),
    ),
    ApiRoute(
        "/v1/maintenance/runs",
        runs,
        method="GET",
        doc=Doc(
            "The brain's maintenance task runs, newest first",
            _TAG,
            query=RunsQuery,
            response=RunPage,
        ),
    ),
]
