"""Brains and their members, as an account manages them: /v1/brains...

Every route needs an account session. A brain the account is not a member of is a 404; a
member asking for an owner-only change gets a 403.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.identity import accounts, memberships
from core.identity.models import (
    BrainDelete,
    BrainDeleted,
    BrainIn,
    BrainList,
    BrainOut,
    BrainPatch,
    MemberIn,
    MemberList,
    MemberOut,
    MemberPatch,
    MemberRemoved,
)
from handlers.http import ApiRoute, Doc, json_response, read_body
from handlers.routes.auth import account_session


async def list_(request: Request) -> Response:
    ctx = await account_session(request)
    return json_response({"results": await ctx.read(memberships.list_brains, ctx.account_id)})


async def create(request: Request) -> Response:
    ctx = await account_session(request)
    data = await read_body(request, BrainIn)
    brain = await ctx.write(memberships.create_brain, ctx.account_id, data.name, data.slug)
    return json_response(brain, 201)


async def get(request: Request) -> Response:
    ctx = await account_session(request)
    brain_id = request.path_params["id"]
    return json_response(await ctx.read(memberships.get_brain, ctx.account_id, brain_id))


async def rename(request: Request) -> Response:
    ctx = await account_session(request)
    data = await read_body(request, BrainPatch)
    brain_id = request.path_params["id"]
    return json_response(await ctx.write(memberships.rename, ctx.account_id, brain_id, data.name))


async def delete(request: Request) -> Response:
    ctx = await account_session(request)
    data = await read_body(request, BrainDelete)
    brain_id = request.path_params["id"]
    return json_response(
        await ctx.write(memberships.delete, ctx.account_id, brain_id, data.confirm)
    )


async def list_members(request: Request) -> Response:
    ctx = await account_session(request)
    rows = await ctx.read(memberships.members, ctx.account_id, request.path_params["id"])
    return json_response({"results": rows})


async def add_member(request: Request) -> Response:
    ctx = await account_session(request)
    data = await read_body(request, MemberIn)
    email = accounts.normalize_email(data.email)
    member = await ctx.write(
        memberships.add_member, ctx.account_id, request.path_params["id"], email, data.role
    )
    return json_response(member, 201)


async def set_role(request: Request) -> Response:
    ctx = await account_session(request)
    data = await read_body(request, MemberPatch)
    p = request.path_params
    member = await ctx.write(
        memberships.set_role, ctx.account_id, p["id"], p["account_id"], data.role
    )
    return json_response(member)


async def remove_member(request: Request) -> Response:
    ctx = await account_session(request)
    p = request.path_params
    removed = await ctx.write(memberships.remove_member, ctx.account_id, p["id"], p["account_id"])
    return json_response(removed)


_TAG = "brains"
_BRAIN = "/v1/brains/{id}"
_MEMBER = "/v1/brains/{id}/members/{account_id}"
routes = [
    ApiRoute(
        "/v1/brains",
        list_,
        method="GET",
        doc=Doc("The brains this account belongs to, with its role", _TAG, response=BrainList),
    ),
    ApiRoute(
        "/v1/brains",
        create,
        method="POST",
        doc=Doc("Create a brain you own", _TAG, body=BrainIn, response=BrainOut, status=201),
    ),
    ApiRoute(_BRAIN, get, method="GET", doc=Doc("One brain", _TAG, response=BrainOut)),
    ApiRoute(
        _BRAIN,
        rename,
        method="PATCH",
        doc=Doc("Rename a brain (owners)", _TAG, body=BrainPatch, response=BrainOut),
    ),
    ApiRoute(
        _BRAIN,
        delete,
        method="DELETE",
        doc=Doc(
            "Delete a brain and all in it (owners; confirm with its slug)",
            _TAG,
            body=BrainDelete,
            response=BrainDeleted,
        ),
    ),
    ApiRoute(
        _BRAIN + "/members",
        list_members,
        method="GET",
        doc=Doc("The brain's members", _TAG, response=MemberList),
    ),
    ApiRoute(
        _BRAIN + "/members",
        add_member,
        method="POST",
        doc=Doc(
            "Add an existing account by email (owners)",
            _TAG,
            body=MemberIn,
            response=MemberOut,
            status=201,
        ),
    ),
    ApiRoute(
        _MEMBER,
        set_role,
        method="PATCH",
        doc=Doc(
            "Change a member's role (owners; a brain keeps an owner)",
            _TAG,
            body=MemberPatch,
            response=MemberOut,
        ),
    ),
    ApiRoute(
        _MEMBER,
        remove_member,
        method="DELETE",
        doc=Doc("Remove a member, or leave (the last owner cannot)", _TAG, response=MemberRemoved),
    ),
]
