"""Webhooks: draining the outbox, and what the outbox costs a write.

1. Drain: 1,000 `watch.test` deliveries queued for one watch whose URL is a local HTTP receiver
   (http.server on 127.0.0.1, MNEMO_WEBHOOK_ALLOW_HTTP_LOOPBACK), drained by `sending.drain` as
   the DeliveryFunction and `mnemo deliver` do: claim, sign, POST, record. Time and
   deliveries/s, at the default concurrency (8) and at 1, on SQLite and PostgreSQL.
2. Add overhead: POST /v1/memories through the in-process Lambda handler, the variants taking
   turns request by request: (a) with the outbox statement removed (what an add cost before
   webhooks), (b) as shipped on a brain without watches (one indexed SELECT that finds no
   watch), (c) on a brain with one matching watch (a delivery row written too). Medians and
   ratios to (a).

    .venv/bin/python -m bench.webhooks [--deliveries 1000] [--adds 1000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.common import (
    Summary,
    context,
    event,
    fmt,
    machine,
    machine_markdown,
    make_handler,
    new_tenant,
    postgres,
    say,
    scratch,
    sqlite_url,
    table,
)
from core.events import outbox
from core.kernel.config import WebhookSettings
from core.kernel.db.engine import dispose, get_engine, sql, transaction
from core.kernel.db.migrations import ensure_schema
from core.kernel.scope import Scope
from core.webhooks import outbox as sending
from core.webhooks.models import WatchIn
from core.webhooks.ssrf import check_url
from core.webhooks.watches import create
from tests.webhook_receiver import Receiver

LOOPBACK = WebhookSettings(allow_http_loopback=True)


def _brain(url: str, slug: str) -> str:
    from core.identity.brains import ensure_brain

    with transaction(get_engine(url)) as conn:
        return ensure_brain(conn, slug)


def _watch(url: str, brain_id: str, webhook_url: str, event_types: Any = "*") -> str:
    data = WatchIn(name="bench", webhook_url=webhook_url, event_types=event_types)
    scope = Scope(brain_id=brain_id, principal="bench", role="owner")
    with transaction(get_engine(url)) as conn:
        made = create(conn, scope, data, check_url(webhook_url, LOOPBACK))
    return str(made["id"])


def drain_once(url: str, count: int, concurrency: int) -> dict[str, Any]:
    engine = get_engine(url)
    ensure_schema(engine)
    brain_id = _brain(url, f"drain-{time.monotonic_ns()}")
    with Receiver() as receiver:
        watch_id = _watch(url, brain_id, receiver.url, ["watch.test"])
        scope = Scope(brain_id=brain_id, principal="bench", role="owner")
        with transaction(engine) as conn:
            for _ in range(count):
                outbox.enqueue_test(conn, scope, watch_id)
        settings = WebhookSettings(allow_http_loopback=True, concurrency=concurrency)
        started = time.perf_counter()
        report = sending.drain(engine, settings, budget_seconds=600)
        seconds = time.perf_counter() - started
        received = len(receiver.received)
    if report.delivered != count or received != count:
        raise RuntimeError(f"expected {count} deliveries, got {report.as_dict()}, {received}")
    return {"seconds": seconds, "per_second": count / seconds}


def drain_bench(url: str, count: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for concurrency in (8, 1):
        times = [drain_once(url, count, concurrency)["seconds"] for _ in range(runs)]
        median = statistics.median(times)
        out[str(concurrency)] = {"seconds": times, "median": median, "per_second": count / median}
        say(f"  concurrency {concurrency}: {median:.2f} s, {count / median:,.0f}/s")
    return out


def add_overhead(url: str, adds: int) -> dict[str, Any]:
    handler = make_handler(url)
    ctx = context()
    _, plain_key = new_tenant(url)
    watched_slug, watched_key = new_tenant(url)
    brain_id = _brain(url, watched_slug)
    # Never drained: port 9 (discard) on loopback; the rows are what is measured.
    _watch(url, brain_id, "http://127.0.0.1:9/hook", ["memory.created"])
    real = outbox.enqueue_event

    def none(*_args: Any, **_kw: Any) -> int:
        return 0

    variants = {
        "without the outbox statement": (plain_key, none),
        "no watches (as shipped)": (plain_key, real),
        "one matching watch": (watched_key, real),
        # The same as (b) again: how far two identical variants drift apart on this machine.
        "no watches, again (A/A control)": (plain_key, real),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    n = 0
    # Request by request, the variants take turns (in a rotating order), so a noisy moment on
    # a shared machine lands on all of them alike.
    names = list(variants)
    try:
        for i in range(adds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                key, enqueue = variants[name]
                outbox.enqueue_event = enqueue  # type: ignore[assignment]
                n += 1
                request = event(
                    "POST",
                    "/v1/memories",
                    key=key,
                    json_body={"content": f"bench memory {n}: prefers tea", "tags": ["b"]},
                )
                started = time.perf_counter()
                result = handler(request, ctx)
                samples[name].append((time.perf_counter() - started) * 1000)
                if result["statusCode"] != 201:
                    raise RuntimeError(f"add failed: {result['statusCode']}")
    finally:
        outbox.enqueue_event = real  # type: ignore[assignment]
    summaries = {name: Summary.of(values) for name, values in samples.items()}
    base = summaries["without the outbox statement"].median
    out: dict[str, Any] = {
        name: {**s.as_dict(), "ratio": s.median / base} for name, s in summaries.items()
    }
    out["statement_us"] = statement_alone(url)
    out["core"] = core_overhead(url, adds)
    return out


def core_overhead(url: str, adds: int) -> dict[str, float]:
    """`memories.create` alone (no HTTP, no embedder), with and without the outbox statement,
    alternating: the statement's share of the write itself. Medians in µs."""
    from core.kernel.config import Limits
    from core.memory import store as memories
    from core.memory.models import MemoryIn
    from core.retrieval.indexing import SearchIndexer

    engine = get_engine(url)
    scope = Scope(brain_id=_brain(url, f"core-{time.monotonic_ns()}"), principal="bench")
    real = outbox.enqueue_event

    def none(*_args: Any, **_kw: Any) -> int:
        return 0

    samples: dict[str, list[float]] = {"without": [], "with": []}
    try:
        for i in range(adds):
            order = (("without", none), ("with", real))
            for name, enqueue in order if i % 2 else order[::-1]:
                outbox.enqueue_event = enqueue  # type: ignore[assignment]
                data = MemoryIn(content=f"core bench {i} {name}: prefers tea")
                started = time.perf_counter()
                with transaction(engine) as conn:
                    memories.create(conn, scope, data, Limits(), SearchIndexer(None))
                samples[name].append((time.perf_counter() - started) * 1e6)
    finally:
        outbox.enqueue_event = real  # type: ignore[assignment]
    without = statistics.median(samples["without"])
    with_ = statistics.median(samples["with"])
    return {"without_us": without, "with_us": with_, "ratio": with_ / without}


def statement_alone(url: str, repeat: int = 2000) -> dict[str, float]:
    """The outbox statement by itself, on a brain without watches and on one with a watch that
    does not match, in one transaction that is rolled back: µs per call (median of 5)."""
    engine = get_engine(url)
    plain = _brain(url, f"stmt-{time.monotonic_ns()}")
    watched = _brain(url, f"stmt-{time.monotonic_ns()}")
    _watch(url, watched, "http://127.0.0.1:9/hook", ["link.created"])
    out: dict[str, float] = {}
    reference = sql("SELECT id FROM brains WHERE id = :b")
    runs = []
    for _ in range(5):
        with engine.connect() as conn, conn.begin() as tx:
            started = time.perf_counter()
            for _ in range(repeat):
                conn.execute(reference, {"b": plain}).all()
            runs.append((time.perf_counter() - started) / repeat * 1e6)
            tx.rollback()
    out["reference: a primary-key SELECT"] = statistics.median(runs)
    for label, brain_id in (("no watches", plain), ("one watch, no match", watched)):
        runs = []
        for _ in range(5):
            with engine.connect() as conn, conn.begin() as tx:
                started = time.perf_counter()
                for i in range(repeat):
                    outbox.enqueue_event(
                        conn,
                        brain_id,
                        event_id=f"e{i}",
                        event_type="memory.created",
                        entity_type="memory",
                        entity_id="m",
                        summary="Added note: bench",
                        payload="{}",
                        at=0,
                    )
                runs.append((time.perf_counter() - started) / repeat * 1e6)
                tx.rollback()
        out[label] = statistics.median(runs)
    return out


def markdown(results: dict[str, Any], count: int) -> str:
    parts = [machine_markdown(results["machine"])]
    rows = []
    for store, by_conc in results["drain"].items():
        for concurrency, r in by_conc.items():
            rows.append(
                [
                    store,
                    concurrency,
                    f"{r['median']:.2f}",
                    f"{r['per_second']:,.0f}",
                    ", ".join(f"{t:.2f}" for t in r["seconds"]),
                ]
            )
    parts.append(
        table(
            [
                "store",
                "concurrency",
                f"drain {count:,} deliveries, median s",
                "deliveries/s",
                "runs (s)",
            ],
            rows,
        )
    )
    add_rows = [
        [store, name, fmt(r["median"], 3), fmt(r["p95"], 3), f"{r['ratio']:.3f}"]
        for store, by_variant in results["adds"].items()
        for name, r in by_variant.items()
        if name not in ("statement_us", "core")
    ]
    parts.append(table(["store", "POST /v1/memories", "p50 ms", "p95 ms", "p50 ratio"], add_rows))
    stmt_rows = [
        [store, label, f"{us:.1f}"]
        for store, by_variant in results["adds"].items()
        for label, us in by_variant["statement_us"].items()
    ]
    parts.append(table(["store", "outbox statement alone", "µs per call"], stmt_rows))
    core_rows = [
        [
            store,
            f"{by_variant['core']['without_us']:.0f}",
            f"{by_variant['core']['with_us']:.0f}",
            f"{by_variant['core']['ratio']:.3f}",
        ]
        for store, by_variant in results["adds"].items()
    ]
    parts.append(
        table(
            [
                "store",
                "memories.create alone, p50 µs, without the outbox",
                "with it (no watches)",
                "ratio",
            ],
            core_rows,
        )
    )
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--adds", type=int, default=1000, help="per variant")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "drain": {}, "adds": {}}
    with scratch("webhooks") as folder:
        url = sqlite_url(folder)
        say("SQLite: drain")
        results["drain"]["sqlite"] = drain_bench(url, args.deliveries, args.runs)
        say("SQLite: add overhead")
        results["adds"]["sqlite"] = add_overhead(url, args.adds)
        dispose(url)
    if not args.no_postgres:
        with postgres() as pg:
            url = pg.new_database()
            say("PostgreSQL: drain")
            results["drain"]["postgresql"] = drain_bench(url, args.deliveries, args.runs)
            say("PostgreSQL: add overhead")
            results["adds"]["postgresql"] = add_overhead(url, args.adds)
            dispose(url)
    print(markdown(results, args.deliveries))


if __name__ == "__main__":
    main()
