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


def test_within_grant_allows_narrowing_never_widening() -> None:
    base = "https://m.example"
    mcp, api = base + "/mcp", base + "/v1"
    both = frozenset({mcp, api})
    assert metadata.within_grant({mcp}, both, base)
    assert metadata.within_grant({mcp, api}, both, base)
    assert not metadata.within_grant({base}, both, base)  # the whole service is wider
    assert not metadata.within_grant({"https://other.example/mcp"}, both, base)
    # A grant for the whole service holds each surface, and nothing else under it.
    assert metadata.within_grant({mcp}, frozenset({base}), base)
    assert metadata.within_grant({api, base}, frozenset({base}), base)
    assert not metadata.within_grant({base + "/v1/memories"}, frozenset({base}), base)
    # Another host's surfaces are not this grant's, even when that host is "the service".
    assert not metadata.within_grant({mcp}, frozenset({base}), "https://other.example")
    assert not metadata.within_grant({api}, frozenset({mcp}), base)
