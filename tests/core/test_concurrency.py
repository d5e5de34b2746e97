"""Concurrent writers on one store: several processes (spawned, each with its own handler and
engine, as separate Lambda instances would be) adding memories through the real Mangum handler.

- Many distinct adds: every reply is 201, nothing mentions 'database is locked', and every memory
  landed.
- A race: every process adds the same contents at the same moment (dedup) and keeps replacing
  the same fact key. Exactly one memory per content and one current fact survive, and nobody
  gets a 500 (on PostgreSQL the app retries the transaction that lost a unique-index race).

The suite runs 4 x 500 adds on each store (see PER_PROCESS); the full 4 x 2,000 run on both,
with throughput and latency figures, lives in bench/concurrency.py.

The children are watched for progress, not for a total time: on a loaded machine the same run
can take many times longer (SQLite's writes are serial, so every add waits its turn), and a
fixed deadline then fails a run that is only slow. A child that dies fails the test at once,
with its exit code.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queues
import time
import traceback
import uuid
from collections import Counter
from typing import Any

import pytest

from core.kernel.config import Settings
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient

PROCESSES = 4
# Adds per process. What the test asserts (every add lands, none meets a locked database) holds
# or breaks on every contended write, and 4 x 500 is 2,000 of them. The size is not the point
# (issue 3: "a test, kept quick; the larger run in bench/"): on the 2-core machine 4 x 2,000
# takes ~22 s on SQLite at rest, but ran past the old 300 s deadline at load 7-15, where each
# add waits its turn behind the other processes'; 4 x 500 takes a quarter of either.
# MNEMO_TEST_ADDS_PER_PROCESS sets it (2000 for the full size); bench/concurrency.py always
# runs 4 x 2,000 and reports the figures.
_OVERRIDE = os.environ.get("MNEMO_TEST_ADDS_PER_PROCESS")
PER_PROCESS = {
    store: int(_OVERRIDE) if _OVERRIDE else default
    for store, default in (("sqlite", 500), ("postgres", 500))
}
SHARED = 50  # contents every process adds in the race
FACT_KEY = "race-key"
LOCKED = "database is locked"
# Seconds the children may go without any of them starting, adding PROGRESS_EVERY memories or
# finishing: a hang (a lock never released), not a slow machine. At load 9 four children took
# ~16 s to start and ~0.1 s per add.
STALL = 180.0
PROGRESS_EVERY = 50

pytestmark = pytest.mark.slow


class _Errors(logging.Handler):
    """Every WARNING-or-worse record the app or Mangum logs in a child, exception included."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.lines.append(text[:500])


def _bodies(task: str, index: int, run: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, body) of every POST one child makes, in order."""
    if task == "distinct":
        return [
            ("distinct", {"content": f"{run} worker {index} memory {i}", "tags": [f"w{index}"]})
            for i in range(count)
        ]
    bodies: list[tuple[str, dict[str, Any]]] = []
    for i in range(SHARED):  # the same order in every child: they collide on every content
        bodies.append((f"shared {i}", {"content": f"{run} shared content {i}"}))
        bodies.append(
            ("fact", {"content": f"{run} worker {index} says {i}", "type": "fact", "key": FACT_KEY})
        )
    return bodies


def _child(
    task: str, count: int, index: int, url: str, key: str, run: str, barrier: Any, queue: Any
) -> None:
    """Runs in a spawned process: its own app, engine and connections."""
    try:
        errors = _Errors()
        client = LambdaClient(Settings(database_url=url, log_level="WARNING"), key=key)
        for name in ("mnemo", "mangum"):
            logging.getLogger(name).addHandler(errors)
        warm = client.get("/v1/memories", query={"limit": 1})  # schema check and key touch
        assert warm.status == 200, warm.body
        bodies = _bodies(task, index, run, count)
    except Exception:
        queue.put({"index": index, "fatal": traceback.format_exc()})
        barrier.abort()
        return
    queue.put({"index": index, "progress": "started"})
    try:
        # No timeout of its own: a child that never gets here aborts the barrier or dies, and
        # the parent ends the run either way (see _collect).
        barrier.wait()
    except Exception:
        queue.put({"index": index, "fatal": traceback.format_exc()})
        return
    statuses: Counter[str] = Counter()
    odd: list[str] = []
    exceptions: list[str] = []
    ids: dict[str, str] = {}
    started = time.monotonic()
    for done, (label, body) in enumerate(bodies, 1):
        if done % PROGRESS_EVERY == 0:
            queue.put({"index": index, "progress": done})
        try:
            reply = client.post("/v1/memories", body)
        except Exception as exc:
            exceptions.append(f"{label}: {type(exc).__name__}: {exc}"[:500])
            continue
        kind = "fact" if label == "fact" else "memory"
        statuses[f"{kind} {reply.status}"] += 1
        if reply.status not in (200, 201) or LOCKED in reply.body:
            odd.append(f"{label}: {reply.status} {reply.body[:300]}")
        elif label.startswith("shared"):
            ids[label] = reply.json()["id"]
    queue.put(
        {
            "index": index,
            "seconds": time.monotonic() - started,
            "statuses": dict(statuses),
            "odd": odd[:20],
            "exceptions": exceptions[:20],
            "logged": errors.lines[:20],
            "ids": ids,
        }
    )


def _run(task: str, url: str, key: str, count: int = 0) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    queue = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(task, count, i, url, key, run, barrier, queue))
        for i in range(PROCESSES)
    ]
    started = time.monotonic()
    for child in children:
        child.start()
    try:
        results = _collect(children, queue)
    except BaseException:
        for child in children:  # the run has failed: do not wait for the rest of it
            child.terminate()
        raise
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.terminate()
                child.join()
        queue.close()
        queue.join_thread()
    elapsed = time.monotonic() - started
    fatal = [r["fatal"] for r in results if "fatal" in r]
    assert not fatal, fatal[0]
    assert [child.exitcode for child in children] == [0] * PROCESSES
    each = ", ".join(f"{r['seconds']:.1f}s" for r in results)
    size = f" x {count}" if count else ""
    print(f"\n{task}{size}: {PROCESSES} processes, wall {elapsed:.1f}s, children {each}")
    return results


def _collect(children: list[Any], queue: Any) -> list[dict[str, Any]]:
    """Every child's result, failing as soon as one dies without one, or when none has moved
    for STALL seconds."""
    results: dict[int, dict[str, Any]] = {}
    progress: dict[int, Any] = {}
    moved = time.monotonic()
    while len(results) < len(children):
        # exitcode 0 with no result yet: its last message is still in the pipe.
        dead = {i: c.exitcode for i, c in enumerate(children) if c.exitcode not in (None, 0)}
        assert not dead, f"children died: exit codes {dead}, last progress {progress}"
        try:
            message = queue.get(timeout=1.0)
        except queues.Empty:
            stalled = time.monotonic() - moved
            assert stalled < STALL, f"no child moved in {stalled:.0f} s; progress {progress}"
            continue
        moved = time.monotonic()
        if "progress" in message:
            progress[message["index"]] = message["progress"]
        else:
            results[message["index"]] = message
    return [results[i] for i in sorted(results)]


def _assert_clean(results: list[dict[str, Any]]) -> None:
    """No exception, no reply but 200/201, nothing logged, and never 'database is locked'."""
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r["statuses"])
    everything = [
        line for r in results for key in ("exceptions", "odd", "logged") for line in r[key]
    ]
    assert not [line for line in everything if LOCKED in line], everything[:5]
    problems = [(r["index"], r["exceptions"], r["odd"], r["logged"]) for r in results]
    assert not everything, (dict(statuses), problems[:2])


def _total(client: LambdaClient, **query: str) -> int:
    reply = client.get("/v1/memories", query={**query, "include_total": "true", "limit": 1})
    assert reply.status == 200, reply.body
    total: int = reply.json()["total"]
    return total


def test_concurrent_adds_all_land(settings: Settings, tenant: Tenant, store: str) -> None:
    count = PER_PROCESS[store]
    results = _run("distinct", settings.database_url, tenant.key, count)
    _assert_clean(results)
    for r in results:
        assert r["statuses"] == {"memory 201": count}, r["statuses"]
    client = LambdaClient(settings, key=tenant.key)
    assert _total(client) == PROCESSES * count
    for index in range(PROCESSES):
        assert _total(client, tag=f"w{index}") == count


def test_concurrent_duplicates_and_fact_race(
    settings: Settings, tenant: Tenant, store: str
) -> None:
    results = _run("race", settings.database_url, tenant.key)
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r["statuses"])
    # Each shared content was created once; every other add of it was a dedup.
    assert statuses["memory 201"] == SHARED, statuses
    assert statuses["memory 200"] == SHARED * (PROCESSES - 1), statuses
    for i in range(SHARED):  # everyone was handed the same memory for a content
        label = f"shared {i}"
        assert len({r["ids"][label] for r in results if label in r["ids"]}) == 1, label

    client = LambdaClient(settings, key=tenant.key)
    assert _total(client, type="note") == SHARED
    assert _total(client, type="note", state="all") == SHARED
    assert _total(client, type="fact") == 1
    current = client.get(f"/v1/facts/{FACT_KEY}")
    assert current.status == 200, current.body
    facts = client.get("/v1/memories", query={"type": "fact", "state": "all", "limit": 500})
    rows = facts.json()["results"]
    assert len(rows) == statuses["fact 201"]
    archived = [m for m in rows if m["state"] == "archived"]
    assert len(archived) == len(rows) - 1
    # A single chain of supersession: each fact replaced exactly one other, none was lost.
    successors = [m["superseded_by"] for m in archived]
    assert None not in successors
    assert len(set(successors)) == len(successors)
    assert set(successors) <= {m["id"] for m in rows}
    assert current.json()["id"] not in {m["id"] for m in archived}
    # Every fact had distinct content: each add is a new fact superseding the current one, and
    # none of them may fail (PostgreSQL: the loser of a unique-index race is retried).
    _assert_clean(results)
    assert statuses["fact 201"] == SHARED * PROCESSES, statuses
