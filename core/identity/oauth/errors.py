"""OAuth protocol errors. The OAuth endpoints answer in the RFC shapes that client libraries
parse ({"error": "invalid_grant", "error_description": ...}), not in Mnemo's own error shape."""

from __future__ import annotations


class OAuthError(Exception):
    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class PageError(Exception):
    """An authorization request too broken to redirect back (unknown client, unregistered
    redirect URI): RFC 6749 section 4.1.2.1 says tell the user, never redirect."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RedirectError(Exception):
    """An authorization request error reported to the client at its (verified) redirect URI."""

    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str) -> None:
        super().__init__(description)
        self.redirect_uri = redirect_uri
        self.state = state
        self.error = error
        self.description = description
