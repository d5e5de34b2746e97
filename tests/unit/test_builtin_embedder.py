"""The builtin hashing embedder (core/embeddings/builtin.py): deterministic, pinned, batched,
bounded. The interface every embedder shares: tests/api/test_embeddings.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.embeddings import BuiltinEmbedder, build_embedder, get_embedder
from core.kernel.config import EmbedderSettings, settings_from_env
from tests.embedding_texts import HOSTILE, PAINTING, UNRELATED

ROOT = Path(__file__).resolve().parents[2]


def test_default_settings_choose_builtin() -> None:
    settings = settings_from_env({}).embedder
    assert settings == EmbedderSettings()
    embedder = get_embedder(settings)
    assert isinstance(embedder, BuiltinEmbedder)
    assert (embedder.name, embedder.dims) == ("builtin-v1@256", 256)
    assert get_embedder(settings_from_env({}).embedder) is embedder  # one per process


def test_builtin_is_deterministic_across_processes() -> None:
    """Stored vectors stay valid after a restart: no per-process hash seed gets in."""
    texts = [PAINTING, UNRELATED, "東京タワー 🎨", ""]
    code = (
        "import hashlib, json, sys; from core.embeddings import BuiltinEmbedder; "
        "v = BuiltinEmbedder().embed(json.loads(sys.argv[1])); "
        "print(hashlib.sha256(v.tobytes()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code, json.dumps(texts)],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    here = hashlib.sha256(BuiltinEmbedder().embed(texts).tobytes()).hexdigest()
    assert digests == {here}


def test_builtin_features_are_pinned() -> None:
    """The hashing scheme is part of the stored data: changing it needs a new name (builtin-v2)
    and a reindex. This pins which buckets a text lands in, and with which sign."""
    vector = BuiltinEmbedder().embed(["Melanie painted a sunrise"])[0]
    signed = [int(i) if vector[i] > 0 else -int(i) for i in np.flatnonzero(vector)]
    digest = hashlib.sha256(json.dumps(signed).encode()).hexdigest()
    assert (len(signed), digest[:16]) == PINNED_BUILTIN


PINNED_BUILTIN = (54, "d71f6f526cdd1d0c")


def test_builtin_batches_equal_single_texts() -> None:
    embedder = BuiltinEmbedder()
    texts = [PAINTING, "", UNRELATED, *HOSTILE, PAINTING]
    batch = embedder.embed(texts)
    one_by_one = np.vstack([embedder.embed([text]) for text in texts])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-6)
    np.testing.assert_array_equal(batch[0], batch[-1])


def test_builtin_is_vectorised_over_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed without a timed assertion: the numpy work is a fixed number of calls per batch,
    not per text, so a batch of 200 makes as many bincount and sort calls as a batch of one."""
    embedder = BuiltinEmbedder()
    calls: dict[str, int] = {"bincount": 0, "concatenate": 0}
    for name in calls:
        original = getattr(np, name)

        def counting(*args: Any, _name: str = name, _f: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _f(*args, **kwargs)

        monkeypatch.setattr(np, name, counting)
    embedder.embed([PAINTING])
    one = dict(calls)
    calls.update(bincount=0, concatenate=0)
    embedder.embed([f"{PAINTING} number {i}" for i in range(200)])
    assert calls == one


def test_builtin_splits_huge_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows live in 16 bits of each feature key, so batches go in chunks of 65,536 texts."""
    import core.embeddings.builtin as builtin

    texts = [f"{PAINTING} {i}" for i in range(10)] + ["", UNRELATED]
    whole = BuiltinEmbedder().embed(texts)
    monkeypatch.setattr(builtin, "_CHUNK", 4)
    np.testing.assert_array_equal(BuiltinEmbedder().embed(texts), whole)


def test_builtin_word_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.embeddings.builtin as builtin

    monkeypatch.setattr(builtin, "_WORD_CACHE_LIMIT", 10)
    embedder = BuiltinEmbedder()
    before = embedder.embed([PAINTING])
    embedder.embed([" ".join(f"word{i}" for i in range(100))])
    assert len(embedder._words) <= 10
    np.testing.assert_array_equal(embedder.embed([PAINTING]), before)


def test_builtin_dims_and_name() -> None:
    assert BuiltinEmbedder(1024).name == "builtin-v1@1024"  # another space, another name
    settings = EmbedderSettings(builtin_dims=256, similarity_floor=0.2)
    embedder = build_embedder(settings)
    assert (embedder.dims, embedder.similarity_floor) == (256, 0.2)
    assert embedder.similarity_strong == BuiltinEmbedder.similarity_strong
    assert embedder.embed([PAINTING]).shape == (1, 256)
    with pytest.raises(ValueError):
        BuiltinEmbedder(0)


def test_builtin_word_order_and_morphology_count() -> None:
    embedder = BuiltinEmbedder()
    a, b, c, d = embedder.embed(
        ["dog bites man", "man bites dog", "The painter is painting", "paintings painted"]
    )
    assert 0.5 < float(a @ b) < 0.999  # same words, different pairs
    assert float(c @ d) > 0.3  # stems and n-grams meet


def test_builtin_symbols_only_is_a_zero_row() -> None:
    """Emoji and punctuation make no words, so the builtin has nothing to hash (lexical search
    drops them too); a model-backed embedder does give them a vector."""
    vectors = BuiltinEmbedder().embed(["🎨🙂", "!!! ... ???"])
    assert not vectors.any()
