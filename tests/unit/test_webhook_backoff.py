"""When a failed webhook delivery is tried again (core/webhooks/outbox.py `backoff_ms`)."""

from __future__ import annotations

from core.kernel.config import WebhookSettings
from core.webhooks import outbox


def test_backoff_is_exponential_with_full_jitter() -> None:
    settings = WebhookSettings(backoff_base_seconds=10, backoff_max_seconds=60)
    for attempts, cap in ((1, 10), (2, 20), (3, 40), (4, 60), (9, 60)):
        waits = [outbox.backoff_ms(settings, attempts) for _ in range(200)]
        assert all(0 <= w <= cap * 1000 for w in waits)
        assert max(waits) > cap * 1000 * 0.7  # spread over the whole range, not clustered
