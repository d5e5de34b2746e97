"""mem0's platform API, as mem0ai's MemoryClient and AsyncMemoryClient call it (2.x): point
`host=` at Mnemo and give a Mnemo key. The shapes are in handlers/mem0_mapping.py and
handlers/mem0_models.py.

Paths end in a slash as mem0's clients send them; the same paths without it are served too (a
redirect would not be followed). `Authorization: Token <key>` is accepted as `Bearer`. Errors
carry mem0's `detail` beside Mnemo's `error` object. Calls with no meaning here (exports,
profiles, organisations and projects, webhooks, feedback) answer 501 `not_supported` saying
what Mnemo offers instead.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.app import jobs
from core.kernel.errors import InvalidInput, MnemoError, NotFound, field_errors
from core.kernel.ids import iso
from core.memory import bulk, entities
from core.memory import store as memories
from core.memory.models import Conversation, MemoryPatch, Message
from core.retrieval.models import SearchFilters
from core.retrieval.models import SearchIn as NativeSearchIn
from core.retrieval.search import list_filtered, record_access, search
from handlers import mem0_mapping as mapping
from handlers import mem0_models as models
from handlers.context import Context, authorize
from handlers.http import STATUS, ApiRoute, Doc, Endpoint, Undocumented, read_body, read_query
from handlers.ingest import conversation_in

log = logging.getLogger("mnemo.mem0")

_TAG = "mem0"
_DEFAULT_PAGE_SIZE = 100  # mem0's
_QUEUED = "Memory processing has been queued for background execution"


def _reply(status: int, code: str, message: str, details: Any = None) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="mnemo"'} if status == 401 else None
    body = mapping.error_body(status, code, message, details)
    return JSONResponse(body, status_code=status, headers=headers)


def mem0_errors(endpoint: Endpoint) -> Endpoint:
    """Every failure as mem0's clients read it ({"detail": ...}) with Mnemo's error object."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except MnemoError as exc:
            status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
            return _reply(status, exc.code, exc.message, exc.details)
        except ValidationError as exc:
            details = field_errors(exc.errors(include_url=False))
            first = details[0]
            where = f" at {first['field']}" if first["field"] else ""
            return _reply(422, "invalid_input", f"{first['message']}{where}", details)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return _reply(500, "internal_error", "something went wrong on our side; try again")

    return wrapped


def _json(data: Any, status: int = 200, **kw: Any) -> Response:
    return JSONResponse(data, status_code=status, **kw)


# --- ping, add ------------------------------------------------------------------------------


async def ping(request: Request) -> Response:
    ctx = await authorize(request)
    return _json(
        {
            "status": "ok",
            "message": "pong",
            # mem0's client requires both; a brain is both here. Its project calls then
            # reach /api/v1/orgs/..., which answers 501 not_supported.
            "org_id": ctx.scope.brain_id,
            "project_id": ctx.scope.brain_id,
            "user_email": None,
            "brain_id": ctx.scope.brain_id,
            "user_id": ctx.scope.user_id,
        }
    )


def _conversation(data: models.AddIn) -> Conversation:
    raw = data.messages
    if isinstance(raw, str):
        messages = [Message(role="user", content=raw)]
    elif isinstance(raw, Message):
        messages = [raw]
    else:
        messages = raw
    entities_ = mapping.entity_equalities(data.filters or {})
    metadata = dict(data.metadata or {})
    if data.app_id is not None:
        metadata["app_id"] = data.app_id
    fields: dict[str, Any] = {
        "messages": messages,
        "infer": data.infer,
        "memory_type": data.memory_type,
        "timestamp": data.timestamp,
        "metadata": metadata,
        "user_id": data.user_id or entities_.get("user_id"),
        "agent_id": data.agent_id or entities_.get("agent_id"),
        "run_id": data.run_id or entities_.get("run_id"),
        "custom_instructions": data.custom_instructions,
        "async_mode": data.async_mode,
    }
    if data.roles:
        fields["roles"] = data.roles
    return Conversation.model_validate(fields)


async def add(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, models.AddIn)
    outcome = await conversation_in(ctx, _conversation(data))
    if outcome.job is not None:
        queued = {"message": _QUEUED, "status": "PENDING", "event_id": outcome.job["id"]}
        return _json({"results": [queued]}, background=outcome.background)
    return _json({"results": [mapping.event(o) for o in outcome.results or []]})


# --- get_all, search --------------------------------------------------------------------------


def _expression(data: models.ListIn) -> dict[str, Any] | None:
    parts = []
    if data.filters:
        parts.append(mapping.filters(data.filters))
    if data.start_date:
        parts.append({"$created_at": {"gte": data.start_date}})
    if data.end_date:
        parts.append({"$created_at": {"lte": data.end_date}})
    if data.categories:
        parts.append({"$tag": {"in": data.categories}})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"AND": parts}


def _count(request: Request, name: str, given: int | None, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return given or default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number", details={"field": name}) from None
    if not 1 <= value <= models.MAX_PAGE:
        raise InvalidInput(f"{name} must be from 1 to {models.MAX_PAGE}", details={"field": name})
    return value


async def get_all(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, models.ListIn)
    page = _count(request, "page", data.page, 1)
    size = min(
        _count(request, "page_size", data.page_size, _DEFAULT_PAGE_SIZE), ctx.limits.page_size
    )
    filters = SearchFilters(metadata=_expression(data))
    found = await ctx.read(list_filtered, filters, limit=size, offset=(page - 1) * size)
    total = found["total"]

    def link(number: int) -> str:
        query = urlencode({"page": number, "page_size": size})
        return str(request.url.replace(query=query))

    return _json(
        {
            "count": total,
            "next": link(page + 1) if page * size < total else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": [mapping.record(m) for m in found["results"]],
        }
    )


async def search_(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, models.Mem0SearchIn)
    mode = "lexical" if data.keyword_search else "hybrid"
    native = NativeSearchIn(
        query=data.query,
        limit=data.top_k,
        filters=SearchFilters(metadata=_expression(data)),
        min_score=data.threshold or 0.0,
        mode=mode,
    )
    vector = await ctx.query_vector(data.query, embed=mode != "lexical")
    page = await ctx.read_each(search, native, vector, ctx.services.settings.ranking)
    hits = page["results"]
    if hits and not ctx.scope.read_only:
        await ctx.own_transactions(record_access, [h["memory"]["id"] for h in hits])
    results = [mapping.record(h["memory"], score=h["score"]) for h in hits]
    if data.fields:
        keep = {"id", *data.fields}
        results = [{k: v for k, v in r.items() if k in keep} for r in results]
    return _json({"results": results})


# --- one memory -------------------------------------------------------------------------------


async def get(request: Request) -> Response:
    ctx = await authorize(request)
    memory = await ctx.read(memories.get, request.path_params["id"])
    if memory["state"] == "deleted":  # gone, to a mem0 client (restorable through /v1)
        raise NotFound(f"no memory {memory['id']!r}", code="memory_not_found")
    return _json(mapping.record(memory))


def _patch(text: str | None, metadata: dict[str, Any] | None, when: Any = None) -> MemoryPatch:
    fields: dict[str, Any] = {}
    if text is not None:
        fields["content"] = text
    if metadata is not None:
        fields["metadata"] = metadata
    if when is not None:
        fields["occurred_at"] = when
    if not fields:
        raise InvalidInput("give text, metadata or timestamp to update", details={"field": "text"})
    return MemoryPatch.model_validate(fields)


async def update(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, models.UpdateIn)
    when = data.timestamp
    if isinstance(when, int | float):
        when = iso(int(when * 1000))
    patch = _patch(data.text, data.metadata, when)
    memory_id = request.path_params["id"]
    index = await ctx.patch_indexer(memory_id, patch)
    memory = await ctx.write(memories.update, memory_id, patch, ctx.limits, index)
    return _json(mapping.record(memory))


async def delete(request: Request) -> Response:
    ctx = await authorize(request)
    await ctx.write(memories.set_state, request.path_params["id"], "deleted", await ctx.indexer([]))
    return _json({"message": "Memory deleted successfully!"})


async def history(request: Request) -> Response:
    ctx = await authorize(request)
    rows = await ctx.read(memories.history_of, request.path_params["id"])
    return _json([{**row, "input": None} for row in rows])


# --- many memories, entities --------------------------------------------------------------


async def delete_all(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, models.DeleteAllQuery)
    if query.app_id is not None and not (query.user_id or query.agent_id or query.run_id):
        raise InvalidInput(
            "Mnemo keeps app_id as metadata: delete by user_id, agent_id or run_id",
            code="entity_required",
            details={"field": "app_id"},
        )
    count = await ctx.write(
        entities.delete_memories,
        await ctx.indexer([]),
        user_id=query.user_id,
        agent_id=query.agent_id,
        run_id=query.run_id,
    )
    return _json({"message": "Memories deleted successfully!", "deleted": count})


async def batch_update(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, models.BatchUpdateIn)
    patches = [(m.memory_id, _patch(m.text, m.metadata)) for m in data.memories]
    index = await _batch_indexer(ctx, patches)
    done = await ctx.write(bulk.update_many, patches, ctx.limits, index)
    return _json({"message": f"Successfully updated {len(done)} memories"})


async def _batch_indexer(ctx: Context, patches: list[tuple[str, MemoryPatch]]) -> Any:
    """The new texts' vectors, made before the write opens (as patch_indexer does for one)."""
    from core.memory.indexing import document_text

    texts = []
    for memory_id, patch in patches:
        if patch.content is None:
            continue
        current = await ctx.read(memories.get, memory_id)
        texts.append(
            document_text(current["title"], current["key"], current["tags"], patch.content)
        )
    return await ctx.text_indexer(texts)


async def batch_delete(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, models.BatchDeleteIn)
    ids = [m.memory_id for m in data.memories]
    done = await ctx.write(bulk.delete_many, ids, ctx.limits, await ctx.indexer([]))
    return _json({"message": f"Successfully deleted {len(done)} memories"})


async def users(request: Request) -> Response:
    ctx = await authorize(request)
    found = await ctx.read(entities.list_entities)
    results = [
        {"id": e["name"], "owner": None, "organization": None, "metadata": None, **e} for e in found
    ]
    return _json({"count": len(results), "results": results})


async def delete_entity(request: Request) -> Response:
    ctx = await authorize(request)
    await ctx.write(
        entities.delete_entity,
        request.path_params["kind"],
        request.path_params["name"],
        await ctx.indexer([]),
        actor_id=None,
    )
    return _json({"message": "Entity deleted successfully."})


async def delete_entity_v1(request: Request) -> Response:
    return await delete_entity(request)


async def event(request: Request) -> Response:
    ctx = await authorize(request)
    job = await ctx.read(jobs.get, request.path_params["id"])
    results = job["results"]
    return _json(
        {
            "id": job["id"],
            "status": job["status"].upper(),
            "results": None if results is None else [mapping.event(o) for o in results],
            "error": job["error"],
            "created_at": job["created_at"],
            "updated_at": job["updated_at"],
        }
    )


# --- calls with no meaning here ---------------------------------------------------------------

_INSTEAD = {
    "exports": "Mnemo exports a brain as JSON Lines: GET /v1/export (or `mnemo export`)",
    "summary": "Mnemo keeps a summary per user: GET /v1/users/{user_id}/summary",
    "profiles": "Mnemo keeps a summary per user: GET /v1/users/{user_id}/summary",
    "projects": "Mnemo has brains and keys, not organisations and projects: see /v1/brains",
    "webhooks": "Mnemo's webhooks are watches: POST /v1/watches",
    "feedback": "Mnemo takes no feedback on memories; update or delete them instead",
}


def _unsupported(kind: str) -> Endpoint:
    async def unsupported(request: Request) -> Response:
        await authorize(request)
        raise _NotSupported(
            f"{request.method} {request.url.path} is a mem0 platform call Mnemo does not "
            f"offer. {_INSTEAD[kind]}",
            details={"instead": _INSTEAD[kind]},
        )

    unsupported.__name__ = f"unsupported_{kind}"
    return unsupported


class _NotSupported(MnemoError):
    code = "not_supported"


STATUS[_NotSupported] = 501


# --- routes -----------------------------------------------------------------------------------


def _routes(path: str, endpoint: Endpoint, method: str, doc: Doc) -> list[Route]:
    """The documented trailing-slash path, and the same without the slash."""
    wrapped = mem0_errors(endpoint)
    routes_: list[Route] = [ApiRoute(path, wrapped, method=method, doc=doc)]
    # Not for /v1/memories/: without its slash that is the native collection.
    if path != "/v1/memories/":
        routes_.append(Undocumented(path.rstrip("/"), wrapped, method=method))
    return routes_


def _doc(summary: str, **kw: Any) -> Doc:
    # Errors in mem0's shape, with Mnemo's error object beside it (`mem0_errors`).
    return Doc(summary, _TAG, errors=models.Mem0ErrorOut, **kw)


_UNSUPPORTED = [
    ("/v1/exports/", "POST", "exports"),
    ("/v1/exports/get/", "POST", "exports"),
    ("/v1/summary/", "POST", "summary"),
    ("/v2/entities/user/{name}/profile/", "GET", "profiles"),
    ("/v2/profiles/{path:path}", "GET", "profiles"),
    ("/v2/profiles/{path:path}", "POST", "profiles"),
    ("/api/v1/orgs/{path:path}", "GET", "projects"),
    ("/api/v1/orgs/{path:path}", "PATCH", "projects"),
    ("/api/v1/webhooks/{path:path}", "GET", "webhooks"),
    ("/api/v1/webhooks/{path:path}", "POST", "webhooks"),
    ("/api/v1/webhooks/{path:path}", "PUT", "webhooks"),
    ("/api/v1/webhooks/{path:path}", "DELETE", "webhooks"),
    ("/v1/feedback/", "POST", "feedback"),
]


def _unsupported_routes() -> list[Route]:
    out: list[Route] = []
    for path, method, kind in _UNSUPPORTED:
        inner = _unsupported(kind)
        # A name of its own per path and method: the OpenAPI operation ids are made from it.
        slug = re.sub(r"[^a-z0-9]+", "_", path.split("{")[0].lower()).strip("_")
        inner.__name__ = f"unsupported_{slug}_{method.lower()}"
        endpoint = mem0_errors(inner)
        out.append(Undocumented(path, endpoint, method=method))
        if path.endswith("/") and "{path:path}" not in path:
            out.append(Undocumented(path.rstrip("/"), endpoint, method=method))
    return out


routes: list[Route] = [
    *_routes("/v1/ping/", ping, "GET", _doc("mem0: check the key", response=models.Ping)),
    *_routes(
        "/v3/memories/add/",
        add,
        "POST",
        _doc(
            "mem0: add a conversation (messages) as memories; each result says ADD, UPDATE, "
            "DELETE or NONE",
            body=models.AddIn,
            response=models.AddPage,
        ),
    ),
    *_routes(
        "/v3/memories/",
        get_all,
        "POST",
        _doc(
            "mem0: list memories matching v2 filters, newest first (page, page_size)",
            body=models.ListIn,
            response=models.Mem0Page,
            body_required=False,
        ),
    ),
    *_routes(
        "/v3/memories/search/",
        search_,
        "POST",
        _doc(
            "mem0: search memories (query, v2 filters, top_k, threshold)",
            body=models.Mem0SearchIn,
            response=models.Mem0SearchPage,
        ),
    ),
    *_routes("/v1/memories/{id}/", get, "GET", _doc("mem0: get a memory", response=models.Record)),
    *_routes(
        "/v1/memories/{id}/",
        update,
        "PUT",
        _doc(
            "mem0: update a memory's text, metadata (merged) or timestamp",
            body=models.UpdateIn,
            response=models.Record,
        ),
    ),
    *_routes(
        "/v1/memories/{id}/",
        delete,
        "DELETE",
        _doc("mem0: delete a memory (soft: restorable)", response=models.Message_),
    ),
    *_routes(
        "/v1/memories/",
        delete_all,
        "DELETE",
        _doc(
            "mem0: delete every memory of a user, agent or run (at least one is required)",
            query=models.DeleteAllQuery,
            response=models.DeletedAll,
        ),
    ),
    *_routes(
        "/v1/memories/{id}/history/",
        history,
        "GET",
        _doc("mem0: a memory's history, oldest first", response=models.HistoryList),
    ),
    *_routes(
        "/v1/batch/",
        batch_update,
        "PUT",
        _doc(
            "mem0: update many memories in one transaction",
            body=models.BatchUpdateIn,
            response=models.Message_,
        ),
    ),
    *_routes(
        "/v1/batch/",
        batch_delete,
        "DELETE",
        _doc(
            "mem0: delete many memories in one transaction",
            body=models.BatchDeleteIn,
            response=models.Message_,
        ),
    ),
    *_routes(
        "/v1/entities/",
        users,
        "GET",
        _doc("mem0: the users, agents and runs that have memories", response=models.EntityPage),
    ),
    *_routes(
        "/v2/entities/{kind}/{name}/",
        delete_entity,
        "DELETE",
        _doc(
            "mem0: delete a user, agent or run: all its memories (soft)",
            response=models.Message_,
        ),
    ),
    *_routes(
        "/v1/entities/{kind}/{name}/",
        delete_entity_v1,
        "DELETE",
        _doc(
            "mem0 (v1 path): delete a user, agent or run: all its memories (soft)",
            response=models.Message_,
        ),
    ),
    *_routes(
        "/v1/event/{id}/",
        event,
        "GET",
        _doc("mem0: the status and results of an async_mode add", response=models.Event),
    ),
    *_unsupported_routes(),
]
