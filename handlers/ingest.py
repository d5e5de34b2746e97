"""Conversations in, shared by POST /v1/memories (with `messages`) and mem0's add: run the
ingestion (core/app/ingest.py) now, or, with `async_mode` and an LLM, save a job and answer at
once. Who runs the job (core/app/jobs.py):
  * on AWS (an ingestion queue configured): the IngestFunction, from an SQS message sent here.
    Not a background task: Mangum runs those before the invocation returns, so the 202 would
    wait for the LLM and a slow one would run past API Gateway's 30 s;
  * under `mnemo serve`: this process, as a Starlette background task after the answer (on a
    worker thread)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.background import BackgroundTask

from core.app import ingest, jobs
from core.app.models import JobRecord, OutcomeRecord
from core.memory.models import Conversation
from handlers.context import Context


@dataclass(frozen=True)
class Outcome:
    results: list[OutcomeRecord] | None = None
    job: JobRecord | None = None
    background: BackgroundTask | None = None


async def conversation_in(ctx: Context, conversation: Conversation) -> Outcome:
    settings = ctx.services.settings
    if conversation.async_mode and ingest.uses_llm(settings, conversation):
        job = await ctx.write(jobs.create, conversation)
        engine, brain_id, job_id = ctx.engine, ctx.scope.brain_id, job["id"]
        queue_url = settings.extraction.queue_url
        if queue_url:
            await ctx.services.call(lambda: jobs.enqueue(engine, queue_url, brain_id, job_id))
            return Outcome(job=job)

        async def later() -> None:
            await ctx.services.call(lambda: jobs.run(engine, settings, brain_id, job_id))

        return Outcome(job=job, background=BackgroundTask(later))
    results = await ctx.services.call(
        lambda: ingest.ingest(ctx.engine, settings, ctx.scope, conversation)
    )
    return Outcome(results=results)
