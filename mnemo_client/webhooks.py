"""Verifying Mnemo's webhooks on the receiving side.

    from mnemo_client import verify_webhook, WebhookVerificationError

    def handle(request):  # any framework: the header and the raw body bytes
        try:
            verify_webhook(SECRET, request.headers["Mnemo-Signature"], request.body)
        except WebhookVerificationError:
            return 400
        event = json.loads(request.body)
        if seen(request.headers["Mnemo-Delivery-Id"]):  # retries reuse the delivery id
            return 200
        ...

The header is `t=<unix seconds>,v1=<hex>`, the hex being HMAC-SHA256 keyed with the secret
(its UTF-8 bytes, `whsec_` prefix included) over `<t>.` followed by the raw body. Verify the raw
bytes as received: parsing and re-serialising the JSON changes them.
"""

from __future__ import annotations

import hashlib
import hmac
import time


class WebhookVerificationError(ValueError):
    """The signature header is missing or malformed, too old or too new, or does not match."""


def verify_webhook(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> int:
    """Check a delivery's `Mnemo-Signature` header against its raw body; returns the signed
    timestamp, or raises WebhookVerificationError. `tolerance` (seconds) bounds how far the
    timestamp may be from now, which refuses replays of old deliveries."""
    if not header:
        raise WebhookVerificationError("no Mnemo-Signature header")
    raw = body.encode() if isinstance(body, str) else body
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookVerificationError("the header needs t=<unix seconds> and v1=<hex>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(f"the timestamp is more than {tolerance} s from now")
    signed = f"{timestamp}.".encode() + raw
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookVerificationError("the signature does not match the body")
    return timestamp
