"""Memory and cold start at scale: a fresh process's first searches over one large scope.

    .venv/bin/python -m bench.scale seed --size 100000 --folder /tmp/mnemo-scale-100k
    .venv/bin/python -m bench.scale image --folder /tmp/mnemo-scale-100k
    .venv/bin/python -m bench.scale measure --folder /tmp/mnemo-scale-100k [--baseline DIR]

`seed` fills a SQLite database once (kept, so `measure` can be run again). `measure` starts a
fresh Python process per run, as a cold Lambda would: it builds the handler, runs two searches
through it and reports the time of each (and the first's CPU time, which a loaded machine
inflates less), the vector cache's part of the first, the process's peak resident memory
(VmHWM, which counts pages of the memory-mapped database file too) and its anonymous memory
at the end. MNEMO_EMBEDDER=minilm measures the numpy MiniLM embedder (its model loads in the
first search unless `--routes init`) on a database whose vectors are MiniLM's size and name.
`image` runs maintenance's `vector_images` task (the hourly schedule's), which saves the
vector cache a cold process starts from; without it `measure` times a cold load from the rows.
`--baseline DIR` runs the same measurement with the code of another checkout (e.g. main) in the
same run, alternating with this one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import load_avg, say

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ("what did she say about the painting", "when is the trip to the mountains")

# What the fresh process runs: no import of this module, so a baseline checkout without it
# measures the same way.
_CHILD = r"""
import json, os, resource, sys, time
started = time.perf_counter()
if os.environ.get("MNEMO_EMBEDDER"):  # make_handler's Settings, with this embedder
    import functools
    from core.kernel import config
    config.Settings = functools.partial(config.Settings, embedder=config.EmbedderSettings(
        kind=os.environ["MNEMO_EMBEDDER"],
        local_model_path=os.environ.get("MNEMO_LOCAL_MODEL_PATH")))
from bench.common import context, event, make_handler
url, key = sys.argv[1], sys.argv[2]
queries = json.loads(sys.argv[3])
handler = make_handler(url)
if sys.argv[4] == "init":
    # What SnapStart's init does (settings.snap_start: every route module imported).
    import importlib, pkgutil, handlers.routes
    for found in pkgutil.iter_modules(handlers.routes.__path__):
        importlib.import_module("handlers.routes." + found.name)
    from core.embeddings import get_embedder  # and a local model (handlers/api.py)
    from core.kernel import config as config_
    get_embedder(config_.Settings(database_url=url).embedder)  # builtin: next to nothing
import core.retrieval.vectors as vectors
refresh, spent = vectors._refresh, []
def timed(*args, **kwargs):
    t = time.perf_counter()
    try:
        return refresh(*args, **kwargs)
    finally:
        spent.append((time.perf_counter() - t) * 1000)
vectors._refresh = timed
took, cpu = [], []
for q in queries:
    t, c = time.perf_counter(), time.process_time()
    r = handler(event("POST", "/v1/search", key=key,
                      json_body={"query": q, "limit": 10, "user_id": "u1"}), context())
    assert r["statusCode"] == 200, r
    took.append((time.perf_counter() - t) * 1000)
    cpu.append((time.process_time() - c) * 1000)
    spent.append(None)
status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
mib = lambda k: int(status[k].split()[0]) / 1024
print(json.dumps({
    "first_ms": took[0], "second_ms": took[1], "first_cpu_ms": cpu[0],
    "first_vectors_ms": sum(x for x in spent[:spent.index(None)]),
    "total_s": time.perf_counter() - started,
    "peak_rss_mib": mib("VmHWM"), "rss_mib": mib("VmRSS"),
    "anon_mib": mib("RssAnon"), "file_mib": mib("RssFile"),
}))
"""


def seed(size: int, folder: Path) -> None:
    from bench.common import new_tenant, sqlite_url
    from bench.search import _corpus, _seed, _texts

    folder.mkdir(parents=True, exist_ok=True)
    url = sqlite_url(folder)
    slug, key = new_tenant(url)
    turns, _ = _corpus()
    started = time.perf_counter()
    _seed(url, slug, _texts(turns, size))
    seconds = time.perf_counter() - started
    (folder / "bench.json").write_text(json.dumps({"url": url, "key": key, "size": size}))
    say(f"seeded {size:,} memories in {seconds:.0f} s")


def save_image(folder: Path) -> dict[str, Any]:
    """Run maintenance's `vector_images` task on every brain of the database (what the hourly
    schedule does), so cold processes start from the saved image."""
    from core.app.brain_maintenance import maintain_brain
    from core.kernel.config import EmbedderSettings, Settings
    from core.kernel.db.engine import get_engine, sql, transaction
    from core.kernel.db.migrations import ensure_schema

    info = json.loads((folder / "bench.json").read_text())
    embedder = EmbedderSettings(
        kind=os.environ.get("MNEMO_EMBEDDER", "builtin"),
        local_model_path=os.environ.get("MNEMO_LOCAL_MODEL_PATH"),
    )
    settings = Settings(database_url=info["url"], embedder=embedder)
    engine = get_engine(info["url"])
    ensure_schema(engine)
    with transaction(engine, write=False) as conn:
        brains = [row[0] for row in conn.execute(sql("SELECT id FROM brains"))]
    started = time.perf_counter()
    done = [
        maintain_brain(engine, b, settings.maintenance, tasks=("vector_images",), app=settings)
        for b in brains
    ]
    seconds = time.perf_counter() - started
    say(f"saved the vector images of {len(brains)} brain(s) in {seconds:.1f} s")
    return {"seconds": round(seconds, 2), "brains": done}


def _child(code_root: Path, url: str, key: str, mode: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code_root), "MNEMO_LOG_LEVEL": "WARNING"}
    # Bytecode as a deployed package has it (compiled once, not at every start).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, url, key, json.dumps(QUERIES), mode],
        env=env,
        cwd=code_root,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(folder: Path, runs: int, baseline: Path | None, mode: str) -> dict[str, Any]:
    info = json.loads((folder / "bench.json").read_text())
    codes = {"this": ROOT, **({"baseline": baseline} if baseline else {})}
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
    for root in codes.values():  # a first run writes the bytecode; not counted
        _child(root, info["url"], info["key"], mode)
    loads = [load_avg()]
    for _ in range(runs):
        for name, root in codes.items():  # alternating: both see the same machine
            found[name].append(_child(root, info["url"], info["key"], mode))
    loads.append(load_avg())
    summary: dict[str, Any] = {
        "size": info["size"], "runs": runs, "routes": mode, "load": loads,
        "embedder": os.environ.get("MNEMO_EMBEDDER", "builtin"),
    }  # fmt: skip
    for name, results in found.items():
        summary[name] = {
            key: round(statistics.median(r[key] for r in results), 1) for key in results[0]
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("seed", "image", "measure"))
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout's root")
    parser.add_argument(
        "--routes",
        choices=("lazy", "init"),
        default="lazy",
        help="init: route modules imported and the embedder loaded before the clock starts, "
        "as SnapStart's init does",
    )
    args = parser.parse_args()
    if args.action == "seed":
        seed(args.size, args.folder)
    elif args.action == "image":
        print(json.dumps(save_image(args.folder), indent=2))
    else:
        print(json.dumps(measure(args.folder, args.runs, args.baseline, args.routes), indent=2))


if __name__ == "__main__":
    main()
