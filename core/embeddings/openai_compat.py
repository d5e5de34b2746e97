"""Any OpenAI-compatible /v1/embeddings endpoint: OpenAI itself, Ollama, vLLM, LiteLLM and so on.

Standard library only (urllib): the embedder is one POST per batch, and a runtime dependency for
that is not worth its weight in the Lambda package. Each request has a timeout; 429, 5xx and
network failures are retried a bounded number of times with exponential backoff and full jitter
(honouring Retry-After), everything else fails at once with the server's own message.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.embeddings.base import EmbeddingError, Kind, Vectors, embed_non_blank

__all__ = ["OpenAIEmbedder"]

# Native sizes of OpenAI's models, so `dims` is known without a request; any other model is
# asked once (one short text) the first time `dims` is read.
KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_MODEL = "text-embedding-3-small"
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_ERROR_BODY_CHARS = 500


class OpenAIEmbedder:
    """Batched, retried calls to `{base_url}/embeddings`."""

    # Not measured here (no network to OpenAI from the build machines): text-embedding-3 models
    # put unrelated English text at cosine ~0.0-0.2 and clear paraphrases above ~0.6. Measure your
    # own model with core.embeddings.calibrate and set MNEMO_SIMILARITY_FLOOR / _STRONG.
    similarity_floor = 0.20
    similarity_strong = 0.60

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        dims: int | None = None,
        batch_size: int = 64,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_chars: int = 8000,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        similarity_floor: float | None = None,
        similarity_strong: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        # The name stands for the vector space: a shortened text-embedding-3 is another space.
        self.name = f"openai:{model}" if dims is None else f"openai:{model}@{dims}"
        if not base_url.startswith(("http://", "https://")):
            # urllib would also open file: and ftp: URLs; an embedder has no business there.
            raise ValueError(f"the embeddings base URL must be http or https, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/embeddings"
        self._api_key = api_key
        # Only sent when asked for: text-embedding-3 can shorten its vectors, most servers cannot.
        self._requested_dims = dims
        self._dims = dims or KNOWN_DIMS.get(model)
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_chars = max_chars
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        if similarity_floor is not None:
            self.similarity_floor = similarity_floor
        if similarity_strong is not None:
            self.similarity_strong = similarity_strong
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, url={self.url!r})"

    @property
    def dims(self) -> int:
        if self._dims is None:
            self._dims = int(self._request(["dimension probe"]).shape[1])
        return self._dims

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        return embed_non_blank(texts, self.dims, self._embed_batches)

    # -- internals ------------------------------------------------------------------------------

    def _embed_batches(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        parts = [
            self._request([t[: self.max_chars] for t in texts[i : i + self.batch_size]])
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts)

    def _request(self, inputs: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        payload: dict[str, Any] = {"model": self.model, "input": inputs, "encoding_format": "float"}
        if self._requested_dims is not None:
            payload["dimensions"] = self._requested_dims
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"

        attempt = 0
        while True:
            # The URL is the operator's configuration (checked to be http or https), not user input.
            request = urllib.request.Request(  # noqa: S310
                self.url, data=body, headers=headers, method="POST"
            )
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    return self._parse(response.read(), len(inputs))
            except urllib.error.HTTPError as error:
                detail = _error_detail(error)
                if error.code not in _RETRY_STATUSES:
                    raise EmbeddingError(
                        f"embedding request to {self.url} failed with HTTP {error.code}: {detail}",
                        details={"status": error.code},
                    ) from None
                problem = f"HTTP {error.code}: {detail}"
                retry_after = _retry_after(error.headers.get("Retry-After"))
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                reason = getattr(error, "reason", error)
                problem = f"{type(reason).__name__}: {reason}"
            if attempt >= self.max_retries:
                raise EmbeddingError(
                    f"embedding request to {self.url} failed after {attempt + 1} attempts; "
                    f"last error {problem}"
                )
            self._sleep(self._backoff(attempt, retry_after))
            attempt += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Full jitter spreads out many clients that failed together; Retry-After is a floor.
        delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _parse(self, raw: bytes, expected: int) -> np.ndarray[Any, np.dtype[np.float64]]:
        try:
            data = json.loads(raw)["data"]
            rows = sorted(data, key=lambda item: item.get("index", 0))
            vectors = np.array([row["embedding"] for row in rows], dtype=np.float64)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise EmbeddingError(
                f"embedding response from {self.url} is not an embeddings list: {error}"
            ) from None
        if vectors.ndim != 2 or len(vectors) != expected:
            raise EmbeddingError(
                f"embedding response from {self.url} has {len(vectors)} vectors "
                f"for {expected} inputs"
            )
        return vectors


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read()[:4096]
    except OSError:
        return error.reason or ""
    try:
        parsed = json.loads(raw)
        message = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        if isinstance(message, dict):
            message = message.get("message", message)
        return str(message)[:_ERROR_BODY_CHARS]
    except ValueError:
        return raw.decode(errors="replace")[:_ERROR_BODY_CHARS] or str(error.reason)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from these APIs, and the backoff covers it
