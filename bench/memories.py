"""The memories benchmark: CRUD latency through the in-process Lambda handler on a brain that
already holds 10,000 memories, on SQLite (targets) and on PostgreSQL (reported, no target).

Every request is a prebuilt API Gateway HTTP API v2 event; only the handler call is timed. The
five operations run in interleaved rounds so a noisy moment on a shared machine hits them all.
For attribution, the read operations are then timed as bare core calls in one transaction each
(no HTTP, no auth): the difference is what the Lambda/ASGI layers and key lookup cost.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from bench.common import (
    Summary,
    context,
    counting,
    error_code,
    event,
    fmt,
    make_handler,
    new_tenant,
    postgres,
    postgres_version,
    reply_json,
    say,
    scratch,
    sqlite_url,
    table,
    verdict,
)

OPS = ("add", "get", "list", "list_tag", "patch")
LABELS = {
    "add": "add: POST /v1/memories",
    "get": "get: GET /v1/memories/{id}",
    "list": "list: GET /v1/memories?limit=20",
    "list_tag": "list by tag: GET /v1/memories?limit=20&tag=topic-7",
    "patch": "patch: PATCH /v1/memories/{id} (new content)",
    "auth": "auth alone: `keys.find_key` in a read transaction",
    "empty_tx": "an empty read transaction (pool checkout, BEGIN, COMMIT)",
}
EXPECTED = {"add": 201, "get": 200, "list": 200, "list_tag": 200, "patch": 200}
TARGETS_MS = {"add": 2.0, "get": 1.0, "list": 1.0, "list_tag": 1.0}  # p50, SQLite
TOPICS = 20
TAG = "topic-7"


def _content(prefix: str, i: int) -> str:
    return (
        f"{prefix} {i}: the user prefers concise answers, works in UTC+1 and is "
        f"migrating service #{i % 97} from Flask to Starlette ({uuid.uuid4().hex[:8]})"
    )


def seed(handler: Any, ctx: Any, key: str, count: int, batch: int = 500) -> tuple[list[str], float]:
    """`count` memories via POST /v1/memories/batch; returns their ids and the seconds taken."""
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, count, batch):
        items = [
            {
                "content": _content("seed", i),
                "tags": [f"topic-{i % TOPICS}", "seed"],
                "source": "bench",
                "metadata": {"n": i},
            }
            for i in range(start, min(start + batch, count))
        ]
        result = handler(
            event("POST", "/v1/memories/batch", key=key, json_body={"memories": items}), ctx
        )
        if result["statusCode"] != 201:
            raise RuntimeError(f"seeding failed: {result['statusCode']} {error_code(result)}")
        ids += [m["id"] for m in reply_json(result)["results"]]
    return ids, time.perf_counter() - started


def _events(
    ops: int, key: str, ids: list[str], rng: random.Random
) -> dict[str, list[dict[str, Any]]]:
    run = uuid.uuid4().hex[:6]
    to_patch = rng.sample(ids, ops)
    return {
        "add": [
            event(
                "POST",
                "/v1/memories",
                key=key,
                json_body={"content": _content(f"add {run}", i), "tags": [f"topic-{i % TOPICS}"]},
            )
            for i in range(ops)
        ],
        "get": [event("GET", f"/v1/memories/{rng.choice(ids)}", key=key) for _ in range(ops)],
        "list": [event("GET", "/v1/memories", key=key, query={"limit": 20}) for _ in range(ops)],
        "list_tag": [
            event("GET", "/v1/memories", key=key, query={"limit": 20, "tag": TAG})
            for _ in range(ops)
        ],
        "patch": [
            event(
                "PATCH",
                f"/v1/memories/{memory_id}",
                key=key,
                json_body={"content": _content(f"patched {run}", i)},
            )
            for i, memory_id in enumerate(to_patch)
        ],
    }


def _timed_rounds(
    calls: dict[str, list[Any]], rounds: int, check: Any
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]]]:
    """Run each op's calls in `rounds` interleaved slices; returns latencies (ms) and errors."""
    perf = time.perf_counter_ns
    latencies: dict[str, list[float]] = {op: [] for op in calls}
    errors: dict[str, dict[str, int]] = {op: {} for op in calls}
    for r in range(rounds):
        for op, items in calls.items():
            size = len(items)
            lo, hi = size * r // rounds, size * (r + 1) // rounds
            out = latencies[op]
            for fn in items[lo:hi]:
                t0 = perf()
                result = fn()
                out.append((perf() - t0) / 1e6)
                problem = check(op, result)
                if problem:
                    errors[op][problem] = errors[op].get(problem, 0) + 1
    return latencies, errors


def database_work(
    url: str, handler: Any, ctx: Any, prepared: dict[str, list[Any]]
) -> dict[str, Any]:
    """SQL statements and transactions (pool checkouts) per request, counted (`counting`):
    noise-free, and on PostgreSQL each is a network round trip (a checkout adds BEGIN and
    COMMIT, and a ping after 10 s idle)."""
    from core.kernel.db.engine import get_engine

    out: dict[str, Any] = {}
    with counting(get_engine(url)) as counts:
        for op, items in prepared.items():
            counts.statements = counts.checkouts = 0
            for ev in items:
                handler(ev, ctx)
            out[op] = {
                "statements": counts.statements / len(items),
                "checkouts": counts.checkouts / len(items),
            }
    return out


def through_handler(
    url: str, handler: Any, ctx: Any, key: str, ids: list[str], ops: int, rounds: int
) -> dict[str, Any]:
    rng = random.Random(7)
    warm = _events(20, key, ids, rng)
    for items in warm.values():
        for ev in items:
            handler(ev, ctx)
    work = database_work(url, handler, ctx, _events(10, key, ids, rng))
    prepared = _events(ops, key, ids, rng)
    calls = {op: [_bind(handler, ev, ctx) for ev in items] for op, items in prepared.items()}

    def check(op: str, result: dict[str, Any]) -> str | None:
        if result["statusCode"] == EXPECTED[op]:
            return None
        return f"{result['statusCode']} {error_code(result)}"

    latencies, errors = _timed_rounds(calls, rounds, check)
    return {
        "summaries": {op: Summary.of(v).as_dict() for op, v in latencies.items()},
        "errors": errors,
        "database_work": work,
    }


def _bind(fn: Any, *args: Any) -> Any:
    return lambda: fn(*args)


def core_only(url: str, key: str, ids: list[str], ops: int, rounds: int) -> dict[str, Any]:
    """The read operations as direct core calls, one transaction each: no Mangum, no Starlette,
    no auth, no response rendering. Also the key lookup alone and an empty read transaction.
    (Writes are left out: their core signatures change as features land; see the profile in
    docs/benchmarks.md for where a write's time goes.)"""
    from core.identity import keys
    from core.kernel.db.engine import get_engine, transaction
    from core.memory import store as memories
    from core.memory.models import MemoryFilters

    engine = get_engine(url)
    with transaction(engine, write=False) as conn:
        found = keys.find_key(conn, key)
    assert found is not None
    scope = found.scope
    rng = random.Random(11)

    def read(fn: Any, *args: Any, **kw: Any) -> Any:
        def call() -> Any:
            with transaction(engine, write=False) as conn:
                return fn(conn, scope, *args, **kw)

        return call

    def auth() -> Any:
        with transaction(engine, write=False) as conn:
            return keys.find_key(conn, key)

    def empty() -> None:
        with transaction(engine, write=False):
            pass

    calls = {
        "get": [read(memories.get, rng.choice(ids)) for _ in range(ops)],
        "list": [read(memories.list_memories, MemoryFilters(), limit=20) for _ in range(ops)],
        "list_tag": [
            read(memories.list_memories, MemoryFilters(tag=[TAG]), limit=20) for _ in range(ops)
        ],
        "auth": [auth for _ in range(ops)],
        "empty_tx": [empty for _ in range(ops)],
    }
    latencies, _ = _timed_rounds(calls, rounds, lambda _op, _result: None)
    return {op: Summary.of(v).as_dict() for op, v in latencies.items()}


def one_store(url: str, *, memories: int, ops: int, rounds: int) -> dict[str, Any]:
    from core.kernel.db.engine import dispose

    _, key = new_tenant(url)
    handler = make_handler(url)
    ctx = context()
    say(f"memories: seeding {memories:,} memories in batches of 500")
    ids, seconds = seed(handler, ctx, key, memories)
    say(f"memories: seeded in {seconds:.1f} s")
    before_stats = None
    if url.startswith("postgresql"):
        before_stats = _before_analyze(url, handler, ctx, key)
    say(f"memories: timing {ops} of each operation")
    out = through_handler(url, handler, ctx, key, ids, ops, rounds)
    out["before_analyze"] = before_stats
    say(f"memories: core-only comparison, {ops // 2} of each read")
    try:
        out["core"] = core_only(url, key, ids, ops // 2, rounds)
    except Exception as exc:  # core signatures move; the handler figures stand on their own
        say(f"memories: core-only comparison skipped: {exc!r}")
        out["core"] = {}
    out["seed"] = {"memories": memories, "seconds": seconds, "per_second": memories / seconds}
    out["ops"] = ops
    dispose(url)
    return out


def _before_analyze(url: str, handler: Any, ctx: Any, key: str) -> dict[str, Any]:
    """PostgreSQL plans from table statistics, which a bulk load leaves stale until autovacuum
    gets to ANALYZE (up to a minute or more). Time the two list queries in that window once,
    then ANALYZE, as autovacuum would, so the main figures are the steady state."""
    from sqlalchemy import text

    from core.kernel.db.engine import get_engine

    engine = get_engine(url)
    with engine.connect() as conn:
        analyzed = conn.execute(
            text(
                "SELECT coalesce(last_analyze, last_autoanalyze) IS NOT NULL "
                "FROM pg_stat_user_tables WHERE relname = 'memories'"
            )
        ).scalar()
    perf = time.perf_counter_ns
    out: dict[str, Any] = {"already_analyzed": bool(analyzed)}
    for op, query in (("list", {"limit": 20}), ("list_tag", {"limit": 20, "tag": TAG})):
        ev = event("GET", "/v1/memories", key=key, query=query)
        samples = []
        for _ in range(5):
            t0 = perf()
            handler(ev, ctx)
            samples.append((perf() - t0) / 1e6)
        out[op] = Summary.of(samples).median
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return out


def run(*, quick: bool = False, with_postgres: bool = True) -> dict[str, Any]:
    memories = 2_000 if quick else 10_000
    ops = 200 if quick else 1_000
    rounds = 5
    results: dict[str, Any] = {}
    with scratch("memories") as folder:
        say("memories: SQLite")
        results["sqlite"] = one_store(sqlite_url(folder), memories=memories, ops=ops, rounds=rounds)
    if with_postgres:
        try:
            with postgres() as pg:
                url = pg.new_database()
                say("memories: PostgreSQL")
                results["postgres"] = one_store(url, memories=memories, ops=ops, rounds=rounds)
                results["postgres"]["server_version"] = postgres_version(url)
        except Exception as exc:
            say(f"memories: PostgreSQL skipped: {exc}")
            results["postgres"] = {"skipped": str(exc)}
    else:
        results["postgres"] = {"skipped": "--no-postgres"}
    return results


def markdown(results: dict[str, Any]) -> str:
    parts = ["## memories"]
    for store, title in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        data = results.get(store)
        if data is None:
            continue
        if "skipped" in data:
            parts += ["", f"### {title}: skipped ({data['skipped']})"]
            continue
        seed = data["seed"]
        version = f" {data['server_version']}" if "server_version" in data else ""
        parts += [
            "",
            f"### {title}{version}: {seed['memories']:,} memories in the brain, "
            f"{data['ops']:,} operations each (ms)",
            "",
        ]
        rows = []
        for op in OPS:
            s = data["summaries"][op]
            core = data["core"].get(op)
            errors = data["errors"][op]
            target = TARGETS_MS.get(op) if store == "sqlite" else None
            rows.append(
                [
                    LABELS[op],
                    fmt(s["median"], 3),
                    fmt(s["p95"], 3),
                    "-" if core is None else fmt(core["median"], 3),
                    "-" if core is None else fmt(s["median"] - core["median"], 3),
                    ", ".join(f"{k} x{v}" for k, v in errors.items()) or "0",
                    "{statements:g} / {checkouts:g}".format(**data["database_work"][op]),
                    "-" if target is None else f"p50 < {target:g}",
                    "-" if target is None else verdict(s["median"], target),
                ]
            )
        for extra in ("auth", "empty_tx"):
            if extra in data["core"]:
                median = fmt(data["core"][extra]["median"], 3)
                rows.append([LABELS[extra], "", "", median, "", "", "", "", ""])
        parts.append(
            table(
                [
                    "operation",
                    "p50",
                    "p95",
                    "core-only p50",
                    "handler - core",
                    "errors",
                    "SQL statements / transactions",
                    "target",
                    "result",
                ],
                rows,
            )
        )
        parts += [
            "",
            f"Seeding: {seed['memories']:,} memories through POST /v1/memories/batch in "
            f"{seed['seconds']:.1f} s ({seed['per_second']:,.0f} memories/s).",
        ]
        before = data.get("before_analyze")
        if before:
            state = (
                "autovacuum had already analyzed the table"
                if before["already_analyzed"]
                else "the table had no statistics yet"
            )
            parts += [
                "",
                f"Right after the bulk load ({state}), before an explicit ANALYZE: list "
                f"{before['list']:.2f} ms, list by tag {before['list_tag']:.2f} ms (median of 5). "
                "The figures above are after ANALYZE, as autovacuum would leave it.",
            ]
    return "\n".join(parts)
