"""Retrieval: POST /v1/search, POST /v1/context, POST /v1/reindex."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from core.retrieval import reindex as reindexing
from core.retrieval.context import pack
from core.retrieval.models import ContextIn, ContextPack, ReindexResult, SearchIn, SearchPage
from core.retrieval.search import record_access, search
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_body

_REINDEX_BATCH = 256
_REINDEX_SECONDS = 20.0  # stay well inside the API function's 30 s timeout


async def search_memories(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, SearchIn)
    vector = await ctx.query_vector(data.query, embed=data.mode != "lexical")
    page = await ctx.read_each(search, data, vector, ctx.services.settings.ranking)
    await ctx.own_transactions(record_access, page.pop("touched"))
    return json_response(page)


async def context_pack(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, ContextIn)
    vector = await ctx.query_vector(data.query)
    result = await ctx.read_each(pack, data, vector, ctx.services.settings.ranking)
    await ctx.own_transactions(record_access, result.pop("touched"))
    return json_response(result)


async def reindex(request: Request) -> Response:
    ctx = await authorize(request)
    ctx.scope.require_write()
    embedder = ctx.services.embedder()
    deadline = time.monotonic() + _REINDEX_SECONDS
    done = 0
    while time.monotonic() < deadline:
        batch = await ctx.read(reindexing.pending, embedder.name, _REINDEX_BATCH)
        if not batch:
            break
        texts = [t for _, t in batch]
        vectors = await ctx.services.call(lambda texts=texts: embedder.embed(texts))  # type: ignore[misc]
        embedded = [(memory_id, v) for (memory_id, _), v in zip(batch, vectors, strict=True)]
        done += await ctx.write(reindexing.store, embedder.name, embedded)
    left = await ctx.read(reindexing.remaining, embedder.name)
    return json_response({"model": embedder.name, "reindexed": done, "remaining": left})


routes = [
    ApiRoute(
        "/v1/search",
        search_memories,
        method="POST",
        doc=Doc(
            "Hybrid search with calibrated scores", "search", body=SearchIn, response=SearchPage
        ),
    ),
    ApiRoute(
        "/v1/context",
        context_pack,
        method="POST",
        doc=Doc(
            "A token-budgeted context pack with citations",
            "search",
            body=ContextIn,
            response=ContextPack,
        ),
    ),
    ApiRoute(
        "/v1/reindex",
        reindex,
        method="POST",
        doc=Doc(
            "Embed memories that have no vector of the current model (call until remaining is 0)",
            "search",
            response=ReindexResult,
            body_required=False,
        ),
    ),
]
