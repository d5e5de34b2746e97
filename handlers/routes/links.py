"""Links and the graph: /v1/links, /v1/memories/{id}/links|neighbors|suggestions, /v1/graph."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.app.linking import create_link
from core.graph import links, suggestions
from core.graph import traversal as graph
from core.graph.models import (
    GraphStats,
    GraphStatsQuery,
    Link,
    LinkDeleted,
    LinkDeleteIn,
    LinkIn,
    LinkListQuery,
    LinkPage,
    NeighborPage,
    NeighborQuery,
    Path,
    PathQuery,
    Subgraph,
    SubgraphQuery,
    SuggestionPage,
    SuggestionQuery,
)
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_body, read_optional_body, read_query

_RELATION = ("relation",)


async def create(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, LinkIn)
    link = await ctx.write(create_link, data)
    return json_response(link, 200 if link["deduplicated"] else 201)


async def get(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(links.get, request.path_params["id"]))


async def delete(request: Request) -> Response:
    ctx = await authorize(request)
    actor = await read_optional_body(request, LinkDeleteIn)
    result = await ctx.write(links.delete, request.path_params["id"], actor_id=actor.actor_id)
    return json_response(result)


async def memory_links(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, LinkListQuery, lists=_RELATION)
    page = await ctx.read(
        links.list_for,
        request.path_params["id"],
        direction=query.direction,
        relations=query.relation,
        limit=query.limit,
        cursor=query.cursor,
    )
    return json_response(page)


async def neighbors(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, NeighborQuery, lists=_RELATION)
    page = await ctx.read(
        graph.neighbors,
        request.path_params["id"],
        direction=query.direction,
        relations=query.relation,
        limit=query.limit,
        include_archived=query.include_archived,
    )
    return json_response(page)


async def suggest(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, SuggestionQuery)
    # Names the model only: the memory's stored vector is what gets compared.
    vector = await ctx.query_vector("", embed=False)
    page = await ctx.read(
        suggestions.suggest,
        request.path_params["id"],
        vector,
        limit=query.limit,
        min_score=query.min_score,
    )
    return json_response(page)


async def subgraph(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, SubgraphQuery, lists=_RELATION)
    vector = None
    if query.query is not None and query.memory_id is None:
        vector = await ctx.query_vector(query.query)
    result = await ctx.read(graph.subgraph, query, vector, ctx.services.settings.ranking)
    return json_response(result)


async def path(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, PathQuery, lists=_RELATION)
    return json_response(await ctx.read(graph.path, query))


async def stats(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, GraphStatsQuery)
    result = await ctx.read(
        graph.stats,
        user_id=query.user_id,
        max_links=ctx.services.settings.links.stats_max_links,
        top=query.top,
    )
    return json_response(result)


_LINKS = "links"
_GRAPH = "graph"
routes = [
    ApiRoute(
        "/v1/links",
        create,
        method="POST",
        doc=Doc(
            "Link two memories of one brain and user (the same link again returns it, 200)",
            _LINKS,
            body=LinkIn,
            response=Link,
            status=201,
            also={200: Link},  # the same link, already there
        ),
    ),
    ApiRoute("/v1/links/{id}", get, method="GET", doc=Doc("Get a link", _LINKS, response=Link)),
    ApiRoute(
        "/v1/links/{id}",
        delete,
        method="DELETE",
        doc=Doc(
            "Delete a link",
            _LINKS,
            body=LinkDeleteIn,
            response=LinkDeleted,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/memories/{id}/links",
        memory_links,
        method="GET",
        doc=Doc(
            "A memory's links both ways, newest first, with the memory at the other end",
            _LINKS,
            query=LinkListQuery,
            response=LinkPage,
        ),
    ),
    ApiRoute(
        "/v1/memories/{id}/neighbors",
        neighbors,
        method="GET",
        doc=Doc(
            "The memories one link away, strongest link first",
            _GRAPH,
            query=NeighborQuery,
            response=NeighborPage,
        ),
    ),
    ApiRoute(
        "/v1/memories/{id}/suggestions",
        suggest,
        method="GET",
        doc=Doc(
            "Memories worth linking to this one, scored, with the reasons",
            _LINKS,
            query=SuggestionQuery,
            response=SuggestionPage,
        ),
    ),
    ApiRoute(
        "/v1/graph/subgraph",
        subgraph,
        method="GET",
        doc=Doc(
            "The memories within a radius of one memory or of a query's best hits, and their links",
            _GRAPH,
            query=SubgraphQuery,
            response=Subgraph,
        ),
    ),
    ApiRoute(
        "/v1/graph/path",
        path,
        method="GET",
        doc=Doc(
            "A shortest path of links between two memories (bounded by max_hops)",
            _GRAPH,
            query=PathQuery,
            response=Path,
        ),
    ),
    ApiRoute(
        "/v1/graph/stats",
        stats,
        method="GET",
        doc=Doc(
            "Nodes, edges, connected components and hubs of the memory graph",
            _GRAPH,
            query=GraphStatsQuery,
            response=GraphStats,
        ),
    ),
]
