"""The console's pages, rendered server-side, on a brain of 10,000 memories (issue 10).

`python -m bench.console [--memories N] [--samples N] [--no-postgres] [--no-sqlite]`

Each main page is requested in process through the real app (Starlette's TestClient: the
session cookie is verified, the page's core calls run, the HTML is rendered; no network), after
a warm-up, and timed end to end. The brain is filled straight through core (create_batch, as
POST /v1/memories/batch does) and given links, history rows, conflicts, keys, a watch and a
snapshot so that no page is measured empty.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from dataclasses import replace
from typing import Any

os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")

from bench.common import (
    Summary,
    fmt,
    load_avg,
    machine,
    machine_markdown,
    postgres,
    postgres_version,
    say,
    scratch,
    sqlite_url,
    table,
    verdict,
    write_json,
)
from bench.search import _corpus, _texts

TARGET_MS = 50.0
PASSWORD = "bench password 1234"  # noqa: S105 (a throwaway account)
USERS = 20
TAGS = 12


def _sign_up(client: Any) -> str:
    page = client.get("/console/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    reply = client.post(
        "/console/login",
        data={
            "csrf_token": csrf.group(1),
            "email": "bench@example.org",
            "password": PASSWORD,
            "action": "signup",
            "next": "",
        },
    )
    assert reply.status_code == 303, reply.text
    brains = client.get("/console/brains").text
    found = re.search(r"/console/b/([0-9a-f-]+)/memories", brains)
    assert found is not None
    return found.group(1)


def _seed(settings: Any, brain_id: str, account_id: str, texts: list[str]) -> list[str]:
    from core.curation import conflicts
    from core.embeddings import get_embedder
    from core.graph import links
    from core.identity import keys
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.scope import Scope
    from core.memory import store as memories
    from core.memory.models import MemoryIn, MemoryPatch
    from core.retrieval.indexing import SearchIndexer
    from core.transfer import snapshots

    engine = get_engine(settings.database_url)
    embedder = get_embedder(settings.embedder)
    scope = Scope(brain_id=brain_id, principal="bench", role="owner", account_id=account_id)
    rng = random.Random(10)
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, len(texts), 500):
        items = [
            MemoryIn(
                content=t,
                user_id=f"user-{(start + i) % USERS}",
                tags=[f"topic-{(start + i) % TAGS}"],
                importance=rng.random(),
            )
            for i, t in enumerate(texts[start : start + 500])
        ]
        index = SearchIndexer(embedder)
        index.prepare([m.content for m in items])
        with transaction(engine) as conn:
            made = memories.create_batch(conn, scope, items, settings.limits, index)
        ids += [m["id"] for m in made]
    say(f"  {len(ids):,} memories in {time.perf_counter() - started:.1f} s")
    by_user: dict[int, list[str]] = {}
    for i, memory_id in enumerate(ids):
        by_user.setdefault(i % USERS, []).append(memory_id)
    relations = ("related", "supports", "causes", "example_of")
    rows = []
    for _ in range(len(ids) // 3):
        user = rng.randrange(USERS)
        a, b = rng.sample(by_user[user], 2)
        rows.append(
            {
                "from_id": a,
                "to_id": b,
                "relation": rng.choice(relations),
                "label": None,
                "weight": 1.0,
                "origin": "manual",
                "created_by": "bench",
            }
        )
    unique = {(r["from_id"], r["to_id"], r["relation"]): r for r in rows}
    with transaction(engine) as conn:
        links.insert(conn, brain_id, list(unique.values()))
        for memory_id in ids[:200]:
            memories.update(
                conn,
                scope,
                memory_id,
                MemoryPatch(importance=0.9),
                settings.limits,
                SearchIndexer(embedder),
            )
        for i in range(5):
            keys.create_key_in(conn, brain_id, name=f"agent {i}")
        space = conflicts.VectorSpace(embedder.name, embedder.dims, settings.conflicts.neighbours)
        found = conflicts.detect_now(
            conn, scope, memory_id=None, user_id=None, limit=300, space=space
        )
    snapshots.create(engine, scope, settings.snapshots, label="bench")
    say(f"  {len(unique):,} links, 200 edits, {len(found['results'])} conflicts, a snapshot")
    return ids


def _pages(brain: str, ids: list[str], questions: list[str]) -> dict[str, list[str]]:
    base = f"/console/b/{brain}"
    rng = random.Random(7)
    picks = [rng.choice(ids) for _ in range(64)]
    return {
        "brain picker": ["/console/brains"],
        "memories (newest, with total)": [f"{base}/memories"],
        "memories filtered (tag and user)": [
            f"{base}/memories?tag=topic-{i % TAGS}&user=user-{i % USERS}" for i in range(16)
        ],
        "search (hybrid, explain)": [
            f"{base}/memories?q={q.replace(' ', '+').replace('?', '')}" for q in questions[:64]
        ],
        "memory page (fields, history, links)": [f"{base}/m/{m}" for m in picks],
        "graph (2 hops)": [f"{base}/m/{m}/graph" for m in picks],
        "users": [f"{base}/users"],
        "user summary": [f"{base}/users/user-{i}" for i in range(USERS)],
        "changelog": [f"{base}/changelog"],
        "conflicts": [f"{base}/conflicts"],
        "API keys": [f"{base}/keys"],
        "watches": [f"{base}/watches"],
        "snapshots": [f"{base}/snapshots"],
    }


def _measure_api_search(client: Any, questions: list[str], samples: int) -> tuple[Summary, Summary]:
    """POST /v1/search with the same queries, for reference: the core search the console's
    search page runs, without the page."""
    bodies = [{"query": q, "limit": 10, "explain": True} for q in questions[:64]]
    for body in bodies[:20]:
        assert client.post("/v1/search", json=body).status_code == 200
    wall, cpu = [], []
    for i in range(samples):
        started, started_cpu = time.perf_counter(), time.process_time()
        reply = client.post("/v1/search", json=bodies[i % len(bodies)])
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200
    return Summary.of(wall), Summary.of(cpu)


def _measure(client: Any, urls: list[str], samples: int) -> tuple[Summary, Summary]:
    """Wall time and CPU time (the process's, all threads: one request runs at a time) per
    request. On a shared, loaded machine the CPU time is the steadier measure of the work."""
    for url in urls[: min(len(urls), 20)]:  # warm-up: first summaries, caches, statements
        reply = client.get(url)
        assert reply.status_code == 200, (url, reply.status_code, reply.text[:300])
    wall, cpu = [], []
    for i in range(samples):
        url = urls[i % len(urls)]
        started, started_cpu = time.perf_counter(), time.process_time()
        reply = client.get(url)
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200, (url, reply.status_code)
    return Summary.of(wall), Summary.of(cpu)


def run_store(database_url: str, count: int, samples: int) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from core.kernel.config import Settings
    from handlers.api import create_app

    settings = Settings(database_url=database_url, log_level="WARNING")
    settings = settings.with_(auth=replace(settings.auth, password_iterations=1000))
    # Entered once: one event-loop thread for the whole run, not a new one per request.
    with TestClient(
        create_app(settings), base_url="https://bench", follow_redirects=False
    ) as client:
        return _run_with(client, settings, database_url, count, samples)


def _run_with(
    client: Any, settings: Any, database_url: str, count: int, samples: int
) -> dict[str, Any]:
    from core.identity import accounts
    from core.kernel.db.engine import get_engine, transaction

    brain = _sign_up(client)
    with transaction(get_engine(database_url), write=False) as conn:
        account = accounts.find_by_email(conn, "bench@example.org")
    assert account is not None
    turns, questions = _corpus()
    say(f"seeding {count:,} memories")
    ids = _seed(settings, brain, account.id, _texts(turns, count))
    if database_url.startswith("postgresql"):
        # Statistics as autovacuum leaves them a minute after a bulk load: timed before them,
        # PostgreSQL plans tag and user filters blind (bench.memories shows the difference).
        with get_engine(database_url).connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    pages = _pages(brain, ids, questions)
    results: dict[str, Any] = {"memories": count, "samples": samples, "pages": {}}
    for name, urls in pages.items():
        wall, cpu = _measure(client, urls, samples)
        results["pages"][name] = {**wall.as_dict(), "cpu": cpu.as_dict()}
        say(f"  {name}: p50 {wall.median:.2f} ms (CPU {cpu.median:.2f}), p95 {wall.p95:.2f} ms")
    wall, cpu = _measure_api_search(client, questions, samples)
    results["api_search"] = {**wall.as_dict(), "cpu": cpu.as_dict()}
    say(f"  POST /v1/search (reference): p50 {wall.median:.2f} ms (CPU {cpu.median:.2f})")
    return results


def run(count: int, samples: int, with_postgres: bool, with_sqlite: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "stores": {}}
    if with_sqlite:
        with scratch("console") as folder:
            say("SQLite")
            out["stores"]["SQLite"] = run_store(sqlite_url(folder), count, samples)
    if with_postgres:
        with postgres() as pg:
            url = pg.new_database()
            name = f"PostgreSQL {postgres_version(url)}"
            say(name)
            out["stores"][name] = run_store(url, count, samples)
    out["loadavg_at_end"] = load_avg()
    return out


def markdown(results: dict[str, Any]) -> str:
    parts = [machine_markdown(results["machine"])]
    for store, data in results["stores"].items():
        rows = [
            (
                name,
                fmt(s["median"]),
                fmt(s["p95"]),
                fmt(s["cpu"]["median"]),
                f"< {TARGET_MS:.0f}",
                verdict(s["median"], TARGET_MS),
            )
            for name, s in data["pages"].items()
        ]
        parts.append(
            f"#### {store}: {data['memories']:,} memories, {data['samples']} requests per page (ms)"
            "\n\n" + table(("page", "p50", "p95", "CPU p50", "target p50", "result"), rows)
        )
        api = data["api_search"]
        parts.append(
            f"For reference, POST /v1/search with the same queries (limit 10, explain): p50 "
            f"{fmt(api['median'])} ms, p95 {fmt(api['p95'])} ms, CPU p50 "
            f"{fmt(api['cpu']['median'])} ms: the search page's own share is the difference."
        )
    parts.append(f"Load average at the end: {results['loadavg_at_end']}.")
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--json", nargs="?", const="auto", default=None)
    args = parser.parse_args()
    results = run(args.memories, args.samples, not args.no_postgres, not args.no_sqlite)
    if args.json:
        say(f"wrote {write_json('console', results, args.json)}")
    print(markdown(results))


if __name__ == "__main__":
    main()
