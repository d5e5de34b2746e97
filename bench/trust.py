"""What source trust costs search: p50/p95 of POST /v1/search (hybrid and lexical) through the
Lambda handler in-process, on SQLite, warm, over two brains holding the same 10,000 memories:
one without sources (search never queries trust), one where every memory has a source (50
sources, URLs and plain names) and 20 of them have a trust entry. The ratio of the two is the
cost of reading trust; the queries alternate between the brains so machine noise hits both.

    .venv/bin/python -m bench.trust [--size 10000] [--queries 200]
"""

from __future__ import annotations

import argparse
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
from bench.search import _SEED, _corpus, _texts

_SOURCES = [f"https://site{i}.example.com/page/{i}" for i in range(25)] + [
    f"channel {i}" for i in range(25)
]


def _seed(database_url: str, slug: str, texts: list[str], *, sources: bool) -> None:
    from core.embeddings import get_embedder
    from core.kernel.config import Settings
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.scope import Scope
    from core.memory.store import create_batch
    from core.memory.trust import set_trust
    from core.retrieval.indexing import SearchIndexer

    settings = Settings(database_url=database_url)
    engine = get_engine(database_url)
    embedder = get_embedder(settings.embedder)
    with transaction(engine, write=False) as conn:
        brain = conn.exec_driver_sql("SELECT id FROM brains WHERE slug = ?", (slug,)).scalar()
    scope = Scope(brain_id=str(brain), principal="bench")
    for start in range(0, len(texts), 500):
        items: list[dict[str, Any]] = [
            {
                "content": t,
                "user_id": "u1",
                "source": _SOURCES[(start + i) % len(_SOURCES)] if sources else None,
            }
            for i, t in enumerate(texts[start : start + 500])
        ]
        index = SearchIndexer(embedder)
        index.prepare([m["content"] for m in items])
        with transaction(engine) as conn:
            create_batch(conn, scope, items, settings.limits, index)
    if sources:
        with transaction(engine) as conn:
            for i, source in enumerate(_SOURCES[::5] + _SOURCES[1::5]):
                set_trust(conn, scope, source, (i % 10) / 10)


def _time(handler: Any, e: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = handler(e, context())
    took = (time.perf_counter() - started) * 1000
    assert result["statusCode"] == 200, result
    return took


def run(size: int, queries: int) -> dict[str, Any]:
    turns, questions = _corpus()
    rng = random.Random(_SEED)
    texts = _texts(turns, size)
    results: dict[str, Any] = {"machine": machine(), "size": size, "queries": queries}
    with scratch("trust") as folder:
        url = sqlite_url(folder)
        plain_slug, plain_key = new_tenant(url)
        trusted_slug, trusted_key = new_tenant(url)
        handler = make_handler(url)  # imports the app up front, before the long seeding
        say(f"seeding 2 x {size:,} memories")
        _seed(url, plain_slug, texts, sources=False)
        _seed(url, trusted_slug, texts, sources=True)
        time.sleep(6)  # let the vector cache settle (see bench.search)
        asked = [rng.choice(questions) for _ in range(queries)]
        for mode in ("hybrid", "lexical"):
            took: dict[str, list[float]] = {"without": [], "with": []}
            for i, q in enumerate(asked):
                body = {"query": q, "limit": 10, "user_id": "u1", "mode": mode}
                pair = [("without", plain_key), ("with", trusted_key)]
                for name, key in pair if i % 2 else pair[::-1]:
                    e = event("POST", "/v1/search", key=key, json_body=body)
                    if i < 20:  # warm-up
                        _time(handler, e)
                    took[name].append(_time(handler, e))
            p50 = {k: percentile(v, 50) for k, v in took.items()}
            results[mode] = {
                "without_p50": p50["without"],
                "with_p50": p50["with"],
                "without_p95": percentile(took["without"], 95),
                "with_p95": percentile(took["with"], 95),
                "ratio_p50": round(p50["with"] / p50["without"], 3),
            }
        # The trust query alone, for the sources of a typical candidate set.
        from core.kernel.db.engine import get_engine, transaction
        from core.memory.trust import lookup

        engine = get_engine(url)
        with transaction(engine, write=False) as conn:
            brain = conn.exec_driver_sql(
                "SELECT id FROM brains WHERE slug = ?", (trusted_slug,)
            ).scalar()
            sources = [_SOURCES[i % len(_SOURCES)] for i in range(150)]
            lookup(conn, str(brain), sources)
            started = time.perf_counter()
            for _ in range(500):
                lookup(conn, str(brain), sources)
            results["lookup_us"] = round((time.perf_counter() - started) / 500 * 1e6, 1)
    return results


def markdown(results: dict[str, Any]) -> str:
    rows = [
        [
            f"search ({mode})",
            f"{r['without_p50']:.2f}",
            f"{r['with_p50']:.2f}",
            f"{r['ratio_p50']:.3f}",
            f"{r['without_p95']:.2f}",
            f"{r['with_p95']:.2f}",
        ]
        for mode in ("hybrid", "lexical")
        for r in [results[mode]]
    ]
    return "\n\n".join(
        [
            machine_markdown(results["machine"]),
            table(
                [
                    "operation",
                    "p50 ms, no sources",
                    "p50 ms, sources + trust",
                    "ratio",
                    "p95 no sources",
                    "p95 trust",
                ],
                rows,
            ),
            f"`trust.lookup` alone, 150 candidate sources (50 distinct): "
            f"{results['lookup_us']} µs per call.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(markdown(run(args.size, args.queries)))


if __name__ == "__main__":
    main()
