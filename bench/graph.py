"""Graph queries on a large brain: 50,000 memories and 200,000 links (target: subgraph and path
under 100 ms p50), warm, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.graph [--memories 50000] [--links 200000] [--runs 200]
                                    [--no-postgres] [--json auto|PATH]

The memories and links are bulk-inserted straight into the tables (executemany: the write path
is not what is measured). Links join uniformly random pairs with a random relation and weight,
about 8 per memory counting both directions: a random graph is the hard case for a walk (no
clustering, so every level of a breadth-first search is as wide as the degree allows, and two
random memories are about five links apart). Measured, each as one read transaction like an
API call's: the subgraph around a random memory (radius 2, limit 200), the shortest path
between two random memories (max_hops 6, the policy default), the neighbours of a memory, and
the graph stats (which read at most MNEMO_GRAPH_STATS_MAX_LINKS links); then subgraph and path
again through the Lambda handler (Mangum, HTTP API v2 events) to show the whole request.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from bench.common import (
    Summary,
    context,
    error_code,
    event,
    fmt,
    machine,
    machine_markdown,
    make_handler,
    new_tenant,
    postgres,
    postgres_version,
    say,
    scratch,
    sqlite_url,
    table,
    verdict,
    write_json,
)
from core.graph import traversal as graph
from core.graph.models import RELATIONS, PathQuery, SubgraphQuery
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.errors import NotFound
from core.kernel.ids import new_id
from core.kernel.scope import Scope

_SEED = 20261122
_TARGET_MS = 100.0
_CHUNK = 10_000


def _brain_id(engine: Engine, slug: str) -> str:
    with transaction(engine, write=False) as conn:
        return str(
            conn.execute(text("SELECT id FROM brains WHERE slug = :s"), {"s": slug}).scalar()
        )


def populate(engine: Engine, brain_id: str, memories: int, links: int) -> list[str]:
    rng = random.Random(_SEED)
    ids = [new_id() for _ in range(memories)]
    start = int(time.time() * 1000) - memories * 1000
    memory_sql = text(
        "INSERT INTO memories (id, brain_id, user_id, type, content, tags, content_hash, "
        "created_at, updated_at) VALUES (:id, :brain, :user, 'note', :content, '[]', :hash, "
        ":at, :at)"
    )
    began = time.perf_counter()
    for offset in range(0, memories, _CHUNK):
        rows = [
            {
                "id": ids[i],
                "brain": brain_id,
                "user": "bench-user",
                "content": f"bench memory {i}",
                "hash": f"{i:064x}",
                "at": start + i * 1000,
            }
            for i in range(offset, min(memories, offset + _CHUNK))
        ]
        with transaction(engine) as conn:
            conn.execute(memory_sql, rows)
    say(f"{memories:,} memories in {time.perf_counter() - began:.1f} s")
    seen: set[tuple[int, int, str]] = set()
    while len(seen) < links:
        a, b = rng.randrange(memories), rng.randrange(memories)
        if a != b:
            seen.add((a, b, rng.choice(RELATIONS)))
    link_sql = text(
        "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, weight, origin, "
        "created_at) VALUES (:id, :brain, :f, :t, :r, :w, :o, :at)"
    )
    triples = sorted(seen)
    rng.shuffle(triples)
    began = time.perf_counter()
    for offset in range(0, links, _CHUNK):
        rows = [
            {
                "id": new_id(),
                "brain": brain_id,
                "f": ids[a],
                "t": ids[b],
                "r": relation,
                "w": round(rng.random(), 3),
                "o": "inferred" if relation == "related" else "manual",
                "at": start + memories * 1000 + i,
            }
            for i, (a, b, relation) in enumerate(triples[offset : offset + _CHUNK], offset)
        ]
        with transaction(engine) as conn:
            conn.execute(link_sql, rows)
    say(f"{links:,} links in {time.perf_counter() - began:.1f} s")
    with transaction(engine) as conn:
        conn.execute(text("ANALYZE"))
    return ids


def _timed(runs: int, call: Callable[[int], Any]) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for i in range(runs):
        began = time.perf_counter()
        results.append(call(i))
        times.append((time.perf_counter() - began) * 1000)
    return times, results


def measure(url: str, memories: int, links: int, runs: int) -> dict[str, Any]:
    slug, key = new_tenant(url)
    engine = get_engine(url)
    brain_id = _brain_id(engine, slug)
    ids = populate(engine, brain_id, memories, links)
    scope = Scope(brain_id=brain_id, principal="bench")
    rng = random.Random(_SEED + 1)
    centres = [rng.choice(ids) for _ in range(runs)]
    pairs = [(rng.choice(ids), rng.choice(ids)) for _ in range(runs)]

    def subgraph(i: int) -> Any:
        query = SubgraphQuery(memory_id=centres[i], radius=2, limit=200)
        with transaction(engine, write=False) as conn:
            return graph.subgraph(conn, scope, query)

    def path(i: int) -> Any:
        query = PathQuery(from_id=pairs[i][0], to_id=pairs[i][1], max_hops=6)
        try:
            with transaction(engine, write=False) as conn:
                return graph.path(conn, scope, query)["hops"]
        except NotFound as error:
            return error.code

    def neighbours(i: int) -> Any:
        with transaction(engine, write=False) as conn:
            return graph.neighbors(conn, scope, centres[i], limit=20)

    def stats(_: int) -> Any:
        with transaction(engine, write=False) as conn:
            return graph.stats(conn, scope)

    for warm in (subgraph, path, neighbours):
        _timed(min(10, runs), warm)
    out: dict[str, Any] = {"memories": memories, "links": links, "runs": runs}
    times, results = _timed(runs, subgraph)
    out["subgraph"] = Summary.of(times)
    out["subgraph_nodes"] = sorted(len(r["nodes"]) for r in results)[len(results) // 2]
    out["subgraph_edges"] = sorted(len(r["edges"]) for r in results)[len(results) // 2]
    times, results = _timed(runs, path)
    out["path"] = Summary.of(times)
    hops = [r for r in results if isinstance(r, int)]
    out["path_found"] = len(hops)
    out["path_hops_median"] = sorted(hops)[len(hops) // 2] if hops else None
    found_times = [t for t, r in zip(times, results, strict=True) if isinstance(r, int)]
    missed_times = [t for t, r in zip(times, results, strict=True) if not isinstance(r, int)]
    out["path_found_ms"] = Summary.of(found_times) if found_times else None
    out["path_missed_ms"] = Summary.of(missed_times) if missed_times else None
    times, _ = _timed(runs, neighbours)
    out["neighbors"] = Summary.of(times)
    times, results = _timed(5, stats)
    out["stats"] = Summary.of(times)
    out["stats_result"] = {k: v for k, v in results[-1].items() if k != "hubs"}

    handler = make_handler(url)
    ctx = context()

    def http(method_path: str, query: dict[str, Any]) -> Any:
        result = handler(event("GET", method_path, key=key, query=query), ctx)
        if result["statusCode"] not in (200, 404):
            raise RuntimeError(f"{method_path}: {result['statusCode']} {error_code(result)}")
        return result["statusCode"]

    def http_subgraph(i: int) -> Any:
        return http("/v1/graph/subgraph", {"memory_id": centres[i], "radius": 2, "limit": 200})

    def http_path(i: int) -> Any:
        return http("/v1/graph/path", {"from_id": pairs[i][0], "to_id": pairs[i][1], "max_hops": 6})

    _timed(min(10, runs), http_subgraph)
    times, _ = _timed(runs, http_subgraph)
    out["http_subgraph"] = Summary.of(times)
    times, _ = _timed(runs, http_path)
    out["http_path"] = Summary.of(times)
    dispose(url)
    return out


def report(store: str, version: str, result: dict[str, Any]) -> str:
    def row(name: str, summary: Any, note: str = "") -> list[Any]:
        if summary is None:
            return [name, "-", "-", "-", note]
        return [name, fmt(summary.median), fmt(summary.p95), fmt(summary.max), note]

    rows = [
        row(
            "subgraph (radius 2, limit 200), core",
            result["subgraph"],
            f"median {result['subgraph_nodes']} nodes, {result['subgraph_edges']} edges; "
            f"{verdict(result['subgraph'].median, _TARGET_MS)}",
        ),
        row(
            "path (max_hops 6), core, all pairs",
            result["path"],
            f"{result['path_found']}/{result['runs']} found, median "
            f"{result['path_hops_median']} hops; {verdict(result['path'].median, _TARGET_MS)}",
        ),
        row("path, pairs found", result["path_found_ms"]),
        row("path, no path within 6 hops", result["path_missed_ms"]),
        row("neighbors (limit 20), core", result["neighbors"]),
        row(
            "stats, core",
            result["stats"],
            "nodes {nodes}, edges {edges}, components {components}, sampled {sampled}".format(
                **result["stats_result"]
            ),
        ),
        row(
            "GET /v1/graph/subgraph via Mangum",
            result["http_subgraph"],
            verdict(result["http_subgraph"].median, _TARGET_MS),
        ),
        row(
            "GET /v1/graph/path via Mangum",
            result["http_path"],
            verdict(result["http_path"].median, _TARGET_MS),
        ),
    ]
    head = (
        f"**{store}** ({version}): {result['memories']:,} memories, {result['links']:,} links, "
        f"{result['runs']} runs each (stats: 5)\n\n"
    )
    return head + table(["query", "p50 ms", "p95 ms", "max ms", "notes"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.graph", description=__doc__)
    parser.add_argument("--memories", type=int, default=50_000)
    parser.add_argument("--links", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", help="write the figures as JSON (auto: bench/results/)")
    args = parser.parse_args()
    info = machine()
    print(machine_markdown(info) + "\n")
    results: dict[str, Any] = {"machine": info}
    with scratch("graph") as folder:
        url = sqlite_url(folder)
        import sqlite3

        say("SQLite")
        result = measure(url, args.memories, args.links, args.runs)
        print(report("SQLite", sqlite3.sqlite_version, result) + "\n")
        results["sqlite"] = result
    if not args.no_postgres:
        with postgres() as pg:
            url = pg.new_database()
            say("PostgreSQL")
            result = measure(url, args.memories, args.links, args.runs)
            print(report("PostgreSQL", postgres_version(url), result) + "\n")
            results["postgresql"] = result
    if args.json:
        plain = json.loads(json.dumps(results, default=vars))
        say(f"figures in {write_json('graph', plain, args.json)}")


if __name__ == "__main__":
    main()
