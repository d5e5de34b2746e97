"""The IngestFunction: SQS messages from the ingestion queue, each naming one async_mode job
({"ingest_job": id, "brain_id": ...}), run by core/app/jobs.py.

A message is reported back as failed, so SQS delivers it again after the queue's visibility
timeout, when its job is held by another runner (a duplicate delivery while the first still
works) or the store could not be reached. Everything else is done with: a job that failed has
its reason recorded on it, where its caller reads it. After the queue's last try a message
goes to the ingestion dead-letter queue (template.yaml), and its job is reported abandoned."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from handlers.context import Services

log = logging.getLogger("mnemo.ingest")


def job_of(record: dict[str, Any]) -> tuple[str, str] | None:
    """(brain id, job id) of an ingestion message, or None for any other message."""
    try:
        body = json.loads(record.get("body") or "")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    job, brain = body.get("ingest_job"), body.get("brain_id")
    return (brain, job) if isinstance(job, str) and isinstance(brain, str) else None


def run_jobs(services: Services, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from core.app import jobs

    engine = services.ready_engine()
    failures = []
    for record in records:
        named = job_of(record)
        if named is None:
            log.warning("not an ingestion message: %s", record.get("messageId"))
            continue
        brain_id, job_id = named
        try:
            ran = jobs.run(engine, services.settings, brain_id, job_id)
        except Exception:
            log.exception("ingestion job %s: the store could not be reached", job_id)
            ran = "busy"
        log.info("ingestion job", extra={"fields": {"job": job_id, "ran": ran}})
        if ran == "busy":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
