"""SQS on AWS: one client per queue URL, made on first use. The webhook drain queue
(core/webhooks/queue.py) and the conversation ingestion queue (core/app/jobs.py) send through
it."""

from __future__ import annotations

import json
import threading
from typing import Any

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def client(queue_url: str) -> Any:
    found = _clients.get(queue_url)
    if found is None:
        import boto3  # lazily: a cold start that never sends a message does not pay for it

        with _lock:
            found = _clients.get(queue_url) or boto3.client("sqs", region_name=region(queue_url))
            _clients[queue_url] = found
    return found


def region(queue_url: str) -> str | None:
    # https://sqs.<region>.amazonaws.com/<account>/<name>
    host = queue_url.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "sqs" else None


def send(queue_url: str, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
    client(queue_url).send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(body), DelaySeconds=delay_seconds
    )


def forget_clients() -> None:
    """Tests: drop clients made under another moto mock."""
    with _lock:
        _clients.clear()
