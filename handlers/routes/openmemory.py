"""OpenMemory's API, field for field (core/memory/openmemory.py has the mapping): POST /memory/add,
POST /memory/query, GET /users/{user_id}/memories, GET /users/{user_id}/summary and
POST /users/{user_id}/summary/regenerate.

Same bearer keys as /v1. Errors take OpenMemory's shape, {"err": "..."}: its own words where
it has them ("user_id required", "content", "user not found"), else Mnemo's error code, with
"msg" saying what to fix. These routes stay out of /openapi.json, whose error schema is
Mnemo's; OpenMemory's own documentation describes them.
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
from core.memory.models import MemoryIn
from core.retrieval.models import SearchFilters, SearchIn
from core.retrieval.search import record_access, search
from handlers.context import authorize
from handlers.http import (
    RETRY_AFTER_SECONDS,
    STATUS,
    UNAVAILABLE_MESSAGE,
    Endpoint,
    parse_json,
)

# The query is embedded exactly as POST /v1/search does it.

log = logging.getLogger("mnemo.openmemory")

_DEFAULT_K = 8  # OpenMemory's default
_MAX_K = 100
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
    return JSONResponse(openmemory.added(memory))


def _k(value: Any) -> int:
    if value is None:
        return _DEFAULT_K
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OMError(400, "k", "k must be a number")
    return max(1, min(_MAX_K, int(value)))


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
    page = await ctx.read(search, request_, vector, ctx.services.settings.ranking)
    hits = page["results"]
    if sector is not None:
        hits = [
            h
            for h in hits
            if openmemory.sector_of(h["memory"]["type"], h["memory"]["tags"]) == sector
        ]
    hits = hits[:k]
    await ctx.write(record_access, [h["memory"]["id"] for h in hits])
    return JSONResponse({"query": text, "matches": [openmemory.match(h) for h in hits]})


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
    rate = openmemory.decay_lambda(ctx.services.settings.ranking.half_life_days)
    items = await ctx.read(
        openmemory.user_memories, user_id, limit=limit, offset=offset, decay_lambda=rate
    )
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


def _route(path: str, endpoint: Endpoint, method: str) -> Route:
    return Route(path, openmemory_errors(endpoint), methods=[method])


routes = [
    _route("/memory/add", add, "POST"),
    _route("/memory/query", query, "POST"),
    _route("/users/{user_id}/memories", user_memories, "GET"),
    _route("/users/{user_id}/summary", user_summary, "GET"),
    _route("/users/{user_id}/summary/regenerate", regenerate, "POST"),
    # An empty path segment matches no {user_id}: answered as OpenMemory does, not with a 404.
    _route("/users//memories", user_memories, "GET"),
    _route("/users//summary", user_summary, "GET"),
    _route("/users//summary/regenerate", regenerate, "POST"),
]
