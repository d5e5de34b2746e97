"""Conversations in, shared by POST /v1/memories (with `messages`) and mem0's add: run the
ingestion (core/app/ingest.py) now, or, with `async_mode` and an LLM, save a job and run it
after the answer is sent (a Starlette background task: under `mnemo serve` on a worker
thread; on Lambda before the invocation ends)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.background import BackgroundTask

from core.app import ingest, jobs
from core.memory.conversations import Conversation
from handlers.context import Context


@dataclass(frozen=True)
class Outcome:
    results: list[dict[str, Any]] | None = None
    job: dict[str, Any] | None = None
    background: BackgroundTask | None = None


async def conversation_in(ctx: Context, conversation: Conversation) -> Outcome:
    settings = ctx.services.settings
    if conversation.async_mode and ingest.uses_llm(settings, conversation):
        job = await ctx.write(jobs.create, conversation)
        engine, scope, job_id = ctx.engine, ctx.scope, job["id"]

        async def later() -> None:
            await ctx.services.call(lambda: jobs.run(engine, settings, scope, job_id))

        return Outcome(job=job, background=BackgroundTask(later))
    results = await ctx.services.call(
        lambda: ingest.ingest(ctx.engine, settings, ctx.scope, conversation)
    )
    return Outcome(results=results)
