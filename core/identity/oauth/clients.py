"""OAuth clients: dynamic registration (RFC 7591) and client authentication at the token and
revocation endpoints.

Redirect URIs are the heart of the client's identity: they must be https, or for a public
client (a native app, RFC 8252) http on a loopback host or a private-use scheme
(`cursor://...`, `com.example.app:/cb`); they carry no fragment and no user info, and are
later matched exactly, character for character, except that a loopback redirect may name any
port at the authorization request (RFC 8252 section 7.3: a native app gets whatever port is
free). Open registration is limited to redirect hosts (and schemes, written "cursor:") on an
allowlist; any other needs the operator's registration token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, text

from core.identity.oauth.errors import OAuthError
from core.identity.oauth.metadata import SCOPES
from core.identity.oauth.models import ClientRecord
from core.kernel.ids import now_ms

CLIENT_PREFIX = "mcp_"
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_REDIRECT_URIS = 10
MAX_URI = 2000
MAX_NAME = 200
# Echoed back as registered (RFC 7591 section 3.2.1) but never acted on.
_ECHOED = (
    "client_uri",
    "logo_uri",
    "contacts",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
)


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# RFC 3986's scheme syntax.
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
# Schemes a browser runs or resolves itself rather than handing to an app: never a redirect.
_BROWSER_SCHEMES = frozenset(
    {
        "about",
        "blob",
        "chrome",
        "data",
        "file",
        "filesystem",
        "ftp",
        "javascript",
        "view-source",
        "vbscript",
        "ws",
        "wss",
    }
)


def is_private_use(uri: str) -> bool:
    """A native app's own scheme (RFC 8252 section 7.1), as opposed to http(s)."""
    scheme = urlsplit(uri).scheme.lower()
    return scheme not in ("http", "https", "") and scheme not in _BROWSER_SCHEMES


def is_loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def check_redirect_uri(uri: str, *, public: bool = True) -> str:
    """`public`: the client has no secret (token_endpoint_auth_method none), as native apps
    do; only those may use a private-use scheme, which any app on the device could claim."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI:
        raise OAuthError("invalid_redirect_uri", "a redirect URI is a string of 1-2000 characters")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise OAuthError("invalid_redirect_uri", f"not a URL: {uri!r}") from None
    if "#" in uri:
        raise OAuthError("invalid_redirect_uri", "a redirect URI must not contain a fragment")
    if parts.username is not None or parts.password is not None:
        raise OAuthError("invalid_redirect_uri", "a redirect URI must not carry user info")
    scheme = parts.scheme
    if scheme in ("https", "http"):
        if not host:
            raise OAuthError("invalid_redirect_uri", f"a redirect URI needs a host: {uri!r}")
        if scheme == "https" or host in LOOPBACK_HOSTS:
            return uri
    elif _SCHEME.match(scheme) and scheme not in _BROWSER_SCHEMES and (parts.netloc or parts.path):
        if public:
            return uri
        raise OAuthError(
            "invalid_redirect_uri",
            f"a private-use scheme ({scheme}:) is for public clients (native apps, "
            "token_endpoint_auth_method none); a client with a secret redirects to https",
        )
    raise OAuthError(
        "invalid_redirect_uri",
        "redirect URIs must be https, http on a loopback host, or (for a public client) an "
        f"app's own scheme such as cursor://...; got {uri!r}",
    )


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    host = host.lower()
    for entry in allowlist:
        entry = entry.strip("[]")
        if entry == "*" or host == entry:
            return True
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False


def redirect_allowed(uri: str, allowlist: tuple[str, ...]) -> bool:
    """Whether a client redirecting here may register without the registration token: its
    host is listed (http(s)), or its scheme is, written with its colon ("cursor:")."""
    if is_private_use(uri):
        scheme = urlsplit(uri).scheme.lower() + ":"
        return "*" in allowlist or scheme in (e.lower() for e in allowlist)
    return host_allowed(urlsplit(uri).hostname or "", allowlist)


def redirect_matches(registered: tuple[str, ...], requested: str, *, public: bool) -> bool:
    """The authorization request's redirect URI against the registration: character for
    character, except that a public client's loopback redirect may name any port (RFC 8252
    section 7.3); scheme, host, path and query must still be the registered ones."""
    if requested in registered:
        return True
    if not public or not is_loopback(requested):
        return False
    try:
        want = urlsplit(requested)
        want.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    for uri in registered:
        have = urlsplit(uri)
        if (
            is_loopback(uri)
            and have.hostname == want.hostname
            and (have.path or "/") == (want.path or "/")
            and have.query == want.query
            and not want.fragment
        ):
            return True
    return False


def redirect_display(uri: str) -> str:
    """Where the user is sent back, as the consent page names it: the host of a web client,
    the app scheme of a native one (with its host when it has one)."""
    parts = urlsplit(uri)
    if is_private_use(uri):
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    return parts.netloc


@dataclass(frozen=True)
class Registration:
    redirect_uris: list[str]
    client_name: str | None
    auth_method: str
    grant_types: list[str]
    scope: str | None
    extra: dict[str, Any]

    def hosts(self) -> list[str]:
        return [urlsplit(u).hostname or "" for u in self.redirect_uris]

    def closed(self, allowlist: tuple[str, ...]) -> list[str]:
        """The redirect hosts (or app schemes) open registration does not cover."""
        return [
            redirect_display(u) for u in self.redirect_uris if not redirect_allowed(u, allowlist)
        ]


def _strings(body: Mapping[str, Any], name: str, default: list[str]) -> list[str]:
    value = body.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OAuthError("invalid_client_metadata", f"{name} must be an array of strings")
    return list(value)


def parse_registration(body: Mapping[str, Any]) -> Registration:
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        raise OAuthError("invalid_redirect_uri", "redirect_uris must be a non-empty array")
    if len(uris) > MAX_REDIRECT_URIS:
        raise OAuthError("invalid_redirect_uri", f"at most {MAX_REDIRECT_URIS} redirect URIs")
    # RFC 7591 section 2: the default method is client_secret_basic.
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise OAuthError(
            "invalid_client_metadata",
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}",
        )
    redirect_uris = [check_redirect_uri(u, public=method == "none") for u in uris]
    grant_types = _strings(body, "grant_types", ["authorization_code"])
    if not set(grant_types) <= set(GRANT_TYPES) or "authorization_code" not in grant_types:
        raise OAuthError(
            "invalid_client_metadata",
            "grant_types must include authorization_code and may add refresh_token",
        )
    response_types = _strings(body, "response_types", ["code"])
    if response_types != ["code"]:
        raise OAuthError("invalid_client_metadata", 'response_types must be ["code"]')
    name = body.get("client_name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise OAuthError(
            "invalid_client_metadata", f"client_name is a string of at most {MAX_NAME}"
        )
    scope = body.get("scope")
    if scope is not None and (not isinstance(scope, str) or not set(scope.split()) <= set(SCOPES)):
        raise OAuthError("invalid_client_metadata", f"scope may hold {' '.join(SCOPES)}")
    extra = {k: body[k] for k in _ECHOED if k in body}
    if len(json.dumps(extra)) > 8000:
        raise OAuthError("invalid_client_metadata", "client metadata is too large")
    return Registration(redirect_uris, name or None, method, grant_types, scope, extra)


def register(conn: Connection, reg: Registration) -> ClientRecord:
    """Store the client; the response carries the secret, shown once (only its hash is kept)."""
    client_id = CLIENT_PREFIX + secrets.token_urlsafe(24)
    secret = None if reg.auth_method == "none" else secrets.token_urlsafe(32)
    now = now_ms()
    conn.execute(
        text(
            "INSERT INTO oauth_clients (client_id, client_name, redirect_uris, grant_types, "
            "response_types, token_endpoint_auth_method, client_secret_hash, scope, metadata, "
            "created_at) VALUES (:id, :name, :uris, :grants, :responses, :method, :secret, "
            ":scope, :meta, :now)"
        ),
        {
            "id": client_id,
            "name": reg.client_name,
            "uris": json.dumps(reg.redirect_uris),
            "grants": json.dumps(reg.grant_types),
            "responses": json.dumps(["code"]),
            "method": reg.auth_method,
            "secret": None if secret is None else _secret_hash(secret),
            "scope": reg.scope,
            "meta": json.dumps(reg.extra),
            "now": now,
        },
    )
    body: dict[str, Any] = {
        "client_id": client_id,
        "client_id_issued_at": now // 1000,
        "client_name": reg.client_name,
        "redirect_uris": reg.redirect_uris,
        "grant_types": reg.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": reg.auth_method,
        **reg.extra,
    }
    if reg.scope is not None:
        body["scope"] = reg.scope
    if secret is not None:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0  # never
    return cast(ClientRecord, {k: v for k, v in body.items() if v is not None})


@dataclass(frozen=True)
class Client:
    client_id: str
    client_name: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    auth_method: str
    secret_hash: str | None
    scope: str | None

    @property
    def display_name(self) -> str:
        return self.client_name or self.client_id

    @property
    def public(self) -> bool:
        return self.auth_method == "none"


def get_client(conn: Connection, client_id: str) -> Client | None:
    if not client_id.startswith(CLIENT_PREFIX) or len(client_id) > 100:
        return None
    row = conn.execute(
        text(
            "SELECT client_id, client_name, redirect_uris, grant_types, "
            "token_endpoint_auth_method, client_secret_hash, scope FROM oauth_clients "
            "WHERE client_id = :id"
        ),
        {"id": client_id},
    ).first()
    if row is None:
        return None
    return Client(
        row.client_id,
        row.client_name,
        tuple(json.loads(row.redirect_uris)),
        tuple(json.loads(row.grant_types)),
        row.token_endpoint_auth_method,
        row.client_secret_hash,
        row.scope,
    )


@dataclass(frozen=True)
class Credentials:
    """What the request presented: client_id, secret, and how (basic, post or none)."""

    client_id: str | None
    secret: str | None
    method: str


def authenticate(conn: Connection, creds: Credentials) -> Client:
    """The client, if it proved itself with the method it registered (RFC 6749 section 2.3):
    a public client sends its id only; a confidential client must send its secret, compared
    in constant time."""
    client = get_client(conn, creds.client_id) if creds.client_id else None
    if client is None:
        raise OAuthError("invalid_client", "unknown client", status=401)
    if creds.method != client.auth_method:
        raise OAuthError(
            "invalid_client",
            f"this client authenticates with {client.auth_method}, not {creds.method}",
            status=401,
        )
    if client.auth_method != "none":
        presented = _secret_hash(creds.secret or "")
        if client.secret_hash is None or not hmac.compare_digest(presented, client.secret_hash):
            raise OAuthError("invalid_client", "client authentication failed", status=401)
    return client
