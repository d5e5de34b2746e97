"""Searches while another client writes, against `mnemo serve` (issue 16's must-show).

    .venv/bin/python -m bench.search_under_writes [--seconds 20] [--searchers 2] [--postgres]

One writer process adds memories (and rewrites and archives some, so vectors and states change)
while searcher processes search and ask for context packs, all over loopback HTTP to one
`mnemo serve`. Reports every status by kind of request, and the search latencies; the target
is 0 responses >= 500.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import load_avg, say, scratch, sqlite_url

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("garden tomatoes", "train to Lisbon", "peanut allergy", "jazz records", "rusty bikes")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Http:
    """An HTTP client that counts a dropped connection as an answer and carries on."""

    def __init__(self, base: str, key: str, statuses: Counter[str]) -> None:
        import httpx

        self.httpx = httpx
        self.args = {"base_url": base, "headers": {"authorization": f"Bearer {key}"}}
        self.client = httpx.Client(**self.args)  # type: ignore[arg-type]
        self.statuses = statuses

    def call(self, kind: str, method: str, path: str, body: Any) -> Any:
        try:
            reply = self.client.request(method, path, json=body, timeout=60)
        except self.httpx.TransportError as error:
            self.statuses[f"{kind} {type(error).__name__}"] += 1
            self.client.close()
            self.client = self.httpx.Client(**self.args)
            return None
        self.statuses[f"{kind} {reply.status_code}"] += 1
        return reply


def _writer(base: str, key: str, until: float, queue: Any) -> None:
    statuses: Counter[str] = Counter()
    ids: list[str] = []
    http = _Http(base, key, statuses)
    i = 0
    while time.time() < until:
        words = f"{WORDS[i % 5]} and {WORDS[(i + 2) % 5]}"
        reply = http.call("add", "POST", "/v1/memories", {"content": f"note {i}: {words}"})
        if reply is not None and reply.status_code == 201:
            ids.append(reply.json()["id"])
        if ids and i % 3 == 1:
            target = ids[(i * 7) % len(ids)]
            http.call("patch", "PATCH", f"/v1/memories/{target}", {"content": f"edit {i} {words}"})
        if ids and i % 5 == 2:
            http.call("archive", "POST", f"/v1/memories/{ids[(i * 3) % len(ids)]}/archive", None)
        i += 1
    queue.put({"statuses": dict(statuses)})


def _searcher(base: str, key: str, until: float, queue: Any) -> None:
    statuses: Counter[str] = Counter()
    took: list[float] = []
    http = _Http(base, key, statuses)
    i = 0
    while time.time() < until:
        started = time.perf_counter()
        http.call("search", "POST", "/v1/search", {"query": WORDS[i % 5], "limit": 10})
        took.append((time.perf_counter() - started) * 1000)
        if i % 4 == 0:
            http.call("context", "POST", "/v1/context", {"query": WORDS[i % 5]})
        i += 1
    queue.put({"statuses": dict(statuses), "took": took})


def run(seconds: float, searchers: int, database_url: str, seed: int) -> dict[str, Any]:
    from bench.common import new_tenant

    _, key = new_tenant(database_url)
    port = _port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MNEMO_DATABASE_URL": database_url, "MNEMO_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mnemo serve did not come up") from None
                time.sleep(0.2)
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}) as http:
            for start in range(0, seed, 500):  # a brain of some size: each search takes a while
                batch = [
                    {"content": f"seed {i}: {WORDS[i % 5]} {i % 97}"}
                    for i in range(start, min(seed, start + 500))
                ]
                reply = http.post("/v1/memories/batch", json={"memories": batch}, timeout=120)
                assert reply.status_code in (200, 201), reply.text[:300]
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        until = time.time() + 2 + seconds  # the children start within two seconds
        children = [ctx.Process(target=_writer, args=(base, key, until, queue))]
        children += [
            ctx.Process(target=_searcher, args=(base, key, until, queue)) for _ in range(searchers)
        ]
        for child in children:
            child.start()
        results = [queue.get(timeout=seconds + 120) for _ in children]
        for child in children:
            child.join(timeout=30)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    statuses: Counter[str] = Counter()
    took: list[float] = []
    for result in results:
        statuses.update(result["statuses"])
        took += result.get("took", [])
    errors = sum(
        n for status, n in statuses.items() if not status.split()[1].isdigit() or status[-3] == "5"
    )
    took.sort()
    return {
        "statuses": dict(sorted(statuses.items())),
        "responses_500_or_more_or_dropped": errors,
        "search_p50_ms": statistics.median(took) if took else None,
        "search_p99_ms": took[int(0.99 * (len(took) - 1))] if took else None,
        "server_log_tail": stderr.decode(errors="replace")[-2000:],
        "load": load_avg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--searchers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=5000, help="memories in the brain at start")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    if args.postgres:
        from bench.common import postgres

        with postgres() as pg:
            result = run(args.seconds, args.searchers, pg.new_database(), args.seed)
    else:
        with scratch("writes") as folder:
            result = run(args.seconds, args.searchers, sqlite_url(folder), args.seed)
    say(result.pop("server_log_tail"))
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{store}, {args.seed} memories, 1 writer + {args.searchers} searchers, "
        f"{args.seconds:.0f} s: {result}"
    )


if __name__ == "__main__":
    main()
