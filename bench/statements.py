"""SQL statements per request, on SQLite and PostgreSQL (issue 21: what a request costs the
store, beside its time).

    .venv/bin/python -m bench.statements [--memories 1000] [--no-postgres]

Seeds a brain through the batch endpoint, then counts the statements (BEGIN included) and pool
checkouts of one warm request of each kind, through the Lambda handler in-process; the median
of 20 requests of each kind.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from bench.common import (
    context,
    counting,
    event,
    load_avg,
    make_handler,
    new_tenant,
    postgres,
    say,
    scratch,
    sqlite_url,
    table,
)

WORDS = ("garden tomatoes", "train to Lisbon", "peanut allergy", "jazz records", "rusty bikes")


def _measure(url: str, memories: int) -> dict[str, tuple[float, float]]:
    from core.kernel.db.engine import get_engine

    _, key = new_tenant(url)
    handler = make_handler(url)
    for start in range(0, memories, 500):
        batch = [
            {"content": f"note {i}: {WORDS[i % 5]} {i % 97}", "user_id": "u1"}
            for i in range(start, min(memories, start + 500))
        ]
        reply = handler(
            event("POST", "/v1/memories/batch", key=key, json_body={"memories": batch}),
            context(),
        )
        assert reply["statusCode"] in (200, 201), reply
    kinds: dict[str, Any] = {
        "search (hybrid)": lambda i: ("POST", "/v1/search", {"query": WORDS[i % 5]}),
        "context pack": lambda i: ("POST", "/v1/context", {"query": WORDS[i % 5]}),
        "add": lambda i: ("POST", "/v1/memories", {"content": f"added {i} {WORDS[i % 5]}"}),
    }
    engine = get_engine(url)
    found: dict[str, tuple[float, float]] = {}
    for name, make in kinds.items():
        statements, checkouts = [], []
        for i in range(25):
            method, path, body = make(i)
            request = event(method, path, key=key, json_body=body)
            with counting(engine) as counts:
                reply = handler(request, context())
            assert reply["statusCode"] in (200, 201), reply
            if i >= 5:  # warm
                statements.append(counts.statements)
                checkouts.append(counts.checkouts)
        found[name] = (statistics.median(statements), statistics.median(checkouts))
    try:  # the tallied access counts, while the store is up (main has no such module)
        from core.memory import access

        access.flush()
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with scratch("statements") as folder:
        results["SQLite"] = _measure(sqlite_url(folder), args.memories)
    if not args.no_postgres:
        with postgres() as pg:
            results["PostgreSQL"] = _measure(pg.new_database(), args.memories)
    say(f"load {load_avg()}")
    rows = [
        [store, kind, f"{statements:g}", f"{checkouts:g}"]
        for store, kinds in results.items()
        for kind, (statements, checkouts) in kinds.items()
    ]
    print(table(["store", "request", "statements", "pool checkouts"], rows))


if __name__ == "__main__":
    main()
