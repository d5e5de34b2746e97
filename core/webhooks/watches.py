"""Watches: a brain's webhook subscriptions (event types or "*", an optional text filter, a URL,
an active flag). Each matching change writes a delivery to the outbox in its own transaction
(core/events/outbox.py); this module manages the subscriptions themselves, owners only.

The signing secret is made here and shown once, on create. It is stored as is: an HMAC needs
the raw key to sign each delivery, and the receiver holds the same raw key to verify.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from core.events import changelog, outbox
from core.kernel.db.engine import sql
from core.kernel.errors import Conflict, NotFound
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.webhooks import outbox as delivery_log
from core.webhooks import rotation, signing
from core.webhooks.models import (
    DeliveryPageRecord,
    DeliveryRecord,
    NewWatchRecord,
    RotatedRecord,
    RotateIn,
    WatchDeletedRecord,
    WatchIn,
    WatchPatch,
    WatchRecord,
)
from core.webhooks.ssrf import Target

# Every write of a brain reads its active watches, and the list is one page: both stay cheap
# only while a brain's watches are few.
MAX_WATCHES = 100


_COLUMNS = (
    "id, name, event_types, query, webhook_url, secret, active, created_at, updated_at, "
    "last_triggered_at, last_error, previous_secret, previous_secret_expires_at"
)


def _stored_types(value: list[str] | str) -> str:
    return outbox.ALL_EVENTS if value == "*" else json.dumps(value)


def _out(row: Any) -> WatchRecord:
    types: list[str] = json.loads(row.event_types)
    return {
        "id": row.id,
        "name": row.name,
        "event_types": "*" if types == ["*"] else types,
        "query": row.query,
        "webhook_url": row.webhook_url,
        "active": bool(row.active),
        "secret_hint": rotation.hint(row.secret),
        "previous_secret_expires_at": _overlap_end(row),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "last_triggered_at": iso(row.last_triggered_at),
        "last_error": row.last_error,
    }


def _overlap_end(row: Any) -> str | None:
    live = rotation.live_secrets(row.secret, row.previous_secret, row.previous_secret_expires_at)
    return iso(row.previous_secret_expires_at) if len(live) > 1 else None


def _fetch(conn: Connection, scope: Scope, watch_id: str) -> Any:
    row = conn.execute(
        sql(f"SELECT {_COLUMNS} FROM watches WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": watch_id},
    ).first()
    if row is None:
        raise NotFound("no such watch")
    return row


def _record(conn: Connection, scope: Scope, event: str, row_id: str, summary: str) -> None:
    changelog.record(
        conn,
        scope,
        event_type=f"watch.{event}",
        entity_type="watch",
        entity_id=row_id,
        summary=summary,
    )


def create(conn: Connection, scope: Scope, data: WatchIn, checked: Target) -> NewWatchRecord:
    """`checked` is the SSRF guard's verdict on data.webhook_url, made before the transaction
    (a DNS lookup must not hold the write lock)."""
    scope.require_owner_write()
    assert checked.url == data.webhook_url
    count = conn.execute(
        sql("SELECT count(*) FROM watches WHERE brain_id = :brain"), {"brain": scope.brain_id}
    ).scalar()
    if int(count or 0) >= MAX_WATCHES:
        raise Conflict(
            f"this brain has {MAX_WATCHES} watches, the most it may have: delete or reuse one "
            "(a watch takes several event types)",
            code="watch_limit",
        )
    watch_id = new_id()
    secret = signing.new_secret()
    now = now_ms()
    conn.execute(
        sql(
            "INSERT INTO watches (id, brain_id, name, event_types, query, query_folded, "
            "webhook_url, secret, active, created_at, updated_at) VALUES (:id, :brain, :name, "
            ":types, :query, :folded, :url, :secret, :active, :now, :now)"
        ),
        {
            "id": watch_id,
            "brain": scope.brain_id,
            "name": data.name,
            "types": _stored_types(data.event_types),
            "query": data.query,
            "folded": None if data.query is None else data.query.casefold(),
            "url": data.webhook_url,
            "secret": secret,
            "active": int(data.active),
            "now": now,
        },
    )
    _record(conn, scope, "created", watch_id, f"Watch {data.name!r} created")
    return {**_out(_fetch(conn, scope, watch_id)), "secret": secret}


def list_watches(conn: Connection, scope: Scope) -> list[WatchRecord]:
    scope.require_owner()
    rows = conn.execute(
        sql(f"SELECT {_COLUMNS} FROM watches WHERE brain_id = :brain ORDER BY created_at, id"),
        {"brain": scope.brain_id},
    )
    return [_out(r) for r in rows]


def get(conn: Connection, scope: Scope, watch_id: str) -> WatchRecord:
    scope.require_owner()
    return _out(_fetch(conn, scope, watch_id))


def update(
    conn: Connection,
    scope: Scope,
    watch_id: str,
    data: WatchPatch,
    checked: Target | None,
) -> WatchRecord:
    """`checked`: the SSRF verdict on the new webhook_url, when the patch changes it."""
    scope.require_owner_write()
    row = _fetch(conn, scope, watch_id)
    changes: dict[str, Any] = {}
    if data.name is not None:
        changes["name"] = data.name
    if data.event_types is not None:
        changes["event_types"] = _stored_types(data.event_types)
    if "query" in data.model_fields_set:
        query = (data.query or "").strip() or None
        changes["query"] = query
        changes["query_folded"] = None if query is None else query.casefold()
    if data.webhook_url is not None and data.webhook_url != row.webhook_url:
        assert checked is not None and checked.url == data.webhook_url
        changes["webhook_url"] = data.webhook_url
    if data.active is not None:
        changes["active"] = int(data.active)
    if changes:
        changes["updated_at"] = now_ms()
        assignments = ", ".join(f"{column} = :{column}" for column in sorted(changes))
        conn.execute(
            sql(f"UPDATE watches SET {assignments} WHERE brain_id = :brain AND id = :id"),
            {**changes, "brain": scope.brain_id, "id": watch_id},
        )
        fields = sorted(k for k in changes if k not in ("updated_at", "query_folded"))
        _record(
            conn, scope, "updated", watch_id, f"Watch {row.name!r} updated: {', '.join(fields)}"
        )
    return _out(_fetch(conn, scope, watch_id))


def delete(conn: Connection, scope: Scope, watch_id: str) -> WatchDeletedRecord:
    """The watch and its delivery log; deliveries not yet sent are dropped with it."""
    scope.require_owner_write()
    row = _fetch(conn, scope, watch_id)
    params = {"brain": scope.brain_id, "id": watch_id}
    conn.execute(sql("DELETE FROM deliveries WHERE brain_id = :brain AND watch_id = :id"), params)
    conn.execute(sql("DELETE FROM watches WHERE brain_id = :brain AND id = :id"), params)
    _record(conn, scope, "deleted", watch_id, f"Watch {row.name!r} deleted")
    return {"id": watch_id, "deleted": True}


def rotate_secret(conn: Connection, scope: Scope, watch_id: str, data: RotateIn) -> RotatedRecord:
    """A new signing secret, shown once; the replaced one keeps signing deliveries beside it
    for `overlap_seconds` (core/webhooks/rotation.py)."""
    scope.require_owner_write()
    row = _fetch(conn, scope, watch_id)
    rotated = rotation.rotate(
        conn, "watches", scope.brain_id, watch_id, row.secret, data.overlap_seconds
    )
    _record(
        conn,
        scope,
        "secret_rotated",
        watch_id,
        f"Watch {row.name!r}: signing secret rotated ({data.overlap_seconds} s overlap)",
    )
    return rotated


def test(conn: Connection, scope: Scope, watch_id: str) -> DeliveryRecord:
    """Queue a `watch.test` delivery to the watch's URL. A paused watch sends nothing, so its
    test delivery fails saying so in the log."""
    scope.require_owner_write()
    _fetch(conn, scope, watch_id)
    delivery_id = outbox.enqueue_test(conn, scope, watch_id)
    found = delivery_log.get_delivery(conn, scope, delivery_id)
    assert found is not None
    return found


def deliveries(
    conn: Connection,
    scope: Scope,
    watch_id: str,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> DeliveryPageRecord:
    scope.require_owner()
    _fetch(conn, scope, watch_id)
    results, next_cursor = delivery_log.list_deliveries(
        conn, scope, watch_id, status=status, limit=limit, cursor=cursor
    )
    return {"results": results, "next_cursor": next_cursor}
