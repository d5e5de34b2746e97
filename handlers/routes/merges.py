"""Memory hygiene by hand: /v1/memories/merge, /v1/aliases, /v1/consolidate."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.curation import aliases, consolidate, merge
from core.curation.models import (
    AliasDeleted,
    AliasesOut,
    AliasIn,
    ConsolidateIn,
    ConsolidateOut,
    MergeIn,
    MergeOut,
)
from core.memory.models import StateChangeIn
from handlers.context import authorize
from handlers.http import ApiRoute, Doc, json_response, read_body, read_optional_body
from handlers.routes.conflicts import vector_space


async def merge_memories(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, MergeIn)
    text = await ctx.read(
        merge.planned_text, data.ids, content=data.content, title=data.title, into_id=data.into_id
    )
    index = await ctx.text_indexer([text] if text is not None else [])
    result = await ctx.write(
        merge.merge,
        data.ids,
        limits=ctx.limits,
        index=index,
        content=data.content,
        title=data.title,
        into_id=data.into_id,
        actor_id=data.actor_id,
        role=data.role,
    )
    return json_response(result, 201)


async def add_aliases(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_body(request, AliasIn)
    result = await ctx.write(
        aliases.add,
        data.canonical_id,
        data.alias_ids,
        archive=data.archive,
        note=data.note,
        confidence=data.confidence,
        index=await ctx.indexer([]),
        actor_id=data.actor_id,
        role=data.role,
    )
    return json_response(result, 201)


async def memory_aliases(request: Request) -> Response:
    ctx = await authorize(request)
    return json_response(await ctx.read(aliases.list_for, request.path_params["id"]))


async def delete_alias(request: Request) -> Response:
    ctx = await authorize(request)
    actor = await read_optional_body(request, StateChangeIn)
    result = await ctx.write(aliases.delete, request.path_params["id"], actor_id=actor.actor_id)
    return json_response(result)


async def consolidate_memories(request: Request) -> Response:
    ctx = await authorize(request)
    data = await read_optional_body(request, ConsolidateIn)
    settings = ctx.services.settings.conflicts
    run = ctx.read if data.dry_run else ctx.write
    result = await run(
        consolidate.consolidate,
        user_id=data.user_id,
        threshold=data.threshold,
        dry_run=data.dry_run,
        space=vector_space(ctx),
        max_scan=settings.consolidate_max_scan,
        cursor=data.cursor,
        limits=ctx.limits,
        index=await ctx.indexer([]),
        actor_id=data.actor_id,
    )
    return json_response(result)


_TAG = "hygiene"
routes = [
    ApiRoute(
        "/v1/memories/merge",
        merge_memories,
        method="POST",
        doc=Doc(
            "Merge 2 to 20 memories into one: links move to it, the sources are archived",
            _TAG,
            body=MergeIn,
            response=MergeOut,
            status=201,
        ),
    ),
    ApiRoute(
        "/v1/aliases",
        add_aliases,
        method="POST",
        doc=Doc(
            "Map alias memories to a canonical one, optionally archiving the aliases",
            _TAG,
            body=AliasIn,
            response=AliasesOut,
            status=201,
        ),
    ),
    ApiRoute(
        "/v1/aliases/{id}",
        delete_alias,
        method="DELETE",
        doc=Doc(
            "Remove an alias mapping",
            _TAG,
            body=StateChangeIn,
            response=AliasDeleted,
            body_required=False,
        ),
    ),
    ApiRoute(
        "/v1/memories/{id}/aliases",
        memory_aliases,
        method="GET",
        doc=Doc(
            "The entity a memory belongs to: canonical id and aliases", _TAG, response=AliasesOut
        ),
    ),
    ApiRoute(
        "/v1/consolidate",
        consolidate_memories,
        method="POST",
        doc=Doc(
            "Find near-duplicate groups (dry run) or merge each into its best member",
            _TAG,
            body=ConsolidateIn,
            response=ConsolidateOut,
            body_required=False,
        ),
    ),
]
