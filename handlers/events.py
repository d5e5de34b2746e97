"""Non-HTTP events, routed before Mangum: EventBridge schedules run maintenance, SQS messages
drain the webhook outbox (the DeliveryFunction) or run async_mode ingestion jobs (the
IngestFunction, handlers/ingest_worker.py), and EventBridge events of detail-type
"Mnemo Memory" add a memory. Everything HTTP-shaped (API Gateway v1 and v2, Function URLs, ALB)
goes to the ASGI app through Mangum."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from handlers import ingest_worker
from handlers.context import Services

log = logging.getLogger("mnemo.events")

LambdaHandler = Callable[[dict[str, Any], Any], Any]


class UnknownEvent(ValueError):
    pass


class EventRefused(RuntimeError):
    """A memory event the app cannot apply (no such brain, not a valid memory). Raised, not
    returned: EventBridge invokes Lambda asynchronously, so only a failed invocation is
    retried and then dead-lettered (template.yaml: EventInvokeConfig's OnFailure queue),
    where an operator can see it and send it again. A returned error would be lost."""

    def __init__(self, result: dict[str, Any]) -> None:
        error = result.get("error") or {}
        super().__init__(
            f"memory event {result.get('event_id')} refused: "
            f"{error.get('code')}: {error.get('message')}"
        )
        self.result = result


def is_http(event: dict[str, Any]) -> bool:
    if "httpMethod" in event:  # REST API v1 and ALB
        return True
    return "http" in event.get("requestContext", {})  # HTTP API v2 and Function URLs


def is_schedule(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def dispatch(
    event: dict[str, Any], context: Any, *, http: LambdaHandler, services: Services
) -> Any:
    if is_http(event):
        return http(event, context)
    if is_sqs(event):
        if is_ingest(event):
            return ingest_worker.run_jobs(services, event["Records"])
        return drain_from_sqs(event, context, services)
    if is_memory_event(event):
        return add_memory_from_event(event, services)
    if is_schedule(event):
        # Imported here, as the other events' handlers: an HTTP invocation never needs them.
        from core.app import maintenance

        engine = services.ready_engine()
        tasks = maintenance.run(engine, services.settings)
        log.info("maintenance run", extra={"fields": {"tasks": tasks}})
        return {"ok": True, "tasks": tasks}
    raise UnknownEvent(
        "unrecognised event: expected an HTTP event (API Gateway, Function URL, ALB), an "
        "EventBridge schedule, an SQS batch or a 'Mnemo Memory' EventBridge event"
    )


def is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def is_ingest(event: dict[str, Any]) -> bool:
    """A batch from the ingestion queue: its messages name a job (a queue's batch is all of
    one queue, so the first message says which)."""
    return ingest_worker.job_of(event["Records"][0]) is not None


MEMORY_DETAIL_TYPE = "Mnemo Memory"


def is_memory_event(event: dict[str, Any]) -> bool:
    return event.get("detail-type") == MEMORY_DETAIL_TYPE and isinstance(event.get("detail"), dict)


def drain_from_sqs(event: dict[str, Any], context: Any, services: Services) -> dict[str, Any]:
    from handlers import triggers

    report = triggers.drain(services, event["Records"], context)
    log.info("webhook drain", extra={"fields": report})
    # The messages only say "drain"; the outbox is the truth, so none is ever retried.
    return {"batchItemFailures": []}


def add_memory_from_event(event: dict[str, Any], services: Services) -> dict[str, Any]:
    from handlers import triggers

    result = triggers.add_memory(services, event)
    if not result["ok"]:
        log.warning("memory event refused", extra={"fields": result})
        raise EventRefused(result)
    return result
