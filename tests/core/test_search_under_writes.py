"""Search, context packs and the vector cache while others write (issue 16).

Every reader of the shared vector cache works on one snapshot: whatever a refresh in another
thread appends, replaces or re-states meanwhile, the reader's count, matrix, owners and states
agree. Here writers and readers run together, in threads of one process (which share the cache)
and in other processes (whose writes the cache picks up), on both stores: not one error, and
every result belongs to the scope asked for.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
import traceback
import uuid
from collections import Counter
from typing import Any

import numpy as np

from core.kernel.config import Settings
from core.retrieval import vectors
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient

SECONDS = 3.0  # of writers and readers together, per store
TOPICS = ("garden tomatoes", "train to Lisbon", "peanut allergy", "jazz records", "rust bikes")


def _content(tag: str, i: int) -> str:
    return f"{tag} note {i} about {TOPICS[i % len(TOPICS)]} and more {TOPICS[(i + 2) % 5]}"


def _write_loop(client: LambdaClient, user: str, tag: str, until: float) -> Counter[str]:
    """Adds memories for `user`, rewrites some (a new vector) and archives or restores others
    (a new state): every kind of change the cache must follow."""
    statuses: Counter[str] = Counter()
    ids: list[str] = []
    i = 0
    while time.monotonic() < until:
        reply = client.post("/v1/memories", {"content": _content(tag, i), "user_id": user})
        statuses[f"add {reply.status}"] += 1
        if reply.status == 201:
            ids.append(reply.json()["id"])
        if ids and i % 3 == 1:
            target = ids[(i * 7) % len(ids)]
            reply = client.patch(f"/v1/memories/{target}", {"content": _content(tag, i + 1000)})
            statuses[f"patch {reply.status}"] += 1
        if ids and i % 4 == 2:
            target = ids[(i * 5) % len(ids)]
            reply = client.post(f"/v1/memories/{target}/archive")
            statuses[f"archive {reply.status}"] += 1
            reply = client.post(f"/v1/memories/{target}/restore")
            statuses[f"restore {reply.status}"] += 1
        i += 1
    return statuses


def _writer_process(url: str, key: str, user: str, tag: str, seconds: float, queue: Any) -> None:
    try:
        client = LambdaClient(Settings(database_url=url, log_level="WARNING"), key=key)
        queue.put(dict(_write_loop(client, user, tag, time.monotonic() + seconds)))
    except Exception:
        queue.put({"fatal": traceback.format_exc()})


def _in_thread(work: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    """Runs work(*args) in a thread with its own event loop (the Mangum handler needs one)."""
    out: list[Any] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            out.append(work(*args))
        except Exception:
            out.append({"fatal": traceback.format_exc()})
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _read_loop(
    client: LambdaClient, user: str, alien: tuple[str, ...], until: float
) -> dict[str, Any]:
    """Searches (every mode, each state) and context packs for `user`; records every reply that
    is not a 200 and every result outside the scope (another user, another brain, another
    state than the one asked for)."""
    statuses: Counter[str] = Counter()
    outside: list[str] = []
    i = 0
    while time.monotonic() < until:
        query = TOPICS[i % len(TOPICS)]
        mode = ("hybrid", "semantic", "lexical")[i % 3]
        state = ("active", "archived", "all")[(i // 3) % 3]
        reply = client.post(
            "/v1/search",
            {
                "query": query,
                "mode": mode,
                "user_id": user,
                "limit": 20,
                "filters": {"state": state},
            },
        )
        statuses[f"search {reply.status}"] += 1
        if reply.status == 200:
            for hit in reply.json()["results"]:
                memory = hit["memory"]
                if memory["user_id"] != user or any(a in memory["content"] for a in alien):
                    outside.append(f"{memory['user_id']}: {memory['content']}")
                if state != "all" and memory["state"] != state:
                    outside.append(f"{memory['state']} for {state}: {memory['content']}")
        else:
            outside.append(f"search {reply.status}: {reply.body[:300]}")
        reply = client.post("/v1/context", {"query": query, "user_id": user, "max_tokens": 400})
        statuses[f"context {reply.status}"] += 1
        if reply.status != 200:
            outside.append(f"context {reply.status}: {reply.body[:300]}")
        i += 1
    return {"statuses": dict(statuses), "outside": outside[:10]}


def test_search_and_context_while_threads_and_processes_write(
    settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    run = uuid.uuid4().hex[:6]
    mine, theirs, alien = f"mine{run}", f"bob{run}", f"alien{run}"
    client = LambdaClient(settings, key=tenant.key)
    foreign = LambdaClient(settings, key=other_tenant.key)
    for i in range(30):  # something to find from the first search on
        assert (
            client.post("/v1/memories", {"content": _content(mine, i), "user_id": "alice"}).status
            == 201
        )
    assert (
        foreign.post("/v1/memories", {"content": _content(alien, 0), "user_id": "alice"}).status
        == 201
    )

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    processes = [  # one writes this brain (another user), one another brain (the same user id)
        ctx.Process(
            target=_writer_process,
            args=(settings.database_url, tenant.key, "bob", theirs, SECONDS, queue),
        ),
        ctx.Process(
            target=_writer_process,
            args=(settings.database_url, other_tenant.key, "alice", alien, SECONDS, queue),
        ),
    ]
    for process in processes:
        process.start()
    # The children take a second or two to import and start: readers and the in-process writer
    # start once the first foreign write is visible, so all of them overlap.
    deadline = time.monotonic() + 60
    while client.post("/v1/search", {"query": "note", "user_id": "bob"}).json()["results"] == []:
        assert time.monotonic() < deadline, "the writer processes never wrote"
        time.sleep(0.05)
    until = time.monotonic() + SECONDS
    threads = [
        _in_thread(_write_loop, client, "alice", f"{mine}w", until),
        *(_in_thread(_read_loop, client, "alice", (theirs, alien), until) for _ in range(2)),
        _in_thread(_read_loop, client, "bob", (mine, alien), until),
    ]
    for thread, _ in threads:
        thread.join(timeout=120)
    children = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    fatal = [r["fatal"] for _, out in threads for r in out if "fatal" in r]
    fatal += [r["fatal"] for r in children if "fatal" in r]
    assert not fatal, fatal[0]
    writes: Counter[str] = Counter(threads[0][1][0])
    for child in children:
        writes.update(child)
    failed = {s: n for s, n in writes.items() if s.split()[1] not in ("200", "201")}
    assert not failed, dict(writes)
    reads = [out[0] for _, out in threads[1:]]
    for read in reads:
        assert not read["outside"], read["outside"]
        assert all(s.endswith(" 200") for s in read["statuses"]), read["statuses"]
    searches = sum(r["statuses"].get("search 200", 0) for r in reads)
    # Proof that reads and writes overlapped; on a loaded 2-core machine a search can take
    # 200 ms, so the counts are kept low enough to hold there.
    assert searches >= 3 and writes["add 201"] >= 3, (searches, dict(writes))


def test_cache_readers_in_threads_agree_with_refreshes(engine: Any, tenant: Tenant) -> None:
    """The cache's own readers, in tight loops beside a thread that keeps adding, replacing and
    archiving vectors: every snapshot's parts agree and every hit is in the scope asked for."""
    from core.kernel.db.engine import sql, transaction
    from tests.hygiene_fixtures import insert_memories

    brain, model, dims = tenant.brain_id, f"test-{uuid.uuid4().hex[:6]}", 16
    rng = np.random.default_rng(7)

    def unit(n: int) -> np.ndarray:
        m = rng.standard_normal((n, dims)).astype(np.float32)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    def add(n: int, user: str) -> list[str]:
        ids = insert_memories(engine, brain, n, user_id=user, prefix=user)
        with transaction(engine) as conn:
            vectors.store_many(conn, brain, model, list(zip(ids, unit(n), strict=True)))
        return ids

    ids = add(200, "alice") + add(200, "bob")
    until = time.monotonic() + SECONDS / 2
    problems: list[str] = []
    rounds = Counter[str]()

    def write() -> None:
        while time.monotonic() < until:
            fresh = add(10, "alice")
            with transaction(engine) as conn:
                vectors.store_many(conn, brain, model, list(zip(ids[:5], unit(5), strict=True)))
                archived = fresh[:3]
                for memory_id in archived:
                    conn.execute(
                        sql("UPDATE memories SET state = 'archived' WHERE id = :id"),
                        {"id": memory_id},
                    )
                    vectors.touch(conn, brain, memory_id)
            ids.extend(fresh)
            rounds["write"] += 1

    def read(user: str) -> None:
        query = unit(1)[0]
        while time.monotonic() < until:
            with transaction(engine, write=False) as conn:
                snapshot = vectors.cached(conn, brain, model, dims)
            sims, mask = snapshot.similarities(query, user_id=user, states=("active",))
            if not (len(sims) == len(mask) == snapshot.count == len(snapshot.state_of)):
                problems.append(f"parts disagree: {len(sims)} {len(mask)} {snapshot.count}")
            for memory_id, _ in snapshot.top(sims, mask, 20):
                slot = snapshot.slot(memory_id)
                if slot is None or not memory_id.startswith(user[:4]) or snapshot.state_of[slot]:
                    problems.append(f"{memory_id} outside {user}'s active memories")
            snapshot.cosines(sims, ids[-50:], missing=0.0)
            rounds["read"] += 1

    def guarded(work: Any, *args: Any) -> None:
        try:
            work(*args)
        except Exception:
            problems.append(traceback.format_exc())

    threads = [threading.Thread(target=guarded, args=(write,))]
    threads += [threading.Thread(target=guarded, args=(read, u)) for u in ("alice", "bob", "alice")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not problems, problems[:3]
    assert rounds["write"] >= 3 and rounds["read"] >= 10, rounds
