"""The embedder interface, its error, and helpers every backend shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from core.kernel.errors import MnemoError

Kind = Literal["document", "query"]
Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit vectors whose dot product is their cosine similarity.

    `name` is stored with every vector: vectors of different names (or dims) are never compared.
    `similarity_floor` is the cosine under which two texts are unrelated noise for this model and
    `similarity_strong` the cosine of a clear match; search maps cosine onto [0, 1] with them.
    Members are read-only properties so that an embedder may learn `dims` lazily (an OpenAI-
    compatible server is asked on first use); plain attributes satisfy them too. Not runtime-
    checkable on purpose: isinstance would read `dims`, which can mean a network call.
    """

    @property
    def name(self) -> str: ...

    @property
    def dims(self) -> int: ...

    @property
    def similarity_floor(self) -> float: ...

    @property
    def similarity_strong(self) -> float: ...

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        """float32 array (len(texts), dims); rows L2-normalised, all-zero for blank text."""
        ...


class EmbeddingError(MnemoError):
    """The embedding model could not be reached or answered wrongly (a 502 or 503 upstream)."""

    code = "embedding_failed"


def normalize_rows(matrix: npt.NDArray[np.floating]) -> Vectors:
    """Each row scaled to unit length; all-zero rows stay zero rather than becoming NaN."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix.astype(np.float32)


def embed_non_blank(
    texts: Sequence[str], dims: int, embed: Callable[[list[str]], npt.NDArray[np.floating]]
) -> Vectors:
    """Sends only the texts with content to `embed`; blank ones get zero rows.

    Remote APIs reject empty input (OpenAI and Titan answer 400), and a model's vector for ""
    would make every empty memory look alike.
    """
    out = np.zeros((len(texts), dims), dtype=np.float32)
    keep = [i for i, text in enumerate(texts) if text.strip()]
    if keep:
        vectors = np.asarray(embed([texts[i] for i in keep]), dtype=np.float64)
        if vectors.shape != (len(keep), dims):
            raise EmbeddingError(
                f"the embedding model returned shape {vectors.shape}, expected {(len(keep), dims)}"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingError("the embedding model returned a vector with NaN or infinity")
        out[keep] = normalize_rows(vectors)
    return out


def rescale(
    similarities: npt.NDArray[np.floating], floor: float, strong: float
) -> npt.NDArray[np.float64]:
    """Cosine -> [0, 1]: 0 at or under the noise floor, 1 at a clear match or above, linear between.

    Rows of a unit-vector embedder compare by dot product; this puts that on a scale search can
    combine with other evidence.
    """
    span = max(strong - floor, 1e-6)
    return np.clip((np.asarray(similarities, dtype=np.float64) - floor) / span, 0.0, 1.0)
