"""API keys of the caller's brain, managed by its owners: /v1/keys...

The brain is the one the credential is scoped to (an account session's active brain). Only an
owner's account session, or MNEMO_API_KEY in single-key mode, may manage keys: an API key or an
OAuth grant minting keys would outlive its own revocation.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from core.identity import keys
from core.identity.models import KeyIn, KeyList, KeyListQuery, KeyRevoked, NewKeyOut
from core.kernel.errors import Forbidden, NotFound
from core.kernel.ids import iso, now_ms
from core.kernel.scope import Scope
from handlers.context import Context, authorize
from handlers.http import ApiRoute, Doc, json_response, read_body, read_query


async def _owner(request: Request) -> Context:
    ctx = await authorize(request)
    scope = ctx.scope
    managed_by_person = scope.account_id is not None and scope.client_id is None
    if not (managed_by_person or scope.principal == "key:env"):
        raise Forbidden(
            "keys are managed by a brain owner's account session (or MNEMO_API_KEY)",
            code="account_session_required",
        )
    scope.require_owner()
    return ctx


def _create(conn: Connection, scope: Scope, data: KeyIn) -> dict[str, Any]:
    made = keys.create_key_in(
        conn, scope.brain_id, name=data.name, user_id=data.user_id, read_only=data.read_only
    )
    return {
        "id": made.id,
        "key": made.secret,
        "name": data.name,
        "prefix": f"{keys.KEY_PREFIX}{made.prefix}_",
        "user_id": made.user_id,
        "read_only": made.read_only,
        "created_at": iso(now_ms()),
        "last_used_at": None,
        "revoked_at": None,
    }


def _list(conn: Connection, scope: Scope, include_revoked: bool) -> list[keys.KeyRecord]:
    return keys.list_keys(conn, scope.brain_id, include_revoked=include_revoked)


def _revoke(conn: Connection, scope: Scope, key_id: str) -> dict[str, Any]:
    if not keys.revoke_key(conn, scope.brain_id, key_id):
        raise NotFound("no such key (or it was already revoked)")
    return {"id": key_id, "revoked": True}


async def create(request: Request) -> Response:
    ctx = await _owner(request)
    data = await read_body(request, KeyIn)
    return json_response(await ctx.write(_create, data), 201)


async def list_(request: Request) -> Response:
    ctx = await _owner(request)
    query = read_query(request, KeyListQuery)
    return json_response({"results": await ctx.read(_list, query.include_revoked)})


async def revoke(request: Request) -> Response:
    ctx = await _owner(request)
    return json_response(await ctx.write(_revoke, request.path_params["id"]))


_TAG = "keys"
routes = [
    ApiRoute(
        "/v1/keys",
        create,
        method="POST",
        doc=Doc(
            "Create an API key for this brain (owners)",
            _TAG,
            body=KeyIn,
            response=NewKeyOut,
            status=201,
        ),
    ),
    ApiRoute(
        "/v1/keys",
        list_,
        method="GET",
        doc=Doc("This brain's API keys (owners)", _TAG, query=KeyListQuery, response=KeyList),
    ),
    ApiRoute(
        "/v1/keys/{id}",
        revoke,
        method="DELETE",
        doc=Doc("Revoke an API key (owners)", _TAG, response=KeyRevoked),
    ),
]
