"""Memories: the list with search and filters, adding one, a memory's page, editing it and
changing its state. Searches rank exactly as POST /v1/search does (the same core call); a
person browsing is not counted as a recall (no access is recorded)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.events import history
from core.events.models import HistoryEntryRecord
from core.graph.models import LinkViewRecord
from core.identity import memberships
from core.kernel.errors import InvalidInput, MnemoError
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.models import MemoryFilters, MemoryIn, MemoryPatch, MemoryRecord
from core.retrieval.models import SearchFilters, SearchHitRecord, SearchIn
from core.retrieval.search import search
from handlers.console import session
from handlers.console.routes import extras
from handlers.console.routes.common import done, first_problem, page, render, status_of, to
from handlers.console.session import Form, InBrain
from handlers.console.templates import memories as list_tpl
from handlers.console.templates import memory as memory_tpl
from handlers.console.templates.layout import error_box
from handlers.http import parse_json

PAGE_SIZE = 25
SEARCH_PAGE_SIZE = 10  # as POST /v1/search's default
# The list says "1,000+" past this: an exact count would read every row of a large brain.
COUNT_CAP = 1000
HISTORY_SHOWN = 50


def _filters(q: list_tpl.ListQuery) -> dict[str, Any]:
    return {
        "type": q.type or None,
        "tag": [q.tag] if q.tag else [],
        "user_id": q.user or None,
        "state": q.state or "active",
        "created_after": q.after or None,
        "created_before": q.before or None,
        # A day as typed in a date field: what was true by the end of it.
        "as_of": f"{q.as_of}T23:59:59.999Z" if q.as_of else None,
    }


def _listing(
    conn: Connection, scope: Scope, filters: MemoryFilters, cursor: str | None
) -> tuple[list[MemoryRecord], str | None, int]:
    listed = memories.list_memories(conn, scope, filters, limit=PAGE_SIZE, cursor=cursor)
    total = memories.count_memories(conn, scope, filters, cap=COUNT_CAP + 1)
    return listed["results"], listed["next_cursor"], total


@page
async def list_page(request: Request) -> Response:
    view = await session.in_brain(request)
    q = list_tpl.ListQuery.of(request.query_params)
    ctx = view.ctx
    results: list[MemoryRecord] = []
    hits: list[SearchHitRecord] | None = None
    next_cursor = total = None
    error = None
    try:
        if q.q:
            data = SearchIn(
                query=q.q,
                limit=SEARCH_PAGE_SIZE,
                cursor=q.cursor or None,
                filters=SearchFilters.model_validate(_filters(q)),
                mode=q.mode or "hybrid",
                explain=True,
            )
            vector = await ctx.query_vector(data.query, embed=data.mode != "lexical")
            found = await ctx.read(search, data, vector, ctx.services.settings.ranking)
            hits, next_cursor = found["results"], found["next_cursor"]
        else:
            filters = MemoryFilters.model_validate(_filters(q))
            results, next_cursor, total = await ctx.read(_listing, filters, q.cursor or None)
    except ValidationError as exc:
        error = f"Check the filters: {first_problem(exc)}"
    except InvalidInput as err:
        error = err.message
    body = done(request) + list_tpl.list_page(
        view.base,
        q,
        results=results,
        hits=hits,
        next_cursor=next_cursor,
        total=total,
        total_cap=COUNT_CAP,
        error=error,
    )
    return render(view, "memories", "Memories", body, 422 if error else 200)


@page
async def new_form(request: Request) -> Response:
    view = await session.in_brain(request)
    body = list_tpl.new_form(view.base, view.visitor.csrf, {}, None)
    return render(view, "memories", "Add a memory", body)


def _tags(raw: str) -> list[str]:
    return [t.strip() for t in raw.split(",") if t.strip()]


@page
async def create(request: Request) -> Response:
    view = await session.in_brain(request)
    form = await session.checked_form(request, view.visitor.csrf)
    values = {
        k: form.get(k) for k in ("content", "type", "title", "key", "user_id", "tags", "valid_from")
    }
    try:
        data = MemoryIn.model_validate(
            {
                "content": values["content"],
                "type": values["type"] or "note",
                "title": form.optional("title"),
                "key": form.optional("key"),
                "user_id": form.optional("user_id"),
                "tags": _tags(values["tags"]),
                "valid_from": form.optional("valid_from"),
            }
        )
        index = await view.ctx.indexer([data])
        made = await view.ctx.write(memories.create, data, view.ctx.limits, index)
    except ValidationError as exc:
        return _new_again(view, values, first_problem(exc), 422)
    except MnemoError as err:
        return _new_again(view, values, err.message, status_of(err))
    if made["state"] == "quarantined":  # the write gate held it: it is reviewed there
        return to(f"{view.base}/quarantine", "quarantined")
    return to(f"{view.base}/m/{made['id']}", "created")


def _new_again(view: InBrain, values: dict[str, str], error: str, status: int) -> Response:
    body = list_tpl.new_form(view.base, view.visitor.csrf, values, error)
    return render(view, "memories", "Add a memory", body, status)


def _bundle(
    conn: Connection, scope: Scope, memory_id: str
) -> tuple[MemoryRecord, list[HistoryEntryRecord], list[LinkViewRecord]]:
    memory = memories.get(conn, scope, memory_id)
    # One more than shown: whether older rows were left out.
    rows = history.for_memory(conn, scope, memory_id, newest=HISTORY_SHOWN + 1)
    # History names people by their account id: show the members' emails instead.
    assert scope.account_id is not None
    people = {
        f"account:{m['account_id']}": m["email"]
        for m in memberships.members(conn, scope.account_id, scope.brain_id)
    }
    for row in rows:
        row["actor_id"] = people.get(row.get("actor_id") or "", row.get("actor_id"))
    return memory, rows, extras.links_of(conn, scope, memory_id)


async def _memory_response(
    request: Request,
    view: InBrain,
    memory_id: str,
    *,
    status: int = 200,
    edit_values: dict[str, str] | None = None,
    edit_error: str | None = None,
    error: str | None = None,
) -> Response:
    memory, rows, link_rows = await view.ctx.read(_bundle, memory_id)
    more_history = len(rows) > HISTORY_SHOWN
    rows = rows[-HISTORY_SHOWN:]
    csrf = view.visitor.csrf
    edit = None
    if edit_error is not None:
        edit = memory_tpl.edit_form(view.base, memory, csrf, edit_values, edit_error)
    links = extras.links_section(view, memory, link_rows)
    body = (
        done(request)
        + error_box(error)
        + memory_tpl.page(
            view.base, memory, csrf, history=rows, links=links, edit=edit, older=more_history
        )
    )
    return render(view, "memories", memory.get("title") or "Memory", body, status)


@page
async def memory_page(request: Request) -> Response:
    view = await session.in_brain(request)
    return await _memory_response(request, view, request.path_params["id"])


def _patch_from(form: Form, current: MemoryRecord) -> MemoryPatch:
    """Only what changed goes into the patch, so the history says what was edited."""
    changes: dict[str, Any] = {}
    content = form.get("content").replace("\r\n", "\n")
    if content.strip() != current["content"].strip():
        changes["content"] = content
    title = form.optional("title")
    if title != current.get("title"):
        changes["title"] = title
    tags = _tags(form.get("tags"))
    if [t.lower() for t in tags] != current["tags"]:
        changes["tags"] = tags
    source = form.optional("source")
    if source != current.get("source"):
        changes["source"] = source
    for name in ("importance", "confidence"):
        raw = form.get(name).strip()
        if raw:
            try:
                number = float(raw)
            except ValueError:
                raise InvalidInput(f"{name} must be a number between 0 and 1") from None
            if math.isnan(number):  # float() reads "nan", which compares unequal to nothing
                raise InvalidInput(f"{name} must be a number between 0 and 1")
            if abs(number - float(current[name])) > 1e-9:
                changes[name] = number
    raw_metadata = form.get("metadata").strip() or "{}"
    try:
        # The API's parser: no NaN or Infinity (JSON has neither), no NUL, bounded nesting.
        metadata = parse_json(raw_metadata)
    except ValueError as exc:
        raise InvalidInput(f"metadata is not valid JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise InvalidInput('metadata must be a JSON object, like {"topic": "travel"}')
    if metadata != current["metadata"]:
        changes["metadata"] = metadata
        changes["metadata_mode"] = "replace"
    return MemoryPatch.model_validate(changes)


@page
async def edit(request: Request) -> Response:
    view = await session.in_brain(request)
    form = await session.checked_form(request, view.visitor.csrf)
    memory_id = request.path_params["id"]
    values = {
        k: form.get(k)
        for k in ("content", "title", "tags", "source", "importance", "confidence", "metadata")
    }
    try:
        current = await view.ctx.read(memories.get, memory_id)
        patch = _patch_from(form, current)
        if not patch.changes():
            return to(f"{view.base}/m/{memory_id}", "unchanged")
        index = await view.ctx.patch_indexer(memory_id, patch)
        await view.ctx.write(memories.update, memory_id, patch, view.ctx.limits, index)
    except ValidationError as exc:
        return await _memory_response(
            request,
            view,
            memory_id,
            status=422,
            edit_values=values,
            edit_error=first_problem(exc),
        )
    except MnemoError as err:
        if status_of(err) == 404:
            raise
        return await _memory_response(
            request,
            view,
            memory_id,
            status=status_of(err),
            edit_values=values,
            edit_error=err.message,
        )
    return to(f"{view.base}/m/{memory_id}", "saved")


_TARGETS = {"archived": "archived", "deleted": "deleted", "active": "restored"}


@page
async def change_state(request: Request) -> Response:
    view = await session.in_brain(request)
    form = await session.checked_form(request, view.visitor.csrf)
    memory_id = request.path_params["id"]
    target = form.get("to")
    if target not in _TARGETS:
        raise InvalidInput("unknown state: choose archived, deleted or active")
    try:
        index = await view.ctx.indexer([])
        await view.ctx.write(memories.set_state, memory_id, target, index)
    except MnemoError as err:
        if status_of(err) == 404:
            raise
        return await _memory_response(
            request, view, memory_id, status=status_of(err), error=err.message
        )
    return to(f"{view.base}/m/{memory_id}", _TARGETS[target])


routes = [
    Route("/console/b/{brain}/memories", list_page, methods=["GET"]),
    Route("/console/b/{brain}/new", new_form, methods=["GET"]),
    Route("/console/b/{brain}/new", create, methods=["POST"]),
    Route("/console/b/{brain}/m/{id}", memory_page, methods=["GET"]),
    Route("/console/b/{brain}/m/{id}/edit", edit, methods=["POST"]),
    Route("/console/b/{brain}/m/{id}/state", change_state, methods=["POST"]),
]
