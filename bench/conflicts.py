"""The conflicts benchmark: detection, resolve, merge and consolidation on a brain of 10,000
memories (SQLite; `--postgres` adds PostgreSQL), through the in-process Lambda handler except the
maintenance pass, which is a core call as the MaintenanceFunction makes it.

Also times search before and after a tenth of the seeded pairs are resolved (demoted): conflict
losers are ranked down through `superseded_by`, a column search already reads, so resolving
should cost search nothing.

    .venv/bin/python -m bench.conflicts [--memories 10000] [--postgres]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.common import (
    context,
    counting,
    event,
    make_handler,
    new_tenant,
    postgres,
    reply_json,
    say,
    scratch,
    sqlite_url,
    table,
)

_SUBJECTS = ("budget", "headcount", "deadline", "price", "latency target", "room count")


def _seed(handler: Any, ctx: Any, key: str, count: int) -> list[dict[str, Any]]:
    """`count` memories; every tenth pair states one value two ways (a value conflict)."""
    out: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    for i in range(count):
        if i % 20 in (0, 1):
            subject = f"project {i // 20} {_SUBJECTS[(i // 20) % len(_SUBJECTS)]}"
            content = f"The {subject} is {100 + (i % 2) * 50 + i // 20} units"
        else:
            content = (
                f"note {i}: the user prefers concise answers, works in UTC+1 and is migrating "
                f"service number {i} from Flask to Starlette"
            )
        batch.append({"content": content, "tags": [f"topic-{i % 20}"]})
        if len(batch) == 500 or i == count - 1:
            result = handler(
                event("POST", "/v1/memories/batch", key=key, json_body={"memories": batch}), ctx
            )
            assert result["statusCode"] == 201, result
            out += reply_json(result)["results"]
            batch = []
    return out


def _timed(calls: list[Any]) -> list[float]:
    times = []
    for call in calls:
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _statements(engine: Any, fn: Any) -> int:
    """SQL statements one call runs: a noise-free measure of the work it asks of the store."""
    with counting(engine) as counts:
        fn()
    return counts.statements


def _p50(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def run(url: str, count: int) -> list[list[str]]:
    from core.curation import conflicts
    from core.embeddings import get_embedder
    from core.kernel.config import Settings
    from core.kernel.db.engine import get_engine

    handler, ctx = make_handler(url), context()
    slug, key = new_tenant(url)
    engine = get_engine(url)
    say(f"seeding {count} memories")
    seeded = _seed(handler, ctx, key, count)
    from sqlalchemy import text

    from core.kernel.db.engine import transaction

    with transaction(engine, write=False) as conn:
        brain = str(
            conn.execute(text("SELECT id FROM brains WHERE slug = :s"), {"s": slug}).scalar()
        )
    embedder = get_embedder(Settings(database_url=url).embedder)
    space = conflicts.VectorSpace(embedder.name, embedder.dims, 8)
    rows: list[list[str]] = []

    def call(method: str, path: str, body: Any = None, query: Any = None) -> Any:
        result = handler(event(method, path, key=key, json_body=body, query=query), ctx)
        assert result["statusCode"] < 300, result
        return reply_json(result)

    search_body = {"query": "project budget units", "limit": 10}
    for _ in range(5):
        call("POST", "/v1/search", search_body)
    before = _timed([lambda: call("POST", "/v1/search", search_body)] * 100)
    statements_before = _statements(engine, lambda: call("POST", "/v1/search", search_body))

    say("maintenance detection passes")
    passes: list[float] = []
    found = 0
    while True:
        started = time.perf_counter()
        out = conflicts.detect(engine, brain, batch_size=200, space=space)
        passes.append((time.perf_counter() - started) * 1000)
        found += out["created"]
        if out["done"]:
            break
    rows.append(
        [
            "maintenance pass, 200 memories (core call)",
            _p50(passes),
            f"{len(passes)} passes, {sum(passes) / 1000:.1f} s in all, {found} conflicts",
        ]
    )
    on_demand = _timed(
        [
            lambda m=m: call("POST", "/v1/conflicts/detect", {"memory_id": m["id"]})
            for m in seeded[100:200]
        ]
    )
    rows.append(["POST /v1/conflicts/detect {memory_id}", _p50(on_demand), "100 calls"])
    listed = _timed([lambda: call("GET", "/v1/conflicts", query={"limit": 50})] * 50)
    rows.append(["GET /v1/conflicts?limit=50", _p50(listed), "50 calls"])

    page = call(
        "GET", "/v1/conflicts", query={"limit": max(1, found // 10), "status": "needs_review"}
    )
    resolves = _timed(
        [
            lambda c=c: call(
                "POST",
                f"/v1/conflicts/{c['id']}/resolve",
                {"winner_id": c["a_id"], "mode": "demote"},
            )
            for c in page["results"]
        ]
    )
    rows.append(
        ["POST /v1/conflicts/{id}/resolve (demote)", _p50(resolves), f"{len(resolves)} calls"]
    )
    after = _timed([lambda: call("POST", "/v1/search", search_body)] * 100)
    statements_after = _statements(engine, lambda: call("POST", "/v1/search", search_body))
    rows.append(
        ["search before resolving", _p50(before), f"{statements_before} SQL statements a call"]
    )
    rows.append(
        [
            "search after resolving",
            _p50(after),
            f"{statements_after} SQL statements a call; time ratio "
            f"{statistics.median(after) / statistics.median(before):.2f}",
        ]
    )

    plain = [m["id"] for m in seeded if m["content"].startswith("note ")]
    merge2 = _timed(
        [
            lambda i=i: call("POST", "/v1/memories/merge", {"ids": plain[i : i + 2]})
            for i in range(0, 100, 2)
        ]
    )
    rows.append(["POST /v1/memories/merge (2)", _p50(merge2), f"{len(merge2)} calls"])
    merge20 = _timed(
        [
            lambda i=i: call("POST", "/v1/memories/merge", {"ids": plain[i : i + 20]})
            for i in range(100, 500, 20)
        ]
    )
    rows.append(["POST /v1/memories/merge (20)", _p50(merge20), f"{len(merge20)} calls"])
    dry = _timed([lambda: call("POST", "/v1/consolidate", {"dry_run": True})] * 5)
    rows.append(["POST /v1/consolidate dry run (2,000 scanned)", _p50(dry), "5 calls"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with scratch("conflicts") as folder:
        say("SQLite")
        results = {"SQLite": run(sqlite_url(folder), args.memories)}
    if args.postgres:
        with postgres() as server:
            say("PostgreSQL")
            results["PostgreSQL"] = run(server.new_database(), args.memories)
    for store, rows in results.items():
        print(f"\n{store}, {args.memories:,} memories (p50, ms)\n")
        print(table(["operation", "p50 ms", "notes"], rows))


if __name__ == "__main__":
    main()
