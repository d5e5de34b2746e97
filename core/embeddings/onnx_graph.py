"""Build time only: a BERT sentence encoder's safetensors written as an ONNX graph for ONNX Runtime.

    python -m core.embeddings.onnx_graph OUT [--source MODEL_FOLDER] [--weights int8]

The graph is built node by node with the `onnx` package's helpers from the weights themselves:
no torch, no export trace. It uses ONNX Runtime's fused CPU operators (com.microsoft
MultiHeadAttention, SkipLayerNormalization, BiasGelu), so a layer is a handful of kernels, and
takes token ids and the attention mask; it returns the mean of the real tokens' final states
(the caller normalises, as for every embedder). The folder it writes holds model.onnx,
tokenizer.json and config.json (with `mnemo_model_name` and `mnemo_runtime: onnx`), which
core.embeddings.minilm_onnx runs with onnxruntime alone: `onnx` is needed only here.

Weights (`--weights`):
- `int8` (default): every dense layer as com.microsoft DynamicQuantizeMatMul: the weights
  stored as 7-bit integers with one scale per output column, the activations rounded to 8 bits
  per call, the product in integers. At a query's ~12 tokens a layer is compute-bound, and
  integer products take half of ONNX Runtime's float32 time, a third of numpy's
  (docs/benchmarks.md). Two things keep the vectors close
  to the float model's (cosine >= 0.99 on 200 LoCoMo questions):
  * SmoothQuant (Xiao et al. 2023): a few of BERT's hidden channels carry activations far larger
    than the rest, which one 8-bit scale per call would flatten. Each input channel is divided
    by s = a^0.75 / w^0.25 (a, w: the channel's largest activation on a few sentences of
    `_CALIBRATION`, and its largest weight) and its weight row multiplied by s: the same
    product, with the range moved into the weights, which have a scale per column.
  * 7 bits, not 8: x86 CPUs without VNNI multiply unsigned by signed bytes with an instruction
    that adds pairs into 16 bits and saturates; 255 x 127 x 2 overflows, 255 x 63 x 2 does
    not (onnxruntime's quantiser calls this reduce_range).
- `float32`: plain MatMul, the reference: the numpy runtime's vectors to cosine 0.99999.
`--keep-float PART,...` leaves some of each layer's products in float32 (qkv, out, ff_in,
ff_out): closer vectors, slower queries. The vocabulary table is stored float16 (23 MB
instead of 47) and widened after the lookup; position and token-type rows are summed into
one float32 table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.embeddings.base import EmbeddingError
from core.embeddings.minilm import (
    _BUNDLED,
    _F32,
    MiniLMEmbedder,
    _pooling,
    _read_json,
    _Tensors,
    bundled_model_path,
)

__all__ = ["PARTS", "SMOOTHING", "WEIGHTS", "build", "model_name"]

WEIGHTS = ("int8", "float32")
_MS = "com.microsoft"
_OPSET = 17
# SmoothQuant's migration strength (0: none, 1: all of the activations' range to the weights);
# 0.65-0.75 kept the vectors closest on LoCoMo questions, 0.3 ruined them.
SMOOTHING = 0.75
# 7-bit weights: see the module's docstring.
_WEIGHT_MAX = 63
PARTS = ("qkv", "out", "ff_in", "ff_out")


class _Graph:
    def __init__(self, weights: str, keep_float: Sequence[str], smoothing: float) -> None:
        import onnx
        from onnx import helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.nodes: list[Any] = []
        self.weights, self.keep_float, self.smoothing = weights, tuple(keep_float), smoothing
        self.ranges: dict[str, npt.NDArray[np.float32]] | None = None
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem: str, value: npt.NDArray[Any]) -> str:
        name = self.name(stem)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(
        self, op: str, inputs: Sequence[str], outputs: int = 1, domain: str = "", **attrs: Any
    ) -> list[str]:
        names = [self.name(op.lower()) for _ in range(outputs)]
        self.nodes.append(
            self.helper.make_node(op, list(inputs), names, domain=domain or None, **attrs)
        )
        return names

    def one(self, op: str, inputs: Sequence[str], domain: str = "", **attrs: Any) -> str:
        return self.node(op, inputs, 1, domain, **attrs)[0]

    def dense(self, x: str, matrix: npt.NDArray[np.float32], stem: str, part: str) -> str:
        """x @ matrix (K x N), no bias: the bias rides on the op that follows."""
        n = matrix.shape[1]
        if self.weights == "float32" or part in self.keep_float:
            return self.one("MatMul", [x, self.constant(stem, matrix.astype(np.float32))])
        if self.ranges is not None and self.smoothing:
            # x @ W = (x / s) @ (s W): the outlier channels' range moves into the weights.
            act = np.maximum(self.ranges[stem], 1e-5)
            peak = np.maximum(np.abs(matrix).max(axis=1), 1e-5)
            smooth = act**self.smoothing / peak ** (1 - self.smoothing)
            x = self.one(
                "Mul", [x, self.constant(f"{stem}_smooth", (1 / smooth).astype(np.float32))]
            )
            matrix = matrix * smooth[:, None].astype(np.float32)
        scale = np.abs(matrix).max(axis=0) / _WEIGHT_MAX
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(matrix / scale), -_WEIGHT_MAX, _WEIGHT_MAX).astype(np.int8)
        inputs = [
            x,
            self.constant(f"{stem}_q", q),
            self.constant(f"{stem}_scale", scale.astype(np.float32)),
            self.constant(f"{stem}_zero", np.zeros(n, np.int8)),
        ]
        return self.one("DynamicQuantizeMatMul", inputs, _MS)


_CALIBRATION = [
    "I went hiking with my sister last weekend and we saw a bear near the lake.",
    "My dentist appointment moved to Thursday at 3pm.",
    "We skipped the seafood place because the reviews were awful.",
    "What did you think of the new Dune movie?",
    "We adopted a golden retriever puppy named Biscuit in March.",
    "The quarterly report is due on Friday; Tom owes me the sales figures.",
    "He started learning the violin at forty and plays in a community orchestra now.",
    "Our flight to Lisbon was delayed six hours because of a strike.",
    "I prefer tea over coffee, especially green tea in the morning.",
    "The kids built a treehouse in the backyard over the summer.",
    "Can you remind me when my passport expires?",
    "They got married in a small ceremony in Kyoto in 2019.",
    "I have been volunteering at the animal shelter every Saturday.",
    "My laptop battery dies after an hour, I need a new one.",
    "Grandma's recipe for apple pie uses cinnamon and a pinch of nutmeg.",
    "The marathon training plan says 30 km this Sunday.",
    "Thanks! That sounds great, see you tomorrow :)",
    "I'm thinking about switching careers from accounting to nursing.",
    "The landlord finally fixed the leaking kitchen faucet.",
    "We painted the nursery a soft yellow before the baby arrived.",
    "Did Maria ever finish her novel about the lighthouse keeper?",
    "The printer jammed again right before the board meeting.",
    "I read that octopuses have three hearts and blue blood.",
    "Our team won the regional chess tournament last month!",
]


def _activation_ranges(source: Path) -> dict[str, _F32]:
    """Per input channel, the largest |activation| each dense layer sees on _CALIBRATION."""
    model = MiniLMEmbedder(source)
    ranges: dict[str, _F32] = {}

    def seen(stem: str, x: _F32) -> None:
        peak = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0)
        ranges[stem] = np.maximum(ranges.get(stem, peak), peak)

    for text in _CALIBRATION:
        ids = np.asarray([model._tokenizer.encode(text).ids], np.int64)
        model._forward(ids, np.ones(ids.shape, dtype=np.bool_), observe=seen)
    return ranges


def model_name(
    base: str, weights: str, keep_float: Sequence[str] = (), smoothing: float = SMOOTHING
) -> str:
    """The name a build's vectors carry: the source's for float32 (the same vectors as numpy's
    and torch's), else one per recipe. Quantised vectors are close to the float model's, not
    the same, and one brain never compares vectors of two names."""
    if weights == "float32":
        return base
    name = f"{base}-{weights}" + "".join(f"-{part}-f32" for part in sorted(keep_float))
    return name if smoothing == SMOOTHING else f"{name}-s{smoothing:g}"


def _source_name(source: Path) -> str:
    try:
        return _BUNDLED if source.resolve() == bundled_model_path().resolve() else source.name
    except EmbeddingError:  # the bundled package is not installed: a folder of its own
        return source.name


def build(
    source: Path,
    target: Path,
    weights: str = "int8",
    *,
    keep_float: Sequence[str] = (),
    smoothing: float = SMOOTHING,
    name: str | None = None,
) -> int:
    """Writes target/model.onnx, the tokenizer and the config; returns the folder's size."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}")
    unknown = set(keep_float) - set(PARTS)
    if unknown:
        raise ValueError(f"keep_float takes {PARTS}, not {sorted(unknown)}")
    config = _read_json(source / "config.json")
    if config.get("model_type", "bert") != "bert":
        raise ValueError(f"the model in {source} is not a BERT encoder")
    if _pooling(source) != "mean":
        raise ValueError("only mean-pooled sentence encoders are built (all-MiniLM-L6-v2 is)")
    dims, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    g = _Graph(weights, keep_float, smoothing)
    if weights == "int8" and smoothing:
        g.ranges = _activation_ranges(source)
    helper, tp = g.helper, g.onnx.TensorProto
    with _Tensors(source / "model.safetensors") as t:
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in t else ""

        def w(key: str) -> npt.NDArray[np.float32]:
            return t.float32(prefix + key)

        # Embeddings: word row (float16 table) + position row + token type 0, then LayerNorm.
        words = g.constant(
            "words", t.raw(prefix + "embeddings.word_embeddings.weight").astype(np.float16)
        )
        position = (
            w("embeddings.position_embeddings.weight")
            + w("embeddings.token_type_embeddings.weight")[0]
        )
        looked_up = g.one("Cast", [g.one("Gather", [words, "input_ids"])], to=tp.FLOAT)
        # The batch's length as a 1-D tensor: Shape(input_ids)[1:2].
        length = g.one(
            "Slice",
            [g.one("Shape", ["input_ids"]), g.constant("one", np.array([1], np.int64)),
             g.constant("two", np.array([2], np.int64))],
        )  # fmt: skip
        positions = g.one(
            "Slice",
            [g.constant("positions", position), g.constant("zero", np.array([0], np.int64)),
             length, g.constant("axis0", np.array([0], np.int64))],
        )  # fmt: skip
        x = g.one(
            "LayerNormalization",
            [
                g.one("Add", [looked_up, positions]),
                g.constant("gain", w("embeddings.LayerNorm.weight")),
                g.constant("bias", w("embeddings.LayerNorm.bias")),
            ],
            axis=-1,
            epsilon=eps,
        )
        key_mask = g.one("Cast", ["attention_mask"], to=tp.INT32)

        def residual(inner: str, outer: str, source: str, stem: str, part: str, norm: str) -> str:
            """`source`'s dense layer over `inner`, added to `outer` and layer-normalised: one
            SkipLayerNormalization, the dense layer's bias riding on it."""
            projected = g.dense(
                inner, np.ascontiguousarray(w(source + "dense.weight").T), stem, part
            )
            return g.node(
                "SkipLayerNormalization",
                [
                    projected,
                    outer,
                    g.constant(f"{norm}_gain", w(source + "LayerNorm.weight")),
                    g.constant(f"{norm}_bias", w(source + "LayerNorm.bias")),
                    g.constant(f"{stem}_bias", w(source + "dense.bias")),
                ],
                1,
                _MS,
                epsilon=eps,
            )[0]

        for i in range(int(config["num_hidden_layers"])):
            layer = f"encoder.layer.{i}."
            attention = layer + "attention.self."
            parts = ("query", "key", "value")
            qkv_matrix = np.concatenate([w(f"{attention}{p}.weight") for p in parts]).T
            qkv_bias = np.concatenate([w(f"{attention}{p}.bias") for p in parts])
            qkv = g.dense(x, np.ascontiguousarray(qkv_matrix), f"l{i}_qkv", "qkv")
            q, k, v = g.node(
                "Split", [qkv, g.constant("split", np.array([dims] * 3, np.int64))], 3, axis=-1
            )
            context = g.one(
                "MultiHeadAttention",
                [q, k, v, g.constant(f"l{i}_qkv_bias", qkv_bias), key_mask],
                _MS,
                num_heads=heads,
            )
            x = residual(context, x, layer + "attention.output.", f"l{i}_out", "out", f"l{i}_ln1")
            inner = g.dense(
                x,
                np.ascontiguousarray(w(layer + "intermediate.dense.weight").T),
                f"l{i}_ff_in",
                "ff_in",
            )
            inner = g.one(
                "BiasGelu",
                [inner, g.constant(f"l{i}_ff_in_bias", w(layer + "intermediate.dense.bias"))],
                _MS,
            )
            x = residual(inner, x, layer + "output.", f"l{i}_ff_out", "ff_out", f"l{i}_ln2")
    # Mean over the real tokens: sum(x * mask) / max(sum(mask), 1).
    mask = g.one(
        "Unsqueeze",
        [
            g.one("Cast", ["attention_mask"], to=tp.FLOAT),
            g.constant("axis2", np.array([2], np.int64)),
        ],
    )
    axis1 = g.constant("axis1", np.array([1], np.int64))
    summed = g.one("ReduceSum", [g.one("Mul", [x, mask]), axis1], keepdims=0)
    count = g.one(
        "Max",
        [
            g.one("ReduceSum", [mask, axis1], keepdims=0),
            g.constant("one_f", np.array([1.0], np.float32)),
        ],
    )
    g.nodes.append(helper.make_node("Div", [summed, count], ["pooled"]))
    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info("input_ids", tp.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", tp.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("pooled", tp.FLOAT, ["batch", dims])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(_MS, 1)],
        producer_name="mnemo core.embeddings.onnx_graph",
    )
    model.ir_version = 8
    target.mkdir(parents=True, exist_ok=True)
    g.onnx.save(model, str(target / "model.onnx"))
    if name is None:
        base = str(config.get("mnemo_model_name") or _source_name(source))
        name = model_name(base, weights, keep_float, smoothing)
    config["mnemo_model_name"] = name
    config["mnemo_runtime"] = "onnx"
    config["mnemo_weights"] = weights
    config["mnemo_float_parts"] = sorted(keep_float)
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for extra in ("tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        if (source / extra).is_file():
            (target / extra).parent.mkdir(parents=True, exist_ok=True)
            (target / extra).write_bytes((source / extra).read_bytes())
    return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--source", type=Path, default=None, help="default: the bundled MiniLM")
    parser.add_argument("--weights", choices=WEIGHTS, default="int8")
    parser.add_argument("--keep-float", default="", help=f"comma-separated, of {PARTS}")
    parser.add_argument("--smoothing", type=float, default=SMOOTHING)
    args = parser.parse_args(argv)
    source = args.source or bundled_model_path()
    keep = [p.strip() for p in args.keep_float.split(",") if p.strip()]
    size = build(source, args.target, args.weights, keep_float=keep, smoothing=args.smoothing)
    print(f"built {args.target / 'model.onnx'} ({args.weights}) from {source}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
