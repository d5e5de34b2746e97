"""Sessions: opaque access tokens and rotating refresh tokens, stored only as SHA-256 hashes.

Why opaque tokens rather than JWTs: revocation must take effect on the next request, so every
request has to consult the store anyway (is the session revoked? is the account still a member
of the brain, and with which role?). A JWT would add a signing key to provision and rotate and
an `alg` to pin, and still need that lookup. An opaque token is one primary-key read of a
hash joined to its session and membership: well under a millisecond, and revocation, role
changes and removal from a brain apply at once.

A session is a token family: one login or one OAuth grant. Each refresh marks the presented
refresh token used and issues a new pair in the same transaction; presenting a used refresh
token again means it was copied, and the whole family is revoked (RFC 9700 section 4.14.2).
Two concurrent refreshes of one token are the same event: the atomic claim lets exactly one
win, and the loser is treated as a replay.

An OAuth grant's audience (the resources it was authorized for, RFC 8707) is the session's;
each token carries its own. A refresh token carries the whole grant's, so the client can later
ask for any of those resources; an access token carries what its token request asked for, which
may be narrower (a token for /mcp alone out of a grant for /mcp and /v1).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, text

from core.identity.models import SessionRecord
from core.identity.oauth.metadata import split_audience, within_grant
from core.identity.oauth.models import TokenRecord
from core.kernel.config import AuthSettings
from core.kernel.db.engine import tuples
from core.kernel.errors import Forbidden, NotFound, Unauthorized
from core.kernel.ids import iso, new_id, now_ms
from core.kernel.scope import Scope

ACCESS_PREFIX = "mnemo_at_"
REFRESH_PREFIX = "mnemo_rt_"
# Browser transport. __Host- pins the access cookie to this host, path /, Secure (no subdomain
# can plant one); Lax lets the OAuth authorize page see it after a cross-site redirect while
# keeping it off cross-site POSTs. The refresh cookie only ever goes to /auth, and never
# cross-site.
ACCESS_COOKIE = "__Host-mnemo_access"
REFRESH_COOKIE = "__Secure-mnemo_refresh"
# last_used_at is for the session list, not security: refresh it at most this often so a
# verified request stays a read.
_TOUCH_EVERY_MS = 60_000


def token_hash(token: str) -> str:
    # Tokens are 256-bit random: a fast hash suffices (no stretching); only the hash is stored,
    # so a database leak yields no usable token.
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Lifetimes:
    access_ms: int
    refresh_ms: int

    @classmethod
    def of(cls, auth: AuthSettings) -> Lifetimes:
        return cls(auth.access_token_seconds * 1000, auth.refresh_token_days * 86_400_000)


@dataclass(frozen=True)
class Issued:
    session_id: str
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    refresh_expires_at: int
    scope: str | None

    def token_response(self) -> TokenRecord:
        """RFC 6749 section 5.1."""
        body: TokenRecord = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }
        if self.scope:
            body["scope"] = self.scope
        return body


def _issue(
    conn: Connection,
    session_id: str,
    life: Lifetimes,
    now: int,
    scope: str | None,
    *,
    grant_audience: str | None,
    access_audience: str | None,
    access_scope: str | None = None,
) -> Issued:
    """A new access and refresh token for a session. The access token may be bound to fewer
    resources (`access_audience`) and fewer scopes (`access_scope`, None: the grant's) than
    the grant; the refresh token keeps the whole grant, so a later refresh may ask for more."""
    access, refresh = _new_token(ACCESS_PREFIX), _new_token(REFRESH_PREFIX)
    refresh_expires = now + life.refresh_ms
    conn.execute(
        text(
            "INSERT INTO auth_tokens (token_hash, session_id, kind, audience, scope, "
            "created_at, expires_at) VALUES (:a, :s, 'access', :a_aud, :a_scope, :now, :a_exp), "
            "(:r, :s, 'refresh', :r_aud, NULL, :now, :r_exp)"
        ),
        {
            "a": token_hash(access),
            "r": token_hash(refresh),
            "s": session_id,
            "a_aud": access_audience,
            "a_scope": access_scope,
            "r_aud": grant_audience,
            "now": now,
            "a_exp": now + life.access_ms,
            "r_exp": refresh_expires,
        },
    )
    # The family lives as long as its newest refresh token (a sliding 30 days).
    conn.execute(
        text("UPDATE auth_sessions SET expires_at = :exp, last_used_at = :now WHERE id = :s"),
        {"exp": refresh_expires, "now": now, "s": session_id},
    )
    granted = access_scope if access_scope is not None else scope
    return Issued(session_id, access, refresh, life.access_ms // 1000, refresh_expires, granted)


def create(
    conn: Connection,
    account_id: str,
    brain_id: str | None,
    life: Lifetimes,
    *,
    client_id: str | None = None,
    audience: str | None = None,
    access_audience: str | None = None,
    scope: str | None = None,
    user_agent: str | None = None,
    ip: str | None = None,
) -> Issued:
    """A new session and its first token pair. `audience`: the grant's resources (separated
    by spaces), which the refresh token keeps; `access_audience`: the first access token's,
    when its token request narrowed them (default: the grant's)."""
    now = now_ms()
    session_id = new_id()
    conn.execute(
        text(
            "INSERT INTO auth_sessions (id, account_id, brain_id, client_id, audience, scope, "
            "user_agent, ip, created_at, last_used_at, expires_at) VALUES (:id, :account, "
            ":brain, :client, :aud, :scope, :ua, :ip, :now, :now, :exp)"
        ),
        {
            "id": session_id,
            "account": account_id,
            "brain": brain_id,
            "client": client_id,
            "aud": audience,
            "scope": scope,
            "ua": (user_agent or "")[:300] or None,
            "ip": ip,
            "now": now,
            "exp": now + life.refresh_ms,
        },
    )
    return _issue(
        conn,
        session_id,
        life,
        now,
        scope,
        grant_audience=audience,
        access_audience=access_audience or audience,
    )


@dataclass(frozen=True)
class Verified:
    session_id: str
    account_id: str
    brain_id: str | None  # None: the active brain was deleted or left; switch to another
    role: str | None  # the account's role in that brain, read live
    client_id: str | None  # the OAuth client, None for a first-party login
    audience: str | None  # the presented access token's resources (None: first-party)
    scope: str | None
    stale: bool  # last_used_at is due for a refresh (see `touch`)
    access_expires_at: int = 0  # when the presented access token expires (ms)
    expires_at: int = 0  # when the session itself ends (ms)


# coalesce: a token written by code older than migration 18 (a rolling deployment) has no
# audience of its own; it is bound to its session's, as it was, never to none (which would
# let it in everywhere). A token's scope is its session's unless a refresh narrowed it
# (migration 21).
_VERIFY = (
    "SELECT t.expires_at, s.id, s.account_id, s.brain_id, s.client_id, "
    "coalesce(t.audience, s.audience), coalesce(t.scope, s.scope), "
    "s.expires_at, s.revoked_at, s.last_used_at, m.role "
    "FROM auth_tokens t JOIN auth_sessions s ON s.id = t.session_id "
    "LEFT JOIN brain_members m ON m.brain_id = s.brain_id AND m.account_id = s.account_id "
    "WHERE t.token_hash = :hash AND t.kind = 'access'"
)


def verify_access(conn: Connection, token: str) -> Verified | None:
    """The live session behind an access token, or None (unknown, expired, revoked). Reads
    only: one primary-key lookup joined to the session and the membership, as plain driver
    tuples (every request pays it; see core.kernel.db.engine.tuples)."""
    if not token.startswith(ACCESS_PREFIX):
        return None
    rows = tuples(conn, _VERIFY, {"hash": token_hash(token)})
    if not rows:
        return None
    (
        token_expires,
        session_id,
        account_id,
        brain_id,
        client_id,
        audience,
        scope,
        expires_at,
        revoked_at,
        last_used_at,
        role,
    ) = rows[0]
    now = now_ms()
    if token_expires <= now or revoked_at is not None or expires_at <= now:
        return None
    if client_id is not None and role is None:
        # An OAuth grant is for one brain: once the account leaves it the grant is void.
        return None
    return Verified(
        session_id=session_id,
        account_id=account_id,
        brain_id=brain_id if role is not None else None,
        role=role,
        client_id=client_id,
        audience=audience,
        scope=scope,
        stale=now - last_used_at > _TOUCH_EVERY_MS,
        access_expires_at=token_expires,
        expires_at=expires_at,
    )


def renew_access(conn: Connection, found: Verified, life: Lifetimes) -> tuple[str, int]:
    """A fresh access token for a live first-party session, for a browser in use (the console,
    whose refresh cookie never reaches it). Never past the session's own end, never for an
    OAuth grant (its client refreshes with its refresh token). (token, seconds it lives)."""
    assert found.client_id is None
    now = now_ms()
    expires = min(now + life.access_ms, found.expires_at)
    token = _new_token(ACCESS_PREFIX)
    conn.execute(
        text(
            "INSERT INTO auth_tokens (token_hash, session_id, kind, audience, created_at, "
            "expires_at) VALUES (:h, :s, 'access', :aud, :now, :exp)"
        ),
        {
            "h": token_hash(token),
            "s": found.session_id,
            "aud": found.audience,
            "now": now,
            "exp": expires,
        },
    )
    # Expired access tokens of the session are dead weight (as in `rotate`).
    conn.execute(
        text(
            "DELETE FROM auth_tokens WHERE session_id = :s AND kind = 'access' "
            "AND expires_at < :now"
        ),
        {"s": found.session_id, "now": now},
    )
    return token, max(1, (expires - now) // 1000)


def touch(conn: Connection, session_id: str) -> None:
    conn.execute(
        text("UPDATE auth_sessions SET last_used_at = :now WHERE id = :id"),
        {"now": now_ms(), "id": session_id},
    )


@dataclass(frozen=True)
class Rotation:
    issued: Issued | None = None
    # Why it failed: unknown, wrong_client, revoked, expired, resource, scope, or reused (the
    # family is now revoked)
    error: str | None = None
    session_id: str | None = None


def rotate(
    conn: Connection,
    refresh_token: str,
    life: Lifetimes,
    *,
    client_id: str | None,
    scope: list[str] | None = None,
    resources: set[str] | None = None,
    base: str | None = None,
) -> Rotation:
    """Swap a refresh token for a new pair. On `reused` the family has been revoked in this
    transaction: the caller must commit, not roll back, before reporting the error.

    `scope` and `resources`, when the client sends them, may only name what the original grant
    holds (`base`: the service's own URL, see metadata.within_grant). The new access token is
    bound to the resources asked for (RFC 8707 section 2.2), or to the whole grant's when none
    are, and likewise to the scopes asked for (RFC 6749 section 6); the new refresh token keeps
    the whole grant's, so a later refresh may ask for another of them."""
    if not refresh_token.startswith(REFRESH_PREFIX):
        return Rotation(error="unknown")
    hashed = token_hash(refresh_token)
    row = conn.execute(
        text(
            "SELECT t.session_id, t.expires_at AS token_expires, t.used_at, "
            "coalesce(t.audience, s.audience) AS audience, s.client_id, s.revoked_at, s.scope "
            "FROM auth_tokens t JOIN auth_sessions s "
            "ON s.id = t.session_id WHERE t.token_hash = :h AND t.kind = 'refresh'"
        ),
        {"h": hashed},
    ).first()
    if row is None:
        return Rotation(error="unknown")
    if row.client_id != client_id:
        # Refresh tokens are bound to the client they were issued to (RFC 6749 section 6).
        return Rotation(error="wrong_client", session_id=row.session_id)
    if row.revoked_at is not None:
        return Rotation(error="revoked", session_id=row.session_id)
    now = now_ms()
    if row.used_at is not None:
        revoke(conn, row.session_id, "refresh_token_reuse")
        return Rotation(error="reused", session_id=row.session_id)
    if row.token_expires <= now:
        return Rotation(error="expired", session_id=row.session_id)
    if resources and not within_grant(resources, split_audience(row.audience), base):
        return Rotation(error="resource", session_id=row.session_id)
    if scope is not None and not set(scope) <= set((row.scope or "").split()):
        return Rotation(error="scope", session_id=row.session_id)
    claimed = conn.execute(
        text("UPDATE auth_tokens SET used_at = :now WHERE token_hash = :h AND used_at IS NULL"),
        {"now": now, "h": hashed},
    )
    if claimed.rowcount != 1:
        # A concurrent refresh claimed it between our read and our write.
        revoke(conn, row.session_id, "refresh_token_reuse")
        return Rotation(error="reused", session_id=row.session_id)
    # Expired access tokens of this family are dead weight; used refresh tokens stay until
    # they expire, as the record that lets a replay be recognised.
    conn.execute(
        text(
            "DELETE FROM auth_tokens WHERE session_id = :s AND kind = 'access' "
            "AND expires_at < :now"
        ),
        {"s": row.session_id, "now": now},
    )
    issued = _issue(
        conn,
        row.session_id,
        life,
        now,
        row.scope,
        grant_audience=row.audience,
        access_audience=" ".join(sorted(resources)) if resources else row.audience,
        access_scope=" ".join(dict.fromkeys(scope)) if scope else None,
    )
    return Rotation(issued=issued)


def revoke(conn: Connection, session_id: str, reason: str) -> bool:
    result = conn.execute(
        text(
            "UPDATE auth_sessions SET revoked_at = :now, revoked_reason = :reason "
            "WHERE id = :id AND revoked_at IS NULL"
        ),
        {"now": now_ms(), "reason": reason, "id": session_id},
    )
    return result.rowcount == 1


def revoke_own(conn: Connection, account_id: str, session_id: str) -> None:
    """Revoke one of the account's sessions; another account's session id is a 404."""
    result = conn.execute(
        text(
            "UPDATE auth_sessions SET revoked_at = :now, revoked_reason = 'revoked_by_user' "
            "WHERE id = :id AND account_id = :account AND revoked_at IS NULL"
        ),
        {"now": now_ms(), "id": session_id, "account": account_id},
    )
    if result.rowcount != 1:
        raise NotFound("no such session")


def revoke_others(conn: Connection, account_id: str, keep: str) -> int:
    result = conn.execute(
        text(
            "UPDATE auth_sessions SET revoked_at = :now, revoked_reason = 'revoked_by_user' "
            "WHERE account_id = :account AND id <> :keep AND revoked_at IS NULL"
        ),
        {"now": now_ms(), "account": account_id, "keep": keep},
    )
    return int(result.rowcount)


def revoke_token(conn: Connection, token: str, client_id: str | None) -> bool:
    """RFC 7009: revoke the grant behind an access or refresh token, if it belongs to this
    client. Unknown tokens and other clients' tokens change nothing (and say nothing)."""
    row = conn.execute(
        text(
            "SELECT s.id, s.client_id FROM auth_tokens t JOIN auth_sessions s "
            "ON s.id = t.session_id WHERE t.token_hash = :h"
        ),
        {"h": token_hash(token)},
    ).first()
    if row is None or row.client_id != client_id:
        return False
    return revoke(conn, row.id, "revoked_by_client")


def list_sessions(conn: Connection, account_id: str, current: str | None) -> list[SessionRecord]:
    rows = conn.execute(
        text(
            "SELECT s.id, s.brain_id, s.client_id, c.client_name, s.user_agent, s.ip, "
            "s.created_at, s.last_used_at, s.expires_at FROM auth_sessions s "
            "LEFT JOIN oauth_clients c ON c.client_id = s.client_id "
            "WHERE s.account_id = :account AND s.revoked_at IS NULL AND s.expires_at > :now "
            "ORDER BY s.created_at DESC, s.id DESC"
        ),
        {"account": account_id, "now": now_ms()},
    ).all()
    return [
        cast(
            SessionRecord,
            {
                "id": r.id,
                "brain_id": r.brain_id,
                "client_id": r.client_id,
                "client_name": r.client_name,
                "user_agent": r.user_agent,
                "ip": r.ip,
                "created_at": iso(r.created_at),
                "last_used_at": iso(r.last_used_at),
                "expires_at": iso(r.expires_at),
                "current": r.id == current,
            },
        )
        for r in rows
    ]


def switch_brain(conn: Connection, session_id: str, brain_id: str) -> None:
    conn.execute(
        text("UPDATE auth_sessions SET brain_id = :brain WHERE id = :id"),
        {"brain": brain_id, "id": session_id},
    )


def purge_expired(conn: Connection, *, keep_revoked_ms: int = 7 * 86_400_000) -> int:
    """Delete sessions past their expiry, or revoked more than a week ago (their tokens go
    with them), and expired OAuth codes. For the maintenance run."""
    now = now_ms()
    gone = conn.execute(
        text(
            "DELETE FROM auth_sessions WHERE expires_at < :now OR "
            "(revoked_at IS NOT NULL AND revoked_at < :old)"
        ),
        {"now": now, "old": now - keep_revoked_ms},
    ).rowcount
    conn.execute(
        text("DELETE FROM auth_tokens WHERE kind = 'access' AND expires_at < :now"), {"now": now}
    )
    conn.execute(text("DELETE FROM oauth_codes WHERE expires_at < :now"), {"now": now})
    return int(gone)


def to_scope(found: Verified, allowed_audiences: frozenset[str]) -> Scope:
    """The scope an access token grants on the surface that accepts `allowed_audiences` (the
    REST API or /mcp). A first-party login has no audience and works on both."""
    if found.audience is not None and not set(found.audience.split()) & allowed_audiences:
        # RFC 8707: a token bound to other resources is not valid here.
        raise Unauthorized("this token was issued for another resource", code="invalid_token")
    if found.brain_id is None or found.role is None:
        raise Forbidden(
            "this session has no active brain: pick one with POST /auth/session/brain",
            code="no_active_brain",
        )
    scopes = (found.scope or "").split()
    return Scope(
        brain_id=found.brain_id,
        principal=f"oauth:{found.client_id}" if found.client_id else f"account:{found.account_id}",
        read_only=bool(scopes) and "memories:write" not in scopes,
        role=found.role,
        account_id=found.account_id,
        session_id=found.session_id,
        client_id=found.client_id,
    )
