"""Memories and facts: /v1/memories..., /v1/facts/{key}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.memory import store as memories
from core.memory.models import (
    BatchResult,
    Conversation,
    Deleted,
    FactQuery,
    HeldOrJob,
    HistoryPage,
    Memory,
    MemoryBatchIn,
    MemoryIn,
    MemoryListQuery,
    MemoryOrConversation,
    MemoryOrIngested,
    MemoryPage,
    MemoryPatch,
    PurgeIn,
    SaveRecord,
    StateChangeIn,
    valid_memories,
)
from handlers.context import Context, authorize
from handlers.http import (
    ApiRoute,
    Doc,
    json_response,
    read_body,
    read_object,
    read_optional_body,
    read_query,
)
from handlers.ingest import conversation_in


async def create(request: Request) -> Response:
    ctx = await authorize(request)
    body = await read_object(request)
    if "messages" in body:
        return await _conversation(ctx, Conversation.model_validate(body))
    data = MemoryIn.model_validate(body)
    index = await ctx.indexer([data])
    memory = await ctx.write(memories.create, data, ctx.limits, index)
    return json_response(memory, _status(memory))


def _status(memory: SaveRecord) -> int:
    """201 for a new memory; 200 for one that existed (a copy, a restatement, an echo); 202
    for a write the gate quarantined for review."""
    if memory["state"] == "quarantined":
        return 202
    return 200 if memory["deduplicated"] else 201


async def _conversation(ctx: Context, conversation: Conversation) -> Response:
    outcome = await conversation_in(ctx, conversation)
    if outcome.job is not None:
        return JSONResponse({"job": outcome.job}, status_code=202, background=outcome.background)
    return json_response({"results": outcome.results}, 201)


async def create_batch(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, MemoryBatchIn)
    index = await ctx.indexer(valid_memories(data.memories))
    results = await ctx.write(memories.create_batch, data.memories, ctx.limits, index)
    return json_response({"results": results}, 201)


async def list_(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, MemoryListQuery, lists=("tag",))
    page = await ctx.read(
        memories.list_memories,
        query,
        limit=query.limit,
        cursor=query.cursor,
        include_total=query.include_total,
    )
    return json_response(page)


async def get(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(memories.get, request.path_params["id"]))


async def patch(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, MemoryPatch)
    index = await ctx.patch_indexer(request.path_params["id"], data)
    memory = await ctx.write(memories.update, request.path_params["id"], data, ctx.limits, index)
    return json_response(memory)


async def _state_change(request: Request, target: str) -> Response:
    ctx = await authorize(request)
    actor = await read_optional_body(request, StateChangeIn)
    memory = await ctx.write(
        memories.set_state,
        request.path_params["id"],
        target,
        await ctx.indexer([]),
        actor_id=actor.actor_id,
        role=actor.role,
    )
    return json_response(memory)


async def archive(request: Request) -> Response:
    return await _state_change(request, "archived")


async def restore(request: Request) -> Response:
    return await _state_change(request, "active")


async def delete(request: Request) -> Response:
    return await _state_change(request, "deleted")


async def purge(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, PurgeIn)
    result = await ctx.write(
        memories.purge,
        request.path_params["id"],
        await ctx.indexer([]),
        confirm=data.confirm,
        actor_id=data.actor_id,
    )
    return json_response(result)


async def history(request: Request) -> Response:
    ctx = await authorize(request)
    rows = await ctx.read(memories.history_of, request.path_params["id"])
    return json_response({"results": rows})


async def fact(request: Request) -> Response:
    ctx = await authorize(request)
    query = read_query(request, FactQuery)
    return json_response(
        await ctx.read(
            memories.get_fact,
            request.path_params["key"],
            query.user_id,
            as_of=query.as_of,
            known_at=query.known_at,
        )
    )


_TAG = "memories"
routes = [
    ApiRoute(
        "/v1/memories",
        create,
        method="POST",
        doc=Doc(
            "Save a memory: 201 added; 200 when the write gate found it restates (reinforced), "
            "echoes or copies an existing memory; 202 when it held the write in quarantine; "
            "or send `messages` (a conversation) to have memories made from it",
            _TAG,
            body=MemoryOrConversation,
            response=MemoryOrIngested,
            status=201,
            also={200: Memory, 202: HeldOrJob},  # 200: the memory that was already there
        ),
    ),
    ApiRoute(
        "/v1/memories/batch",
        create_batch,
        method="POST",
        doc=Doc(
            "Save up to 500 memories in one transaction: all or nothing",
            _TAG,
            body=MemoryBatchIn,
            response=BatchResult,
            status=201,
        ),
    ),
    ApiRoute(
        "/v1/memories",
        list_,
        method="GET",
        doc=Doc("List memories, newest first", _TAG, query=MemoryListQuery, response=MemoryPage),
    ),
    ApiRoute(
        "/v1/memories/{id}", get, method="GET", doc=Doc("Get a memory", _TAG, response=Memory)
    ),
    ApiRoute(
        "/v1/memories/{id}",
        patch,
        method="PATCH",
        doc=Doc("Update a memory", _TAG, body=MemoryPatch, response=Memory),
    ),
    ApiRoute(
        "/v1/memories/{id}",
        delete,
        method="DELETE",
        doc=Doc(
            "Delete a memory (soft: restorable)",
            _TAG,
            body=StateChangeIn,
            response=Memory,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/memories/{id}/archive",
        archive,
        method="POST",
        doc=Doc("Archive a memory", _TAG, body=StateChangeIn, response=Memory, body_required=False),
    ),
    ApiRoute(
        "/v1/memories/{id}/restore",
        restore,
        method="POST",
        doc=Doc(
            "Restore an archived or deleted memory",
            _TAG,
            body=StateChangeIn,
            response=Memory,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/memories/{id}/purge",
        purge,
        method="POST",
        doc=Doc("Erase a memory and its history for good", _TAG, body=PurgeIn, response=Deleted),
    ),
    ApiRoute(
        "/v1/memories/{id}/history",
        history,
        method="GET",
        doc=Doc("A memory's history, oldest first", _TAG, response=HistoryPage),
    ),
    ApiRoute(
        "/v1/facts/{key}",
        fact,
        method="GET",
        doc=Doc("The current fact for a key", _TAG, query=FactQuery, response=Memory),
    ),
]
