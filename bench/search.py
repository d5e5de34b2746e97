"""Search speed through the Lambda handler in-process, on SQLite, warm: p50/p95 of
POST /v1/search with 10,000 and 100,000 memories in the scope, add with the builtin embedder,
and the vector cache's memory per 100,000 memories.

    .venv/bin/python -m bench.search [--sizes 10000,100000] [--queries 200]

Memories are sentences recombined from LoCoMo turns (read at run time from ../shared/bench,
CC BY-NC 4.0), so the vocabulary and lengths are those of real conversation; queries are
LoCoMo questions.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from bench.common import (
    context,
    event,
    machine,
    machine_markdown,
    make_handler,
    new_tenant,
    percentile,
    say,
    scratch,
    sqlite_url,
    table,
)
from bench.locomo import DATA

_SEED = 20261121


def _corpus() -> tuple[list[str], list[str]]:
    samples = json.loads(DATA.read_text())
    turns, questions = [], []
    for sample in samples:
        conversation = sample["conversation"]
        n = 1
        while f"session_{n}" in conversation:
            turns += [t["text"] for t in conversation[f"session_{n}"]]
            n += 1
        questions += [q["question"] for q in sample["qa"] if q["category"] != 5]
    return turns, questions


def _texts(turns: list[str], count: int) -> list[str]:
    """`count` distinct texts: halves of two random turns joined, numbered to stay unique."""
    rng = random.Random(_SEED)
    out = []
    for i in range(count):
        a, b = rng.choice(turns).split(), rng.choice(turns).split()
        out.append(" ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :]) + f" (#{i})")
    return out


def _seed(database_url: str, slug: str, texts: list[str]) -> None:
    """Straight through core, one transaction per 500: what the batch endpoint does."""
    from core.embeddings import get_embedder
    from core.kernel.config import Settings
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.scope import Scope
    from core.memory.models import MemoryIn
    from core.memory.store import create_batch
    from core.retrieval.indexing import SearchIndexer

    settings = Settings(database_url=database_url)
    engine = get_engine(database_url)
    embedder = get_embedder(settings.embedder)
    with transaction(engine, write=False) as conn:
        brain = conn.exec_driver_sql("SELECT id FROM brains WHERE slug = ?", (slug,)).scalar()
    scope = Scope(brain_id=str(brain), principal="bench")
    for start in range(0, len(texts), 500):
        items = [MemoryIn(content=t, user_id="u1") for t in texts[start : start + 500]]
        index = SearchIndexer(embedder)
        index.prepare([m.content for m in items])
        with transaction(engine) as conn:
            create_batch(conn, scope, items, settings.limits, index)
        if start and start % 20_000 == 0:
            say(f"  seeded {start:,}")


def _time(handler: Any, events: list[dict[str, Any]]) -> list[float]:
    out = []
    for e in events:
        started = time.perf_counter()
        result = handler(e, context())
        out.append((time.perf_counter() - started) * 1000)
        assert result["statusCode"] in (200, 201), result
    return out


def run(sizes: list[int], queries: int) -> dict[str, Any]:
    turns, questions = _corpus()
    rng = random.Random(_SEED)
    results: dict[str, Any] = {"machine": machine(), "sizes": {}}
    for size in sizes:
        with scratch(f"search-{size}") as folder:
            url = sqlite_url(folder)
            slug, key = new_tenant(url)
            say(f"seeding {size:,} memories")
            started = time.perf_counter()
            _seed(url, slug, _texts(turns, size))
            seeded = time.perf_counter() - started
            handler = make_handler(url)
            asked = [rng.choice(questions) for _ in range(queries)]
            body = lambda q: {"query": q, "limit": 10, "user_id": "u1"}  # noqa: E731
            _time(
                handler,
                [event("POST", "/v1/search", key=key, json_body=body(q)) for q in asked[:20]],
            )
            row: dict[str, Any] = {"seed_seconds": round(seeded, 1)}
            for mode in ("hybrid", "lexical", "semantic"):
                events = [
                    event("POST", "/v1/search", key=key, json_body={**body(q), "mode": mode})
                    for q in asked
                ]
                took = _time(handler, events)
                row[mode] = {"p50": percentile(took, 50), "p95": percentile(took, 95)}
            adds = [
                event(
                    "POST",
                    "/v1/memories",
                    key=key,
                    json_body={"content": f"{t} (added {i})", "user_id": "u1"},
                )
                for i, t in enumerate(_texts(turns, 300))
            ]
            took = _time(handler, adds)
            row["add"] = {"p50": percentile(took, 50), "p95": percentile(took, 95)}
            from core.retrieval import vectors

            cache_bytes = sum(entry.snapshot.nbytes for entry in vectors._cache.values())
            row["cache_mb_per_100k"] = round(cache_bytes / (size + 300) * 100_000 / 2**20, 1)
            results["sizes"][size] = row
            vectors.forget_all()
    return results


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for size, r in results["sizes"].items():
        for op in ("hybrid", "lexical", "semantic", "add"):
            rows.append(
                [
                    f"{size:,}",
                    op if op == "add" else f"search ({op})",
                    f"{r[op]['p50']:.2f}",
                    f"{r[op]['p95']:.2f}",
                ]
            )
    cache = [f"{size:,}: {r['cache_mb_per_100k']} MiB" for size, r in results["sizes"].items()]
    return "\n\n".join(
        [
            machine_markdown(results["machine"]),
            table(["memories in scope", "operation", "p50 ms", "p95 ms"], rows),
            "Vector cache memory per 100,000 memories (measured at): " + "; ".join(cache),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(markdown(run([int(s) for s in args.sizes.split(",")], args.queries)))


if __name__ == "__main__":
    main()
