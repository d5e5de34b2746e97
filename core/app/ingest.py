"""Conversations in (POST /v1/memories with `messages`, mem0's add): the one entry point.

  * `memory_type="procedural_memory"`: one procedural memory (the LLM's account of the task
    when one is configured, else the transcript);
  * no LLM configured, or `infer` false: one memory per selected turn (the user's by default),
    traceable to its turn (core/memory/conversations.py);
  * an LLM and `infer`: mem0's extraction and reconciliation (core/app/extraction.py).

Each returns what happened to every memory it touched: [{"event", "memory",
"previous_content"}]. With `async_mode` and an LLM the work becomes a job (core/app/jobs.py)
run after the answer; its status and results are read back by id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from pydantic import ValidationError
from sqlalchemy import Connection, Engine

from core.app import extraction, remember
from core.app.models import Event, OutcomeRecord
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.scope import Scope
from core.memory import gate
from core.memory import store as memories
from core.memory.conversations import turn_memories
from core.memory.indexing import Indexer, document_text
from core.memory.models import Conversation, MemoryDraft, MemoryIn, MemoryRecord, SaveRecord

if TYPE_CHECKING:
    # numpy comes with search: imported when a conversation needs it (handlers/lazy.py).
    pass


def _indexer(engine: Engine, settings: Settings, scope: Scope, items: list[MemoryIn]) -> Indexer:
    """An indexer with the memories' vectors made and the write gate's reads done, before the
    write transaction opens (core/memory/gate.py `look_ahead`)."""
    from core.embeddings import get_embedder

    index = remember.indexer(get_embedder(settings.embedder), settings)
    if items:
        index.prepare([document_text(m.title, m.key, m.tags, m.content) for m in items])
        gate.look_ahead(engine, scope, items, index)
    return index


def uses_llm(settings: Settings, conversation: Conversation) -> bool:
    """Whether this conversation goes through the LLM (and so may run as a job)."""
    if settings.extraction.llm == "off":
        return False
    return conversation.memory_type is not None or conversation.infer


# Runs in the write transaction with the results (a job records its outcome there, so a job
# whose memories were written is never left looking unfinished: core/app/jobs.py).
OnDone = Callable[[Connection, list[OutcomeRecord]], None]


def ingest(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    conversation: Conversation,
    *,
    on_done: OnDone | None = None,
) -> list[OutcomeRecord]:
    scope.require_write()
    chat = extraction.chat_for(settings)
    if conversation.memory_type is not None:
        item = extraction.procedure(chat, conversation)
        index = _indexer(engine, settings, scope, [item])
        with transaction(engine, write=True) as conn:
            results = [_added(memories.create(conn, scope, item, settings.limits, index))]
            _done(conn, results, on_done)
        return results
    if chat is None or not conversation.infer:
        items = turn_memories(conversation)
        index = _indexer(engine, settings, scope, _valid(items))
        with transaction(engine, write=True) as conn:
            made = memories.create_batch(conn, scope, items, settings.limits, index)
            results = [_added(m) for m in made]
            _done(conn, results, on_done)
        return results
    planned = extraction.plan(engine, settings, scope, conversation, chat)
    index = _indexer(engine, settings, scope, planned.items)
    # An update's new text is embedded before the transaction too.
    index.prepare(extraction.index_texts(planned))
    with transaction(engine, write=True) as conn:
        results = extraction.apply(conn, scope, conversation, planned, settings, index)
        _done(conn, results, on_done)
    return results


def _valid(items: list[MemoryDraft]) -> list[MemoryIn]:
    """The turns that make valid memories, to read ahead for (`create_batch` refuses the
    conversation when any is not, with what to fix)."""
    out = []
    for item in items:
        try:
            out.append(MemoryIn.model_validate(item))
        except ValidationError:
            return []
    return out


def _done(conn: Connection, results: list[OutcomeRecord], on_done: OnDone | None) -> None:
    if on_done is not None:
        on_done(conn, results)


def _added(saved: SaveRecord) -> OutcomeRecord:
    memory = dict(saved)
    event: Event = "NONE" if memory.pop("deduplicated", False) else "ADD"
    return {"event": event, "memory": cast(MemoryRecord, memory), "previous_content": None}
