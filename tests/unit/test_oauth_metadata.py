"""The OAuth resource-metadata helpers (core/identity/oauth/metadata.py) on their own. The
metadata documents and the whole OAuth flow: tests/api/test_oauth.py."""

from __future__ import annotations

from core.identity.oauth import metadata


def test_www_authenticate_helper_points_at_the_resource_metadata() -> None:
    header = metadata.www_authenticate("https://mnemo.example.com")
    # The scope tells a client what to ask for (MCP authorization, scope selection).
    assert header == (
        'Bearer resource_metadata="https://mnemo.example.com/.well-known/'
        'oauth-protected-resource/mcp", scope="memories:read memories:write"'
    )
    with_error = metadata.www_authenticate("https://m.example", "invalid_token", 'bad "x"')
    assert 'error="invalid_token"' in with_error and "error_description=\"bad 'x'\"" in with_error
