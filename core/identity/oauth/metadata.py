"""Discovery documents and the URLs they name.

Mnemo is its own authorization server and its own protected resource: the issuer is the base
URL, and the resource MCP clients ask for (RFC 8707) is the MCP endpoint `<base>/mcp`. Tokens
are bound to the resource they were issued for, and `/v1` accepts tokens for either the base
URL or the MCP endpoint, since both are this one service.
"""

from __future__ import annotations

from typing import Any

SCOPES = ("memories:read", "memories:write")
DEFAULT_SCOPE = " ".join(SCOPES)
WELL_KNOWN_AS = "/.well-known/oauth-authorization-server"
WELL_KNOWN_PR = "/.well-known/oauth-protected-resource"
MCP_PATH = "/mcp"


def base_url(configured: str | None, request_base: str) -> str:
    """MNEMO_PUBLIC_URL when set, else the URL the request came in on (scheme, host and any
    root path), without a trailing slash."""
    return (configured or request_base).rstrip("/")


def mcp_resource(base: str) -> str:
    return base + MCP_PATH


def audiences(base: str) -> tuple[str, ...]:
    """Resource identifiers a token from this server may be bound to."""
    return (mcp_resource(base), base)


def resource_metadata_url(base: str) -> str:
    # RFC 9728 section 3.1: the well-known path is inserted before the resource's path.
    return base + WELL_KNOWN_PR + MCP_PATH


def www_authenticate(base: str, error: str | None = None, description: str | None = None) -> str:
    """The challenge a 401 from /mcp carries so MCP clients can discover how to log in
    (RFC 9728 section 5.1; MCP authorization, "Authorization Server Discovery")."""
    parts = [f'resource_metadata="{resource_metadata_url(base)}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    return "Bearer " + ", ".join(parts)


def authorization_server(base: str) -> dict[str, Any]:
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
        "grant_types_supported": ["authorization_code", "refresh_token"],
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


def protected_resource(base: str) -> dict[str, Any]:
    """RFC 9728: the MCP endpoint, protected by this server's tokens."""
    return {
        "resource": mcp_resource(base),
        "authorization_servers": [base],
        "scopes_supported": list(SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "Mnemo",
        "resource_documentation": base + "/openapi.json",
    }
