"""Non-HTTP events, routed before Mangum: EventBridge schedules run maintenance. Everything
HTTP-shaped (API Gateway v1 and v2, Function URLs, ALB) goes to the ASGI app through Mangum."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core import maintenance
from handlers.context import Services

log = logging.getLogger("mnemo.events")

LambdaHandler = Callable[[dict[str, Any], Any], Any]


class UnknownEvent(ValueError):
    pass


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
    if is_schedule(event):
        engine = services.ready_engine()
        tasks = maintenance.run(engine, services.settings)
        log.info("maintenance run", extra={"fields": {"tasks": tasks}})
        return {"ok": True, "tasks": tasks}
    raise UnknownEvent(
        "unrecognised event: expected an HTTP event (API Gateway, Function URL, ALB) or an "
        "EventBridge schedule"
    )
