"""The webhook outbox's enqueue half: deliveries written in the change's own transaction.

`enqueue_event` runs inside `core.events.changelog.record`, so a change and its deliveries commit
or roll back together. One indexed SELECT reads the brain's active watches (a brain without
watches pays that one cheap statement and nothing else; on PostgreSQL the changelog row's own
statement reads them, so not even a round trip); the event is matched against their filters
here, and only matches pay for the INSERT. When it did write rows, the process's
notifier runs after the commit (an SQS message on AWS, a wake-up of `mnemo serve`'s background
drainer locally). Sending them is `core.webhooks.outbox`'s job, a layer above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from core.kernel.db.engine import after_commit, sql
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope

log = logging.getLogger("mnemo.webhooks")

ALL_EVENTS = '["*"]'

Notifier = Callable[[], None]
_notifier: Notifier | None = None


def set_notifier(notifier: Notifier | None) -> None:
    """What runs after a commit that wrote deliveries (one per process)."""
    global _notifier
    _notifier = notifier


def _wake() -> None:
    notifier = _notifier
    if notifier is None:
        return
    try:
        notifier()
    except Exception:  # the change is committed; the maintenance sweep sends what is left
        log.warning("could not wake the webhook drainer", exc_info=True)


# The brain's active watches, by the (brain_id, active) index, with one bound value: on a brain
# without watches this is the whole cost of the outbox to a write, about a primary-key lookup.
# A brain has a handful of watches, so their filters are applied here rather than in SQL.
ACTIVE_WATCHES = (
    "SELECT id, event_types, query_folded FROM watches WHERE brain_id = :brain AND active = 1"
)
_INSERT = (
    "INSERT INTO deliveries (id, brain_id, watch_id, event_id, event_type, entity_type, "
    "entity_id, summary, payload, event_at, status, attempts, next_attempt_at, created_at, "
    "updated_at) VALUES (:id, :brain, :watch, :event, :event_type, :entity_type, :entity_id, "
    ":summary, :payload, :at, 'pending', 0, :now, :now, :now)"
)


def matches(event_types: str, query_folded: str | None, event_type: str, text: str) -> bool:
    """Whether a watch (its stored event_types JSON and case-folded query) takes an event;
    `text` is the event's summary and payload, case-folded."""
    if event_types != ALL_EVENTS:
        wanted = json.loads(event_types)
        family = event_type.rsplit(".", 1)[0] + ".*"
        if event_type not in wanted and family not in wanted:
            return False
    return query_folded is None or query_folded in text


def enqueue_event(
    conn: Connection,
    brain_id: str,
    *,
    event_id: str,
    event_type: str,
    entity_type: str,
    entity_id: str,
    summary: str,
    payload: str,
    at: int,
    watches: Sequence[Any] | None = None,
) -> int:
    """One delivery per active watch of the brain that the event matches; how many.
    `watches`: the brain's active watches (`ACTIVE_WATCHES`' rows) when the caller read them
    in this transaction already."""
    candidates = watches
    if candidates is None:
        candidates = conn.execute(sql(ACTIVE_WATCHES), {"brain": brain_id}).all()
    if not candidates:
        return 0
    text = f"{summary}\n{payload}".casefold()
    watches = [
        (w.id,) for w in candidates if matches(w.event_types, w.query_folded, event_type, text)
    ]
    if not watches:
        return 0
    now = now_ms()
    conn.execute(
        sql(_INSERT),
        [
            {
                "id": f"{event_id}:{watch_id}",
                "brain": brain_id,
                "watch": watch_id,
                "event": event_id,
                "event_type": event_type,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "summary": summary,
                "payload": payload,
                "at": at,
                "now": now,
            }
            for (watch_id,) in watches
        ],
    )
    after_commit(conn, _wake)
    return len(watches)


def enqueue_test(conn: Connection, scope: Scope, watch_id: str) -> str:
    """A `watch.test` delivery for one watch, whatever its filters; its delivery id."""
    event_id = new_id()
    now = now_ms()
    delivery_id = f"{event_id}:{watch_id}"
    conn.execute(
        sql(
            "INSERT INTO deliveries (id, brain_id, watch_id, event_id, event_type, entity_type, "
            "entity_id, summary, payload, event_at, status, attempts, next_attempt_at, "
            "created_at, updated_at) VALUES (:id, :brain, :watch, :event, 'watch.test', "
            "'watch', :watch, :summary, :payload, :now, 'pending', 0, :now, :now, :now)"
        ),
        {
            "id": delivery_id,
            "brain": scope.brain_id,
            "watch": watch_id,
            "event": event_id,
            "summary": "A test delivery: this watch's webhook is reachable",
            "payload": json.dumps({"test": True}),
            "now": now,
        },
    )
    after_commit(conn, _wake)
    return delivery_id
