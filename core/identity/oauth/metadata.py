"""Discovery documents and the URLs they name.

Mnemo is its own authorization server and its own protected resource: the issuer is the base
URL, and the resource MCP clients ask for (RFC 8707) is the MCP endpoint `<base>/mcp`. Tokens
are bound to the resources they were issued for (a client may ask for several): `/mcp` takes a
token for `<base>/mcp`, the REST API takes one for `<base>/v1`, and a token for `<base>` itself
was asked for the whole service and works on both. So a token an MCP client got for `/mcp` is
refused on `/v1`: a leaked MCP token cannot drive the wider API (keys, brains, exports).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.identity.oauth.models import ResourceMetadataRecord, ServerMetadataRecord

SCOPES = ("memories:read", "memories:write")
DEFAULT_SCOPE = " ".join(SCOPES)
GRANT_TYPES = ("authorization_code", "refresh_token")
WELL_KNOWN_AS = "/.well-known/oauth-authorization-server"
WELL_KNOWN_PR = "/.well-known/oauth-protected-resource"
MCP_PATH = "/mcp"
API_PATH = "/v1"
# The surfaces a token can be presented to, and the resource path each answers for.
MCP = "mcp"
API = "api"
_SURFACE_PATHS = {MCP: MCP_PATH, API: API_PATH}


def base_url(configured: str | None, request_base: str) -> str:
    """MNEMO_PUBLIC_URL when set, else the URL the request came in on (scheme, host and any
    root path), without a trailing slash."""
    return (configured or request_base).rstrip("/")


def mcp_resource(base: str) -> str:
    return base + MCP_PATH


def api_resource(base: str) -> str:
    return base + API_PATH


def audiences(base: str) -> tuple[str, ...]:
    """Resource identifiers a token from this server may be bound to."""
    return (mcp_resource(base), api_resource(base), base)


def accepted_audiences(base: str, surface: str) -> frozenset[str]:
    """The resources whose tokens `surface` (MCP or API) accepts: its own, or the whole
    service's."""
    return frozenset((base + _SURFACE_PATHS[surface], base))


def split_audience(audience: str | None) -> frozenset[str]:
    """A stored audience (resources separated by spaces; a URI holds none) as a set."""
    return frozenset((audience or "").split())


def within_grant(wanted: Iterable[str], granted: frozenset[str], base: str | None) -> bool:
    """Whether a token request's resources are ones the grant holds (RFC 8707 section 2.2: a
    token request may narrow the grant's resources, never widen them). A grant for the whole
    service (`base`) holds each of its surfaces too, so its tokens can be narrowed to /mcp or
    /v1 alone."""
    held = set(granted)
    if base is not None and base in granted:
        held.update(audiences(base))
    return set(wanted) <= held


def resource_metadata_url(base: str) -> str:
    # RFC 9728 section 3.1: the well-known path is inserted before the resource's path.
    return base + WELL_KNOWN_PR + MCP_PATH


def www_authenticate(base: str, error: str | None = None, description: str | None = None) -> str:
    """The challenge a 401 from /mcp carries so MCP clients can discover how to log in
    (RFC 9728 section 5.1; MCP authorization, "Authorization Server Discovery")."""
    # MCP authorization, "Scope Selection Strategy": the scope a client should ask for.
    parts = [f'resource_metadata="{resource_metadata_url(base)}"', f'scope="{DEFAULT_SCOPE}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    return "Bearer " + ", ".join(parts)


def authorization_server(base: str) -> ServerMetadataRecord:
    """RFC 8414."""
    return {
        "issuer": base,
        "authorization_endpoint": base + "/oauth/authorize",
        "token_endpoint": base + "/oauth/token",
        "registration_endpoint": base + "/oauth/register",
        "revocation_endpoint": base + "/oauth/revoke",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": [
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": base + "/openapi.json",
    }


def protected_resource(base: str) -> ResourceMetadataRecord:
    """RFC 9728: the MCP endpoint, protected by this server's tokens."""
    return {
        "resource": mcp_resource(base),
        "authorization_servers": [base],
        "scopes_supported": list(SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "Mnemo",
        "resource_documentation": base + "/openapi.json",
    }
