"""Amazon Titan text embeddings on Bedrock, through boto3's bedrock-runtime InvokeModel.

Titan takes one text per call, so a batch is a loop. Timeouts and retries are botocore's own
(adaptive mode backs off on throttling); boto3 is imported only when this embedder is built, so
the default configuration never pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.embeddings.base import EmbeddingError, Kind, Vectors, embed_non_blank

__all__ = ["BedrockEmbedder"]

DEFAULT_MODEL = "amazon.titan-embed-text-v2:0"
# Titan v2 can return 256, 512 or 1024 dimensions; v1 only 1536 (and takes no options).
_V2_DIMS = (256, 512, 1024)
_V1_DIMS = 1536
# Titan v2 accepts at most 50,000 characters.
_TITAN_MAX_CHARS = 50_000


class BedrockEmbedder:
    """`bedrock:<model id>`; vectors requested normalised and normalised again here."""

    # Not measured here (no AWS access from the build machines); Titan v2 (1024) scores unrelated
    # English text around 0.0-0.2 and close paraphrases above ~0.6 in published comparisons.
    # Measure with core.embeddings.calibrate and set MNEMO_SIMILARITY_FLOOR / _STRONG.
    similarity_floor = 0.15
    similarity_strong = 0.60

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        dims: int | None = None,
        region: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_chars: int = 8000,
        client: Any = None,
        similarity_floor: float | None = None,
        similarity_strong: float | None = None,
    ) -> None:
        self.model = model
        self._v1 = "titan-embed-text-v1" in model
        if self._v1:
            if dims not in (None, _V1_DIMS):
                raise ValueError(f"{model} only returns {_V1_DIMS} dimensions")
            self.dims = _V1_DIMS
        else:
            if dims is not None and dims not in _V2_DIMS:
                raise ValueError(f"{model} returns 256, 512 or 1024 dimensions, not {dims}")
            self.dims = dims or 1024
        # The name stands for the vector space: Titan at 256 or 512 dims is another space.
        self.name = (
            f"bedrock:{model}" if dims in (None, 1024, _V1_DIMS) else f"bedrock:{model}@{dims}"
        )
        self.max_chars = min(max_chars, _TITAN_MAX_CHARS)
        if similarity_floor is not None:
            self.similarity_floor = similarity_floor
        if similarity_strong is not None:
            self.similarity_strong = similarity_strong
        self._client = client if client is not None else _client(region, timeout, max_retries)

    def __repr__(self) -> str:
        return f"BedrockEmbedder(model={self.model!r}, dims={self.dims})"

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        return embed_non_blank(texts, self.dims, self._embed_each)

    def _embed_each(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array([self._invoke(text[: self.max_chars]) for text in texts], dtype=np.float64)

    def _invoke(self, text: str) -> list[float]:
        request: dict[str, Any] = {"inputText": text}
        if not self._v1:
            request.update(dimensions=self.dims, normalize=True)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.invoke_model(
                modelId=self.model,
                body=json.dumps(request),
                contentType="application/json",
                accept="application/json",
            )
            payload = json.loads(response["body"].read())
        except ClientError as error:
            info = error.response.get("Error", {})
            raise EmbeddingError(
                f"Bedrock {self.model} refused the request: "
                f"{info.get('Code', 'error')}: {info.get('Message', '')}",
                details={"code": info.get("Code")},
            ) from None
        except BotoCoreError as error:
            raise EmbeddingError(f"Bedrock {self.model} could not be reached: {error}") from None
        except ValueError as error:
            raise EmbeddingError(f"Bedrock {self.model} answered with bad JSON: {error}") from None
        embedding = payload.get("embedding") if isinstance(payload, dict) else None
        if not isinstance(embedding, list) or len(embedding) != self.dims:
            got = len(embedding) if isinstance(embedding, list) else "no"
            raise EmbeddingError(
                f"Bedrock {self.model} returned {got} numbers, expected an embedding of {self.dims}"
            )
        return embedding


def _client(region: str | None, timeout: float, max_retries: int) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise EmbeddingError(
            "MNEMO_EMBEDDER=bedrock needs boto3: install mnemo-server[aws]"
        ) from None
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        # Counted with the first attempt; adaptive mode also slows down while throttled.
        retries={"total_max_attempts": max_retries + 1, "mode": "adaptive"},
    )
    return boto3.client("bedrock-runtime", region_name=region, config=config)
