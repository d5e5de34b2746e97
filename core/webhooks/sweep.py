"""The maintenance schedule's part in webhooks: send what no drain message sent (SQS down, a
crash between commit and send, retries past SQS's 15-minute delay), then trim the logs."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from core.kernel.config import WebhookSettings
from core.kernel.db.engine import transaction
from core.webhooks import hooks, outbox
from core.webhooks.models import SweepRecord


def sweep(engine: Engine, settings: WebhookSettings, *, budget_seconds: float) -> SweepRecord:
    started = time.monotonic()
    report = outbox.drain(engine, settings, budget_seconds=budget_seconds)
    purged = 0
    while True:  # batch by batch, each its own transaction, within what is left of the budget
        with transaction(engine) as conn:
            batch = outbox.purge_finished(conn, limit=outbox.PURGE_BATCH)
        purged += batch
        if batch < outbox.PURGE_BATCH or time.monotonic() - started > budget_seconds:
            break
    with transaction(engine) as conn:
        receipts = hooks.purge_receipts(conn, tolerance_seconds=settings.inbound_tolerance_seconds)
    return {**report.as_dict(), "deliveries_purged": purged, "hook_receipts_purged": receipts}
