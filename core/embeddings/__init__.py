"""Embeddings behind one small interface, chosen by MNEMO_EMBEDDER.

    embedder = get_embedder(settings.embedder)
    vectors = embedder.embed(["a memory", "another"])          # float32 (2, embedder.dims)
    query = embedder.embed(["what was said?"], kind="query")[0]
    cosine = vectors @ query                                   # rows are unit length

Backends: `builtin` (default; feature hashing in numpy, no model, no network), `openai` (any
OpenAI-compatible endpoint, Ollama included), `bedrock` (Amazon Titan through boto3), `minilm`
(all-MiniLM-L6-v2 from shipped weights, run in numpy or, for a folder built by
core.embeddings.onnx_graph, by ONNX Runtime: semantic search that fits in a function) and
`local` (the same kind of model through sentence-transformers and torch). Only `builtin` is
imported eagerly; the others load their modules (and boto3, tokenizers, torch) when first chosen,
so importing the API stays fast.
"""

from __future__ import annotations

from functools import lru_cache

from core.embeddings.base import Embedder, EmbeddingError, Kind, Vectors, normalize_rows, rescale
from core.embeddings.builtin import BuiltinEmbedder
from core.kernel.config import EmbedderSettings

__all__ = [
    "BuiltinEmbedder",
    "Embedder",
    "EmbeddingError",
    "Kind",
    "Vectors",
    "build_embedder",
    "get_embedder",
    "normalize_rows",
    "rescale",
]


def build_embedder(settings: EmbedderSettings) -> Embedder:
    """A new embedder for these settings (prefer `get_embedder`, which keeps one per process)."""
    floor, strong = settings.similarity_floor, settings.similarity_strong
    if settings.kind == "builtin":
        return BuiltinEmbedder(
            settings.builtin_dims, similarity_floor=floor, similarity_strong=strong
        )
    if settings.kind == "openai":
        from core.embeddings.openai_compat import DEFAULT_MODEL, OpenAIEmbedder

        return OpenAIEmbedder(
            model=settings.model or DEFAULT_MODEL,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            dims=settings.dims,
            batch_size=settings.batch_size,
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
            max_chars=settings.max_chars,
            similarity_floor=floor,
            similarity_strong=strong,
        )
    if settings.kind == "bedrock":
        from core.embeddings import bedrock

        return bedrock.BedrockEmbedder(
            model=settings.model or bedrock.DEFAULT_MODEL,
            dims=settings.dims,
            region=settings.bedrock_region,
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
            max_chars=settings.max_chars,
            similarity_floor=floor,
            similarity_strong=strong,
        )
    if settings.kind == "minilm":
        from core.embeddings.minilm import MiniLMEmbedder, model_config

        path = settings.local_model_path
        # The folder says which runtime reads it: ONNX Runtime for a model.onnx that
        # `python -m core.embeddings.onnx_graph` built, else numpy on model.safetensors.
        if path and model_config(path).get("mnemo_runtime") == "onnx":
            from core.embeddings.minilm_onnx import OnnxMiniLMEmbedder

            return OnnxMiniLMEmbedder(path, similarity_floor=floor, similarity_strong=strong)
        return MiniLMEmbedder(path, similarity_floor=floor, similarity_strong=strong)
    if settings.kind == "local":
        from core.embeddings.local import LocalEmbedder

        return LocalEmbedder(
            settings.local_model_path,
            batch_size=settings.batch_size,
            similarity_floor=floor,
            similarity_strong=strong,
        )
    raise ValueError(f"unknown embedder {settings.kind!r}")


@lru_cache(maxsize=8)
def get_embedder(settings: EmbedderSettings) -> Embedder:
    """One embedder per distinct settings per process: models load once, word caches stay warm."""
    return build_embedder(settings)
