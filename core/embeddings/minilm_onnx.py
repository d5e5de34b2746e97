"""all-MiniLM-L6-v2 run by ONNX Runtime from a folder `python -m core.embeddings.onnx_graph` built.

MNEMO_EMBEDDER=minilm chooses this runtime when the model folder's config.json says
`"mnemo_runtime": "onnx"` (the folder holds model.onnx, tokenizer.json and config.json, no
safetensors); otherwise the numpy one (core.embeddings.minilm). The tokenizer, the batching
by length, the query cache and the name rule are that module's; only the forward pass differs.
It imports onnxruntime and tokenizers, never torch or the `onnx` package.

One intra-op thread, as numpy's BLAS everywhere in Mnemo: a function has a fraction of a
vCPU, and on a shared machine more threads only fight (see docs/benchmarks.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.embeddings.base import EmbeddingError
from core.embeddings.minilm import MiniLMEmbedder, Observer

__all__ = ["OnnxMiniLMEmbedder", "is_onnx_folder"]

_F32 = npt.NDArray[np.float32]


def is_onnx_folder(config: dict[str, Any]) -> bool:
    """Whether a model folder's config.json names ONNX Runtime as its runtime."""
    return config.get("mnemo_runtime") == "onnx"


class OnnxMiniLMEmbedder(MiniLMEmbedder):
    """`local:<mnemo_model_name>`, e.g. local:all-MiniLM-L6-v2-int8.

    The builder names a quantised model apart from its float source (`-int8`): its vectors
    are close to the float model's but not the same, and vectors of one name are compared only
    with vectors of that name, so a brain never mixes the two; after a change of model, a
    reindex (POST /v1/reindex) gives every memory a vector of the new one."""

    def __repr__(self) -> str:
        return f"OnnxMiniLMEmbedder(path={str(self.path)!r})"

    def _load(self, model_path: Path, config: dict[str, Any]) -> None:
        if config.get("mnemo_weights", "float32") != "float32":
            # Integer products round each call's activations with one range for the whole
            # batch: a text among longer or stranger ones (and their padding) gets a coarser
            # grid. One text a pass keeps documents as close to the float model as queries
            # (median cosine 0.9955, not 0.989, on LoCoMo turns) and costs no more CPU at a
            # turn's ~25 tokens (8.1 ms a turn alone, 10.2 in batches of 4,096 tokens).
            self.batch_tokens = 1
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise EmbeddingError(
                f"the model in {model_path} runs on ONNX Runtime: install mnemo-server[minilm-onnx]"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Quiet unless something is wrong: its warnings go to stderr, outside Mnemo's logging.
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(model_path / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise EmbeddingError(
                f"cannot load the model {model_path / 'model.onnx'}: {error}"
            ) from None

    def _forward(
        self,
        ids: npt.NDArray[np.int64],
        mask: npt.NDArray[np.bool_],
        observe: Observer | None = None,
    ) -> _F32:
        if observe:
            raise EmbeddingError("an ONNX model's layers cannot be observed: calibrate on numpy")
        feed = {"input_ids": ids, "attention_mask": mask.astype(np.int64)}
        pooled: _F32 = self._session.run(["pooled"], feed)[0]
        return pooled
