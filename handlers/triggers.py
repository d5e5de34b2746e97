"""What the event router runs for webhook work: the outbox drain (SQS) and memories from
EventBridge events.

An EventBridge event of detail-type "Mnemo Memory" adds one memory. Its detail is a memory as
for POST /v1/memories plus `brain`, the brain's name (slug):

    {"brain": "acme", "content": "Alice renewed her plan", "user_id": "alice",
     "tags": ["billing"], "type": "note", "metadata": {"plan": "pro"}}

Only rules in the AWS account route events to the function, so the event itself is trusted;
EventBridge delivers at least once, and an exact duplicate returns the memory already stored.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from core.identity.brains import brain_id
from core.kernel.db.engine import transaction
from core.kernel.errors import MnemoError, field_errors
from core.kernel.ids import now_ms
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.models import MemoryIn, SaveRecord
from core.webhooks import outbox, queue
from core.webhooks.models import DrainRecord
from handlers.context import Context, Services

# Kept back from the function's remaining time for recording the last batch.
_MARGIN_SECONDS = 10.0
_DEFAULT_BUDGET_SECONDS = 60.0


def _budget(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return _DEFAULT_BUDGET_SECONDS
    return max(1.0, float(remaining()) / 1000 - _MARGIN_SECONDS)


def _follow_up_waits(records: Sequence[dict[str, Any]], claimed: int, now: int) -> bool:
    """Whether a follow-up among `records` continues its chain: it found work, or it woke
    before its target (SQS delays stop at 15 minutes). One that found its deliveries sent by
    another drain ends, so chains started by many drains merge instead of piling up."""
    for record in records:
        try:
            body = json.loads(record.get("body") or "{}")
        except ValueError:
            continue
        if not isinstance(body, dict) or not body.get("follow_up"):
            continue
        until = body.get("until")
        if claimed > 0 or (isinstance(until, int) and now < until):
            return True
    return False


def drain(services: Services, records: Sequence[dict[str, Any]], context: Any) -> DrainRecord:
    """Drain the outbox; when retries wait, ask SQS to wake this function again when the
    soonest is due (a follow-up message, delayed up to SQS's 15 minutes). A drain that
    scheduled no retry starts no follow-up, and a follow-up whose work another drain did ends
    its chain (`_follow_up_waits`), so follow-ups do not pile up per change; the maintenance
    schedule sweeps whatever is left."""
    settings = services.settings.webhooks
    engine = services.ready_engine()
    report = outbox.drain(engine, settings, budget_seconds=_budget(context))
    result: DrainRecord = report.as_dict()
    due = outbox.next_due(engine)
    now = now_ms()
    if (
        settings.queue_url
        and due is not None
        and (report.retrying > 0 or _follow_up_waits(records, report.claimed, now))
    ):
        delay = math.ceil(max(0, due - now) / 1000)
        queue.send_drain(settings.queue_url, delay_seconds=delay, follow_up=True, until=due)
        result["follow_up_in_seconds"] = min(delay, queue.MAX_DELAY_SECONDS)
    return result


def add_memory(services: Services, event: dict[str, Any]) -> dict[str, Any]:
    detail = dict(event["detail"])
    brain = detail.pop("brain", None)
    if not isinstance(brain, str) or not brain:
        return _refused("invalid_input", "the detail needs `brain`, the brain's name", event)
    try:
        data = MemoryIn.model_validate(detail)
    except ValidationError as exc:
        return _refused(
            "invalid_input",
            "the detail is not a valid memory",
            event,
            field_errors(exc.errors(include_url=False)),
        )
    if data.source is None:
        data = data.model_copy(update={"source": f"eventbridge:{event.get('source', 'unknown')}"})
    engine = services.ready_engine()
    try:
        with transaction(engine, write=False) as conn:
            found = brain_id(conn, brain)
        scope = Scope(brain_id=found, principal=f"eventbridge:{event.get('source', 'unknown')}")
        ctx = Context(services, engine, scope)

        async def save() -> SaveRecord:
            index = await ctx.indexer([data])
            return await ctx.write(memories.create, data, ctx.limits, index)

        # Not asyncio.run: it unsets the thread's event loop, which Mangum still needs in a
        # process that also serves HTTP events.
        loop = asyncio.new_event_loop()
        try:
            memory = loop.run_until_complete(save())
        finally:
            loop.close()
    except MnemoError as exc:
        return _refused(exc.code, exc.message, event, exc.details)
    return {"ok": True, "memory": memory}


def _refused(code: str, message: str, event: dict[str, Any], details: Any = None) -> dict[str, Any]:
    return {
        "ok": False,
        "event_id": event.get("id"),
        "error": {"code": code, "message": message, "details": details},
    }
