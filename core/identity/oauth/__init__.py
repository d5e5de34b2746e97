"""OAuth 2.1 authorization server for MCP clients: metadata (RFC 8414, RFC 9728), dynamic client
registration (RFC 7591), authorization codes with PKCE S256, resource indicators (RFC 8707),
and token revocation (RFC 7009). Sessions and tokens themselves live in
core/identity/sessions.py."""
