"""Mnemo's MCP tools: one function per core operation, declared as a tool where it is written
(`@box.tool`: name, title, output model and hints; its docstring is the description and its
annotated body model the input). Each calls the same core function with the same models as its
REST twin (named in the comment above it). A feature adds its tools by declaring functions here;
their order is the order of tools/list.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine

from core.app.erasure import erase_user
from core.app.linking import create_link
from core.curation import conflicts, health, merge
from core.curation.models import (
    ConflictListQuery,
    ConflictOut,
    ConflictPage,
    DetectIn,
    DetectOut,
    EraseIn,
    ErasureReceipt,
    HealthQuery,
    HealthReport,
    MergeIn,
    MergeOut,
    ResolveIn,
)
from core.curation.summaries import service as summaries
from core.curation.summaries.models import Digest, DigestQuery, UserSummaryOut, UserSummaryQuery
from core.embeddings import get_embedder
from core.events import changelog
from core.graph import links
from core.graph import traversal as graph
from core.graph.models import (
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
)
from core.kernel.config import Settings
from core.kernel.errors import InvalidInput
from core.kernel.ids import parse_time
from core.kernel.scope import Scope
from core.memory import quarantine
from core.memory import store as memories
from core.memory.models import (
    Approved,
    BatchResult,
    ChangelogPage,
    ChangelogQuery,
    DecisionIn,
    Deleted,
    FactQuery,
    HistoryPage,
    Memory,
    MemoryBatchIn,
    MemoryFilters,
    MemoryIn,
    MemoryListQuery,
    MemoryPage,
    MemoryPatch,
    PurgeIn,
    QuarantineItem,
    QuarantinePage,
    QuarantineQuery,
    SavedMemory,
    StateChangeIn,
    UserMemoriesQuery,
    valid_memories,
)
from core.retrieval.context import pack
from core.retrieval.models import ContextIn, ContextPack, SearchIn, SearchPage
from core.retrieval.search import record_access, search
from handlers.mcp.registry import NoArguments, Ref, Refs, Registry, Runner, Toolbox

MEMORY_ID = Ref("id", "The memory's id, as returned by save, search or list.")
FACT_KEY = Ref("key", "What the fact is about, as saved (e.g. 'user.timezone').")
LINK_ID = Ref("id", "The link's id, as returned by link or links.")
USER_ID = Ref("user_id", "The end user, as given in user_id when memories were saved.")

box = Toolbox()


# -- retrieval (POST /v1/search, POST /v1/context) ---------------------------------------------


# POST /v1/search
@box.tool("search", "Search memories", output=SearchPage)
async def _search(run: Runner, _: Refs, data: SearchIn) -> Any:
    """Find memories relevant to a question or topic: hybrid full-text and semantic search, best
    first, each with a score in [0, 1]. Use it before answering anything that may depend on what was
    remembered earlier. Narrow with `filters` (type, tag, user_id, agent_id, run_id, dates,
    metadata) or the `user_id` shorthand; page with `cursor` set to the previous `next_cursor`.
    `as_of` asks what was true at a moment (superseded facts included); `known_at` what the store
    held then."""
    vector = None if data.mode == "lexical" else await run.query_vector(data.query)
    page = await run.read_each(search, data, vector, run.ranking)
    await run.own_transactions(record_access, page.pop("touched"))
    return page


# POST /v1/context
@box.tool("context", "Build a context pack", output=ContextPack)
async def _context(run: Runner, _: Refs, data: ContextIn) -> Any:
    """Answer-ready context for a question: the most relevant memories as numbered lines within a
    token budget (`max_tokens`), with citations mapping each [n] to a memory id. Prefer it over
    `search` when the text goes straight into a prompt. Both sides of an unresolved contradiction
    are shown, marked contested. `as_of` builds it from what was true at a moment."""
    vector = await run.query_vector(data.query)
    result = await run.read_each(pack, data, vector, run.ranking)
    await run.own_transactions(record_access, result.pop("touched"))
    return result


# -- memories (/v1/memories..., /v1/facts/{key}, /v1/users/{user_id}/memories) -----------------


# POST /v1/memories
@box.tool("save", "Save a memory", output=SavedMemory, writes=True)
async def _save(run: Runner, _: Refs, data: MemoryIn) -> Any:
    """Save one memory. `type` is note (the default), fact or journal. A fact is the current truth
    about its `key` (e.g. 'user.timezone'): saving a new fact for the same key and user supersedes
    the old one. Saving content that already exists returns the existing memory with `deduplicated:
    true` instead of a copy. Set `user_id` when the memory is about one end user, `valid_from` when
    what it states became true (default: occurred_at, else now). If it contradicts a memory of the
    same user, the reply lists the conflicts it recorded under `conflicts`. The write gate answers
    in `gate`: a restatement of a memory reinforces it (`reinforced`), a repeat of what search just
    returned is not stored (`recalled`), and instructions or boilerplate are held for review
    (`quarantined`)."""
    index = await run.indexer([data])
    return await run.write(memories.create, data, run.limits, index)


def _batch_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The REST model types batch items as objects (each is validated on its own, so errors
    name their index); tell the model what an item looks like."""
    item = MemoryIn.model_json_schema(mode="validation")
    item.pop("title", None)
    defs = schema.setdefault("$defs", {})
    defs.update(item.pop("$defs", {}))
    defs["MemoryIn"] = item
    schema["properties"]["memories"]["items"] = {"$ref": "#/$defs/MemoryIn"}
    return schema


# POST /v1/memories/batch
@box.tool(
    "save_batch",
    "Save several memories",
    output=BatchResult,
    writes=True,
    schema_hook=_batch_schema,
)
async def _save_batch(run: Runner, _: Refs, data: MemoryBatchIn) -> Any:
    """Save up to 500 memories at once, each shaped as for `save`. All or nothing: if any item is
    invalid nothing is saved, and the error lists every problem by index."""
    index = await run.indexer(valid_memories(data.memories))
    return {"results": await run.write(memories.create_batch, data.memories, run.limits, index)}


# GET /v1/memories/{id}
@box.tool("get", "Get a memory", output=Memory, refs=(MEMORY_ID,))
async def _get(run: Runner, refs: Refs, _: NoArguments) -> Any:
    """Fetch one memory by id, whatever its state (active, archived or deleted)."""
    return await run.read(memories.get, refs["id"])


# GET /v1/facts/{key}
@box.tool("get_fact", "Get the current fact", output=Memory, refs=(FACT_KEY,))
async def _get_fact(run: Runner, refs: Refs, query: FactQuery) -> Any:
    """The current fact saved for a key (the newest active memory of type fact with that key), for
    one `user_id` or, without it, the brain-wide fact; with `as_of`, the fact that was true at that
    moment."""
    return await run.read(
        memories.get_fact, refs["key"], query.user_id, as_of=query.as_of, known_at=query.known_at
    )


# GET /v1/memories
@box.tool("list", "List memories", output=MemoryPage)
async def _list(run: Runner, _: Refs, query: MemoryListQuery) -> Any:
    """List memories newest first, filtered by type, tag, user_id, agent_id, run_id, source, state
    or creation and update dates; page with `cursor` set to the previous `next_cursor`. To find
    memories by meaning, use `search`."""
    return await run.read(
        memories.list_memories,
        query,
        limit=query.limit,
        cursor=query.cursor,
        include_total=query.include_total,
    )


# GET /v1/users/{user_id}/memories
@box.tool("user_memories", "List a user's memories", output=MemoryPage, refs=(USER_ID,))
async def _user_memories(run: Runner, refs: Refs, query: UserMemoriesQuery) -> Any:
    """Page through every memory of one end user, newest first."""
    filters = MemoryFilters(user_id=refs["user_id"], state=query.state)
    page = await run.read(
        memories.list_memories,
        filters,
        limit=query.limit,
        cursor=query.cursor,
        include_total=query.include_total,
    )
    return {"user_id": refs["user_id"], **page}


# -- summaries (/v1/users/{user_id}/summary[/regenerate], GET /v1/summary) ----------------------


# GET /v1/users/{user_id}/summary
@box.tool("user_summary", "A user's summary", output=UserSummaryOut, refs=(USER_ID,))
async def _user_summary(run: Runner, refs: Refs, query: UserSummaryQuery) -> Any:
    """A short plain-text profile of one end user, one line per theme of what is remembered about
    them; remade first when enough new memories came in. Read it at the start of a conversation with
    that user. With `as_of`, what was true of them at that moment; with `known_at`, what the store
    knew of them then."""
    if query.as_of is not None or query.known_at is not None:
        as_of = None if query.as_of is None else parse_time(query.as_of)
        known_at = None if query.known_at is None else parse_time(query.known_at)
        return await run.own_transactions(
            summaries.user_summary_then, refs["user_id"], as_of=as_of, known_at=known_at
        )
    found = await run.own_transactions(summaries.get_user_summary, refs["user_id"])
    return found.as_json()


# POST /v1/users/{user_id}/summary/regenerate
@box.tool(
    "regenerate_summary",
    "Remake a user's summary",
    output=UserSummaryOut,
    refs=(USER_ID,),
    writes=True,
)
async def _regenerate_summary(run: Runner, refs: Refs, _: NoArguments) -> Any:
    """Remake a user's summary now instead of waiting for enough new memories, for example right
    after correcting or deleting several of their memories."""
    made = await run.own_transactions(summaries.regenerate_user_summary, refs["user_id"])
    return made.as_json()


# GET /v1/summary
@box.tool("digest", "What this memory holds", output=Digest)
async def _digest(run: Runner, _: Refs, query: DigestQuery) -> Any:
    """An overview of everything remembered here: the main themes with examples, and the most
    important memories. Use it to get oriented, not to answer a specific question (use `search` for
    that)."""
    max_tokens = query.max_tokens or run.settings.summaries.max_tokens
    return await run.own_transactions(
        summaries.digest, max_tokens=max_tokens, important=query.important
    )


# -- edits and states (PATCH /v1/memories/{id}, .../archive|restore|purge|history, DELETE) ---


# PATCH /v1/memories/{id}
@box.tool(
    "update",
    "Update a memory",
    output=Memory,
    refs=(MEMORY_ID,),
    writes=True,
    destructive=True,
)
async def _update(run: Runner, refs: Refs, data: MemoryPatch) -> Any:
    """Change a memory's content, title, tags, source, confidence, importance, metadata (merged into
    the existing metadata unless `metadata_mode` is 'replace') or occurred_at. Only the fields given
    change; the previous version stays in its history."""
    index = await run.indexer([])
    return await run.write(memories.update, refs["id"], data, run.limits, index)


async def _state(run: Runner, memory_id: str, target: str, actor: StateChangeIn) -> Any:
    return await run.write(
        memories.set_state,
        memory_id,
        target,
        await run.indexer([]),
        actor_id=actor.actor_id,
        role=actor.role,
    )


# POST /v1/memories/{id}/archive
@box.tool("archive", "Archive a memory", output=Memory, refs=(MEMORY_ID,), writes=True)
async def _archive(run: Runner, refs: Refs, actor: StateChangeIn) -> Any:
    """Archive a memory that is outdated but worth keeping: it leaves search and default listings
    and can be restored."""
    return await _state(run, refs["id"], "archived", actor)


# POST /v1/memories/{id}/restore
@box.tool("restore", "Restore a memory", output=Memory, refs=(MEMORY_ID,), writes=True)
async def _restore(run: Runner, refs: Refs, actor: StateChangeIn) -> Any:
    """Make an archived or deleted memory active again."""
    return await _state(run, refs["id"], "active", actor)


# DELETE /v1/memories/{id}
@box.tool(
    "delete",
    "Delete a memory",
    output=Memory,
    refs=(MEMORY_ID,),
    writes=True,
    destructive=True,
)
async def _delete(run: Runner, refs: Refs, actor: StateChangeIn) -> Any:
    """Delete a memory. The delete is soft: `restore` brings it back. To erase it for good, use
    `purge`."""
    return await _state(run, refs["id"], "deleted", actor)


# POST /v1/memories/{id}/purge
@box.tool(
    "purge",
    "Erase a memory for good",
    output=Deleted,
    refs=(MEMORY_ID,),
    writes=True,
    destructive=True,
)
async def _purge(run: Runner, refs: Refs, data: PurgeIn) -> Any:
    """Erase a memory and its history permanently; it cannot be undone, so `confirm` must be true.
    Use it only when the content itself must be gone (for example the user asked to be forgotten);
    otherwise use `delete`."""
    return await run.write(
        memories.purge,
        refs["id"],
        await run.indexer([]),
        confirm=data.confirm,
        actor_id=data.actor_id,
    )


# GET /v1/memories/{id}/history
@box.tool("history", "A memory's history", output=HistoryPage, refs=(MEMORY_ID,))
async def _history(run: Runner, refs: Refs, _: NoArguments) -> Any:
    """Every change to one memory, oldest first: saves, updates, archives, deletes and restores,
    with the old and new content and who made each change."""
    return {"results": await run.read(memories.history_of, refs["id"])}


# -- changelog (GET /v1/changelog) -------------------------------------------------------------


# GET /v1/changelog
@box.tool("changelog", "Changes in this brain", output=ChangelogPage)
async def _changelog(run: Runner, _: Refs, query: ChangelogQuery) -> Any:
    """Every change in this memory store, oldest first from `since` (ISO 8601): what was saved,
    updated, archived, deleted or purged, and by whom. Follow `next_cursor` to keep up."""
    entries, next_cursor = await run.read(
        changelog.feed,
        since=None if query.since is None else parse_time(query.since),
        event_type=query.event_type,
        cursor=query.cursor,
        limit=query.limit,
    )
    return {"results": entries, "next_cursor": next_cursor}


# -- links and the graph (/v1/links..., /v1/memories/{id}/links|neighbors, /v1/graph/...) -----


# POST /v1/links
@box.tool("link", "Link two memories", output=Link, writes=True)
async def _link(run: Runner, _: Refs, data: LinkIn) -> Any:
    """Record how two memories of the same user relate: `relation` is one of related, supports,
    contradicts, supersedes, causes, example_of (from_id -> to_id), with an optional `label` and
    `weight` (0 to 1). The same link again returns the existing one; a pair may carry several
    relations."""
    return await run.write(create_link, data)


# DELETE /v1/links/{id}
@box.tool(
    "unlink",
    "Delete a link",
    output=LinkDeleted,
    refs=(LINK_ID,),
    writes=True,
    destructive=True,
)
async def _unlink(run: Runner, refs: Refs, data: LinkDeleteIn) -> Any:
    """Delete one link by its id (as returned by link or links)."""
    return await run.write(links.delete, refs["id"], actor_id=data.actor_id)


# GET /v1/memories/{id}/links
@box.tool("links", "A memory's links", output=LinkPage, refs=(MEMORY_ID,))
async def _links(run: Runner, refs: Refs, query: LinkListQuery) -> Any:
    """The links of one memory both ways (`direction` out, in or both), newest first, each with a
    preview of the memory at the other end."""
    return await run.read(
        links.list_for,
        refs["id"],
        direction=query.direction,
        relations=query.relation,
        limit=query.limit,
        cursor=query.cursor,
    )


# GET /v1/memories/{id}/neighbors
@box.tool("neighbors", "Linked memories", output=NeighborPage, refs=(MEMORY_ID,))
async def _neighbors(run: Runner, refs: Refs, query: NeighborQuery) -> Any:
    """The memories one link away from a memory, in full, strongest link first; filter by `relation`
    or `direction`."""
    return await run.read(
        graph.neighbors,
        refs["id"],
        direction=query.direction,
        relations=query.relation,
        limit=query.limit,
        include_archived=query.include_archived,
    )


# GET /v1/graph/subgraph
@box.tool("subgraph", "Explore the memory graph", output=Subgraph)
async def _subgraph(run: Runner, _: Refs, query: SubgraphQuery) -> Any:
    """The memories within `radius` links of one memory (`memory_id`) or of the best search hits for
    a `query`, nearest first, at most `limit`, with the links between them. Use it to see what
    surrounds a topic."""
    vector = None
    if query.query is not None and query.memory_id is None:
        vector = await run.query_vector(query.query)
    return await run.read(graph.subgraph, query, vector, run.ranking)


# GET /v1/graph/path
@box.tool("path", "How two memories connect", output=Path)
async def _path(run: Runner, _: Refs, query: PathQuery) -> Any:
    """A shortest chain of links between two memories (links followed both ways), at most `max_hops`
    long; an error with code no_path when none is that short."""
    return await run.read(graph.path, query)


# -- conflicts and merge (/v1/conflicts..., POST /v1/memories/merge) -----------------------------

CONFLICT_ID = Ref("id", "The conflict's id, as returned by conflicts.")


# GET /v1/conflicts
@box.tool("conflicts", "List conflicting memories", output=ConflictPage)
async def _conflicts(run: Runner, _: Refs, query: ConflictListQuery) -> Any:
    """Pairs of memories that disagree (the same fact key with different content, a contradicts
    link, or the same statement with another number, date or a negation), newest first, each with
    both memories. Filter by `status` (needs_review for the open ones), `kind`, `memory_id` or
    `user_id`."""
    return await run.read(
        conflicts.list_conflicts,
        status=query.status,
        kind=query.kind,
        memory_id=query.memory_id,
        user_id=query.user_id,
        limit=query.limit,
        cursor=query.cursor,
    )


# POST /v1/conflicts/detect
@box.tool("detect_conflicts", "Look for conflicts now", output=DetectOut, writes=True)
async def _detect_conflicts(run: Runner, _: Refs, data: DetectIn) -> Any:
    """Check one memory (`memory_id`) against its most similar memories, or the `limit` most
    recently changed ones, for conflicts; returns the new ones. Run it after saving something that
    may contradict what was known."""
    embedder = get_embedder(run.settings.embedder)
    space = conflicts.VectorSpace(embedder.name, embedder.dims, run.settings.conflicts.neighbours)
    return await run.write(
        conflicts.detect_now,
        memory_id=data.memory_id,
        user_id=data.user_id,
        limit=data.limit,
        space=space,
    )


# POST /v1/conflicts/{id}/resolve
@box.tool(
    "resolve_conflict",
    "Resolve a conflict",
    output=ConflictOut,
    refs=(CONFLICT_ID,),
    writes=True,
    destructive=True,
)
async def _resolve_conflict(run: Runner, refs: Refs, data: ResolveIn) -> Any:
    """Keep one memory of a conflicting pair (`winner_id`): the other is marked as superseded by it
    and archived (`mode` archive, the default) or kept but ranked down in search (`mode` demote)."""
    index = await run.indexer([])
    return await run.write(
        conflicts.resolve,
        refs["id"],
        winner_id=data.winner_id,
        mode=data.mode,
        note=data.note,
        index=index,
        actor_id=data.actor_id,
        role=data.role,
    )


# POST /v1/memories/merge
@box.tool("merge", "Merge memories", output=MergeOut, writes=True, destructive=True)
async def _merge(run: Runner, _: Refs, data: MergeIn) -> Any:
    """Merge 2 to 20 memories of one user into one: contents joined (or `content` given), tags
    united, links moved to the result; the originals are archived as superseded by it. With
    `into_id`, one of them is kept and absorbs the others."""
    text = await run.read(
        merge.planned_text, data.ids, content=data.content, title=data.title, into_id=data.into_id
    )
    index = await run.text_indexer([text] if text is not None else [])
    return await run.write(
        merge.merge,
        data.ids,
        limits=run.limits,
        index=index,
        content=data.content,
        title=data.title,
        into_id=data.into_id,
        actor_id=data.actor_id,
        role=data.role,
    )


# -- the write gate, erasure and health (/v1/quarantine..., DELETE /v1/users/{id}, -----------
# -- GET /v1/health/report) ------------------------------------------------------------------

QUARANTINE_ID = Ref("id", "The quarantined write's id, as returned by save or quarantine.")
# An MCP call is one HTTP request: erase within it, and say `running` if the user is larger.
_ERASE_SECONDS = 20.0


# GET /v1/quarantine
@box.tool("quarantine", "List quarantined writes", output=QuarantinePage)
async def _quarantine(run: Runner, _: Refs, query: QuarantineQuery) -> Any:
    """Writes the write gate held back instead of saving (restated system prompts and instructions,
    empty or boilerplate content), newest first, each with why. `status` pending (default),
    approved, rejected or all."""
    return await run.read(quarantine.list_items, query)


# POST /v1/quarantine/{id}/approve
@box.tool(
    "approve_quarantined",
    "Approve a quarantined write",
    output=Approved,
    refs=(QUARANTINE_ID,),
    writes=True,
    idempotent=False,
)
async def _approve(run: Runner, refs: Refs, data: DecisionIn) -> Any:
    """Save a quarantined write as a memory, exactly as it was asked for."""
    held = await run.read(quarantine.request_of, refs["id"])
    index = await run.indexer([held])
    return await run.write(quarantine.approve, refs["id"], run.limits, index, data)


# POST /v1/quarantine/{id}/reject
@box.tool(
    "reject_quarantined",
    "Reject a quarantined write",
    output=QuarantineItem,
    refs=(QUARANTINE_ID,),
    writes=True,
    idempotent=False,
)
async def _reject(run: Runner, refs: Refs, data: DecisionIn) -> Any:
    """Reject a quarantined write: it never becomes a memory."""
    return await run.write(quarantine.reject, refs["id"], data)


def _erase_now(engine: Engine, settings: Settings, scope: Scope, user_id: str) -> Any:
    deadline = time.monotonic() + _ERASE_SECONDS
    return erase_user(engine, scope, user_id, settings.snapshots, deadline=deadline)


# DELETE /v1/users/{user_id}
@box.tool("erase_user", "Erase an end user", output=ErasureReceipt, writes=True, destructive=True)
async def _erase(run: Runner, _: Refs, data: EraseIn) -> Any:
    """Erase every row of one end user in the brain (memories, history, search index, vectors,
    links, conflicts, summaries, quarantine; changelog entries become tombstones; snapshots are
    rewritten) and return a receipt with counts per table and a digest. Owners only; `confirm` must
    be true. Cannot be undone. A receipt with status `running` ran out of time: call again to
    finish."""
    if not data.confirm:
        raise InvalidInput(
            "set confirm to true to erase: an erasure cannot be undone",
            details={"field": "confirm"},
        )
    run.scope.require_owner_write()
    return await run.own_transactions(_erase_now, data.user_id)


# GET /v1/health/report
@box.tool("health_report", "Memory health report", output=HealthReport)
async def _health(run: Runner, _: Refs, query: HealthQuery) -> Any:
    """How healthy the brain's (or one user's) memories are: near-duplicate clusters, quarantined
    writes, open conflicts, stale facts, memories never retrieved, orphan links, a junk ratio
    estimate and an age histogram."""
    model = get_embedder(run.settings.embedder).name
    return await run.read(health.report, user_id=query.user_id, model=model)


TOOLS = box.tools

REGISTRY = Registry(TOOLS)
