"""OpenMemory's API, field for field (handlers/openmemory_mapping.py has the mapping): POST
/memory/add, POST /memory/query, GET /memory/all, GET|PATCH|DELETE /memory/{id}, POST
/memory/reinforce, GET /sectors, GET /users/{user_id}/memories, GET /users/{user_id}/summary
and POST /users/{user_id}/summary/regenerate: everything openmemory-js 0.3.0 calls but its IDE,
compression and LangGraph routes, which answer 501 {"err": "not_supported"} saying so (those
stay out of /openapi.json: they are not operations).

Same bearer keys as /v1. Errors take OpenMemory's shape, {"err": "..."}: its own words where
it has them ("user_id required", "content", "user not found"), else Mnemo's error code, with
"msg" saying what to fix. /openapi.json describes them with that error shape (OMErrorOut).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.curation.summaries import service as summaries
from core.kernel.db.engine import unavailable as db_unavailable
from core.kernel.errors import MnemoError, NotFound
from core.memory import openmemory
from core.memory import store as memories
from core.memory.models import MemoryIn, MemoryPatch
from core.retrieval.models import SearchFilters, SearchIn
from core.retrieval.search import record_access, search
from handlers import openmemory_mapping as mapping
from handlers.context import authorize
from handlers.http import (
    RETRY_AFTER_SECONDS,
    STATUS,
    UNAVAILABLE_MESSAGE,
    ApiRoute,
    Doc,
    Endpoint,
    Schema,
    Undocumented,
    parse_json,
)
from handlers.openmemory_models import (
    MAX_K,
    OMAdded,
    OMAddIn,
    OMAll,
    OMAllQuery,
    OMErrorOut,
    OMItems,
    OMMemory,
    OMOk,
    OMPageQuery,
    OMQueryIn,
    OMQueryOut,
    OMRegenerated,
    OMReinforceIn,
    OMSectors,
    OMSummary,
    OMUpdated,
    OMUpdateIn,
)

# The query is embedded exactly as POST /v1/search does it.

log = logging.getLogger("mnemo.openmemory")

_DEFAULT_K = 8  # OpenMemory's default
# Enough to find k matches of one sector among the best hits of every sector.
_SECTOR_POOL = 100
_DEFAULT_LIMIT = 100
# The offset reaches SQL, whose integers are 64-bit: past that the driver fails, not the query.
_MAX_COUNT = 2**63 - 1


class OMError(Exception):
    def __init__(self, status: int, err: str, msg: str | None = None) -> None:
        super().__init__(err)
        self.status, self.err, self.msg = status, err, msg


def _reply(status: int, err: str, msg: str | None = None, **headers: str) -> Response:
    body: dict[str, Any] = {"err": err}
    if msg:
        body["msg"] = msg
    return JSONResponse(body, status_code=status, headers=headers or None)


def openmemory_errors(endpoint: Endpoint) -> Endpoint:
    """Every failure of an OpenMemory route as {"err": ...}."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except OMError as exc:
            return _reply(exc.status, exc.err, exc.msg)
        except MnemoError as exc:
            status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
            if status == 422:  # OpenMemory answers a bad field with 400
                status = 400
            if status == 401:
                return _reply(
                    401, exc.code, exc.message, **{"WWW-Authenticate": 'Bearer realm="mnemo"'}
                )
            return _reply(status, exc.code, exc.message)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "invalid_input"
            return _reply(400, field, first.get("msg"))
        except Exception as exc:
            if db_unavailable(exc):
                return _reply(
                    503,
                    "database_unavailable",
                    UNAVAILABLE_MESSAGE,
                    **{"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return _reply(500, "internal")

    return wrapped


async def _body(request: Request) -> dict[str, Any]:
    """The JSON body; an empty or non-object body reads as {} (as Express's JSON parser
    leaves it), so a missing field gets OpenMemory's own error."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = parse_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OMError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _user(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OMError(400, "user_id required")
    return value.strip()


def _path_user(request: Request) -> str:
    return _user(request.path_params.get("user_id", ""))


async def add(request: Request) -> Response:
    ctx = await authorize(request)
    body = await _body(request)
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise OMError(400, "content")
    user_id = None if body.get("user_id") is None else _user(body["user_id"])
    tags = [] if body.get("tags") is None else body["tags"]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise OMError(400, "tags", "tags must be a list of strings")
    metadata = {} if body.get("metadata") is None else body["metadata"]
    if not isinstance(metadata, dict):
        raise OMError(400, "metadata", "metadata must be an object")
    data = MemoryIn(content=content, tags=tags, metadata=metadata, user_id=user_id)
    index = await ctx.indexer([data])
    memory = await ctx.write(memories.create, data, ctx.limits, index)
    return JSONResponse(mapping.added(memory))


def _k(value: Any) -> int:
    if value is None:
        return _DEFAULT_K
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OMError(400, "k", "k must be a number")
    return max(1, min(MAX_K, int(value)))


def _min_score(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OMError(400, "min_score", "min_score must be a number")
    return max(0.0, min(1.0, float(value)))


async def query(request: Request) -> Response:
    ctx = await authorize(request)
    body = await _body(request)
    text = body.get("query")
    if not isinstance(text, str):
        raise OMError(400, "query")
    k = _k(body.get("k"))
    filters = {} if body.get("filters") is None else body["filters"]
    if not isinstance(filters, dict):
        raise OMError(400, "filters", "filters must be an object")
    sector = filters.get("sector")
    user_id = None if filters.get("user_id") is None else _user(filters["user_id"])
    if sector is not None and sector not in openmemory.SECTORS:
        return JSONResponse({"query": text, "matches": []})
    search_filters = SearchFilters()
    limit = k
    if sector in openmemory.TAG_SECTORS:
        search_filters = SearchFilters(tag=openmemory.sector_tags(sector))
    elif sector is not None:
        limit = max(k, _SECTOR_POOL)
    request_ = SearchIn(
        query=text,
        limit=limit,
        filters=search_filters,
        user_id=user_id,
        min_score=_min_score(filters.get("min_score")),
    )
    vector = await ctx.query_vector(text, embed=bool(text.strip()))
    page = await ctx.read_each(search, request_, vector, ctx.services.settings.ranking)
    hits = page["results"]
    if sector is not None:
        hits = [
            h
            for h in hits
            if openmemory.sector_of(h["memory"]["type"], h["memory"]["tags"]) == sector
        ]
    hits = hits[:k]
    await ctx.own_transactions(record_access, [h["memory"]["id"] for h in hits])
    return JSONResponse({"query": text, "matches": [mapping.match(h) for h in hits]})


def _count(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OMError(400, "invalid_pagination", f"{name} must be a whole number") from None
    if value < 0:
        raise OMError(400, "invalid_pagination", f"{name} must not be negative")
    if value > _MAX_COUNT:
        raise OMError(400, "invalid_pagination", f"{name} must be at most {_MAX_COUNT}")
    return value


async def user_memories(request: Request) -> Response:
    ctx = await authorize(request)
    user_id = _path_user(request)
    limit = min(_count(request, "l", _DEFAULT_LIMIT), ctx.limits.page_size)
    offset = _count(request, "u", 0)
    found = await ctx.read(openmemory.user_memories, user_id, limit=limit, offset=offset)
    rate = _rate(ctx)
    items = [mapping.item(m, rate) for m in found]
    return JSONResponse({"user_id": user_id, "items": items})


async def user_summary(request: Request) -> Response:
    ctx = await authorize(request)
    user_id = _path_user(request)
    settings = ctx.services.settings
    try:
        found = await ctx.services.call(
            lambda: summaries.get_user_summary(ctx.engine, settings, ctx.scope, user_id)
        )
    except NotFound:
        raise OMError(404, "user not found") from None
    return JSONResponse(
        {
            "user_id": found.user_id,
            "summary": found.summary or "",
            "reflection_count": found.reflection_count,
            "updated_at": found.updated_at,
        }
    )


async def regenerate(request: Request) -> Response:
    ctx = await authorize(request)
    user_id = _path_user(request)
    ctx.scope.require_write()
    settings = ctx.services.settings
    try:
        made = await ctx.services.call(
            lambda: summaries.regenerate_user_summary(ctx.engine, settings, ctx.scope, user_id)
        )
    except NotFound:
        raise OMError(404, "user not found") from None
    return JSONResponse(
        {
            "ok": True,
            "user_id": made.user_id,
            "summary": made.summary or "",
            "reflection_count": made.reflection_count,
        }
    )


def _rate(ctx: Any) -> float:
    return mapping.decay_lambda(ctx.services.settings.ranking.half_life_days)


def _sector(request: Request) -> str | None:
    sector = request.query_params.get("sector")
    if sector is None or sector == "":
        return None
    if sector not in openmemory.SECTORS:
        raise OMError(400, "sector", f"sector must be one of {', '.join(openmemory.SECTORS)}")
    return sector


async def all_memories(request: Request) -> Response:
    ctx = await authorize(request)
    limit = min(_count(request, "l", _DEFAULT_LIMIT), ctx.limits.page_size)
    offset = _count(request, "u", 0)
    found = await ctx.read(
        openmemory.all_memories, sector=_sector(request), limit=limit, offset=offset
    )
    rate = _rate(ctx)
    return JSONResponse({"items": [mapping.item(m, rate) for m in found]})


async def sectors(request: Request) -> Response:
    ctx = await authorize(request)
    counts = await ctx.read(openmemory.sector_counts)
    stats = [mapping.stat(c) for c in counts]
    return JSONResponse({"sectors": mapping.sectors(_rate(ctx)), "stats": stats})


def _memory_id(request: Request) -> str:
    return str(request.path_params["id"])


async def get_memory(request: Request) -> Response:
    ctx = await authorize(request)
    try:
        memory = await ctx.read(memories.get, _memory_id(request))
    except NotFound:
        raise OMError(404, "nf", "no such memory") from None
    return JSONResponse(mapping.memory(memory, _rate(ctx)))


async def reinforce(request: Request) -> Response:
    ctx = await authorize(request)
    body = await _body(request)
    memory_id = body.get("id")
    if not isinstance(memory_id, str) or not memory_id.strip():
        raise OMError(400, "id", "id must be the memory's id")
    boost = body.get("boost", 0.2)  # the SDK's default
    if isinstance(boost, bool) or not isinstance(boost, int | float) or not 0 < boost <= 1:
        raise OMError(400, "boost", "boost must be a number in (0, 1]")
    try:
        await ctx.write(
            openmemory.reinforce, memory_id, float(boost), ctx.limits, await ctx.indexer([])
        )
    except NotFound:
        raise OMError(404, "nf", "no such memory") from None
    return JSONResponse({"ok": True})


async def update(request: Request) -> Response:
    ctx = await authorize(request)
    body = await _body(request)
    fields: dict[str, Any] = {}
    if body.get("content") is not None:
        if not isinstance(body["content"], str) or not body["content"].strip():
            raise OMError(400, "content", "content must be non-empty text")
        fields["content"] = body["content"]
    if body.get("tags") is not None:
        tags = body["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise OMError(400, "tags", "tags must be a list of strings")
        fields["tags"] = tags
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], dict):
            raise OMError(400, "metadata", "metadata must be an object")
        # OpenMemory's update sets the metadata it is given, as a whole.
        fields["metadata"] = body["metadata"]
        fields["metadata_mode"] = "replace"
    if not fields:
        raise OMError(400, "no_changes", "give content, tags or metadata to change")
    patch = MemoryPatch.model_validate(fields)
    memory_id = _memory_id(request)
    try:
        index = await ctx.patch_indexer(memory_id, patch)
        await ctx.write(memories.update, memory_id, patch, ctx.limits, index)
    except NotFound:
        raise OMError(404, "nf", "no such memory") from None
    return JSONResponse({"id": memory_id, "updated": True})


async def delete(request: Request) -> Response:
    ctx = await authorize(request)
    try:
        await ctx.write(memories.set_state, _memory_id(request), "deleted", await ctx.indexer([]))
    except NotFound:
        raise OMError(404, "nf", "no such memory") from None
    return JSONResponse({"ok": True})


_ELSEWHERE = {
    "ide": "OpenMemory's IDE routes have no counterpart in Mnemo: use POST /memory/add and "
    "POST /memory/query",
    "compression": "Mnemo does not compress text",
    "lgm": "OpenMemory's LangGraph routes have no counterpart in Mnemo: use POST /memory/add "
    "and POST /memory/query (or Mnemo's MCP server at /mcp)",
}


def _unsupported(kind: str) -> Endpoint:
    async def unsupported(request: Request) -> Response:
        await authorize(request)
        raise OMError(501, "not_supported", _ELSEWHERE[kind])

    return unsupported


# -- routes (what the OpenAPI document says of them: handlers/openmemory_models.py) -----------


def _route(
    path: str,
    endpoint: Endpoint,
    method: str,
    summary: str,
    response: Schema,
    **doc: Any,
) -> ApiRoute:
    return ApiRoute(
        path,
        openmemory_errors(endpoint),
        method=method,
        doc=Doc(summary, _TAG, response=response, errors=OMErrorOut, **doc),
    )


def _alias(path: str, endpoint: Endpoint, method: str) -> Route:
    return Undocumented(path, openmemory_errors(endpoint), method=method)


_TAG = "openmemory"
routes = [
    _route("/memory/add", add, "POST", "OpenMemory: add a memory", OMAdded, body=OMAddIn),
    _route(
        "/memory/query", query, "POST", "OpenMemory: search memories", OMQueryOut, body=OMQueryIn
    ),
    _route(
        "/memory/all",
        all_memories,
        "GET",
        "OpenMemory: every memory, newest first",
        OMAll,
        query=OMAllQuery,
    ),
    _route(
        "/memory/reinforce",
        reinforce,
        "POST",
        "OpenMemory: raise a memory's salience",
        OMOk,
        body=OMReinforceIn,
    ),
    _route("/memory/{id}", get_memory, "GET", "OpenMemory: one memory", OMMemory),
    _route(
        "/memory/{id}", update, "PATCH", "OpenMemory: change a memory", OMUpdated, body=OMUpdateIn
    ),
    _route("/memory/{id}", delete, "DELETE", "OpenMemory: delete a memory", OMOk),
    _route("/sectors", sectors, "GET", "OpenMemory: the sectors and their counts", OMSectors),
    _route(
        "/users/{user_id}/memories",
        user_memories,
        "GET",
        "OpenMemory: a user's memories, newest first",
        OMItems,
        query=OMPageQuery,
    ),
    _route(
        "/users/{user_id}/summary", user_summary, "GET", "OpenMemory: a user's summary", OMSummary
    ),
    _route(
        "/users/{user_id}/summary/regenerate",
        regenerate,
        "POST",
        "OpenMemory: make a user's summary again",
        OMRegenerated,
    ),
    # An empty path segment matches no {user_id}: answered as OpenMemory does, not with a 404.
    # Not in the document: the same operations, reached with a user_id that is missing.
    _alias("/users//memories", user_memories, "GET"),
    _alias("/users//summary", user_summary, "GET"),
    _alias("/users//summary/regenerate", regenerate, "POST"),
]
for _path, _kind in (
    ("/api/ide/{rest:path}", "ide"),
    ("/api/compression/{rest:path}", "compression"),
    ("/lgm/{rest:path}", "lgm"),
):
    routes.append(_alias(_path, _unsupported(_kind), "GET"))
    routes.append(_alias(_path, _unsupported(_kind), "POST"))
