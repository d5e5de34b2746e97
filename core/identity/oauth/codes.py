"""Authorization requests and codes: validation, PKCE (S256 only), issuing and redeeming.

A code is stored only as its hash, lives 10 minutes and is redeemed at most once: the claim is
a single conditional UPDATE, so of two concurrent redemptions exactly one wins. A code presented
again after its redemption means it leaked, so the tokens issued from the first redemption are
revoked (RFC 6749 section 4.1.2). The token request must come from the client the code was
issued to, with the exact redirect_uri of the authorization request and the PKCE verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, text

from core.identity import sessions
from core.identity.oauth.clients import Client, get_client, redirect_matches
from core.identity.oauth.errors import OAuthError, PageError, RedirectError
from core.identity.oauth.metadata import (
    DEFAULT_SCOPE,
    SCOPES,
    api_resource,
    audiences,
    mcp_resource,
    split_audience,
    within_grant,
)
from core.kernel.ids import now_ms

CODE_PREFIX = "mnemo_ac_"
# RFC 7636 section 4.1: 43-128 characters from the unreserved set.
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256, unpadded
MAX_STATE = 1000

# Each at most once. `resource` may repeat (RFC 8707 section 2: one per resource wanted).
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class AuthRequest:
    """A validated authorization request."""

    client: Client
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    resource: str  # the resources the token will be bound to, separated by spaces

    def params(self) -> dict[str, str]:
        """As query or hidden-form parameters, to carry the request across the login step."""
        out = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
            "scope": self.scope,
            # Carried as one space-separated value; validate_request splits it again.
            "resource": self.resource,
        }
        if self.state is not None:
            out["state"] = self.state
        return out


def validate_request(conn: Connection, params: Mapping[str, list[str]], base: str) -> AuthRequest:
    """Check an authorization request. Until the client and its redirect URI are known good,
    errors are shown to the user (PageError); after that they go back to the client
    (RedirectError), as RFC 6749 section 4.1.2.1 requires."""
    for name in AUTHORIZE_PARAMS:
        if len(params.get(name, [])) > 1:
            raise PageError(f"the parameter {name} was sent more than once")

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[0] if values else None

    client_id = one("client_id")
    client = get_client(conn, client_id) if client_id else None
    if client is None:
        raise PageError("this application is not registered with Mnemo (unknown client_id)")
    redirect_uri = one("redirect_uri")
    if redirect_uri is None:
        raise PageError("the request has no redirect_uri")
    if not redirect_matches(client.redirect_uris, redirect_uri, public=client.public):
        # Exact string match against the registration (no prefix or pattern matching), but
        # for the port of a native app's loopback redirect.
        raise PageError("the redirect_uri is not one this application registered")
    state = one("state")

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, state, error, description)

    if state is not None and len(state) > MAX_STATE:
        raise fail("invalid_request", "state is too long")
    if one("response_type") != "code":
        raise fail("unsupported_response_type", "response_type must be code")
    challenge = one("code_challenge")
    method = one("code_challenge_method")
    if challenge is None:
        raise fail("invalid_request", "PKCE is required: send code_challenge (S256)")
    if method != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (plain is not allowed)")
    if not _CHALLENGE.match(challenge):
        raise fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)")
    scope = one("scope") or client.scope or DEFAULT_SCOPE
    if not scope.split() or not set(scope.split()) <= set(SCOPES):
        raise fail("invalid_scope", f"scope may hold {' '.join(SCOPES)}")
    if client.scope and not set(scope.split()) <= set(client.scope.split()):
        raise fail("invalid_scope", "scope exceeds what this client registered")
    resources = requested_resources(params.get("resource", [])) or {mcp_resource(base)}
    if not resources <= set(audiences(base)):
        raise fail(
            "invalid_target",
            f"this server issues tokens for {mcp_resource(base)} (MCP), {api_resource(base)} "
            f"(the REST API) or {base} (both)",
        )
    return AuthRequest(client, redirect_uri, state, challenge, scope, " ".join(sorted(resources)))


def requested_resources(values: list[str]) -> set[str]:
    """The `resource` parameters as a set of URIs without trailing slashes. A value holding
    spaces is several (how the authorization page carries them between its steps; a URI has
    no spaces, so nothing is misread)."""
    return {part.rstrip("/") for value in values for part in value.split()}


def issue_code(
    conn: Connection, req: AuthRequest, account_id: str, brain_id: str, ttl_ms: int
) -> str:
    code = CODE_PREFIX + secrets.token_urlsafe(32)
    now = now_ms()
    conn.execute(
        text(
            "INSERT INTO oauth_codes (code_hash, client_id, account_id, brain_id, redirect_uri, "
            "code_challenge, scope, resource, created_at, expires_at) VALUES (:hash, :client, "
            ":account, :brain, :redirect, :challenge, :scope, :resource, :now, :exp)"
        ),
        {
            "hash": sessions.token_hash(code),
            "client": req.client.client_id,
            "account": account_id,
            "brain": brain_id,
            "redirect": req.redirect_uri,
            "challenge": req.code_challenge,
            "scope": req.scope,
            "resource": req.resource,
            "now": now,
            "exp": now + ttl_ms,
        },
    )
    return code


def exchange(
    conn: Connection,
    client: Client,
    *,
    code: str | None,
    redirect_uri: str | None,
    verifier: str | None,
    resources: list[str],
    life: sessions.Lifetimes,
    base: str | None = None,
) -> sessions.Issued | OAuthError:
    """Redeem a code for a token pair. Errors are returned, not raised: a replayed code revokes
    the first redemption's tokens in this transaction, which must commit.

    `resources` (RFC 8707) may narrow the access token to some of the resources the
    authorization request named (`base`: the service's own URL, see
    metadata.within_grant); the grant, and so the refresh token, keeps all of them."""
    if not code or not redirect_uri or not verifier:
        return OAuthError("invalid_request", "code, redirect_uri and code_verifier are required")
    hashed = sessions.token_hash(code)
    row = conn.execute(
        text(
            "SELECT client_id, account_id, brain_id, redirect_uri, code_challenge, scope, "
            "resource, expires_at, used_at, session_id FROM oauth_codes WHERE code_hash = :h"
        ),
        {"h": hashed},
    ).first()
    if row is None:
        return OAuthError("invalid_grant", "unknown authorization code")
    if row.used_at is not None:
        if row.session_id is not None:
            sessions.revoke(conn, row.session_id, "authorization_code_reuse")
        return OAuthError("invalid_grant", "this authorization code was already used")
    if row.expires_at <= now_ms():
        return OAuthError("invalid_grant", "the authorization code has expired")
    if row.client_id != client.client_id:
        return OAuthError("invalid_grant", "the code was issued to another client")
    if row.redirect_uri != redirect_uri:
        return OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
    if not _VERIFIER.match(verifier) or not hmac.compare_digest(s256(verifier), row.code_challenge):
        return OAuthError("invalid_grant", "the PKCE code_verifier does not match")
    granted = split_audience(row.resource)
    wanted = requested_resources(resources) or set(granted)
    if not within_grant(wanted, granted, base):
        # RFC 8707 section 2.2: the token request may narrow the resources, never widen them.
        return OAuthError("invalid_target", "resource was not part of the authorization request")
    claimed = conn.execute(
        text("UPDATE oauth_codes SET used_at = :now WHERE code_hash = :h AND used_at IS NULL"),
        {"now": now_ms(), "h": hashed},
    )
    if claimed.rowcount != 1:
        # A concurrent redemption won between our read and our write. On PostgreSQL our
        # UPDATE waited for it to commit, so its session is visible now: treat this as the
        # replay it is. (SQLite serialises writers, so the used_at check above caught it.)
        winner = conn.execute(
            text("SELECT session_id FROM oauth_codes WHERE code_hash = :h"), {"h": hashed}
        ).scalar()
        if winner is not None:
            sessions.revoke(conn, str(winner), "authorization_code_reuse")
        return OAuthError("invalid_grant", "this authorization code was already used")
    issued = sessions.create(
        conn,
        row.account_id,
        row.brain_id,
        life,
        client_id=client.client_id,
        audience=" ".join(sorted(granted)),
        access_audience=" ".join(sorted(wanted)),
        scope=row.scope,
    )
    conn.execute(
        text("UPDATE oauth_codes SET session_id = :s WHERE code_hash = :h"),
        {"s": issued.session_id, "h": hashed},
    )
    return issued
