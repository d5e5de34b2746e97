"""A memory's links on its page (both directions, add and remove), and the graph view of its
neighbourhood."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.app.linking import create_link
from core.graph import links
from core.graph import traversal as graph
from core.graph.models import LinkIn, LinkViewRecord, SubgraphQuery
from core.kernel.errors import InvalidInput, MnemoError, NotFound
from core.kernel.scope import Scope
from handlers.console import session
from handlers.console.html import Html
from handlers.console.routes.common import first_problem, page, render, status_of, to
from handlers.console.session import InBrain
from handlers.console.templates import graph as graph_tpl
from handlers.console.templates.layout import error_page, respond

LINKS_SHOWN = 50


def links_of(conn: Connection, scope: Scope, memory_id: str) -> list[LinkViewRecord]:
    return links.list_for(conn, scope, memory_id, limit=LINKS_SHOWN)["results"]


def links_section(
    view: InBrain, memory: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> Html:
    return graph_tpl.links_section(view.base, memory, rows, view.visitor.csrf)


@page
async def add_link(request: Request) -> Response:
    view = await session.in_brain(request)
    form = await session.checked_form(request, view.visitor.csrf)
    memory_id = request.path_params["id"]
    other = form.get("other").strip()
    outgoing = form.get("direction", "out") != "in"
    try:
        data = LinkIn.model_validate(
            {
                "from_id": memory_id if outgoing else other,
                "to_id": other if outgoing else memory_id,
                "relation": form.get("relation"),
                "label": form.optional("label"),
            }
        )
        await view.ctx.write(create_link, data)
    except ValidationError as exc:
        return _link_error(view, first_problem(exc), 422)
    except MnemoError as err:
        return _link_error(view, err.message, status_of(err))
    return to(f"{view.base}/m/{memory_id}", "linked")


def _link_error(view: InBrain, message: str, status: int) -> Response:
    # The memory itself was found (or the 404 says so): the problem is the other end.
    return respond(error_page(status, f"The link was not added: {message}"), status)


def _unlink(conn: Connection, scope: Scope, memory_id: str, link_id: str) -> None:
    # The form sits on one memory's page: a link that does not touch that memory is not its.
    found = links.get(conn, scope, link_id)
    if memory_id not in (found["from_id"], found["to_id"]):
        raise NotFound(f"no link {link_id!r} on this memory", code="link_not_found")
    links.delete(conn, scope, link_id)


@page
async def remove_link(request: Request) -> Response:
    view = await session.in_brain(request)
    await session.checked_form(request, view.visitor.csrf)
    memory_id = request.path_params["id"]
    await view.ctx.write(_unlink, memory_id, request.path_params["link"])
    return to(f"{view.base}/m/{memory_id}", "unlinked")


def _radius(raw: str | None) -> int:
    try:
        radius = int(raw or "2")
    except ValueError:
        raise InvalidInput("radius must be 1, 2 or 3") from None
    if radius not in (1, 2, 3):
        raise InvalidInput("radius must be 1, 2 or 3")
    return radius


@page
async def graph_page(request: Request) -> Response:
    view = await session.in_brain(request)
    memory_id = request.path_params["id"]
    radius = _radius(request.query_params.get("radius"))
    query = SubgraphQuery(
        memory_id=memory_id, radius=radius, limit=graph_tpl.MAX_NODES, include_archived=True
    )
    found = await view.ctx.read(graph.subgraph, query)
    body = graph_tpl.graph_page(view.base, memory_id, found, radius)
    return render(view, "memories", "Graph", body)


routes = [
    Route("/console/b/{brain}/m/{id}/graph", graph_page, methods=["GET"]),
    Route("/console/b/{brain}/m/{id}/links", add_link, methods=["POST"]),
    Route("/console/b/{brain}/m/{id}/links/{link}/delete", remove_link, methods=["POST"]),
]
