"""The semantic embedders side by side: what each adds to a function package, how long a query
embedding takes, and how close each MiniLM runtime is to the torch one.

    .venv/bin/python -m bench.embedder [--queries 200] [--no-torch] [--no-onnx]

One BLAS thread (threadpoolctl) and one ONNX Runtime thread, as the function runs. The queries
are LoCoMo questions when the data is there (MNEMO_LOCOMO_DATA or ../shared/bench), else fixed
sentences. Speed is the wall time of `embed([query], kind="query")` per query, and its CPU time
(thread time), which a loaded machine inflates less; the runtimes take turns query by query, so
each sees the same load, and the load average is printed beside them. The ONNX models are built
here from the same weights (core.embeddings.onnx_graph, which needs the `onnx` package).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.locomo import DATA


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _package_bytes(name: str) -> int:
    """Installed size of a top-level package and its vendored libraries (name.libs)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return 0
    folder = Path(spec.origin).parent
    total = _folder_bytes(folder)
    libs = folder.parent / f"{name}.libs"
    if libs.is_dir():
        total += _folder_bytes(libs)
    return total


def _queries(count: int) -> list[str]:
    if DATA.is_file():
        samples = json.loads(DATA.read_text())
        questions = [qa["question"] for s in samples for qa in s["qa"] if qa["category"] != 5]
        return questions[:count]
    base = ["What did she paint last summer?", "Where does her brother live now?"]
    return [f"{q} ({i})" for i, q in enumerate(base * count)][:count]


def _time(embedders: dict[str, Any], queries: list[str]) -> dict[str, dict[str, float]]:
    """Each query embedded by every embedder in turn (distinct queries: no cache hit)."""
    for embedder in embedders.values():
        for query in queries[:5]:  # warm: first calls allocate
            embedder.embed([f"{query} (warm)"], kind="query")
    wall: dict[str, list[float]] = {label: [] for label in embedders}
    cpu: dict[str, list[float]] = {label: [] for label in embedders}
    for query in queries:
        for label, embedder in embedders.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            embedder.embed([query], kind="query")
            cpu[label].append(time.thread_time() - started_cpu)
            wall[label].append(time.perf_counter() - started)
    out = {}
    for label in embedders:
        times = sorted(wall[label])
        out[label] = {
            "p50_ms": round(statistics.median(times) * 1000, 2),
            "p95_ms": round(times[int(len(times) * 0.95)] * 1000, 2),
            "cpu_p50_ms": round(statistics.median(cpu[label]) * 1000, 2),
        }
    return out


# The ONNX builds compared: label -> core.embeddings.onnx_graph.build's arguments.
ONNX_BUILDS: dict[str, dict[str, Any]] = {
    "onnx int8 (default)": {"weights": "int8"},
    "onnx int8, ff_out float32": {"weights": "int8", "keep_float": ["ff_out"]},
    "onnx float32": {"weights": "float32"},
}


def run(count: int, with_torch: bool, with_onnx: bool = True) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from core.embeddings.minilm import bundled_model_path, pack

    queries = _queries(count)
    report: dict[str, Any] = {"queries": len(queries), "load_before": os.getloadavg()[0]}
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as folder:
        packed = Path(folder) / "minilm"
        pack(bundled_model_path(), packed)
        folders: dict[str, Path | None] = {"minilm float32": None, "minilm float16 pack": packed}
        if with_onnx:
            from core.embeddings.onnx_graph import build

            for label, options in ONNX_BUILDS.items():
                folders[label] = Path(folder) / label.replace(" ", "_").replace(",", "")
                build(bundled_model_path(), folders[label], **options)
        rows: dict[str, dict[str, Any]] = {}
        embedders: dict[str, Any] = {}
        for label, path in folders.items():
            started = time.perf_counter()
            embedders[label] = _minilm(path)
            load = time.perf_counter() - started
            model = embedders[label].path
            weights = sum(f.stat().st_size for f in model.iterdir() if f.name.startswith("model."))
            rows[label] = {
                "name": embedders[label].name,
                "load_s": round(load, 2),
                "weights_mb": round(weights / 1e6, 1),
            }
        if with_torch and importlib.util.find_spec("sentence_transformers"):
            from core.embeddings.local import LocalEmbedder

            started = time.perf_counter()
            embedders["local (torch)"] = LocalEmbedder()
            rows["local (torch)"] = {
                "name": embedders["local (torch)"].name,
                "load_s": round(time.perf_counter() - started, 2),
            }
        for label, figures in _time(embedders, queries).items():
            rows[label].update(figures)
        # Agreement with the reference (torch when it is there, else numpy float32, which
        # matches torch to cosine 0.99999), documents embedded in batches as search stores them.
        import numpy as np

        reference_label = "local (torch)" if "local (torch)" in embedders else "minilm float32"
        reference = embedders[reference_label].embed(queries)
        report["reference"] = reference_label
        for label, embedder in embedders.items():
            if label != reference_label:
                cosines = np.sum(reference * embedder.embed(queries), axis=1)
                rows[label]["min_cosine"] = round(float(cosines.min()), 4)
                rows[label]["median_cosine"] = round(float(np.median(cosines)), 4)
        report["rows"] = rows
    runtime = {name: _package_bytes(name) for name in ("numpy", "tokenizers", "onnxruntime")}
    report["runtime_mb"] = {name: round(size / 1e6, 1) for name, size in runtime.items()}
    report["load_after"] = os.getloadavg()[0]
    return report


def _minilm(path: Path | None) -> Any:
    """The embedder MNEMO_EMBEDDER=minilm builds for this folder (numpy or ONNX Runtime)."""
    from core.embeddings import build_embedder
    from core.kernel.config import EmbedderSettings

    return build_embedder(
        EmbedderSettings(kind="minilm", local_model_path=str(path) if path else None)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime builds")
    args = parser.parse_args()
    report = run(args.queries, not args.no_torch, not args.no_onnx)
    print(
        f"Query embedding, {report['queries']} LoCoMo questions, one thread "
        f"(load average {report['load_before']:.1f} before, {report['load_after']:.1f} after); "
        f"cosine against {report['reference']}"
    )
    print(
        "| embedder | vectors named | load s | model MB | p50 ms | p95 ms | CPU p50 ms "
        "| min cosine | median cosine |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in report["rows"].items():
        print(
            f"| {label} | {r['name']} | {r['load_s']} | {r.get('weights_mb', '-')} | "
            f"{r['p50_ms']} | {r['p95_ms']} | {r['cpu_p50_ms']} | {r.get('min_cosine', '-')} | "
            f"{r.get('median_cosine', '-')} |"
        )
    sizes = report["runtime_mb"]
    print(
        "Runtime packages installed: "
        + ", ".join(f"{name} {mb} MB" for name, mb in sizes.items())
        + " (before the model)"
    )


if __name__ == "__main__":
    main()
