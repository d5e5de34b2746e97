"""The OpenAI-compatible embedder's retry backoff and URL check, without a server
(core/embeddings/openai_compat.py). Against a real local server: tests/api/test_embeddings.py."""

from __future__ import annotations

import pytest

from core.embeddings.openai_compat import OpenAIEmbedder


def test_openai_backoff_is_bounded_and_honours_retry_after() -> None:
    embedder = OpenAIEmbedder(model="m", base_url="http://x", backoff_base=0.5, backoff_max=8.0)
    delays = [embedder._backoff(attempt, None) for attempt in range(12)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert embedder._backoff(0, 5.0) >= 5.0
    assert embedder._backoff(0, 3600.0) == 8.0
    with pytest.raises(ValueError, match="http"):
        OpenAIEmbedder(model="m", base_url="file:///etc/passwd")
