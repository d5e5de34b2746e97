"""The default embedder: feature hashing in pure numpy. No model, no network, same on every machine.

A text becomes three families of features: its stemmed terms (what lexical search matches on),
pairs of neighbouring terms (a little word order: "new york", "ice cream"), and character 3- to
5-grams of each word between boundary marks ("<paint", "ing>") so that morphology the stemmer
misses, misspellings and compounds still overlap. Each feature gets a sublinear weight 1 + log(tf);
each family is scaled to a fixed share of the vector (so long words cannot drown out the terms);
features are hashed with a stable hash (BLAKE2b, never Python's per-process `hash`) into `dims`
buckets with a random sign, which keeps collisions unbiased; rows are L2-normalised.

Speed comes from caching each distinct word's hashes (words repeat: a warm process hashes almost
nothing) and doing all counting for a batch in a handful of numpy calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from core.embeddings.base import Kind, Vectors
from core.embeddings.text import stem, tokens

__all__ = ["DEFAULT_DIMS", "BuiltinEmbedder"]

_U64 = npt.NDArray[np.uint64]

# Feature families, stored in the two lowest bits of each key.
_TERM, _PAIR, _CHARS = 0, 1, 2
# A key is [46 bits of feature hash][16 bits of row within the chunk][2 bits of family], so one
# sort over the whole batch counts tf per (text, feature), and the low 18 bits read as a number
# are the (text, family) block the feature belongs to. 46 bits tell features apart with room.
_ROW_BITS = 16
_LOW_BITS = _ROW_BITS + 2
_CHUNK = 1 << _ROW_BITS
_LOW_MASK = np.uint64((1 << _LOW_BITS) - 1)
_HIGH_MASK = ~_LOW_MASK
_SHIFT_LOW = np.uint64(_LOW_BITS)
_SHIFT_SIGN = np.uint64(63)
# An odd constant (2**64 / golden ratio): multiplying one term's hash by it before combining
# with the next makes a pair's hash depend on order ("dog bites man" is not "man bites dog").
_PAIR_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)

_WORD_CACHE_LIMIT = 200_000
# 512 buckets: on LoCoMo, 1024 or more add a little on their own (hit@10 0.52 -> 0.55) and nothing
# once fused with BM25, while the vector cache and each search's matrix product grow with dims.
DEFAULT_DIMS = 512


def _hash(data: bytes) -> int:
    """The high 46 bits of BLAKE2b: stable across processes, machines and Python versions."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") & ~(
        (1 << _LOW_BITS) - 1
    )


class BuiltinEmbedder:
    """Signed feature hashing of terms, term pairs and character n-grams."""

    # Measured with core.embeddings.calibrate on LoCoMo dev (shared/bench/locomo-dev.json: 5
    # conversations, 762 questions against ~3,000 turns), dims 512. floor: 95th percentile of cosine
    # between a question and turns of the *other* conversations (unrelated; median 0.03). strong:
    # 99th percentile between a question and the turns of its *own* conversation, about its best 6
    # of ~600 (evidence turns score 0.16 / 0.26 / 0.36 at p25 / p50 / p75). From 256 to 2048 dims
    # the figures move by under 0.03, so they serve for any MNEMO_BUILTIN_DIMS.
    similarity_floor = 0.14
    similarity_strong = 0.36

    # The norm each family's block is scaled to before hashing, so a family's share of the
    # cosine is its weight squared over the sum of squares. Chosen on LoCoMo dev as a whole
    # (never per question): terms carry the topic, n-grams the fuzzy overlap, pairs a little order.
    weights = {_TERM: 1.0, _PAIR: 0.3, _CHARS: 1.5}
    ngram_sizes = (3, 4, 5)

    def __init__(
        self,
        dims: int = DEFAULT_DIMS,
        *,
        similarity_floor: float | None = None,
        similarity_strong: float | None = None,
    ) -> None:
        if dims <= 0:
            raise ValueError("dims must be positive")
        self.dims = dims
        # The name stands for the vector space: other dims are another space, never compared.
        self.name = "builtin-v1" if dims == DEFAULT_DIMS else f"builtin-v1@{dims}"
        if similarity_floor is not None:
            self.similarity_floor = similarity_floor
        if similarity_strong is not None:
            self.similarity_strong = similarity_strong
        # word -> (term hash, n-gram hashes). Threads may share it without a lock: each dict
        # operation is atomic, and two threads filling in the same word store equal values.
        self._words: dict[str, tuple[int, _U64]] = {}
        self._family_weight = np.array(
            [self.weights[_TERM], self.weights[_PAIR], self.weights[_CHARS], 0.0]
        )

    def __repr__(self) -> str:
        return f"BuiltinEmbedder(dims={self.dims})"

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        # Queries and documents are embedded alike: the features are symmetric.
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        if len(texts) <= _CHUNK:
            return self._embed_chunk(texts)
        return np.concatenate(
            [self._embed_chunk(texts[i : i + _CHUNK]) for i in range(0, len(texts), _CHUNK)]
        )

    # -- internals ------------------------------------------------------------------------------

    def _word(self, word: str) -> tuple[int, _U64]:
        term = _hash(b"t\0" + stem(word).encode())
        padded = f"<{word}>"
        grams = {padded[i : i + n] for n in self.ngram_sizes for i in range(len(padded) - n + 1)}
        # Each distinct n-gram counts once per word; sorted so the order is fixed.
        hashes = sorted(_hash(b"c\0" + gram.encode()) | _CHARS for gram in grams)
        entry = (term, np.array(hashes, dtype=np.uint64))
        if len(self._words) >= _WORD_CACHE_LIMIT:
            # A bound, not an LRU: a process that has seen this many distinct words (random ids,
            # say) starts over rather than growing without end.
            self._words.clear()
        self._words[word] = entry
        return entry

    def _embed_chunk(self, texts: Sequence[str]) -> Vectors:
        n = len(texts)
        cache = self._words
        term_hashes: list[int] = []
        term_rows: list[int] = []
        char_arrays: list[_U64] = []
        for row, text in enumerate(texts):
            tag = row << 2
            for word in tokens(text):
                term, chars = cache.get(word) or self._word(word)
                term_hashes.append(term)
                term_rows.append(tag)
                char_arrays.append(chars)
        if not term_hashes:
            return np.zeros((n, self.dims), dtype=np.float32)

        terms = np.array(term_hashes, dtype=np.uint64)
        tags = np.array(term_rows, dtype=np.uint64)
        lengths = [len(a) for a in char_arrays]
        chars = np.concatenate(char_arrays) | np.repeat(tags, lengths)
        same = tags[:-1] == tags[1:]  # neighbours within one text
        pairs = ((terms[:-1] * _PAIR_MULTIPLIER) ^ terms[1:]) & _HIGH_MASK
        pairs = pairs[same] | tags[:-1][same] | np.uint64(_PAIR)
        keys = np.concatenate([terms | tags, pairs, chars])  # _TERM is 0: no family bits to set

        # Count each (text, feature) once: sort, then mark where the key changes.
        keys.sort()
        first = np.empty(len(keys), dtype=bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        unique = keys[starts]
        counts = np.diff(starts, append=len(keys))

        tf = 1.0 + np.log(counts)
        block = (unique & _LOW_MASK).astype(np.intp)  # row * 4 + family
        # Scale each (text, family) block to the family's weight, from the features' own norms
        # before hashing, so collisions do not bend the shares.
        block_sq = np.bincount(block, weights=tf * tf, minlength=n * 4)
        block_scale = np.zeros(n * 4)
        np.divide(
            np.tile(self._family_weight, n), np.sqrt(block_sq), out=block_scale, where=block_sq > 0
        )
        # The top bit picks the sign, the bits below it the bucket: unbiased collisions.
        values = tf * block_scale[block] * (1.0 - 2.0 * (unique >> _SHIFT_SIGN))
        bucket = ((unique >> _SHIFT_LOW) % np.uint64(self.dims)).astype(np.intp)
        index = (block >> 2) * self.dims + bucket

        matrix = np.bincount(index, weights=values, minlength=n * self.dims).reshape(n, self.dims)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))[:, None]
        np.divide(matrix, norms, out=matrix, where=norms > 0)
        return matrix.astype(np.float32)
