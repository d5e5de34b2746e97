"""Reply models of the OAuth endpoints (RFC 6749, 7591, 8414, 9728), for the OpenAPI spec."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from pydantic import BaseModel, Field


class OAuthErrorOut(BaseModel):
    """RFC 6749 section 5.2."""

    error: str = Field(description="invalid_request, invalid_client, invalid_grant, ...")
    error_description: str | None = None


class TokenOut(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    scope: str | None = None


class ClientOut(BaseModel):
    """RFC 7591 section 3.2.1: the registered metadata, with the client's credentials."""

    client_id: str
    client_id_issued_at: int
    client_secret: str | None = None
    client_secret_expires_at: int | None = Field(None, description="0: the secret never expires.")
    client_name: str | None = None
    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    token_endpoint_auth_method: str
    scope: str | None = None
    # Echoed as registered (RFC 7591 section 2).
    client_uri: str | None = None
    logo_uri: str | None = None
    contacts: list[str] | None = None
    tos_uri: str | None = None
    policy_uri: str | None = None
    software_id: str | None = None
    software_version: str | None = None


class ServerMetadataOut(BaseModel):
    """RFC 8414: the authorization server's metadata."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str
    revocation_endpoint: str
    scopes_supported: list[str]
    response_types_supported: list[str]
    response_modes_supported: list[str]
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    code_challenge_methods_supported: list[str]
    authorization_response_iss_parameter_supported: bool
    service_documentation: str


class ResourceMetadataOut(BaseModel):
    """RFC 9728: the protected resource (/mcp) and who issues its tokens."""

    resource: str
    authorization_servers: list[str]
    scopes_supported: list[str]
    bearer_methods_supported: list[str]
    resource_name: str
    resource_documentation: str


# -- Typed records ------------------------------------------------------------------------------
# What core/identity/oauth returns: the documents the endpoints send, field for field. Their keys
# are the RFCs' (known), so records; the `Out` models above document them in /openapi.json.


class TokenRecord(TypedDict):
    """RFC 6749 section 5.1 (`TokenOut`)."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    scope: NotRequired[str]


class _ClientKeys(TypedDict):
    client_id: str
    client_id_issued_at: int
    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    token_endpoint_auth_method: str


# Two classes, not Required[...]: under postponed annotations the runtime's __required_keys__
# (tests/unit/test_records.py reads it) does not see Required.
class ClientRecord(_ClientKeys, total=False):
    """RFC 7591 section 3.2.1 (`ClientOut`): a key whose value is null is left out, and the
    optional metadata the client registered (client_uri, ...) is echoed as it sent it."""

    client_secret: str
    client_secret_expires_at: int
    client_name: str
    scope: str
    client_uri: str
    logo_uri: str
    contacts: list[str]
    tos_uri: str
    policy_uri: str
    software_id: str
    software_version: str


class ServerMetadataRecord(TypedDict):
    """RFC 8414 section 2 (`ServerMetadataOut`): the keys Mnemo sends, every one always (the
    RFC makes most optional; a client reads only those it knows)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str
    revocation_endpoint: str
    scopes_supported: list[str]
    response_types_supported: list[str]
    response_modes_supported: list[str]
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    code_challenge_methods_supported: list[str]
    authorization_response_iss_parameter_supported: bool
    service_documentation: str


class ResourceMetadataRecord(TypedDict):
    """RFC 9728 section 2 (`ResourceMetadataOut`)."""

    resource: str
    authorization_servers: list[str]
    scopes_supported: list[str]
    bearer_methods_supported: list[str]
    resource_name: str
    resource_documentation: str
