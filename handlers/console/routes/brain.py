"""Users and their summaries, the changelog, and API keys (owners)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.curation.summaries import service as summaries
from core.events import changelog
from core.identity import keys
from core.kernel.errors import MnemoError, NotFound
from core.kernel.ids import iso, now_ms
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory import users
from core.memory.models import MemoryFilters
from handlers.console import session
from handlers.console.html import seg
from handlers.console.routes.common import done, first_problem, page, render, status_of, to
from handlers.console.session import InBrain
from handlers.console.templates import pages
from handlers.console.templates.memories import memory_card

USERS_PAGE = 50
CHANGELOG_PAGE = 50


@page
async def users_page(request: Request) -> Response:
    view = await session.in_brain(request)
    after = request.query_params.get("after") or None
    rows, next_after = await view.ctx.read(users.list_users, limit=USERS_PAGE, after=after)
    return render(view, "users", "Users", pages.users(view.base, rows, next_after))


@page
async def user_page(request: Request) -> Response:
    view = await session.in_brain(request)
    user_id = request.path_params["user_id"]
    ctx = view.ctx
    settings = ctx.services.settings
    found = await ctx.services.call(
        lambda: summaries.get_user_summary(ctx.engine, settings, ctx.scope, user_id)
    )
    recent = await ctx.read(
        memories.list_memories, MemoryFilters(user_id=user_id), limit=10, cursor=None
    )
    body = pages.user(
        view.base,
        user_id,
        found.as_json(),
        recent["results"],
        view.visitor.csrf,
        done(request),
        memory_card,
    )
    return render(view, "users", user_id, body)


@page
async def regenerate(request: Request) -> Response:
    view = await session.in_brain(request)
    await session.checked_form(request, view.visitor.csrf)
    user_id = request.path_params["user_id"]
    ctx = view.ctx
    settings = ctx.services.settings
    await ctx.services.call(
        lambda: summaries.regenerate_user_summary(ctx.engine, settings, ctx.scope, user_id)
    )
    return to(f"{view.base}/users/{seg(user_id)}", "regenerated")


@page
async def changelog_page(request: Request) -> Response:
    view = await session.in_brain(request)
    event_type = request.query_params.get("type", "").strip()
    cursor = request.query_params.get("cursor", "")
    entries, next_cursor = await view.ctx.read(
        changelog.latest,
        event_type=event_type or None,
        cursor=cursor or None,
        limit=CHANGELOG_PAGE,
    )
    body = pages.changelog(view.base, entries, event_type, cursor, next_cursor)
    return render(view, "changelog", "Changelog", body)


# -- API keys (owners) -----------------------------------------------------------------------


class KeyForm(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    read_only: bool = False


async def _owner(request: Request) -> InBrain:
    view = await session.in_brain(request)
    view.scope.require_owner()
    return view


def _list_keys(conn: Connection, scope: Scope) -> list[keys.KeyRecord]:
    return keys.list_keys(conn, scope.brain_id, include_revoked=True)


def _keys_page(
    view: InBrain,
    rows: list[keys.KeyRecord],
    notice: Any,
    *,
    created: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    body = pages.keys(view.base, rows, view.visitor.csrf, notice, created=created, error=error)
    return render(view, "keys", "API keys", body, status)


@page
async def keys_page(request: Request) -> Response:
    view = await _owner(request)
    rows = await view.ctx.read(_list_keys)
    return _keys_page(view, rows, done(request))


def _create_key(conn: Connection, scope: Scope, data: KeyForm) -> dict[str, Any]:
    made = keys.create_key_in(
        conn, scope.brain_id, name=data.name, user_id=data.user_id, read_only=data.read_only
    )
    return {"id": made.id, "key": made.secret, "name": data.name, "created_at": iso(now_ms())}


@page
async def create_key(request: Request) -> Response:
    view = await _owner(request)
    form = await session.checked_form(request, view.visitor.csrf)
    try:
        data = KeyForm(
            name=form.optional("name"),
            user_id=form.optional("user_id"),
            read_only=form.checked("read_only"),
        )
        created = await view.ctx.write(_create_key, data)
    except ValidationError as exc:
        rows = await view.ctx.read(_list_keys)
        return _keys_page(view, rows, "", error=first_problem(exc), status=422)
    except MnemoError as err:
        rows = await view.ctx.read(_list_keys)
        return _keys_page(view, rows, "", error=err.message, status=status_of(err))
    # Rendered, not redirected: the secret must not travel in a URL or be shown twice.
    rows = await view.ctx.read(_list_keys)
    return _keys_page(view, rows, "", created=created, status=201)


def _revoke(conn: Connection, scope: Scope, key_id: str) -> None:
    if not keys.revoke_key(conn, scope.brain_id, key_id):
        raise NotFound("no such key (or it was already revoked)")


@page
async def revoke_key(request: Request) -> Response:
    view = await _owner(request)
    await session.checked_form(request, view.visitor.csrf)
    await view.ctx.write(_revoke, request.path_params["key"])
    return to(f"{view.base}/keys", "revoked")


routes = [
    Route("/console/b/{brain}/users", users_page, methods=["GET"]),
    Route("/console/b/{brain}/users/{user_id:path}", user_page, methods=["GET"]),
    Route("/console/b/{brain}/users/{user_id:path}", regenerate, methods=["POST"]),
    Route("/console/b/{brain}/changelog", changelog_page, methods=["GET"]),
    Route("/console/b/{brain}/keys", keys_page, methods=["GET"]),
    Route("/console/b/{brain}/keys", create_key, methods=["POST"]),
    Route("/console/b/{brain}/keys/{key}/revoke", revoke_key, methods=["POST"]),
]
