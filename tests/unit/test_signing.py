"""Webhook signatures (core/webhooks/signing.py) against the recipe the README documents and
the Python client's verifier; deliveries signed end to end: tests/api/test_webhooks.py."""

from __future__ import annotations

import pytest

from core.webhooks import signing
from mnemo_client import WebhookVerificationError, verify_webhook


def test_signature_verifies_with_the_documented_recipe_and_fails_on_one_byte() -> None:
    secret = signing.new_secret()
    body = b'{"id":"e1","type":"memory.created"}'
    header = signing.sign(secret, body)
    assert verify_webhook(secret, header, body) == signing.verify(secret, header, body)
    # The recipe in README: HMAC-SHA256(secret, f"{t}.{body}") in hex.
    import hashlib
    import hmac

    t = header.split(",")[0].removeprefix("t=")
    recipe = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={t},v1={recipe}"
    for i in range(len(body)):
        tampered = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        with pytest.raises(WebhookVerificationError):
            verify_webhook(secret, header, tampered)
        with pytest.raises(signing.BadSignature):
            signing.verify(secret, header, tampered)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret + "x", header, body)
    old = signing.sign(secret, body, timestamp=int(header.split(",")[0][2:]) - 301)
    with pytest.raises(WebhookVerificationError, match="from now"):
        verify_webhook(secret, old, body)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, "v1=abc", body)
