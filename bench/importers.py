"""What `mnemo import --from` costs: a generated mem0 history.db (every memory added, half of
them updated, a tenth deleted) and a generated OpenMemory v1.2 database (memories, one waypoint
per two memories, 100 users with summaries), each imported into a new brain on SQLite with the
builtin embedder. Each import runs in its own process so its peak RSS is its own; the figures
are wall time for reading the source (records made) and for the import, and the peak RSS.

    .venv/bin/python -m bench.importers [--size 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, load_avg, machine, machine_markdown, say, scratch, table

_BASE_MS = 1_717_000_000_000


def make_mem0(path: Path, size: int) -> int:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE history (id TEXT PRIMARY KEY, memory_id TEXT, old_memory TEXT, "
        "new_memory TEXT, event TEXT, created_at DATETIME, updated_at DATETIME, "
        "is_deleted INTEGER, actor_id TEXT, role TEXT)"
    )
    rows: list[tuple[Any, ...]] = []
    for i in range(size):
        born = f"2024-07-01T10:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}-07:00"
        text = f"memory {i}: the user mentioned topic {i % 97} and detail {i}"
        rows.append((f"h{i}a", f"m{i}", None, text, "ADD", born, None, 0, "alice", "user"))
        if i % 2 == 0:
            rows.append(
                (f"h{i}u", f"m{i}", text, text + " (updated)", "UPDATE", born,
                 "2024-08-01T00:00:00-07:00", 0, "alice", "user")
            )  # fmt: skip
        if i % 10 == 0:
            rows.append((f"h{i}d", f"m{i}", text, None, "DELETE", None, None, 1, None, None))
    conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return len(rows)


def make_openmemory(path: Path, size: int) -> int:
    sql = (ROOT / "tests" / "fixtures" / "importers" / "openmemory_v1_2.sql").read_text()
    schema = sql.split("insert into memories")[0]
    conn = sqlite3.connect(path)
    conn.executescript(schema)
    sectors = ("semantic", "episodic", "procedural", "emotional", "reflective")
    conn.executemany(
        "INSERT INTO memories (id, content, primary_sector, tags, meta, created_at, updated_at, "
        "last_seen_at, salience, decay_lambda, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f"om{i}",
                f"openmemory {i}: note about subject {i % 89} with detail {i}",
                sectors[i % 5],
                json.dumps(["bench", f"t{i % 7}"]),
                json.dumps({"n": i}),
                _BASE_MS + i,
                _BASE_MS + i,
                _BASE_MS + i,
                (i % 10) / 10,
                0.01,
                f"user{i % 100}",
            )
            for i in range(size)
        ],
    )
    conn.executemany(
        "INSERT INTO waypoints VALUES (?, ?, ?, ?, ?, ?)",
        [
            (f"om{i}", f"om{i + 1}", f"user{i % 100}", 0.5, _BASE_MS + i, _BASE_MS + i)
            for i in range(0, size - 1, 2)
        ],
    )
    conn.executemany(
        "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
        [(f"user{u}", f"summary of user {u}", 1, _BASE_MS, _BASE_MS) for u in range(100)],
    )
    conn.commit()
    conn.close()
    return size + (size - 1 + 1) // 2 + 100


def run_one(system: str, source: Path, database: Path) -> dict[str, Any]:
    """In this process: read the source, then import it; times and peak RSS."""
    from core.kernel.db.engine import get_engine
    from core.kernel.db.migrations import ensure_schema
    from core.transfer.importers import pipeline
    from core.transfer.importers.records import IdMap, Options

    engine = get_engine(f"sqlite:///{database}")
    ensure_schema(engine)
    started = time.perf_counter()
    opened = pipeline.open_source(system, [source], Options())
    records = sum(1 for _ in opened.records(IdMap("bench-read", opened.system)))
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    report = pipeline.run_import(engine, system, [source], "bench")
    total_s = time.perf_counter() - started
    assert report.imported is not None
    return {
        "system": system,
        "source_rows": report.read,
        "records": records,
        "imported": report.imported.imported,
        "skipped": report.skipped,
        "read_s": read_s,
        "import_s": total_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=20_000, help="memories per source")
    parser.add_argument(
        "--one", nargs=3, metavar=("SYSTEM", "SOURCE", "DB"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        system, source, database = args.one
        print(json.dumps(run_one(system, Path(source), Path(database))))
        return
    results = []
    with scratch("importers") as folder:
        for system, make in (("mem0", make_mem0), ("openmemory", make_openmemory)):
            source = folder / f"{system}.db"
            rows = make(source, args.size)
            say(f"{system}: {rows} source rows generated; importing")
            done = subprocess.run(
                [sys.executable, "-m", "bench.importers", "--one", system, str(source),
                 str(folder / f"mnemo-{system}.db")],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(machine_markdown(machine()))
    print(f"\nload average at the end: {load_avg()}\n")
    headers = ["source", "source rows", "records", "imported", "skipped", "read (s)",
               "read + import (s)", "records/s", "peak RSS (MB)"]  # fmt: skip
    rows = [
        [r["system"], f"{r['source_rows']:,}", f"{r['records']:,}", f"{r['imported']:,}",
         f"{r['skipped']:,}", f"{r['read_s']:.2f}", f"{r['import_s']:.2f}",
         f"{r['records'] / r['import_s']:,.0f}", f"{r['peak_rss_mb']:.0f}"]
        for r in results
    ]  # fmt: skip
    print(table(headers, rows))


if __name__ == "__main__":
    main()
