"""The concurrency benchmark: 4 processes (multiprocessing, spawn), each with its own handler and
engine, each adding 2,000 memories one POST /v1/memories at a time to one store: first one
SQLite file, then one PostgreSQL database. A single process doing 2,000 adds on its own store is
the baseline for the throughput ratio.

Reported: wall time, throughput, per-add latency, every non-2xx reply by status and error code,
every error the app logged (there must be no 'database is locked'), and a count of what landed.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
import traceback
import uuid
from typing import Any

from bench.common import (
    Summary,
    context,
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
)

LOCKED = "database is locked"


class _ErrorLog(logging.Handler):
    """Keeps every ERROR record the app (or Mangum) logs, with its exception's last line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.lines.append(text[:300])


def _worker(index: int, url: str, key: str, count: int, run: str, barrier: Any, queue: Any) -> None:
    try:
        os.environ["MNEMO_LOG_LEVEL"] = "WARNING"
        handler = make_handler(url)
        errors = _ErrorLog()
        for name in ("mnemo", "mangum"):
            logging.getLogger(name).addHandler(errors)
        ctx = context()
        assert handler(event("GET", "/health"), ctx)["statusCode"] == 200
        probe = handler(event("GET", "/v1/memories", key=key, query={"limit": 1}), ctx)
        assert probe["statusCode"] == 200, probe
        events = [
            event(
                "POST",
                "/v1/memories",
                key=key,
                json_body={
                    "content": f"conc {run} worker {index} memory {i}: unique content",
                    "tags": [f"worker-{index}"],
                },
            )
            for i in range(count)
        ]
    except Exception:
        queue.put({"index": index, "fatal": traceback.format_exc()})
        barrier.abort()
        return
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        queue.put({"index": index, "fatal": "another worker failed before the start"})
        return
    perf = time.perf_counter_ns
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    exceptions: list[str] = []
    started = time.monotonic()
    for ev in events:
        t0 = perf()
        try:
            result = handler(ev, ctx)
        except Exception as exc:
            exceptions.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        finally:
            latencies.append((perf() - t0) / 1e6)
        status = result["statusCode"]
        if status >= 300:
            label = f"{status} {error_code(result)}"
            statuses[label] = statuses.get(label, 0) + 1
        else:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
    ended = time.monotonic()
    queue.put(
        {
            "index": index,
            "started": started,
            "ended": ended,
            "latencies": latencies,
            "statuses": statuses,
            "exceptions": exceptions,
            "logged_errors": errors.lines,
        }
    )


def _verify(url: str, key: str, slug: str, run: str) -> dict[str, Any]:
    from sqlalchemy import text

    from core.kernel.db.engine import get_engine, transaction

    handler = make_handler(url)
    reply = handler(
        event("GET", "/v1/memories", key=key, query={"limit": 1, "include_total": "true"}),
        context(),
    )
    api_total = reply_json(reply).get("total") if reply["statusCode"] == 200 else None
    engine = get_engine(url)
    with transaction(engine, write=False) as conn:
        brain = conn.execute(text("SELECT id FROM brains WHERE slug = :s"), {"s": slug}).scalar()

        def count(sql: str) -> int:
            return int(conn.execute(text(sql), {"b": brain, "p": f"conc {run} %"}).scalar_one())

        return {
            "api_total": api_total,
            "memories": count(
                "SELECT count(*) FROM memories WHERE brain_id = :b AND content LIKE :p"
            ),
            "distinct_content": count(
                "SELECT count(DISTINCT content) FROM memories WHERE brain_id = :b "
                "AND content LIKE :p"
            ),
            "history_add": count(
                "SELECT count(*) FROM memory_history WHERE brain_id = :b AND event = 'ADD'"
            ),
            "changelog_created": count(
                "SELECT count(*) FROM changelog WHERE brain_id = :b "
                "AND event_type = 'memory.created'"
            ),
        }


def one_run(url: str, *, processes: int, per_process: int) -> dict[str, Any]:
    from core.kernel.db.engine import dispose

    slug, key = new_tenant(url)
    dispose(url)
    run = uuid.uuid4().hex[:8]
    spawn = mp.get_context("spawn")
    barrier = spawn.Barrier(processes + 1)
    queue = spawn.Queue()
    workers = [
        spawn.Process(
            target=_worker, args=(i, url, key, per_process, run, barrier, queue), daemon=True
        )
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        fatal = [queue.get(timeout=60).get("fatal", "?") for _ in workers]
        raise RuntimeError("a worker failed before the start:\n" + "\n".join(fatal)) from None
    parent_started = time.monotonic()
    reports = [queue.get(timeout=600) for _ in workers]
    parent_wall = time.monotonic() - parent_started
    for w in workers:
        w.join(timeout=60)
    fatal = [r["fatal"] for r in reports if "fatal" in r]
    if fatal:
        raise RuntimeError("a worker failed:\n" + "\n".join(fatal))

    latencies = [x for r in reports for x in r["latencies"]]
    statuses: dict[str, int] = {}
    for r in reports:
        for label, n in r["statuses"].items():
            statuses[label] = statuses.get(label, 0) + n
    exceptions = [e for r in reports for e in r["exceptions"]]
    logged = [e for r in reports for e in r["logged_errors"]]
    ok = statuses.get("201", 0)
    wall = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    everything = [*statuses, *exceptions, *logged]
    verified = _verify(url, key, slug, run)
    dispose(url)
    expected = processes * per_process
    return {
        "processes": processes,
        "per_process": per_process,
        "wall_s": wall,
        "parent_wall_s": parent_wall,
        "throughput_per_s": ok / wall,
        "latency_ms": Summary.of(latencies).as_dict(),
        "worker_wall_s": sorted(r["ended"] - r["started"] for r in reports),
        "statuses": statuses,
        "non_2xx": sum(n for label, n in statuses.items() if not label.startswith("2")),
        "exceptions": exceptions[:20],
        "exception_count": len(exceptions),
        "logged_errors": logged[:20],
        "logged_error_count": len(logged),
        "database_is_locked": sum(LOCKED in e for e in everything),
        "verified": verified,
        "expected": expected,
        "all_present": verified["memories"] == expected and verified["api_total"] == expected,
    }


def one_store(make_url: Any, *, processes: int, per_process: int) -> dict[str, Any]:
    say(f"concurrency: baseline, 1 process x {per_process:,} adds")
    baseline = one_run(make_url(), processes=1, per_process=per_process)
    say(f"concurrency: {processes} processes x {per_process:,} adds")
    parallel = one_run(make_url(), processes=processes, per_process=per_process)
    return {"baseline": baseline, "parallel": parallel}


def run(*, quick: bool = False, with_postgres: bool = True) -> dict[str, Any]:
    processes, per_process = 4, 500 if quick else 2_000
    results: dict[str, Any] = {}
    with scratch("concurrency") as folder:
        counter = iter(range(100))
        say("concurrency: SQLite (one file per run)")

        def next_sqlite() -> str:
            sub = folder / f"run{next(counter)}"
            sub.mkdir()
            return sqlite_url(sub)

        results["sqlite"] = one_store(next_sqlite, processes=processes, per_process=per_process)
    if with_postgres:
        try:
            with postgres() as pg:
                say("concurrency: PostgreSQL (one database per run)")
                results["postgres"] = one_store(
                    pg.new_database, processes=processes, per_process=per_process
                )
                results["postgres"]["server_version"] = postgres_version(pg.admin_url)
        except Exception as exc:
            say(f"concurrency: PostgreSQL skipped: {exc}")
            results["postgres"] = {"skipped": str(exc)}
    else:
        results["postgres"] = {"skipped": "--no-postgres"}
    return results


def markdown(results: dict[str, Any]) -> str:
    parts = ["## concurrency"]
    rows = []
    notes = []
    for store, title in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        data = results.get(store)
        if data is None:
            continue
        if "skipped" in data:
            notes.append(f"{title}: skipped ({data['skipped']})")
            continue
        version = f" {data['server_version']}" if "server_version" in data else ""
        base = data["baseline"]
        for label, r in (
            ("1 process (baseline)", base),
            (f"{data['parallel']['processes']} processes", data["parallel"]),
        ):
            lat = r["latency_ms"]
            v = r["verified"]
            rows.append(
                [
                    f"{title}{version}",
                    f"{label} x {r['per_process']:,}",
                    fmt(r["wall_s"], 2),
                    fmt(r["throughput_per_s"], 0),
                    f"{r['throughput_per_s'] / base['throughput_per_s']:.2f}x",
                    fmt(lat["median"], 2),
                    fmt(lat["p95"], 2),
                    fmt(lat["max"], 1),
                    ", ".join(
                        f"{k} x{n}" for k, n in r["statuses"].items() if not k.startswith("2")
                    )
                    or "0",
                    r["exception_count"] + r["logged_error_count"],
                    r["database_is_locked"],
                    f"{v['memories']:,}/{r['expected']:,} (API total {v['api_total']})",
                    "PASS"
                    if r["all_present"] and r["non_2xx"] == 0 and r["database_is_locked"] == 0
                    else "FAIL",
                ]
            )
    parts += [
        "",
        "One POST /v1/memories per add, through each process's own in-process handler.",
        "",
        table(
            [
                "store",
                "run",
                "wall s",
                "adds/s",
                "vs 1 process",
                "p50 ms",
                "p95 ms",
                "max ms",
                "non-2xx",
                "errors logged",
                "database is locked",
                "present",
                "result",
            ],
            rows,
        ),
    ]
    for store in ("sqlite", "postgres"):
        data = results.get(store) or {}
        for name in ("baseline", "parallel"):
            r = data.get(name)
            if r and (r["exceptions"] or r["logged_errors"]):
                notes.append(
                    f"{store} {name}: " + "; ".join([*r["exceptions"], *r["logged_errors"]][:5])
                )
    if notes:
        parts += ["", *[f"- {n}" for n in notes]]
    return "\n".join(parts)
