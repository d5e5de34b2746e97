"""The semantic embedders side by side: what each adds to a function package, how long a query
embedding takes, and how close the numpy MiniLM is to the torch one.

    .venv/bin/python -m bench.embedder [--queries 200] [--no-torch]

One BLAS thread (threadpoolctl), as the function runs. The queries are LoCoMo questions when
the data is there (MNEMO_LOCOMO_DATA or ../shared/bench), else fixed sentences. Speed is the
wall time of `embed([query], kind="query")` per query, and its CPU time (thread time), which a
loaded machine inflates less; the load average is printed beside them.
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


def _time(embedder: Any, queries: list[str]) -> dict[str, float]:
    for query in queries[:5]:  # warm: first calls allocate
        embedder.embed([query], kind="query")
    wall: list[float] = []
    cpu: list[float] = []
    for query in queries:
        started, started_cpu = time.perf_counter(), time.thread_time()
        embedder.embed([query], kind="query")
        cpu.append(time.thread_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    wall.sort()
    return {
        "p50_ms": round(statistics.median(wall) * 1000, 2),
        "p95_ms": round(wall[int(len(wall) * 0.95)] * 1000, 2),
        "cpu_p50_ms": round(statistics.median(cpu) * 1000, 2),
    }


def run(count: int, with_torch: bool) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from core.embeddings.minilm import MiniLMEmbedder, bundled_model_path, pack

    queries = _queries(count)
    report: dict[str, Any] = {"queries": len(queries), "load_before": os.getloadavg()[0]}
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as folder:
        packed = Path(folder) / "minilm"
        pack(bundled_model_path(), packed)
        rows: dict[str, dict[str, Any]] = {}
        for label, path in (("minilm float32", None), ("minilm float16 pack", packed)):
            started = time.perf_counter()
            embedder = MiniLMEmbedder(path)
            load = time.perf_counter() - started
            weights = (embedder.path / "model.safetensors").stat().st_size
            rows[label] = {"load_s": round(load, 2), "weights_mb": round(weights / 1e6, 1)}
            rows[label].update(_time(embedder, queries))
        if with_torch and importlib.util.find_spec("sentence_transformers"):
            import numpy as np

            from core.embeddings.local import LocalEmbedder

            started = time.perf_counter()
            torch_embedder = LocalEmbedder()
            rows["local (torch)"] = {"load_s": round(time.perf_counter() - started, 2)}
            rows["local (torch)"].update(_time(torch_embedder, queries))
            reference = torch_embedder.embed(queries)
            for label, path in (("minilm float32", None), ("minilm float16 pack", packed)):
                ours = MiniLMEmbedder(path).embed(queries)
                rows[label]["min_cosine_vs_torch"] = round(
                    float(np.sum(reference * ours, axis=1).min()), 6
                )
        report["rows"] = rows
    runtime = {name: _package_bytes(name) for name in ("numpy", "tokenizers")}
    report["runtime_mb"] = {name: round(size / 1e6, 1) for name, size in runtime.items()}
    report["load_after"] = os.getloadavg()[0]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    args = parser.parse_args()
    report = run(args.queries, not args.no_torch)
    print(
        f"Query embedding, {report['queries']} LoCoMo questions, one BLAS thread "
        f"(load average {report['load_before']:.1f} before, {report['load_after']:.1f} after)"
    )
    print("| embedder | load s | weights MB | p50 ms | p95 ms | CPU p50 ms | min cosine vs torch |")
    print("|---|---|---|---|---|---|---|")
    for label, r in report["rows"].items():
        print(
            f"| {label} | {r['load_s']} | {r.get('weights_mb', '-')} | {r['p50_ms']} | "
            f"{r['p95_ms']} | {r['cpu_p50_ms']} | {r.get('min_cosine_vs_torch', '-')} |"
        )
    sizes = report["runtime_mb"]
    print(
        "Runtime packages installed: "
        + ", ".join(f"{name} {mb} MB" for name, mb in sizes.items())
        + f"; total {round(sum(sizes.values()), 1)} MB before weights"
    )


if __name__ == "__main__":
    main()
