"""Rotating a watch's or an inbound hook source's HMAC secret with an overlap.

A new secret replaces the current one at once, and the one it replaces stays valid for
`overlap_seconds` (a day by default, a week at most), so the system at the other end can
switch without a gap: during the window outgoing deliveries carry a v1 signature with each
secret (a receiver still holding the old one verifies them), and inbound hooks signed with
either are accepted. Rotating again within the window ends the older secret at once: at most
two are ever valid.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Connection

from core.kernel.db.engine import sql
from core.kernel.ids import iso, now_ms
from core.webhooks import signing
from core.webhooks.models import RotatedRecord


def live_secrets(
    secret: str, previous: str | None, previous_expires_at: int | None, now: int | None = None
) -> tuple[str, ...]:
    """The secrets valid now, the current one first."""
    now = now_ms() if now is None else now
    if previous and previous_expires_at is not None and previous_expires_at > now:
        return (secret, previous)
    return (secret,)


def hint(secret: str) -> str:
    return secret[: len(signing.SECRET_PREFIX) + 4] + "…"


def rotate(
    conn: Connection,
    table: Literal["watches", "hook_sources"],
    brain_id: str,
    row_id: str,
    current: str,
    overlap_seconds: int,
) -> RotatedRecord:
    """Swap in a new secret; the caller has checked the row exists in the brain and records
    the changelog row in the same transaction."""
    now = now_ms()
    secret = signing.new_secret()
    expires = now + overlap_seconds * 1000 if overlap_seconds else None
    conn.execute(
        sql(
            f"UPDATE {table} SET secret = :secret, previous_secret = :previous, "
            "previous_secret_expires_at = :expires, updated_at = :now "
            "WHERE brain_id = :brain AND id = :id"
        ),
        {
            "secret": secret,
            "previous": current if expires else None,
            "expires": expires,
            "now": now,
            "brain": brain_id,
            "id": row_id,
        },
    )
    return {
        "id": row_id,
        "secret": secret,
        "secret_hint": hint(secret),
        "previous_secret_expires_at": iso(expires),
    }
