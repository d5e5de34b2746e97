"""The drain queue on AWS: a message on the SQS queue the DeliveryFunction consumes.

The API sends one after a commit that wrote deliveries, so they go out within a second or two
of the change; the DeliveryFunction sends itself a delayed one when retries are waiting.
Messages carry no data, only "drain": the outbox in the database is the truth, so a lost or
doubled message costs nothing but latency or an empty drain.
"""

from __future__ import annotations

from core.events.outbox import Notifier
from core.kernel import sqs

# SQS caps DelaySeconds at 15 minutes; a later retry is picked up by a later message or sweep.
MAX_DELAY_SECONDS = 900


def send_drain(
    queue_url: str, *, delay_seconds: int = 0, follow_up: bool = False, until: int | None = None
) -> None:
    """`until`: a follow-up's target, the epoch ms of the delivery it waits for."""
    body: dict[str, bool | int] = {"drain": True}
    if follow_up:
        body["follow_up"] = True
    if until is not None:
        body["until"] = until
    sqs.send(queue_url, body, delay_seconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds)))


def notifier(queue_url: str) -> Notifier:
    def notify() -> None:
        send_drain(queue_url)

    return notify


def forget_clients() -> None:
    """Tests: drop clients made under another moto mock."""
    sqs.forget_clients()
