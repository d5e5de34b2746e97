"""The OAuth 2.1 authorization server for MCP clients: discovery documents, /oauth/register,
/oauth/authorize (an HTML page: handlers/pages/flow.py), /oauth/token and /oauth/revoke.

The protocol endpoints answer errors in the RFC shapes that OAuth client libraries parse
({"error": "...", "error_description": "..."}), not in Mnemo's own error shape.
"""

from __future__ import annotations

import hmac
from base64 import b64decode
from binascii import Error as Base64Error
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from core.identity import sessions
from core.identity.oauth import clients, codes, metadata
from core.identity.oauth.errors import OAuthError
from core.identity.oauth.models import (
    ClientOut,
    ClientRecord,
    OAuthErrorOut,
    ResourceMetadataOut,
    ServerMetadataOut,
    TokenOut,
)
from core.kernel.db.engine import transaction
from core.kernel.ratelimit import RateLimited
from handlers.context import Services, services
from handlers.http import NO_BODY, ApiRoute, Doc, json_response, parse_json
from handlers.pages.flow import authorize_get, authorize_post, base_of, read_form
from handlers.routes.auth import client_ip, limit

T = TypeVar("T")


def www_authenticate_for(
    request: Request, error: str | None = None, description: str | None = None
) -> str:
    """The `WWW-Authenticate` value for a 401 from /mcp: points MCP clients at the protected
    resource metadata, from which they discover this authorization server."""
    return metadata.www_authenticate(base_of(request), error, description)


def oauth_error(err: OAuthError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(
        err.body(), err.status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def _rate_limited(exc: RateLimited) -> Response:
    return json_response(
        {"error": "rate_limited", "error_description": exc.message},
        429,
        headers={"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"},
    )


def _one(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        # RFC 6749 section 3.2: parameters must not be included more than once.
        raise OAuthError("invalid_request", f"{name} was sent more than once")
    return values[0]


# -- discovery ---------------------------------------------------------------------------------

# Readable from any origin: handlers/cors.py answers for /.well-known/ with `*`.
_CORS = {"Cache-Control": "public, max-age=300"}


async def as_metadata(request: Request) -> Response:
    return json_response(metadata.authorization_server(base_of(request)), headers=_CORS)


async def pr_metadata(request: Request) -> Response:
    return json_response(metadata.protected_resource(base_of(request)), headers=_CORS)


async def pr_metadata_mcp(request: Request) -> Response:
    """The same document at the path-suffixed location RFC 9728 derives from `<base>/mcp`."""
    return await pr_metadata(request)


# -- registration ------------------------------------------------------------------------------


async def register(request: Request) -> Response:
    svc = services(request)
    try:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise OAuthError("invalid_client_metadata", "send client metadata as JSON")
        try:
            body = parse_json(await request.body())
        except ValueError:
            raise OAuthError("invalid_client_metadata", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
        reg = clients.parse_registration(body)
        allowlist = svc.settings.auth.open_registration_domains
        closed = reg.closed(allowlist)
        if closed:
            _check_registration_token(request, svc, closed)

        def run() -> ClientRecord:
            engine = svc.ready_engine()
            limit(svc, engine, "register.ip", client_ip(request))
            with transaction(engine) as conn:
                return clients.register(conn, reg)

        created = await svc.call(run)
    except OAuthError as err:
        return oauth_error(err)
    except RateLimited as exc:
        return _rate_limited(exc)
    return json_response(created, 201, headers={"Cache-Control": "no-store"})


def _check_registration_token(request: Request, svc: Services, hosts: list[str]) -> None:
    expected = svc.settings.auth.registration_token
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise OAuthError(
            "access_denied",
            f"open registration is not available for {', '.join(sorted(set(hosts)))}: "
            "register with the operator's registration token (Authorization: Bearer ...)",
            status=403,
        )
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise OAuthError("invalid_token", "the registration token is not valid", status=401)


# -- token endpoint ----------------------------------------------------------------------------


def _credentials(request: Request, form: Mapping[str, list[str]]) -> clients.Credentials:
    header = request.headers.get("authorization", "")
    form_id, form_secret = _one(form, "client_id"), _one(form, "client_secret")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError("invalid_client", "use HTTP Basic client authentication", status=401)
        if form_secret is not None:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        try:
            decoded = b64decode(value, validate=True).decode("utf-8")
        except (Base64Error, UnicodeDecodeError, ValueError):
            raise OAuthError("invalid_client", "malformed Basic credentials", status=401) from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise OAuthError("invalid_client", "malformed Basic credentials", status=401)
        # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
        client_id = unquote(user.replace("+", " "))
        if form_id is not None and form_id != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
        return clients.Credentials(
            client_id, unquote(password.replace("+", " ")), "client_secret_basic"
        )
    if form_secret is not None:
        return clients.Credentials(form_id, form_secret, "client_secret_post")
    return clients.Credentials(form_id, None, "none")


def _authenticated(
    request: Request, form: Mapping[str, list[str]], fn: Callable[..., T], *args: Any
) -> Callable[[], T]:
    """Rate-limit, authenticate the client, then run fn(conn, client, *args) in one
    transaction that commits even when fn returns an error (a detected replay has revoked
    something)."""
    svc = services(request)

    def run() -> T:
        creds = _credentials(request, form)
        engine = svc.ready_engine()
        limit(svc, engine, "token.ip", client_ip(request))
        limit(svc, engine, "token.account", creds.client_id)
        with transaction(engine) as conn:
            client = clients.authenticate(conn, creds)
            return fn(conn, client, *args)

    return run


def _grant(
    conn: Connection,
    client: clients.Client,
    form: Mapping[str, list[str]],
    life: sessions.Lifetimes,
    base: str,
) -> sessions.Issued | OAuthError:
    grant_type = _one(form, "grant_type")
    if grant_type is None:
        return OAuthError("invalid_request", "grant_type is required")
    if grant_type not in metadata.GRANT_TYPES:
        # Before the client's own list: client_credentials and the like are grants this server
        # does not have at all (RFC 6749 section 5.2), not grants this client may not use.
        return OAuthError(
            "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
        )
    if grant_type not in client.grant_types:
        return OAuthError("unauthorized_client", f"this client may not use {grant_type}")
    if grant_type == "authorization_code":
        return codes.exchange(
            conn,
            client,
            code=_one(form, "code"),
            redirect_uri=_one(form, "redirect_uri"),
            verifier=_one(form, "code_verifier"),
            resources=form.get("resource", []),
            life=life,
            base=base,
        )
    # What is left is refresh_token, the one other grant in metadata.GRANT_TYPES.
    token = _one(form, "refresh_token")
    if not token:
        return OAuthError("invalid_request", "refresh_token is required")
    scope = _one(form, "scope")
    resources = codes.requested_resources(form.get("resource", []))
    rotation = sessions.rotate(
        conn,
        token,
        life,
        client_id=client.client_id,
        scope=None if scope is None else scope.split(),
        resources=resources or None,
        base=base,
    )
    if rotation.issued is None:
        if rotation.error == "scope":
            return OAuthError("invalid_scope", "scope exceeds what was granted")
        if rotation.error == "resource":
            return OAuthError(
                "invalid_target", "resource was not part of the grant this refresh token is for"
            )
        return OAuthError(
            "invalid_grant", _REFRESH_ERRORS.get(rotation.error or "", "invalid refresh token")
        )
    return rotation.issued


_REFRESH_ERRORS = {
    "unknown": "unknown refresh token",
    "wrong_client": "the refresh token was issued to another client",
    "revoked": "the grant was revoked",
    "expired": "the refresh token has expired",
    "reused": "the refresh token was already used: the grant has been revoked",
}


async def token(request: Request) -> Response:
    svc = services(request)
    try:
        form = await read_form(request)
        life = sessions.Lifetimes.of(svc.settings.auth)
        result = await svc.call(_authenticated(request, form, _grant, form, life, base_of(request)))
    except OAuthError as err:
        basic = request.headers.get("authorization", "").lower().startswith("basic")
        challenge = (
            {"WWW-Authenticate": 'Basic realm="mnemo"'} if err.status == 401 and basic else {}
        )
        return oauth_error(err, challenge)
    except RateLimited as exc:
        return _rate_limited(exc)
    if isinstance(result, OAuthError):
        return oauth_error(result)
    return json_response(
        result.token_response(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _revoke(conn: Connection, client: clients.Client, token_value: str) -> None:
    sessions.revoke_token(conn, token_value, client.client_id)


async def revoke(request: Request) -> Response:
    """RFC 7009: 200 whether or not the token was known, so the answer reveals nothing."""
    svc = services(request)
    try:
        form = await read_form(request)
        token_value = _one(form, "token")
        if not token_value:
            raise OAuthError("invalid_request", "token is required")
        await svc.call(_authenticated(request, form, _revoke, token_value))
    except OAuthError as err:
        return oauth_error(err)
    except RateLimited as exc:
        return _rate_limited(exc)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


# -- routes (the reply models: core/identity/oauth/models.py) ----------------------------------

_HTML = {"type": "string", "description": "An HTML page"}
_FORM = {"type": "object", "additionalProperties": {"type": "string"}}
_FORM_TYPE = "application/x-www-form-urlencoded"
_TAG = "oauth"
routes = [
    ApiRoute(
        metadata.WELL_KNOWN_AS,
        as_metadata,
        method="GET",
        doc=Doc(
            "OAuth authorization server metadata (RFC 8414)",
            _TAG,
            response=ServerMetadataOut,
            auth=False,
        ),
    ),
    ApiRoute(
        metadata.WELL_KNOWN_PR,
        pr_metadata,
        method="GET",
        doc=Doc(
            "Protected resource metadata for /mcp (RFC 9728)",
            _TAG,
            response=ResourceMetadataOut,
            auth=False,
        ),
    ),
    ApiRoute(
        metadata.WELL_KNOWN_PR + metadata.MCP_PATH,
        pr_metadata_mcp,
        method="GET",
        doc=Doc(
            "Protected resource metadata for /mcp, path form (RFC 9728)",
            _TAG,
            response=ResourceMetadataOut,
            auth=False,
        ),
    ),
    ApiRoute(
        "/oauth/register",
        register,
        method="POST",
        doc=Doc(
            "Dynamic client registration (RFC 7591)",
            _TAG,
            body={"type": "object", "description": "Client metadata (RFC 7591 section 2)"},
            response=ClientOut,
            status=201,
            errors=OAuthErrorOut,
            auth=False,
        ),
    ),
    ApiRoute(
        "/oauth/authorize",
        authorize_get,
        method="GET",
        doc=Doc(
            "The authorization page (HTML): log in, pick a brain, consent",
            _TAG,
            response=_HTML,
            media_type="text/html",
            also={303: NO_BODY},  # back to the client's redirect_uri with an error
            errors=_HTML,
            error_media_type="text/html",
            auth=False,
        ),
    ),
    ApiRoute(
        "/oauth/authorize",
        authorize_post,
        method="POST",
        doc=Doc(
            "The authorization page's form posts (HTML)",
            _TAG,
            body=_FORM,
            body_media_type=_FORM_TYPE,
            response=_HTML,
            media_type="text/html",
            also={303: NO_BODY},  # back to the client's redirect_uri, with a code or an error
            errors=_HTML,
            error_media_type="text/html",
            auth=False,
        ),
    ),
    ApiRoute(
        "/oauth/token",
        token,
        method="POST",
        doc=Doc(
            "Token endpoint: authorization_code (PKCE) and refresh_token grants",
            _TAG,
            body=_FORM,
            body_media_type=_FORM_TYPE,
            response=TokenOut,
            errors=OAuthErrorOut,
            auth=False,
        ),
    ),
    ApiRoute(
        "/oauth/revoke",
        revoke,
        method="POST",
        doc=Doc(
            "Token revocation (RFC 7009)",
            _TAG,
            body=_FORM,
            body_media_type=_FORM_TYPE,
            response=NO_BODY,
            errors=OAuthErrorOut,
            auth=False,
        ),
    ),
]
