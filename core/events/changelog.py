"""The brain-wide audit feed: every mutation, with a short human summary."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from core.events import history as histories
from core.events import outbox
from core.events.models import ChangelogEntryRecord
from core.kernel import cursor as cursors
from core.kernel.db.engine import sql
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope

_PREVIEW = 80


def preview(content: str) -> str:
    flat = " ".join(content.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…"


def record(
    conn: Connection,
    scope: Scope,
    *,
    event_type: str,
    entity_type: str,
    entity_id: str,
    summary: str,
    user_id: str | None = None,
    actor_id: str | None = None,
    payload: dict[str, Any] | None = None,
    at: int | None = None,
    history: histories.HistoryRow | None = None,
) -> None:
    """`history`: the change's memory history row (history.entry), written with this row:
    in the same statement on PostgreSQL (a data-modifying WITH; one round trip where two
    were), just before it on SQLite, which has no such WITH. On PostgreSQL that statement
    also reads the brain's active watches for the webhook outbox: another round trip less
    for every change."""
    event_id = new_id()
    payload_json = json.dumps(payload or {})
    at = now_ms() if at is None else at
    insert = (
        "INSERT INTO changelog (id, brain_id, user_id, event_type, entity_type, entity_id, "
        "actor_id, summary, payload, created_at) VALUES (:id, :brain, :user, :event, "
        ":etype, :eid, :actor, :summary, :payload, :at)"
    )
    values: Mapping[str, Any] = {
        "id": event_id,
        "brain": scope.brain_id,
        "user": user_id,
        "event": event_type,
        "etype": entity_type,
        "eid": entity_id,
        "actor": actor_id or scope.principal,
        "summary": summary,
        "payload": payload_json,
        "at": at,
    }
    if history is not None and history["brain"] != scope.brain_id:
        raise ValueError("a history row of another brain")
    watches = None
    if conn.dialect.name == "postgresql":
        # Data-modifying WITHs run whether or not the query reads them; the watches' SELECT
        # sees nothing they write (and needs nothing of it).
        inserts = ([f"h AS ({histories.INSERT})"] if history is not None else []) + [
            f"c AS ({insert})"
        ]
        watches = conn.execute(
            sql(f"WITH {', '.join(inserts)} {outbox.ACTIVE_WATCHES}"),
            {**(history or {}), **values},
        ).all()
    else:
        if history is not None:
            conn.execute(sql(histories.INSERT), dict(history))
        conn.execute(sql(insert), values)
    # The webhook outbox, in this same transaction: the event and its deliveries commit or
    # roll back together.
    outbox.enqueue_event(
        conn,
        scope.brain_id,
        event_id=event_id,
        event_type=event_type,
        entity_type=entity_type,
        entity_id=entity_id,
        summary=summary,
        payload=payload_json,
        at=at,
        watches=watches,
    )


def scrub(conn: Connection, scope: Scope, entity_id: str) -> None:
    """Remove the content a purged entity left in earlier entries; keep that they happened."""
    conn.execute(
        sql(
            "UPDATE changelog SET summary = '(purged)', payload = '{}' "
            "WHERE brain_id = :brain AND entity_id = :eid"
        ),
        {"brain": scope.brain_id, "eid": entity_id},
    )
    # Webhook deliveries carry the same summary and payload; unsent ones must not leak it.
    conn.execute(
        sql(
            "UPDATE deliveries SET summary = '(purged)', payload = '{}' "
            "WHERE brain_id = :brain AND entity_id = :eid"
        ),
        {"brain": scope.brain_id, "eid": entity_id},
    )


def feed(
    conn: Connection,
    scope: Scope,
    *,
    since: int | None,
    event_type: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ChangelogEntryRecord], str | None]:
    """Oldest first from `since`, so a consumer can follow the feed with next_cursor."""
    return _page(
        conn, scope, since=since, event_type=event_type, cursor=cursor, limit=limit, newest=False
    )


def latest(
    conn: Connection,
    scope: Scope,
    *,
    event_type: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ChangelogEntryRecord], str | None]:
    """Newest first, for people reading what happened lately (the console); `feed` is the
    oldest-first form that consumers follow."""
    return _page(
        conn, scope, since=None, event_type=event_type, cursor=cursor, limit=limit, newest=True
    )


def _page(
    conn: Connection,
    scope: Scope,
    *,
    since: int | None,
    event_type: str | None,
    cursor: str | None,
    limit: int,
    newest: bool,
) -> tuple[list[ChangelogEntryRecord], str | None]:
    params: dict[str, Any] = {"limit": limit + 1}
    where = [scope.where(params)]
    if since is not None:
        where.append("created_at >= :since")
        params["since"] = since
    if event_type is not None:
        where.append("event_type = :event")
        params["event"] = event_type
    if past := cursors.keyset(cursor, params, newest=newest):
        where.append(past)
    order = "DESC" if newest else "ASC"
    rows, next_cursor = cursors.page(
        conn.execute(
            sql(
                "SELECT id, event_type, entity_type, entity_id, user_id, actor_id, summary, "
                f"payload, created_at FROM changelog WHERE {' AND '.join(where)} "
                f"ORDER BY created_at {order}, id {order} LIMIT :limit"
            ),
            params,
        ).all(),
        limit,
    )
    entries = [
        ChangelogEntryRecord(
            id=row.id,
            event_type=row.event_type,
            entity_type=row.entity_type,
            entity_id=row.entity_id,
            user_id=row.user_id,
            actor_id=row.actor_id,
            summary=row.summary,
            payload=json.loads(row.payload),
            created_at=iso(row.created_at),
        )
        for row in rows
    ]
    return entries, next_cursor
