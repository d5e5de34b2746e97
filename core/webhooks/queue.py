"""The drain queue on AWS: a message on the SQS queue the DeliveryFunction consumes.

The API sends one after a commit that wrote deliveries, so they go out within a second or two
of the change; the DeliveryFunction sends itself a delayed one when retries are waiting.
Messages carry no data, only "drain": the outbox in the database is the truth, so a lost or
doubled message costs nothing but latency or an empty drain.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from core.events.outbox import Notifier

# SQS caps DelaySeconds at 15 minutes; a later retry is picked up by a later message or sweep.
MAX_DELAY_SECONDS = 900

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def _client(queue_url: str) -> Any:
    client = _clients.get(queue_url)
    if client is None:
        import boto3  # lazily: a cold start that never writes a delivery does not pay for it

        with _lock:
            client = _clients.get(queue_url) or boto3.client("sqs", region_name=_region(queue_url))
            _clients[queue_url] = client
    return client


def _region(queue_url: str) -> str | None:
    # https://sqs.<region>.amazonaws.com/<account>/<name>
    host = queue_url.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "sqs" else None


def send_drain(
    queue_url: str, *, delay_seconds: int = 0, follow_up: bool = False, until: int | None = None
) -> None:
    """`until`: a follow-up's target, the epoch ms of the delivery it waits for."""
    body: dict[str, bool | int] = {"drain": True}
    if follow_up:
        body["follow_up"] = True
    if until is not None:
        body["until"] = until
    _client(queue_url).send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(body),
        DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds)),
    )


def notifier(queue_url: str) -> Notifier:
    def notify() -> None:
        send_drain(queue_url)

    return notify


def forget_clients() -> None:
    """Tests: drop clients made under another moto mock."""
    with _lock:
        _clients.clear()
