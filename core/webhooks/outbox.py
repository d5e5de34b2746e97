"""The webhook outbox's sending half: deliveries drained, sent and recorded.

Deliveries are written in the change's own transaction by `core.events.outbox`. `drain` is what
the DeliveryFunction, `mnemo deliver`, the serve drainer and the maintenance sweep call: it
claims due deliveries (pushing their next_attempt_at forward by a lease, under FOR UPDATE SKIP
LOCKED on PostgreSQL and SQLite's write lock), sends them outside any transaction, and records
each outcome only if its claim still holds. Failed attempts are retried with exponential
backoff and full jitter until max_attempts, then marked failed.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text

from core.kernel import cursor as cursors
from core.kernel.config import WebhookSettings
from core.kernel.db.engine import sql, transaction
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.webhooks import deliver, rotation, signing
from core.webhooks.models import DeliveryRecord, DrainRecord
from core.webhooks.ssrf import Resolver, UnsafeUrl, check_url, system_resolver

log = logging.getLogger("mnemo.webhooks")

# Finished deliveries older than this leave the log (the maintenance sweep).
KEEP_FINISHED_MS = 30 * 24 * 3600 * 1000


# --- the delivery log ----------------------------------------------------------------------

_LOG_COLUMNS = (
    "id, watch_id, event_id, event_type, entity_type, entity_id, summary, status, attempts, "
    "next_attempt_at, last_status_code, last_error, delivered_at, created_at, updated_at"
)


def delivery_out(row: Any) -> DeliveryRecord:
    return {
        "id": row.id,
        "watch_id": row.watch_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "entity": {"type": row.entity_type, "id": row.entity_id},
        "summary": row.summary,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "delivered_at": iso(row.delivered_at),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def list_deliveries(
    conn: Connection,
    scope: Scope,
    watch_id: str,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[DeliveryRecord], str | None]:
    """A watch's deliveries, newest first."""
    where = ["brain_id = :brain", "watch_id = :watch"]
    params: dict[str, Any] = {"brain": scope.brain_id, "watch": watch_id, "limit": limit + 1}
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    if past := cursors.keyset(cursor, params):
        where.append(past)
    rows, next_cursor = cursors.page(
        conn.execute(
            sql(
                f"SELECT {_LOG_COLUMNS} FROM deliveries WHERE {' AND '.join(where)} "
                "ORDER BY created_at DESC, id DESC LIMIT :limit"
            ),
            params,
        ).all(),
        limit,
    )
    return [delivery_out(r) for r in rows], next_cursor


def get_delivery(conn: Connection, scope: Scope, delivery_id: str) -> DeliveryRecord | None:
    row = conn.execute(
        sql(f"SELECT {_LOG_COLUMNS} FROM deliveries WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": delivery_id},
    ).first()
    return None if row is None else delivery_out(row)


# --- draining ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: str
    brain_id: str
    watch_id: str
    event_id: str
    event_type: str
    entity_type: str
    entity_id: str
    summary: str
    payload: str
    event_at: int
    attempts: int  # this attempt's number, 1 for the first
    token: str
    webhook_url: str | None = None
    secret: str | None = None
    active: bool = False
    # A rotated secret still in its overlap window: deliveries are signed with it too.
    previous_secrets: tuple[str, ...] = ()

    def body(self) -> bytes:
        event = {
            "id": self.event_id,
            "type": self.event_type,
            "entity": {"type": self.entity_type, "id": self.entity_id},
            "summary": self.summary,
            "payload": json.loads(self.payload),
            "time": iso(self.event_at),
        }
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class DrainReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> DrainRecord:
        return {
            "claimed": self.claimed,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }


_CLAIM_RETURNING = (
    "RETURNING id, brain_id, watch_id, event_id, event_type, entity_type, entity_id, summary, "
    "payload, event_at, attempts"
)


# By id alone: a batch spans brains; each row's brain is checked against its delivery's below.
_CLAIMED_WATCHES = text(
    "SELECT id, brain_id, webhook_url, secret, active, previous_secret, "
    "previous_secret_expires_at FROM watches WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True))


def claim(conn: Connection, settings: WebhookSettings, limit: int) -> list[Claimed]:
    """Due deliveries, now this drainer's for `lease_seconds`; across brains (a system task)."""
    now = now_ms()
    token = new_id()
    # PostgreSQL: rows another drainer is claiming are skipped, not waited on. SQLite: the
    # write transaction (BEGIN IMMEDIATE) already keeps other drainers out.
    lock = "" if conn.dialect.name == "sqlite" else " FOR UPDATE SKIP LOCKED"
    rows = conn.execute(
        sql(
            "UPDATE deliveries SET claim_token = :token, next_attempt_at = :lease, "
            "attempts = attempts + 1, updated_at = :now WHERE id IN (SELECT id FROM deliveries "
            "WHERE status = 'pending' AND next_attempt_at <= :now "
            f"ORDER BY next_attempt_at LIMIT :limit{lock}) {_CLAIM_RETURNING}"
        ),
        {
            "token": token,
            "lease": now + settings.lease_seconds * 1000,
            "now": now,
            "limit": limit,
        },
    ).all()
    if not rows:
        return []
    watch_ids = sorted({r.watch_id for r in rows})
    watches = {w.id: w for w in conn.execute(_CLAIMED_WATCHES, {"ids": watch_ids})}
    claimed = []
    for r in rows:
        w = watches.get(r.watch_id)
        if w is not None and w.brain_id != r.brain_id:
            w = None
        claimed.append(
            Claimed(
                r.id,
                r.brain_id,
                r.watch_id,
                r.event_id,
                r.event_type,
                r.entity_type,
                r.entity_id,
                r.summary,
                r.payload,
                r.event_at,
                r.attempts,
                token,
                webhook_url=None if w is None else w.webhook_url,
                secret=None if w is None else w.secret,
                active=w is not None and bool(w.active),
                previous_secrets=()
                if w is None
                else rotation.live_secrets(
                    w.secret, w.previous_secret, w.previous_secret_expires_at, now
                )[1:],
            )
        )
    claimed.sort(key=lambda c: (c.event_at, c.id))
    return claimed


Sender = Callable[..., deliver.Outcome]


def send(
    item: Claimed,
    settings: WebhookSettings,
    resolver: Resolver = system_resolver,
    *,
    sender: Sender = deliver.post,
) -> deliver.Outcome:
    """One attempt: the URL checked again (its DNS answer may have changed), then the POST to
    the checked address, signed now."""
    if not item.active or item.webhook_url is None or item.secret is None:
        return deliver.Outcome(False, None, "the watch is paused or was deleted")
    try:
        target = check_url(item.webhook_url, settings, resolver)
    except UnsafeUrl as exc:
        return deliver.Outcome(False, None, f"refused: {exc.message}")
    body = item.body()
    headers = {
        signing.SIGNATURE_HEADER: signing.sign(item.secret, body, also=item.previous_secrets),
        signing.DELIVERY_HEADER: item.id,
        signing.EVENT_HEADER: item.event_type,
        "Mnemo-Attempt": str(item.attempts),
    }
    return sender(target, body, headers, timeout=settings.timeout_seconds)


def _attempt(
    item: Claimed, settings: WebhookSettings, resolver: Resolver, sender: Sender
) -> deliver.Outcome:
    try:
        return send(item, settings, resolver, sender=sender)
    except Exception as exc:  # one odd URL or resolver error must not stop the whole drain
        log.warning("webhook attempt %s failed unexpectedly", item.id, exc_info=True)
        return deliver.Outcome(False, None, f"{type(exc).__name__}: {exc}"[:512])


def backoff_ms(settings: WebhookSettings, attempts: int) -> int:
    """Full jitter: a random wait up to the exponential cap (AWS Architecture Blog, 2015)."""
    cap = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempts - 1))
    return int(random.uniform(0, cap) * 1000)


def _final(item: Claimed, outcome: deliver.Outcome, settings: WebhookSettings) -> bool:
    # A paused or deleted watch, or a URL the guard refuses, will not get better by retrying.
    permanent = not item.active or item.webhook_url is None
    return permanent or item.attempts >= settings.max_attempts


_DELIVERED = text(
    "UPDATE deliveries SET status = 'delivered', delivered_at = :now, "
    "last_status_code = :code, last_error = NULL, claim_token = NULL, updated_at = :now "
    "WHERE brain_id = :brain AND claim_token = :token AND id IN :ids RETURNING id"
).bindparams(bindparam("ids", expanding=True))


def record(
    conn: Connection,
    settings: WebhookSettings,
    results: Sequence[tuple[Claimed, deliver.Outcome]],
    report: DrainReport,
) -> None:
    """Each outcome, where its claim still holds (a lease that ran out may have passed the
    delivery to another drainer). Successes are one statement per brain and status code, so
    a healthy batch costs a few statements, not one per delivery."""
    now = now_ms()
    delivered: dict[tuple[str, str, int | None], list[str]] = {}
    last: dict[tuple[str, str], str | None] = {}
    for item, outcome in results:
        if outcome.ok:
            delivered.setdefault((item.brain_id, item.token, outcome.status), []).append(item.id)
            continue
        params: dict[str, Any] = {
            "brain": item.brain_id,
            "id": item.id,
            "token": item.token,
            "now": now,
            "code": outcome.status,
            "error": outcome.error,
        }
        if _final(item, outcome, settings):
            status = "failed"
            statement = (
                "UPDATE deliveries SET status = 'failed', last_status_code = :code, "
                "last_error = :error, claim_token = NULL, updated_at = :now "
                "WHERE brain_id = :brain AND id = :id AND claim_token = :token"
            )
        else:
            status = "retrying"
            params["next"] = now + backoff_ms(settings, item.attempts)
            statement = (
                "UPDATE deliveries SET next_attempt_at = :next, last_status_code = :code, "
                "last_error = :error, claim_token = NULL, updated_at = :now "
                "WHERE brain_id = :brain AND id = :id AND claim_token = :token"
            )
        if not conn.execute(sql(statement), params).rowcount:
            continue
        setattr(report, status, getattr(report, status) + 1)
        kind = (outcome.error or "error").split(":", 1)[0]
        report.errors[kind] = report.errors.get(kind, 0) + 1
        last[(item.brain_id, item.watch_id)] = outcome.error
    watch_of = {item.id: item.watch_id for item, _ in results}
    for (brain_id, token, code), ids in delivered.items():
        done = conn.execute(
            _DELIVERED, {"brain": brain_id, "token": token, "now": now, "code": code, "ids": ids}
        ).all()
        report.delivered += len(done)
        for (delivery_id,) in done:
            last[(brain_id, watch_of[delivery_id])] = None
    for (brain_id, watch_id), error in last.items():
        conn.execute(
            sql(
                "UPDATE watches SET last_triggered_at = :now, last_error = :error "
                "WHERE brain_id = :brain AND id = :watch"
            ),
            {"brain": brain_id, "watch": watch_id, "now": now, "error": error},
        )


def _rounds_per_lease(settings: WebhookSettings) -> int:
    """How many deliveries one worker may send in turn while their claim holds: an attempt
    can take two timeouts (connecting, then waiting for the answer). A batch sent past its
    lease may be claimed and sent again by another drainer meanwhile."""
    per_attempt = max(0.001, 2 * settings.timeout_seconds)
    return max(1, min(8, int(settings.lease_seconds // per_attempt)))


def drain(
    engine: Engine,
    settings: WebhookSettings,
    *,
    resolver: Resolver = system_resolver,
    budget_seconds: float = 60.0,
    batch_size: int | None = None,
    sender: Sender = deliver.post,
) -> DrainReport:
    """Send every due delivery (retries coming due meanwhile included) until none is left or
    the budget is spent; what is left stays pending for the next drain."""
    started = time.perf_counter()
    report = DrainReport()
    batch = batch_size or settings.concurrency * _rounds_per_lease(settings)
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        while time.perf_counter() - started < budget_seconds:
            with transaction(engine, write=True) as conn:
                claimed = claim(conn, settings, batch)
            if not claimed:
                break
            report.claimed += len(claimed)
            outcomes = list(pool.map(lambda c: _attempt(c, settings, resolver, sender), claimed))
            with transaction(engine, write=True) as conn:
                record(conn, settings, list(zip(claimed, outcomes, strict=True)), report)
    report.seconds = time.perf_counter() - started
    return report


def next_due(engine: Engine) -> int | None:
    """When the soonest pending delivery comes due (epoch ms), across brains."""
    with transaction(engine, write=False) as conn:
        value = conn.execute(
            sql("SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'")
        ).scalar()
    return None if value is None else int(value)


PURGE_BATCH = 5_000


def purge_finished(
    conn: Connection, *, older_than_ms: int = KEEP_FINISHED_MS, limit: int = PURGE_BATCH
) -> int:
    """At most `limit` delivered and failed deliveries past the log's retention, across brains:
    one short write each time (a busy month can leave millions); call again while it comes
    back full."""
    result = conn.execute(
        sql(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries "
            "WHERE status IN ('delivered', 'failed') AND updated_at < :before LIMIT :limit)"
        ),
        {"before": now_ms() - older_than_ms, "limit": limit},
    )
    return result.rowcount or 0
