"""What MCP costs on top of REST: a warm `tools/call` of search through the Lambda handler
(Mangum, in-process, API Gateway HTTP API v2 events) against the same search over /v1/search,
in the same run, on the same SQLite store, alternating the two so drift hits both alike.

    .venv/bin/python -m bench.mcp [--memories 5000] [--samples 2000] [--json PATH]

Target: the MCP call's median at most 0.5 ms above the REST call's. Also reported: the
import time `handlers.mcp` and `handlers.routes.mcp` add to a cold start (python -X importtime).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 0.5
_SEED = 20261122
_VOCABULARY = (
    "tea coffee garden river mountain train ticket Paris Berlin Lisbon meeting budget deadline "
    "project launch review doctor appointment birthday gift sister brother daughter son friend "
    "guitar piano lesson football match marathon running cycling hiking camping beach holiday "
    "flight hotel booking passport visa recipe pasta curry salad allergy peanut gluten vegan "
    "cat dog vet walk morning evening weekend Monday Friday office remote laptop phone email "
    "password backup server deploy release bug ticket sprint retro manager team hiring salary "
    "rent mortgage bank savings tax invoice insurance car repair bike commute bus metro "
    "book novel author podcast movie series concert museum painting photo camera album "
    "language Spanish French German lesson exam course degree thesis library notes plan"
)
_WORDS = _VOCABULARY.split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _seed(url: str, count: int) -> str:
    """A brain with `count` memories of one user, straight through core; returns a key."""
    from core.embeddings import get_embedder
    from core.identity.keys import create_key
    from core.kernel.config import Settings
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.db.migrations import ensure_schema
    from core.kernel.scope import Scope
    from core.memory.store import create_batch
    from core.retrieval.indexing import SearchIndexer

    settings = Settings(database_url=url)
    engine = get_engine(url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "bench-mcp", name="bench")
    with transaction(engine, write=False) as conn:
        brain = conn.exec_driver_sql("SELECT id FROM brains WHERE slug = 'bench-mcp'").scalar()
    scope = Scope(brain_id=str(brain), principal="bench")
    rng = random.Random(_SEED)
    embedder = get_embedder(settings.embedder)
    from core.memory.models import MemoryIn

    for start in range(0, count, 500):
        items = [
            MemoryIn(content=f"{_sentence(rng, rng.randint(8, 24))} (#{i})", user_id="u1")
            for i in range(start, min(count, start + 500))
        ]
        index = SearchIndexer(embedder)
        index.prepare([m.content for m in items])
        with transaction(engine) as conn:
            create_batch(conn, scope, [m.model_dump() for m in items], settings.limits, index)
    return key.secret


def _events(key: str, query: str, request_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from tests.lambda_client import http_event

    search = {"query": query, "limit": 10, "user_id": "u1"}
    auth = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    rest = http_event("POST", "/v1/search", headers=auth, body=json.dumps(search))
    call = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "search", "arguments": search},
    }
    headers = {
        **auth,
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
    }
    mcp = http_event("POST", "/mcp", headers=headers, body=json.dumps(call))
    return rest, mcp


def _body(result: dict[str, Any]) -> Any:
    raw = result.get("body") or ""
    if result.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return json.loads(raw)


def _import_ms() -> dict[str, float]:
    """Cold `import handlers.api`: its total, and the self time of the MCP modules (what they
    add; the core modules they use are imported by the REST routes anyway)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import handlers.api"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    own, total = 0, 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(\S.*)$", line)
        if not m:
            continue
        name = m.group(3).strip()
        if name.startswith("handlers.mcp") or name == "handlers.routes.mcp":
            own += int(m.group(1))
        if name == "handlers.api":
            total = int(m.group(2))
    return {"mcp modules (self)": own / 1000, "handlers.api (total)": total / 1000}


def run(memories: int, samples: int) -> dict[str, Any]:
    from mangum import Mangum

    from core.kernel.config import Settings
    from handlers.api import create_app
    from tests.lambda_client import LambdaContext

    with tempfile.TemporaryDirectory(prefix="mnemo-bench-mcp-") as folder:
        url = f"sqlite:///{folder}/mnemo.db"
        print(f"[bench] seeding {memories:,} memories", file=sys.stderr)
        key = _seed(url, memories)
        # Warm means the vector cache has settled: it re-reads rows changed in the last few
        # seconds, which right after seeding is all of them.
        time.sleep(6)
        handler = Mangum(
            create_app(Settings(database_url=url, log_level="WARNING")), lifespan="off"
        )
        rng = random.Random(_SEED + 1)
        queries = [_sentence(rng, rng.randint(2, 5)) for _ in range(200)]

        rest_ms: list[float] = []
        mcp_ms: list[float] = []
        # CPU time of this thread as well as wall time: on Lambda the handler runs alone on
        # its CPU, while here other processes can take the CPU away mid-request.
        rest_cpu: list[float] = []
        mcp_cpu: list[float] = []
        sizes: dict[str, int] = {}
        warmup = 100
        for i in range(warmup + samples):
            rest, mcp = _events(key, queries[i % len(queries)], i)
            timed = []
            # Alternate which goes first, so neither always runs on the hotter cache.
            for name, event in (("rest", rest), ("mcp", mcp))[:: 1 if i % 2 else -1]:
                cpu, started = time.thread_time_ns(), time.perf_counter_ns()
                result = handler(event, LambdaContext())
                took = (time.perf_counter_ns() - started) / 1e6
                spent = (time.thread_time_ns() - cpu) / 1e6
                assert result["statusCode"] == 200, result
                timed.append((name, took, spent, result))
            if i < warmup:
                continue
            for name, took, spent, result in timed:
                (rest_ms if name == "rest" else mcp_ms).append(took)
                (rest_cpu if name == "rest" else mcp_cpu).append(spent)
                sizes.setdefault(name, len(result.get("body") or ""))
            if i == warmup:
                by_name = {name: _body(result) for name, _, _, result in timed}
                structured = by_name["mcp"]["result"]["structuredContent"]
                same = [h["memory"]["id"] for h in structured["results"]] == [
                    h["memory"]["id"] for h in by_name["rest"]["results"]
                ]
                assert same, "MCP and REST disagree on the hits"
    paired = [m - r for m, r in zip(mcp_ms, rest_ms, strict=True)]
    paired_cpu = [m - r for m, r in zip(mcp_cpu, rest_cpu, strict=True)]
    rest_median, mcp_median = statistics.median(rest_ms), statistics.median(mcp_ms)
    cpu_difference = statistics.median(mcp_cpu) - statistics.median(rest_cpu)
    return {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "memories": memories,
        "samples": samples,
        "rest": _summary(rest_ms),
        "mcp": _summary(mcp_ms),
        "rest_cpu": _summary(rest_cpu),
        "mcp_cpu": _summary(mcp_cpu),
        "cpu_median_difference_ms": cpu_difference,
        "cpu_median_paired_difference_ms": statistics.median(paired_cpu),
        "median_difference_ms": mcp_median - rest_median,
        "median_paired_difference_ms": statistics.median(paired),
        "ratio": mcp_median / rest_median,
        "body_bytes": sizes,
        "import_ms": _import_ms(),
        "target_ms": TARGET_MS,
        # Judged on CPU time, which machine load does not inflate; wall time is reported too.
        "pass": cpu_difference <= TARGET_MS,
    }


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(values),
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "mean": statistics.fmean(values),
        "min": ordered[0],
    }


def markdown(r: dict[str, Any]) -> str:
    rows = [
        f"| {label} | {r[k]['median']:.3f} | {r[k]['p95']:.3f} | {r[k + '_cpu']['median']:.3f} | "
        f"{r[k + '_cpu']['p95']:.3f} | {r['body_bytes'][k]:,} |"
        for label, k in (("POST /v1/search", "rest"), ("POST /mcp tools/call search", "mcp"))
    ]
    verdict = "PASS" if r["pass"] else "FAIL"
    imports = ", ".join(f"{k} {v:.1f} ms" for k, v in r["import_ms"].items())
    return "\n".join(
        [
            f"{r['memories']:,} memories in scope, SQLite, warm, {r['samples']:,} samples each, "
            f"Python {r['machine']['python']}, {r['machine']['cpu_count']} CPUs, load "
            f"{' '.join(f'{x:.2f}' for x in r['machine']['loadavg'])}",
            "",
            "| request | wall median ms | wall p95 ms | CPU median ms | CPU p95 ms | body bytes |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"MCP minus REST, CPU time: median {r['cpu_median_difference_ms']:+.3f} ms, median "
            f"of paired differences {r['cpu_median_paired_difference_ms']:+.3f} ms (target at "
            f"most +{r['target_ms']} ms: {verdict}).",
            f"MCP minus REST, wall time: median {r['median_difference_ms']:+.3f} ms, median of "
            f"paired differences {r['median_paired_difference_ms']:+.3f} ms, ratio "
            f"{r['ratio']:.3f}.",
            "",
            f"Cumulative import time (python -X importtime, cold): {imports}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    results = run(args.memories, args.samples)
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(0 if results["pass"] else 1)


if __name__ == "__main__":
    main()
