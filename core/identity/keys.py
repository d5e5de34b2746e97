"""API keys: brain-scoped, optionally user-scoped or read-only, stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy import Connection

from core.identity.brains import ensure_brain
from core.kernel.db.engine import sql, tuples
from core.kernel.errors import Conflict, InvalidInput
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope

KEY_PREFIX = "mnemo_"
# A brain's active keys, and how many of its revoked ones a listing shows (newest first).
MAX_ACTIVE_KEYS = 1_000
REVOKED_SHOWN = 100
# last_used_at is bookkeeping, not security: refresh it at most this often to keep reads cheap.
_TOUCH_EVERY_MS = 60_000


@dataclass(frozen=True)
class NewKey:
    id: str
    brain_id: str
    prefix: str
    secret: str
    user_id: str | None
    read_only: bool


def _hash(secret: str) -> str:
    # Keys are 256-bit random: a fast hash is enough, no password stretching needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: Connection,
    brain_slug: str,
    *,
    name: str | None = None,
    user_id: str | None = None,
    read_only: bool = False,
) -> NewKey:
    return create_key_in(
        conn, ensure_brain(conn, brain_slug), name=name, user_id=user_id, read_only=read_only
    )


def create_key_in(
    conn: Connection,
    brain: str,
    *,
    name: str | None = None,
    user_id: str | None = None,
    read_only: bool = False,
) -> NewKey:
    """A key for the brain with this id (brain owners create keys through the API)."""
    if user_id is not None and not user_id.strip():
        # "" would be a user scope that the unique indexes treat like "no user" (coalesce).
        raise InvalidInput(
            "user_id must not be empty: omit it for a brain-wide key", details={"field": "user_id"}
        )
    if conn.dialect.name == "postgresql":
        # Concurrent creations count one at a time (SQLite writers are serialized already).
        # An advisory lock, not the brain row's: FOR UPDATE there would wait for every open
        # write that references the brain (a restore included).
        conn.execute(
            sql("SELECT pg_advisory_xact_lock(hashtextextended(:slot, 0))"),
            {"slot": f"api_keys\x1f{brain}"},
        )
    active = conn.execute(
        sql("SELECT count(*) FROM api_keys WHERE brain_id = :brain AND revoked_at IS NULL"),
        {"brain": brain},
    ).scalar_one()
    if active >= MAX_ACTIVE_KEYS:
        raise Conflict(
            f"this brain has {MAX_ACTIVE_KEYS:,} active keys, the most it may hold: revoke "
            "keys no longer in use first",
            code="too_many_keys",
            details={"limit": MAX_ACTIVE_KEYS},
        )
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key_id = new_id()
    conn.execute(
        sql(
            "INSERT INTO api_keys (id, brain_id, name, prefix, key_hash, user_id, read_only, "
            "created_at) VALUES (:id, :brain, :name, :prefix, :hash, :user, :ro, :now)"
        ),
        {
            "id": key_id,
            "brain": brain,
            "name": name,
            "prefix": prefix,
            "hash": _hash(secret),
            "user": user_id,
            "ro": int(read_only),
            "now": now_ms(),
        },
    )
    return NewKey(key_id, brain, prefix, secret, user_id, read_only)


def revoke_key(conn: Connection, brain_id: str, key_id: str) -> bool:
    result = conn.execute(
        sql(
            "UPDATE api_keys SET revoked_at = :now "
            "WHERE id = :id AND brain_id = :brain AND revoked_at IS NULL"
        ),
        {"now": now_ms(), "id": key_id, "brain": brain_id},
    )
    return result.rowcount == 1


class KeyRecord(TypedDict):
    """A key as an owner sees it (`KeyOut` in core/identity/models.py): never the secret."""

    id: str
    name: str | None
    prefix: str
    user_id: str | None
    read_only: bool
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


def list_keys(conn: Connection, brain_id: str, *, include_revoked: bool = False) -> list[KeyRecord]:
    """The brain's keys as an owner sees them, oldest first: never the secret, only the prefix
    it starts with. Bounded: every active key (at most MAX_ACTIVE_KEYS) and, when asked, the
    REVOKED_SHOWN most recently revoked (revoked keys pile up over the years)."""
    columns = "id, name, prefix, user_id, read_only, created_at, last_used_at, revoked_at"
    statement = f"SELECT {columns} FROM api_keys WHERE brain_id = :brain AND revoked_at IS NULL"
    if include_revoked:
        statement = (
            f"SELECT * FROM ({statement}) AS active UNION ALL SELECT * FROM ("
            f"SELECT {columns} FROM api_keys WHERE brain_id = :brain "
            "AND revoked_at IS NOT NULL ORDER BY revoked_at DESC, id DESC LIMIT :shown) AS revoked"
        )
    rows = conn.execute(
        sql(f"SELECT * FROM ({statement}) AS k ORDER BY created_at, id"),
        {"brain": brain_id, "shown": REVOKED_SHOWN},
    ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "prefix": f"{KEY_PREFIX}{r.prefix}_",
            "user_id": r.user_id,
            "read_only": bool(r.read_only),
            "created_at": iso(r.created_at),
            "last_used_at": iso(r.last_used_at),
            "revoked_at": iso(r.revoked_at),
        }
        for r in rows
    ]


@dataclass(frozen=True)
class KeyMatch:
    key_id: str
    scope: Scope
    stale: bool  # last_used_at is due for a refresh (see `touch`)


def find_key(conn: Connection, token: str) -> KeyMatch | None:
    """The scope a stored key grants, or None for an unknown or revoked key. Reads only."""
    if not token.startswith(KEY_PREFIX):
        return None
    # Every request pays this read: plain driver tuples (see core.kernel.db.engine.tuples).
    rows = tuples(
        conn,
        "SELECT id, brain_id, user_id, read_only, last_used_at FROM api_keys "
        "WHERE key_hash = :hash AND revoked_at IS NULL",
        {"hash": _hash(token)},
    )
    if not rows:
        return None
    key_id, brain_id, user_id, read_only, last_used_at = rows[0]
    scope = Scope(
        brain_id=brain_id, principal=f"key:{key_id}", user_id=user_id, read_only=bool(read_only)
    )
    stale = last_used_at is None or now_ms() - last_used_at > _TOUCH_EVERY_MS
    return KeyMatch(key_id, scope, stale)


def touch(conn: Connection, key_id: str) -> None:
    conn.execute(
        sql("UPDATE api_keys SET last_used_at = :now WHERE id = :id"),
        {"now": now_ms(), "id": key_id},
    )


def matches_single_key(token: str, configured: str | None) -> bool:
    """Single-key mode: MNEMO_API_KEY, compared in constant time."""
    if not configured:
        return False
    return hmac.compare_digest(token.encode(), configured.encode())
