"""Webhook signatures, Stripe-style: `Mnemo-Signature: t=<unix seconds>,v1=<hex>` where the hex
is HMAC-SHA256 keyed with the raw secret (its UTF-8 bytes, prefix included) over
`f"{t}.".encode() + body`. Signing the timestamp with the body lets a receiver refuse replays
of an old delivery; the same scheme verifies inbound hooks (core/webhooks/hooks.py).

mnemo_client.verify_webhook is the receivers' copy of `verify` (the client does not import
core); a test keeps the two in agreement.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "Mnemo-Signature"
DELIVERY_HEADER = "Mnemo-Delivery-Id"
EVENT_HEADER = "Mnemo-Event"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


class BadSignature(ValueError):
    """The header is missing, malformed, stale, or no v1 signature matches."""


class StaleSignature(BadSignature):
    """The signed timestamp is outside the tolerance: a replay, or a clock to fix."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(
    secret: str, body: bytes, *, timestamp: int | None = None, also: tuple[str, ...] = ()
) -> str:
    """The header value for `body`, signed now (or at `timestamp`): one v1 per secret, the
    current one first, then `also` (a rotated secret still in its overlap window)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t}," + ",".join(f"v1={digest(s, t, body)}" for s in (secret, *also))


def parse(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header; several v1 values are allowed, so a sender can
    sign with an old and a new secret while a secret is rotated."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise BadSignature("the signature header needs t=<unix seconds> and v1=<hex>")
    return timestamp, signatures


def verify(
    secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None
) -> int:
    """The signed timestamp if `header` signs `body` with `secret` within `tolerance` seconds
    of now; BadSignature otherwise."""
    timestamp, signatures = parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise StaleSignature(
            f"the signature timestamp is more than {tolerance} s from now: "
            "a replay, or a clock to fix"
        )
    expected = digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise BadSignature("no v1 signature matches the body")
    return timestamp
