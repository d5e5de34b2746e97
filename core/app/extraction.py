"""Memories from a conversation, as mem0 makes them: an LLM draws the facts, each fact is
compared with the most similar memories the same user already has, the LLM decides for each
ADD / UPDATE / DELETE / NONE, and the decisions are applied in one transaction.

The order matters. The LLM calls and the embeddings happen first, with no transaction open
(reads are short transactions of their own); only then does one write transaction apply every
decision through `memories.create`, `memories.update` and `memories.set_state`, so each change
carries its history row (ADD, UPDATE, DELETE) and changelog row, and a failure anywhere leaves
the store as it was. An LLM that is down, slow past its timeout, or answers something that is
not the JSON asked for raises ExtractionError (502) before anything is written.

The LLM never sees memory ids: existing memories are shown as "0", "1", ... and mapped back,
so an invented id cannot touch a memory it was not shown.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine

from core.app.models import OutcomeRecord
from core.curation.summaries.llm import ChatModel, build_chat
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.errors import UpstreamError
from core.kernel.ids import new_id
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.conversations import fact_memory, procedure_memory, transcript, validate_items
from core.memory.indexing import Indexer, document_text
from core.memory.models import Conversation, MemoryIn, MemoryPatch, MemoryRecord

Event = Literal["ADD", "UPDATE", "DELETE", "NONE"]
_EVENTS = ("ADD", "UPDATE", "DELETE", "NONE")
_MAX_FACT_CHARS = 2000
_MAX_TOKENS = 2000
_TRANSCRIPT_CHARS = 24_000


class ExtractionError(UpstreamError):
    code = "extraction_failed"


FACT_PROMPT = """You extract facts worth remembering about the user from a conversation \
between a user and an AI assistant: personal details, preferences, plans, relationships, \
health, work, opinions, and anything the user asks to be remembered. Write each fact as a \
short, self-contained sentence in the language the user wrote in. Only facts the \
conversation states or the user clearly implies; nothing about the assistant itself; no \
greetings or small talk. Today is {today}.
{instructions}
Answer with JSON only, exactly in this form: {{"facts": ["...", "..."]}}. \
With nothing worth remembering answer {{"facts": []}}."""

UPDATE_PROMPT = """You keep a user's memory up to date. You get the memories already \
stored (each with an id) and new facts. For every new fact decide:
- ADD: it is new information; give it a new id of your choosing and its text.
- UPDATE: it adds to or corrects a stored memory about the same thing; give that memory's id \
and the merged text (keep the fuller version when both say the same).
- DELETE: it contradicts a stored memory, which is now wrong; give that memory's id.
- NONE: it is already stored; give that memory's id.
Use only ids from the stored memories for UPDATE, DELETE and NONE, each id at most once.
Answer with JSON only, in this form:
{"memory": [{"id": "0", "text": "...", "event": "UPDATE", "old_memory": "..."}, \
{"id": "new", "text": "...", "event": "ADD"}]}"""

PROCEDURE_PROMPT = """You record how a task was carried out, from a conversation between a \
user and an AI agent, so the agent can repeat or resume it: the goal, each step taken in \
order with its key inputs and results, and where it stands now. Plain text, concise, no \
preamble."""


@dataclass(frozen=True)
class Decision:
    event: Event
    text: str | None
    memory_id: str | None = None  # the stored memory for UPDATE, DELETE and NONE
    old: str | None = None
    # UPDATE: what the memory's vector will be made of (core/memory/indexing.py), its title,
    # key and tags with the new text, so it is embedded before the write opens.
    doc: str | None = None


def chat_for(settings: Settings) -> ChatModel | None:
    """The configured extraction LLM, or None when extraction is off."""
    s = settings.extraction
    if s.llm == "off":
        return None
    return build_chat(
        s.llm,
        model=s.model,
        base_url=s.base_url,
        api_key=s.api_key,
        timeout=s.timeout_seconds,
        bedrock_region=s.bedrock_region,
        error=ExtractionError,
    )


# --- prompts and replies ------------------------------------------------------------------

# The JSON object an LLM answered: whatever it wrote, each field checked where it is read.
LlmObject = dict[str, Any]


def _json_object(reply: str, what: str) -> LlmObject:
    """The JSON object in a reply: bare, or inside a ```json fence, or amid prose."""
    text = reply.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    elif not text.startswith("{"):
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise ExtractionError(f"the LLM's {what} is not JSON: {reply[:200]!r}")
        text = text[start : end + 1]
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ExtractionError(
            f"the LLM's {what} is not valid JSON ({exc}): {reply[:200]!r}"
        ) from None
    if not isinstance(data, dict):
        raise ExtractionError(f"the LLM's {what} is not a JSON object: {reply[:200]!r}")
    return data


def fact_messages(conversation: Conversation, today: str) -> tuple[str, str]:
    """(system, prompt) for the fact extraction call."""
    extra = conversation.custom_instructions
    system = FACT_PROMPT.format(
        today=today, instructions=f"\nAlso: {extra.strip()}\n" if extra else ""
    )
    return system, "Conversation:\n" + transcript(conversation)[-_TRANSCRIPT_CHARS:]


def parse_facts(reply: str, *, limit: int) -> list[str]:
    data = _json_object(reply, "list of facts")
    facts = data.get("facts")
    if not isinstance(facts, list):
        raise ExtractionError('the LLM\'s answer has no "facts" list')
    out: list[str] = []
    for fact in facts:
        if not isinstance(fact, str):
            raise ExtractionError(f"the LLM gave a fact that is not text: {fact!r}")
        cleaned = " ".join(fact.split())
        if cleaned and cleaned not in out:
            out.append(cleaned[:_MAX_FACT_CHARS])
    return out[:limit]


def update_prompt(facts: list[str], existing: Sequence[Mapping[str, Any]]) -> str:
    stored = [{"id": str(i), "text": m["content"]} for i, m in enumerate(existing)]
    return (
        f"Stored memories:\n{json.dumps(stored, ensure_ascii=False)}\n\n"
        f"New facts:\n{json.dumps(facts, ensure_ascii=False)}"
    )


def parse_decisions(reply: str, existing: Sequence[Mapping[str, Any]]) -> list[Decision]:
    """The LLM's decisions, checked: known ids only, each at most once, text where needed."""
    data = _json_object(reply, "decisions")
    items = data.get("memory")
    if not isinstance(items, list):
        raise ExtractionError('the LLM\'s answer has no "memory" list')
    decisions: list[Decision] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise ExtractionError(f"the LLM gave a decision that is not an object: {item!r}")
        event = str(item.get("event", "")).upper()
        if event not in _EVENTS:
            raise ExtractionError(f"the LLM gave an unknown event {item.get('event')!r}")
        raw_text = item.get("text")
        text = " ".join(raw_text.split()) if isinstance(raw_text, str) else None
        if event == "ADD":
            if not text:
                raise ExtractionError("the LLM added a memory without text")
            decisions.append(Decision("ADD", text[:_MAX_FACT_CHARS]))
            continue
        ref = str(item.get("id", ""))
        if not ref.isdigit() or int(ref) >= len(existing):
            raise ExtractionError(f"the LLM named a memory it was not shown: {ref!r}")
        if ref in seen:
            raise ExtractionError(f"the LLM decided twice about memory {ref!r}")
        seen.add(ref)
        stored = existing[int(ref)]
        if event == "UPDATE" and not text:
            raise ExtractionError("the LLM updated a memory without new text")
        if event == "UPDATE" and text == stored["content"]:
            event = "NONE"
        doc = None
        if event == "UPDATE":
            assert text is not None
            doc = document_text(
                stored.get("title"), stored.get("key"), stored.get("tags") or (), text
            )
        decisions.append(
            Decision(
                event,  # type: ignore[arg-type]
                text if event == "UPDATE" else stored["content"],
                memory_id=stored["id"],
                old=stored["content"],
                doc=doc,
            )
        )
    return decisions


# --- the use case -------------------------------------------------------------------------


def _neighbours(
    engine: Engine, settings: Settings, scope: Scope, conversation: Conversation, facts: list[str]
) -> list[MemoryRecord]:
    """The user's memories most similar to the facts (best first, each once)."""
    # Search brings numpy: loaded when a conversation is extracted, not at cold start.
    from core.retrieval.models import SearchFilters, SearchIn
    from core.retrieval.search import query_vector, search

    found: dict[str, MemoryRecord] = {}
    user = scope.user_for_write(conversation.user_id)
    # The same user's memories only; a conversation of no user is compared with the brain's
    # memories of no user, never with everyone's.
    alone = None if user is not None else {"$user_id": {"exists": False}}
    filters = SearchFilters(
        agent_id=conversation.agent_id, run_id=conversation.run_id, metadata=alone
    )
    for fact in facts:
        vector = query_vector(engine, settings, fact)
        request = SearchIn(
            query=fact[:10_000],
            limit=min(settings.extraction.neighbours, 100),
            user_id=user,
            filters=filters,
        )
        with transaction(engine, write=False) as conn:
            page = search(conn, scope, request, vector, settings.ranking)
        for hit in page["results"]:
            found.setdefault(hit["memory"]["id"], hit["memory"])
    return list(found.values())


@dataclass(frozen=True)
class Plan:
    decisions: list[Decision]
    items: list[MemoryIn]  # the ADDs, as memories to create
    conversation_id: str


def plan(
    engine: Engine, settings: Settings, scope: Scope, conversation: Conversation, chat: ChatModel
) -> Plan:
    """Every LLM call, outside any write transaction."""
    scope.require_write()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    system, prompt = fact_messages(conversation, today)
    facts = parse_facts(
        chat.complete(system, prompt, _MAX_TOKENS), limit=settings.extraction.max_facts
    )
    conversation_id, at = new_id(), conversation.occurred_ms()
    if not facts:
        return Plan([], [], conversation_id)
    existing = _neighbours(engine, settings, scope, conversation, facts)
    if existing:
        reply = chat.complete(UPDATE_PROMPT, update_prompt(facts, existing), _MAX_TOKENS)
        decisions = parse_decisions(reply, existing)
    else:
        decisions = [Decision("ADD", fact) for fact in facts]
    items = validate_items(
        [
            fact_memory(conversation, d.text or "", conversation_id, at)
            for d in decisions
            if d.event == "ADD"
        ]
    )
    return Plan(decisions, items, conversation_id)


def apply(
    conn: Connection,
    scope: Scope,
    conversation: Conversation,
    planned: Plan,
    settings: Settings,
    index: Indexer,
) -> list[OutcomeRecord]:
    """Every decision in the caller's (one) write transaction; what happened to each."""
    limits = settings.limits
    adds = iter(planned.items)
    results: list[OutcomeRecord] = []
    actor = {"actor_id": conversation.actor_id, "role": "assistant"}
    for decision in planned.decisions:
        if decision.event == "ADD":
            memory: dict[str, Any] = dict(memories.create(conn, scope, next(adds), limits, index))
            event: Event = "NONE" if memory.pop("deduplicated") else "ADD"
            results.append({"event": event, "memory": _memory(memory), "previous_content": None})
        elif decision.event == "UPDATE":
            assert decision.memory_id is not None
            patch = MemoryPatch(content=decision.text, **actor)
            memory = dict(memories.update(conn, scope, decision.memory_id, patch, limits, index))
            results.append(
                {"event": "UPDATE", "memory": _memory(memory), "previous_content": decision.old}
            )
        elif decision.event == "DELETE":
            assert decision.memory_id is not None
            memory = dict(
                memories.set_state(conn, scope, decision.memory_id, "deleted", index, **actor)
            )
            results.append(
                {"event": "DELETE", "memory": _memory(memory), "previous_content": decision.old}
            )
        else:
            assert decision.memory_id is not None
            memory = dict(memories.get(conn, scope, decision.memory_id))
            results.append({"event": "NONE", "memory": _memory(memory), "previous_content": None})
    return results


def _memory(copy: dict[str, Any]) -> MemoryRecord:
    """A copy of a memory's record (a save's `deduplicated` taken off), as an outcome holds it."""
    return cast(MemoryRecord, copy)


def index_texts(planned: Plan) -> list[str]:
    """The document texts the write will index, embedded before it opens."""
    texts = [document_text(m.title, m.key, m.tags, m.content) for m in planned.items]
    texts += [d.doc for d in planned.decisions if d.event == "UPDATE" and d.doc]
    return texts


def procedure(chat: ChatModel | None, conversation: Conversation) -> MemoryIn:
    """mem0's procedural memory: the LLM's account of the task, or the transcript itself."""
    content = None
    if chat is not None:
        content = chat.complete(PROCEDURE_PROMPT, transcript(conversation), _MAX_TOKENS).strip()
        if not content:
            raise ExtractionError("the LLM returned an empty procedure")
    return validate_items([procedure_memory(conversation, content)])[0]
