"""Maintenance throughput: one brain of N memories, all idle past decay_days and a tenth past
retention_days, maintained once (decay, retention, conflict detection, consolidation
suggestions) in batches of 500; then again (nothing left to do, the cost of an idle pass).
SQLite and PostgreSQL. Memories are bulk-inserted straight into the table (no vectors), so the
figures are those of the hygiene tasks, not of embedding.

    .venv/bin/python -m bench.maintenance [--size 50000] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import (
    machine,
    machine_markdown,
    postgres,
    postgres_version,
    say,
    scratch,
    sqlite_url,
    table,
)


def _one(url: str, size: int) -> dict[str, Any]:
    from core.app import brain_maintenance
    from core.identity.keys import create_key
    from core.kernel.config import MaintenanceSettings
    from core.kernel.db.engine import dispose, get_engine, transaction
    from core.kernel.db.migrations import ensure_schema
    from core.kernel.scope import Scope
    from core.memory.policy import set_policy
    from tests.hygiene_fixtures import insert_memories

    engine = get_engine(url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        create_key(conn, "bench-maintenance")
        brain = str(
            conn.exec_driver_sql("SELECT id FROM brains WHERE slug = 'bench-maintenance'").scalar()
        )
        set_policy(conn, Scope(brain, "bench", role="owner"), {"retention_days": 60})
    say(f"inserting {size:,} memories")
    for start in range(0, size, 10_000):
        count = min(10_000, size - start)
        expired = count // 10
        insert_memories(engine, brain, count - expired, idle_days=40, prefix=f"m{start}")
        insert_memories(engine, brain, expired, idle_days=61, prefix=f"x{start}")
    settings = MaintenanceSettings(batch_size=500, budget_seconds=3600)
    row: dict[str, Any] = {}
    for label in ("first", "again"):
        started = time.perf_counter()
        report = brain_maintenance.maintain_brain(engine, brain, settings)
        took = time.perf_counter() - started
        row[label] = {
            "seconds": round(took, 2),
            **{task: report[task]["count"] for task in brain_maintenance.TASKS},
            **{f"{task}_ms": report[task]["duration_ms"] for task in brain_maintenance.TASKS},
        }
        say(f"  {label}: {took:.2f} s")
    dispose(url)
    return row


def run(size: int, stores: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "size": size, "stores": {}}
    if "sqlite" in stores:
        with scratch("maintenance") as folder:
            results["stores"]["SQLite"] = _one(sqlite_url(folder), size)
    if "postgresql" in stores:
        with postgres() as pg:
            url = pg.new_database()
            name = f"PostgreSQL {postgres_version(url).split()[0]}"
            results["stores"][name] = _one(url, size)
    return results


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for store, r in results["stores"].items():
        for label in ("first", "again"):
            x = r[label]
            rows.append(
                [
                    store,
                    label,
                    f"{x['seconds']:.2f}",
                    f"{x['decay']:,} in {x['decay_ms'] / 1000:.2f} s",
                    f"{x['retention']:,} in {x['retention_ms'] / 1000:.2f} s",
                    f"{x['conflicts_ms'] / 1000:.2f} s",
                    f"{x['consolidate_ms'] / 1000:.2f} s",
                ]
            )
    return "\n\n".join(
        [
            machine_markdown(results["machine"]),
            table(
                [
                    "store",
                    "run",
                    "total s",
                    "decayed",
                    "archived (retention)",
                    "conflict detection",
                    "consolidation suggestions",
                ],
                rows,
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    print(markdown(run(args.size, args.stores.split(","))))


if __name__ == "__main__":
    main()
