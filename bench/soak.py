"""The soak benchmark: `mnemo serve` on one store, 8 client processes (multiprocessing, spawn)
each with a keep-alive HTTP connection, running a mixed load for --duration seconds (default
600): adds, patches, searches, links and context packs, in the proportions of _MIX. First on a
SQLite file, then on a PostgreSQL database.

Reported per store: requests, throughput, every reply >= 500 and every transport error (there
must be none), 4xx by code, p50/p99 latency per operation, and the server's resident memory
(RSS, from /proc) after the warm-up and at the end: its growth is what a leak would show.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import fmt, new_tenant, percentile, postgres, say, scratch, sqlite_url, table

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 8
# Operation -> weight. Reads dominate, as with an agent that recalls more than it writes.
_MIX = {"add": 25, "patch": 15, "search": 30, "link": 10, "context": 20}
# RSS is read this often; "after warm-up" is the first reading past this share of the run.
_RSS_EVERY_S = 5.0
_WARMUP_SHARE = 0.1
_WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
]  # fmt: skip
_RELATIONS = ["related", "supports", "causes"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _client(
    index: int, base: str, key: str, deadline: float, duration: float, seed_ids: list[str], out: Any
) -> None:
    """One client: a loop of weighted random operations until `deadline` (time.time())."""
    import httpx

    rng = random.Random(index)
    ops, weights = zip(*_MIX.items(), strict=True)
    latencies: dict[str, list[float]] = {op: [] for op in ops}
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []
    # Links join memories of one user (another user's memory is a 404 to a link): the seeds
    # have none, and each add here picks one of four.
    ids = list(seed_ids)
    by_user: dict[str | None, list[str]] = {None: list(seed_ids)}
    try:
        with httpx.Client(
            base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            while time.time() < deadline:
                op = rng.choices(ops, weights)[0]
                if op == "add":
                    body: dict[str, Any] = {
                        "content": f"soak {index} {_text(rng, 12)}",
                        "tags": [rng.choice(_WORDS)],
                        "user_id": f"user-{rng.randrange(4)}",
                        "metadata": {"n": rng.randrange(100)},
                    }
                    method, path = "POST", "/v1/memories"
                elif op == "patch":
                    body = {"content": f"patched {_text(rng, 10)}", "importance": rng.random()}
                    method, path = "PATCH", f"/v1/memories/{rng.choice(ids)}"
                elif op == "search":
                    body = {"query": _text(rng, 3), "limit": 10}
                    method, path = "POST", "/v1/search"
                elif op == "link":
                    pool = by_user[rng.choice(list(by_user))]
                    a, b = rng.sample(pool, 2) if len(pool) > 1 else rng.sample(seed_ids, 2)
                    body = {"from_id": a, "to_id": b, "relation": rng.choice(_RELATIONS)}
                    method, path = "POST", "/v1/links"
                else:
                    body = {"query": _text(rng, 3), "max_tokens": 800}
                    method, path = "POST", "/v1/context"
                started = time.perf_counter()
                try:
                    reply = http.request(method, path, json=body)
                except httpx.TransportError as exc:
                    statuses["transport_error"] += 1
                    at = time.time() - (deadline - duration)
                    server_errors.append(f"{op} at {at:.0f} s: {type(exc).__name__}: {exc}"[:300])
                    continue
                latencies[op].append((time.perf_counter() - started) * 1000)
                if reply.status_code >= 500:
                    statuses[str(reply.status_code)] += 1
                    server_errors.append(f"{op} {reply.status_code}: {reply.text[:200]}")
                elif reply.status_code >= 400:
                    code = reply.json().get("error", {}).get("code", "?")
                    statuses[f"{reply.status_code} {code}"] += 1
                else:
                    statuses["2xx"] += 1
                    if op == "add":
                        ids.append(reply.json()["id"])
                        by_user.setdefault(body["user_id"], []).append(ids[-1])
        out.put(
            {"index": index, "latencies": latencies, "statuses": statuses, "errors": server_errors}
        )
    except Exception:
        out.put({"index": index, "fatal": traceback.format_exc()})


def _serve(url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "MNEMO_DATABASE_URL": url, "MNEMO_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/health", timeout=2)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mnemo serve did not come up") from None
            time.sleep(0.2)


def _seed(base: str, key: str, n: int = 50) -> list[str]:
    import httpx

    rng = random.Random(0)
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}) as http:
        body = {"memories": [{"content": f"seed {i} {_text(rng, 12)}"} for i in range(n)]}
        reply = http.post("/v1/memories/batch", json=body, timeout=120)
        reply.raise_for_status()
        return [m["id"] for m in reply.json()["results"]]


def soak_store(store: str, url: str, duration: float, clients: int) -> dict[str, Any]:
    _, key = new_tenant(url)
    proc, base = _serve(url)
    try:
        seed_ids = _seed(base, key)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        deadline = time.time() + duration
        workers = [
            ctx.Process(target=_client, args=(i, base, key, deadline, duration, seed_ids, out))
            for i in range(clients)
        ]
        started = time.time()
        for w in workers:
            w.start()
        rss: list[tuple[float, int]] = []
        while time.time() < deadline:
            rss.append((time.time() - started, _rss_kib(proc.pid)))
            time.sleep(min(_RSS_EVERY_S, max(0.0, deadline - time.time())))
        rss.append((time.time() - started, _rss_kib(proc.pid)))
        results = [out.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=30)
        elapsed = time.time() - started
        server_alive = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise RuntimeError("a soak client failed:\n" + "\n".join(fatal))
    latencies: dict[str, list[float]] = {op: [] for op in _MIX}
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    for r in results:
        for op, values in r["latencies"].items():
            latencies[op] += values
        statuses.update(r["statuses"])
        errors += r["errors"]
    warm = next((kib for t, kib in rss if t >= duration * _WARMUP_SHARE), rss[0][1])
    total = sum(len(v) for v in latencies.values()) + statuses["transport_error"]
    return {
        "store": store,
        "duration_s": duration,
        "elapsed_s": elapsed,
        "clients": clients,
        "requests": total,
        "throughput_rps": total / elapsed,
        "statuses": dict(statuses),
        "server_errors": len(errors),
        "error_samples": errors[:10],
        "server_alive_at_end": server_alive,
        "server_exceptions": _exceptions(stderr.decode(errors="replace")),
        "latency_ms": {
            op: {
                "n": len(v),
                "p50": percentile(v, 50) if v else None,
                "p99": percentile(v, 99) if v else None,
            }
            for op, v in latencies.items()
        },
        "rss_kib": {"start": rss[0][1], "after_warmup": warm, "end": rss[-1][1]},
        "rss_samples": rss,
    }


def _exceptions(log: str) -> dict[str, int]:
    """The server log's exceptions (JSON lines, handlers/logs.py), counted by their last line:
    the exception's type and message."""
    found: Counter[str] = Counter()
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("exception"):
            found[str(record["exception"]).strip().splitlines()[-1][:200]] += 1
    return dict(found.most_common(10))


def run(
    duration: float = 600, clients: int = CLIENTS, with_postgres: bool = True
) -> dict[str, Any]:
    results: dict[str, Any] = {"duration_s": duration, "clients": clients, "stores": []}
    with scratch("soak") as folder:
        say(f"soak: SQLite, {clients} clients, {duration:.0f} s")
        results["stores"].append(soak_store("SQLite", sqlite_url(folder), duration, clients))
    if with_postgres:
        with postgres() as pg:
            say(f"soak: PostgreSQL, {clients} clients, {duration:.0f} s")
            store = soak_store("PostgreSQL", pg.new_database(), duration, clients)
            results["stores"].append(store)
    return results


def markdown(results: dict[str, Any]) -> str:
    parts = [
        f"### Soak: {results['clients']} client processes, {results['duration_s']:.0f} s per store",
        "",
    ]
    summary_rows = []
    for s in results["stores"]:
        rss = s["rss_kib"]
        growth = (rss["end"] - rss["after_warmup"]) / 1024
        # The second half's growth: the caches have filled by then, so what grows is a leak.
        half = next(k for t, k in s["rss_samples"] if t >= s["duration_s"] / 2)
        peak = max(k for _, k in s["rss_samples"])
        refused = sorted((k, v) for k, v in s["statuses"].items() if k.startswith("4"))
        others = ", ".join(f"{k}: {v:,}" for k, v in refused)
        summary_rows.append(
            [
                s["store"],
                f"{s['requests']:,}",
                fmt(s["throughput_rps"], 1),
                str(s["server_errors"]),
                others or "none",
                fmt(rss["after_warmup"] / 1024, 1),
                fmt(rss["end"] / 1024, 1),
                f"{growth:+.1f}",
                f"{(rss['end'] - half) / 1024:+.1f}",
                fmt(peak / 1024, 1),
            ]
        )
    parts.append(
        table(
            [
                "store",
                "requests",
                "req/s",
                ">= 500, reset or timeout",
                "4xx",
                "RSS after warm-up (MiB)",
                "RSS at end (MiB)",
                "growth (MiB)",
                "second half (MiB)",
                "peak (MiB)",
            ],
            summary_rows,
        )
    )
    parts.append("")
    rows = []
    for s in results["stores"]:
        for op, lat in s["latency_ms"].items():
            rows.append([s["store"], op, f"{lat['n']:,}", fmt(lat["p50"], 1), fmt(lat["p99"], 1)])
    parts.append(table(["store", "operation", "n", "p50 (ms)", "p99 (ms)"], rows))
    for s in results["stores"]:
        if s["server_exceptions"]:
            parts.append(f"\n{s['store']} server log, exceptions by last line:")
            parts += [f"- {n} x `{e}`" for e, n in s["server_exceptions"].items()]
        if s["error_samples"]:
            parts.append(f"\n{s['store']} errors (first {len(s['error_samples'])}):")
            parts += [f"- `{e}`" for e in s["error_samples"]]
    return "\n".join(parts)
