"""Inbound triggers: signed webhooks from other systems that add memories.

An owner registers a source (POST /v1/hooks/sources) and gets its id and an HMAC secret, shown
once. The other system then POSTs a memory (the body of POST /v1/memories) to
/v1/hooks/{source_id}, signed exactly as Mnemo signs its own webhooks (core/webhooks/signing.py):
`Mnemo-Signature: t=<unix>,v1=<hex>`, plus a `Mnemo-Delivery-Id`. A timestamp outside the
tolerance window is refused, and so is a delivery id or a signature seen before (kept in
hook_receipts for twice the window, after which its timestamp alone refuses it): the delivery
id header is not signed, so the signature that verified is always a receipt too, and the same
signed request cannot be played twice under another id.

The receipt and the memory are written in one transaction: a delivery whose memory fails can
be sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from core.events import changelog
from core.kernel.config import Limits
from core.kernel.db.engine import sql
from core.kernel.errors import Conflict, NotFound, Unauthorized
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope
from core.memory import store as memories
from core.memory.indexing import Indexer
from core.memory.models import MemoryIn, SaveRecord
from core.webhooks import rotation, signing
from core.webhooks.models import (
    HookSourceIn,
    HookSourceRecord,
    NewHookSourceRecord,
    RotatedRecord,
    RotateIn,
    SourceDeletedRecord,
)

# The list of sources is one page: it stays one because a brain's sources are bounded.
MAX_SOURCES = 100


@dataclass(frozen=True)
class Source:
    id: str
    brain_id: str
    name: str
    secret: str
    user_id: str | None
    # A rotated secret still in its overlap window: signatures made with it are accepted too.
    previous_secrets: tuple[str, ...] = ()

    def scope(self) -> Scope:
        return Scope(brain_id=self.brain_id, principal=f"hook:{self.name}", user_id=self.user_id)


_COLUMNS = (
    "id, brain_id, name, secret, user_id, active, created_at, last_received_at, "
    "previous_secret, previous_secret_expires_at"
)


def _out(row: Any) -> HookSourceRecord:
    return {
        "id": row.id,
        "name": row.name,
        "user_id": row.user_id,
        "active": bool(row.active),
        "path": f"/v1/hooks/{row.id}",
        "secret_hint": rotation.hint(row.secret),
        "previous_secret_expires_at": iso(row.previous_secret_expires_at)
        if len(_live(row)) > 1
        else None,
        "created_at": iso(row.created_at),
        "last_received_at": iso(row.last_received_at),
    }


def create_source(conn: Connection, scope: Scope, data: HookSourceIn) -> NewHookSourceRecord:
    scope.require_owner_write()
    taken = conn.execute(
        sql("SELECT 1 FROM hook_sources WHERE brain_id = :brain AND name = :name"),
        {"brain": scope.brain_id, "name": data.name},
    ).first()
    if taken:
        raise Conflict(f"a hook source named {data.name!r} exists", code="source_exists")
    count = conn.execute(
        sql("SELECT count(*) FROM hook_sources WHERE brain_id = :brain"), {"brain": scope.brain_id}
    ).scalar()
    if int(count or 0) >= MAX_SOURCES:
        raise Conflict(
            f"this brain has {MAX_SOURCES} hook sources, the most it may have: delete one first",
            code="source_limit",
        )
    source_id = new_id()
    secret = signing.new_secret()
    now = now_ms()
    conn.execute(
        sql(
            "INSERT INTO hook_sources (id, brain_id, name, secret, user_id, active, created_at, "
            "updated_at) VALUES (:id, :brain, :name, :secret, :user, 1, :now, :now)"
        ),
        {
            "id": source_id,
            "brain": scope.brain_id,
            "name": data.name,
            "secret": secret,
            "user": data.user_id,
            "now": now,
        },
    )
    changelog.record(
        conn,
        scope,
        event_type="hook_source.created",
        entity_type="hook_source",
        entity_id=source_id,
        summary=f"Inbound hook source {data.name!r} created",
    )
    row = _fetch(conn, scope, source_id)
    return {**_out(row), "secret": secret}


def _live(row: Any) -> tuple[str, ...]:
    return rotation.live_secrets(row.secret, row.previous_secret, row.previous_secret_expires_at)


def rotate_secret(conn: Connection, scope: Scope, source_id: str, data: RotateIn) -> RotatedRecord:
    """A new HMAC secret, shown once; signatures made with the replaced one are accepted for
    `overlap_seconds` more (core/webhooks/rotation.py)."""
    scope.require_owner_write()
    row = _fetch(conn, scope, source_id)
    rotated = rotation.rotate(
        conn, "hook_sources", scope.brain_id, source_id, row.secret, data.overlap_seconds
    )
    changelog.record(
        conn,
        scope,
        event_type="hook_source.secret_rotated",
        entity_type="hook_source",
        entity_id=source_id,
        summary=f"Inbound hook source {row.name!r}: secret rotated "
        f"({data.overlap_seconds} s overlap)",
    )
    return rotated


def _fetch(conn: Connection, scope: Scope, source_id: str) -> Any:
    row = conn.execute(
        sql(f"SELECT {_COLUMNS} FROM hook_sources WHERE brain_id = :brain AND id = :id"),
        {"brain": scope.brain_id, "id": source_id},
    ).first()
    if row is None:
        raise NotFound("no such hook source")
    return row


def list_sources(conn: Connection, scope: Scope) -> list[HookSourceRecord]:
    scope.require_owner()
    rows = conn.execute(
        sql(f"SELECT {_COLUMNS} FROM hook_sources WHERE brain_id = :brain ORDER BY name"),
        {"brain": scope.brain_id},
    )
    return [_out(r) for r in rows]


def delete_source(conn: Connection, scope: Scope, source_id: str) -> SourceDeletedRecord:
    scope.require_owner_write()
    row = _fetch(conn, scope, source_id)
    params = {"brain": scope.brain_id, "id": source_id}
    conn.execute(
        sql("DELETE FROM hook_receipts WHERE brain_id = :brain AND source_id = :id"), params
    )
    conn.execute(sql("DELETE FROM hook_sources WHERE brain_id = :brain AND id = :id"), params)
    changelog.record(
        conn,
        scope,
        event_type="hook_source.deleted",
        entity_type="hook_source",
        entity_id=source_id,
        summary=f"Inbound hook source {row.name!r} deleted",
    )
    return {"id": source_id, "deleted": True}


def find_source(conn: Connection, source_id: str) -> Source:
    """The source by its id alone: the caller has no key, its signature says who it is. An
    unknown or inactive source is a 404."""
    row = conn.execute(
        sql(f"SELECT {_COLUMNS} FROM hook_sources WHERE id = :id"), {"id": source_id}
    ).first()
    if row is None or not row.active:
        raise NotFound("no such hook source")
    live = _live(row)
    return Source(row.id, row.brain_id, row.name, live[0], row.user_id, live[1:])


def authenticate(
    source: Source,
    header: str | None,
    delivery_id: str | None,
    body: bytes,
    *,
    tolerance: int,
) -> tuple[str, ...]:
    """The receipt ids to record, once the signature is checked; Unauthorized otherwise.

    Neither the delivery id header nor extra v1 values are signed, so a captured request sent
    again with another delivery id (or another v1 in front) must still be a replay: the
    signature that verified is always one of the receipts, the delivery id the other."""
    if not header:
        raise Unauthorized(
            f"sign the body: send {signing.SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex "
            "HMAC-SHA256 of '<t>.<body>' keyed with the source's secret>",
            code="missing_signature",
        )
    problem: signing.BadSignature | None = None
    for secret in (source.secret, *source.previous_secrets):
        try:
            timestamp = signing.verify(secret, header, body, tolerance=tolerance)
        except signing.StaleSignature as exc:
            raise Unauthorized(str(exc), code="stale_signature") from None
        except signing.BadSignature as exc:
            problem = exc
            continue
        break
    else:
        raise Unauthorized(str(problem), code="bad_signature")
    # One receipt per live secret's signature, whichever the header carried: a replay that
    # keeps only the old secret's v1 (or only the new one's) still meets a receipt.
    signed = tuple(
        "v1:" + signing.digest(s, timestamp, body)
        for s in (source.secret, *source.previous_secrets)
    )
    given = (delivery_id or "").strip()[:200]
    return (given, *signed) if given else signed


def receive(
    conn: Connection,
    scope: Scope,
    source: Source,
    receipts: tuple[str, ...],
    data: MemoryIn,
    limits: Limits,
    index: Indexer,
) -> SaveRecord:
    """The memory the delivery adds, with its receipts (`authenticate`), in one transaction."""
    assert scope.brain_id == source.brain_id
    now = now_ms()
    for receipt in receipts:
        inserted = conn.execute(
            sql(
                "INSERT INTO hook_receipts (source_id, delivery_id, brain_id, received_at) "
                "VALUES (:source, :delivery, :brain, :now) "
                "ON CONFLICT (source_id, delivery_id) DO NOTHING"
            ),
            {"source": source.id, "delivery": receipt, "brain": source.brain_id, "now": now},
        ).rowcount
        if not inserted:
            raise Conflict(
                "this delivery was received already: a replay, or a retry of a delivery that "
                "succeeded",
                code="replayed_delivery",
                details={"delivery_id": receipts[0]},
            )
    conn.execute(
        sql("UPDATE hook_sources SET last_received_at = :now WHERE brain_id = :brain AND id = :id"),
        {"now": now, "brain": source.brain_id, "id": source.id},
    )
    if data.source is None:
        data = data.model_copy(update={"source": f"hook:{source.name}"})
    return memories.create(conn, scope, data, limits, index)


def purge_receipts(conn: Connection, *, tolerance_seconds: int) -> int:
    """Receipts older than twice the window, across brains: their timestamps alone are
    refused by now."""
    result = conn.execute(
        sql("DELETE FROM hook_receipts WHERE received_at < :before"),
        {"before": now_ms() - 2 * tolerance_seconds * 1000},
    )
    return result.rowcount or 0
