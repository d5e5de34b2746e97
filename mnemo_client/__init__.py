"""mnemo_client: a Python client for Mnemo.

    from mnemo_client import MnemoClient

    om = MnemoClient(api_key="...", base_url="http://localhost:8080")
    om.add("User prefers dark mode", tags=["preferences"], user_id="user_123")
    for match in om.query("preferences", k=5, filters={"user_id": "user_123"})["matches"]:
        print(f"{match['score']:.2f} - {match['content']}")

OpenMemory's calls keep OpenMemory's names and answers, so code written for its SDK runs with
only the import and the class name changed; the native /v1 API is there too (memories, facts,
search, context packs, history, users and their summaries, the changelog). `AsyncMnemoClient`
has the same calls as coroutines.
"""

from mnemo_client import types
from mnemo_client.async_client import AsyncMnemoClient
from mnemo_client.client import MnemoClient
from mnemo_client.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    MnemoAPIError,
    MnemoConnectionError,
    MnemoError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from mnemo_client.webhooks import WebhookVerificationError, verify_webhook

__version__ = "0.1.0"
__all__ = [
    "AsyncMnemoClient",
    "AuthenticationError",
    "ConflictError",
    "InvalidRequestError",
    "MnemoAPIError",
    "MnemoClient",
    "MnemoConnectionError",
    "MnemoError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "WebhookVerificationError",
    "types",
    "verify_webhook",
]
