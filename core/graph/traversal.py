"""The memory graph: neighbours, subgraphs, shortest paths and stats, every query bounded.

Links are walked both ways. A walk reads one level at a time: ONE query per level fetches the
links of the whole frontier (the ids bound as one list value) joined to the memory at the far
end, so the scope (brain, user) and the state filter apply on every hop and a walk never
crosses into memories the caller cannot see. Nothing here loads a brain's links wholesale:
every statement has a LIMIT, subgraphs stop at a node limit, paths at a hop limit (the brain
policy caps both) and at a number of visited memories.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection

from core.graph.links import LINK_NAMES, link_dict, member_of, memory_ref, visible_memory
from core.graph.models import (
    GraphStatsRecord,
    LinkRecord,
    MemoryRefRecord,
    NeighborPageRecord,
    PathEdgeRecord,
    PathQuery,
    PathRecord,
    SubgraphQuery,
    SubgraphRecord,
)
from core.kernel.config import RankingSettings
from core.kernel.db.engine import sql
from core.kernel.errors import Conflict, InvalidInput, NotFound
from core.kernel.scope import Scope
from core.memory.models import MemoryRecord
from core.memory.policy import policy_for
from core.memory.store import COLUMNS, to_dict
from core.retrieval.models import SearchIn
from core.retrieval.search import QueryVector, search

# Most link rows one level of a walk reads: a hub with more links is cut there.
LEVEL_ROWS = 20_000
# Most memories a path search visits (both sides) before it gives up.
PATH_VISITS = 50_000
# Frontier ids per query of a path search (see `path`).
PATH_CHUNK = 128
_MEMORY_NAMES = tuple(name.strip() for name in COLUMNS.split(","))


@dataclass(frozen=True)
class Walk:
    """Which memories a walk may step on, and along which links."""

    brain_id: str
    users: tuple[str, ...] = ()  # the scope's user and/or a requested one: all must match
    include_archived: bool = False
    relations: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        scope: Scope,
        *,
        user_id: str | None = None,
        include_archived: bool = False,
        relations: Sequence[str] = (),
    ) -> Walk:
        users = tuple(u for u in (scope.user_id, user_id) if u is not None)
        return cls(scope.brain_id, users, include_archived, tuple(dict.fromkeys(relations)))

    @property
    def states(self) -> tuple[str, ...]:
        return ("active", "archived") if self.include_archived else ("active",)

    def memory_filter(self, alias: str, params: dict[str, Any]) -> str:
        params["brain"] = self.brain_id
        states = ", ".join(f"'{s}'" for s in self.states)  # a fixed set, never user text
        clauses = [f"{alias}.brain_id = :brain", f"{alias}.state IN ({states})"]
        for i, user in enumerate(self.users):
            params[f"user_{i}"] = user
            clauses.append(f"{alias}.user_id = :user_{i}")
        return " AND ".join(clauses)

    def link_filter(self, alias: str, params: dict[str, Any]) -> str:
        params["brain"] = self.brain_id
        clause = f"{alias}.brain_id = :brain"
        if self.relations:
            names = [f"rel_{i}" for i in range(len(self.relations))]
            params.update(zip(names, self.relations, strict=True))
            clause += f" AND {alias}.relation IN ({', '.join(':' + n for n in names)})"
        return clause

    def check_endpoint(self, row: Any, field: str) -> None:
        if self.users and row.user_id not in self.users:
            raise NotFound(
                f"no memory {row.id!r}", code="memory_not_found", details={"field": field}
            )
        if row.state not in self.states:
            raise InvalidInput(
                f"memory {row.id!r} is {row.state}: pass include_archived=true to walk from "
                "archived memories (deleted ones are never walked)",
                code="memory_inactive",
                details={"field": field, "state": row.state},
            )


def _join(conn: Connection) -> str:
    # SQLite: the frontier drives the join (link index, then the memory by primary key).
    return "CROSS JOIN" if conn.dialect.name == "sqlite" else "JOIN"


def _frontier_links(
    conn: Connection,
    walk: Walk,
    frontier: list[str],
    *,
    full: bool,
    limit: int = LEVEL_ROWS,
) -> list[Any]:
    """Every link touching the frontier whose far end the walk may step on, as rows with
    `near` (in the frontier) and `far`. Light rows (from_id, to_id, relation) come from the
    indexes alone; `full` adds the rest of the link."""
    params: dict[str, Any] = {"limit": limit}
    parts = []
    for side, near, far in (("out", "from_id", "to_id"), ("in", "to_id", "from_id")):
        inside, bind = member_of(conn, f"l.{near}", "frontier")
        params["frontier"] = bind(frontier)
        columns = (
            ", ".join(f"l.{n}" for n in LINK_NAMES) if full else "l.from_id, l.to_id, l.relation"
        )
        parts.append(
            f"SELECT {columns}, l.{near} AS near, l.{far} AS far, '{side}' AS side "
            f"FROM memory_links l {_join(conn)} memories m ON m.id = l.{far} "
            f"WHERE {walk.link_filter('l', params)} AND {inside} "
            f"AND {walk.memory_filter('m', params)}"
        )
    statement = " UNION ALL ".join(parts) + " LIMIT :limit"
    return list(conn.execute(sql(statement), params).all())


def _memories(conn: Connection, walk: Walk, ids: list[str]) -> dict[str, MemoryRecord]:
    if not ids:
        return {}
    params: dict[str, Any] = {}
    inside, bind = member_of(conn, "m.id", "ids")
    params["ids"] = bind(ids)
    columns = ", ".join(f"m.{n}" for n in _MEMORY_NAMES)
    rows = conn.execute(
        sql(
            f"SELECT {columns} FROM memories m WHERE {inside} AND {walk.memory_filter('m', params)}"
        ),
        params,
    ).all()
    return {row.id: to_dict(row) for row in rows}


def neighbors(
    conn: Connection,
    scope: Scope,
    memory_id: str,
    *,
    direction: str = "both",
    relations: Sequence[str] = (),
    limit: int = 20,
    include_archived: bool = False,
) -> NeighborPageRecord:
    """The memories one link away, strongest link first."""
    centre = visible_memory(conn, scope, memory_id)
    walk = Walk.of(scope, include_archived=include_archived, relations=relations)
    params: dict[str, Any] = {"id": centre.id, "limit": limit}
    link_columns = ", ".join(f"l.{n} AS l_{n}" for n in LINK_NAMES)
    memory_columns = ", ".join(f"m.{n}" for n in _MEMORY_NAMES)
    parts = [
        f"SELECT {link_columns}, {memory_columns}, '{side}' AS direction "
        f"FROM memory_links l JOIN memories m ON m.id = l.{far} "
        f"WHERE {walk.link_filter('l', params)} AND l.{near} = :id "
        f"AND {walk.memory_filter('m', params)}"
        for side, near, far in (("out", "from_id", "to_id"), ("in", "to_id", "from_id"))
        if direction in ("both", side)
    ]
    rows = conn.execute(
        sql(
            f"SELECT * FROM ({' UNION ALL '.join(parts)}) x "
            # Ties on weight: the newest link first, to the id (UUIDv7, so creation order) when
            # two links share a millisecond.
            "ORDER BY l_weight DESC, l_created_at DESC, l_id DESC LIMIT :limit"
        ),
        params,
    ).all()
    return {
        "results": [
            {
                "memory": to_dict(row),
                "link": link_dict(row, prefix="l_"),
                "direction": row.direction,
            }
            for row in rows
        ]
    }


def subgraph(
    conn: Connection,
    scope: Scope,
    query: SubgraphQuery,
    vector: QueryVector | None = None,
    ranking: RankingSettings | None = None,
) -> SubgraphRecord:
    """The memories within `radius` links of the seeds (the centre memory, or the best search
    hits for `query`, found with `vector` and `ranking`), nearest first, at most `limit` of
    them, and the links between them."""
    if (query.memory_id is None) == (query.query is None):
        raise InvalidInput(
            "give either memory_id (a subgraph around one memory) or query (around the best "
            "search hits), not both",
            code="invalid_subgraph_centre",
            details={"field": "memory_id"},
        )
    seeds: list[str] = []
    if query.query is not None:
        hits = search(
            conn,
            scope,
            SearchIn(query=query.query, limit=query.seeds, user_id=query.user_id),
            vector,
            ranking or RankingSettings(),
        )
        seeds = [hit["memory"]["id"] for hit in hits["results"]]
    policy = policy_for(conn, scope.brain_id)
    limit = min(query.limit, policy.subgraph_max_nodes)
    walk = Walk.of(
        scope,
        user_id=query.user_id,
        include_archived=query.include_archived,
        relations=query.relation,
    )
    if query.memory_id is not None:
        centre = visible_memory(conn, scope, query.memory_id, field="memory_id")
        walk.check_endpoint(centre, "memory_id")
        seeds = [centre.id]
    depth = {seed: 0 for seed in seeds[:limit]}
    frontier = list(depth)
    truncated = len(seeds) > limit
    for level in range(1, query.radius + 1):
        if not frontier or truncated:
            break
        rows = _frontier_links(conn, walk, frontier, full=False)
        truncated = len(rows) >= LEVEL_ROWS
        found: list[str] = []
        for far in dict.fromkeys(row.far for row in rows):
            if far in depth:
                continue
            if len(depth) >= limit:
                truncated = True
                break
            depth[far] = level
            found.append(far)
        frontier = found
    nodes = _memories(conn, walk, list(depth))
    edges = _links_among(conn, walk, list(nodes))
    ordered = sorted(nodes, key=lambda i: (depth[i], i))
    return {
        "seeds": [s for s in depth if depth[s] == 0],
        "nodes": [{**nodes[i], "depth": depth[i]} for i in ordered],
        "edges": edges,
        "radius": query.radius,
        "limit": limit,
        "truncated": truncated,
    }


def _links_among(conn: Connection, walk: Walk, ids: list[str]) -> list[LinkRecord]:
    """The links whose two ends are among `ids` (read from the outgoing side, kept in Python:
    a walk's nodes are few, and the reverse IN list would multiply the index probes)."""
    if not ids:
        return []
    members = set(ids)
    params: dict[str, Any] = {"brain": walk.brain_id, "limit": LEVEL_ROWS}
    inside, bind = member_of(conn, "l.from_id", "ids")
    params["ids"] = bind(ids)
    columns = ", ".join(f"l.{n}" for n in LINK_NAMES)
    rows = conn.execute(
        sql(
            f"SELECT {columns} FROM memory_links l WHERE {walk.link_filter('l', params)} "
            f"AND {inside} ORDER BY l.weight DESC, l.id LIMIT :limit"
        ),
        params,
    ).all()
    return [link_dict(row) for row in rows if row.to_id in members]


def path(conn: Connection, scope: Scope, query: PathQuery) -> PathRecord:
    """A shortest path between two memories, links walked both ways, at most `max_hops` long
    (capped by the brain's path_max_hops). Bidirectional breadth-first: each step expands the
    smaller frontier by one level with one query, so a path of h hops between memories of
    degree d costs about 2·d^(h/2) link reads instead of d^h."""
    policy = policy_for(conn, scope.brain_id)
    max_hops = min(query.max_hops or policy.path_max_hops, policy.path_max_hops)
    walk = Walk.of(scope, include_archived=query.include_archived, relations=query.relation)
    start = visible_memory(conn, scope, query.from_id, field="from_id")
    end = visible_memory(conn, scope, query.to_id, field="to_id")
    walk.check_endpoint(start, "from_id")
    walk.check_endpoint(end, "to_id")
    if start.id == end.id:
        node = _memories(conn, walk, [start.id])[start.id]
        return {"hops": 0, "nodes": [{**node, "depth": 0}], "edges": []}
    # node -> (the node it was reached from, the link (from_id, to_id, relation)), per side.
    parents: tuple[dict[str, Any], dict[str, Any]] = ({start.id: None}, {end.id: None})
    frontiers = [[start.id], [end.id]]
    depth = [0, 0]
    visited = 2
    while frontiers[0] and frontiers[1] and depth[0] + depth[1] < max_hops:
        side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
        here, there = parents[side], parents[1 - side]
        depth[side] += 1
        found: list[str] = []
        meets: list[str] = []
        # A level is read in chunks, and the first chunk that meets the other side ends the
        # search: every meeting point of this level is depth[0] + depth[1] links from both
        # ends (a shorter path would have met a level earlier), so the rest cannot do better.
        level = frontiers[side]
        for begin in range(0, len(level), PATH_CHUNK):
            rows = _frontier_links(conn, walk, level[begin : begin + PATH_CHUNK], full=False)
            for from_id, to_id, relation, near, far, _side in rows:
                if far in here:
                    continue
                here[far] = (near, (from_id, to_id, relation))
                found.append(far)
                if far in there:
                    meets.append(far)
            if meets:
                return _path_result(conn, walk, parents, min(meets))
        visited += len(found)
        if visited > PATH_VISITS:
            raise NotFound(
                f"no path found between {start.id!r} and {end.id!r} before visiting "
                f"{PATH_VISITS} memories; lower max_hops or filter by relation",
                code="no_path",
                details={"max_hops": max_hops, "visited": visited, "complete": False},
            )
        frontiers[side] = found
    raise NotFound(
        f"no path of at most {max_hops} links joins {start.id!r} and {end.id!r}",
        code="no_path",
        details={"max_hops": max_hops, "visited": visited, "complete": True},
    )


def _path_result(
    conn: Connection,
    walk: Walk,
    parents: tuple[dict[str, Any], dict[str, Any]],
    meet: str,
) -> PathRecord:
    ids = [meet]
    steps: list[tuple[str, str, str]] = []  # link triples in path order
    node = meet
    while parents[0][node] is not None:
        previous, triple = parents[0][node]
        ids.insert(0, previous)
        steps.insert(0, triple)
        node = previous
    node = meet
    while parents[1][node] is not None:
        following, triple = parents[1][node]
        ids.append(following)
        steps.append(triple)
        node = following
    params: dict[str, Any] = {"brain": walk.brain_id}
    clauses = []
    for i, (from_id, to_id, relation) in enumerate(steps):
        params.update({f"f{i}": from_id, f"t{i}": to_id, f"r{i}": relation})
        clauses.append(f"(from_id = :f{i} AND to_id = :t{i} AND relation = :r{i})")
    rows = conn.execute(
        sql(
            f"SELECT {', '.join(LINK_NAMES)} FROM memory_links WHERE brain_id = :brain "
            f"AND ({' OR '.join(clauses)})"
        ),
        params,
    ).all()
    links = {(r.from_id, r.to_id, r.relation): link_dict(r) for r in rows}
    nodes = _memories(conn, walk, ids)
    if any(step not in links for step in steps) or any(i not in nodes for i in ids):
        # PostgreSQL reads each statement afresh (read committed): a link deleted or a memory
        # archived since the walk read it is gone here. The path no longer holds: say so.
        raise Conflict(
            "the graph changed while the path was searched (a link or memory on it went): "
            "ask again",
            code="graph_changed",
        )
    edges: list[PathEdgeRecord] = []
    for position, triple in enumerate(steps):
        direction: Literal["forward", "backward"] = (
            "forward" if triple[0] == ids[position] else "backward"
        )
        edges.append({**links[triple], "direction": direction})
    return {
        "hops": len(steps),
        "nodes": [{**nodes[i], "depth": position} for position, i in enumerate(ids)],
        "edges": edges,
    }


def stats(
    conn: Connection,
    scope: Scope,
    *,
    user_id: str | None = None,
    max_links: int = 100_000,
    top: int = 10,
) -> GraphStatsRecord:
    """Nodes, edges, connected components and the best-connected memories (hubs) of the
    active graph in scope. At most `max_links` links and 4x as many memories are read; past
    either the figures describe what was read and `sampled` says so."""
    walk = Walk.of(scope, user_id=user_id)
    max_nodes = 4 * max_links
    params: dict[str, Any] = {"limit": max_nodes + 1}
    ids = [
        row[0]
        for row in conn.execute(
            sql(
                f"SELECT m.id FROM memories m WHERE {walk.memory_filter('m', params)} LIMIT :limit"
            ),
            params,
        ).all()
    ]
    sampled = len(ids) > max_nodes
    ids = ids[:max_nodes]
    index = {memory_id: n for n, memory_id in enumerate(ids)}
    params = {"limit": max_links + 1}
    where = walk.link_filter("l", params)
    if walk.users:
        # One user's memories are usually a small part of the brain: read their links only.
        inside, bind = member_of(conn, "l.from_id", "ids")
        params["ids"] = bind(ids)
        where += f" AND {inside}"
    # Else every link of the brain is the brain's: reading them straight from the index and
    # dropping those touching inactive memories here is cheaper than joining each to its ends.
    rows = conn.execute(
        sql(
            f"SELECT l.from_id, l.to_id, l.relation FROM memory_links l WHERE {where} LIMIT :limit"
        ),
        params,
    ).all()
    sampled = sampled or len(rows) > max_links
    kept = [
        (index[f], index[t], relation)
        for f, t, relation in rows[:max_links]
        if f in index and t in index
    ]
    src = np.fromiter((k[0] for k in kept), np.int64, len(kept))
    dst = np.fromiter((k[1] for k in kept), np.int64, len(kept))
    degree = np.bincount(np.concatenate([src, dst]), minlength=len(ids))
    labels = _components(len(ids), src, dst)
    sizes = np.bincount(labels) if len(ids) else np.zeros(0, np.int64)
    hubs = [int(i) for i in np.argsort(-degree, kind="stable")[:top] if degree[i] > 0]
    refs: dict[str, MemoryRefRecord] = {}
    if hubs:
        params = {"brain": scope.brain_id}
        inside, bind = member_of(conn, "m.id", "ids")
        params["ids"] = bind([ids[h] for h in hubs])
        refs = {
            row.id: memory_ref(row)
            for row in conn.execute(
                sql(
                    "SELECT m.id, m.type, m.title, m.key, m.content, m.state, m.user_id "
                    f"FROM memories m WHERE {inside} AND m.brain_id = :brain"
                ),
                params,
            ).all()
        }
    return {
        "nodes": len(ids),
        "edges": len(kept),
        "components": int(np.count_nonzero(sizes)),
        "isolated": int(np.count_nonzero(degree == 0)),
        "largest_component": int(sizes.max()) if len(sizes) else 0,
        "relations": dict(sorted(Counter(k[2] for k in kept).items())),
        "hubs": [
            {"id": ids[h], "degree": int(degree[h]), "memory": refs[ids[h]]}
            for h in hubs
            if ids[h] in refs
        ],
        "sampled": sampled,
    }


def _components(count: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected-component labels (each the smallest node number in its component): labels
    flow along the edges and jump to their label's label, until nothing changes; a few dozen
    vectorised passes even for a long chain, instead of a Python loop per edge."""
    labels = np.arange(count, dtype=np.int64)
    while True:
        low = np.minimum(labels[src], labels[dst])
        moved = labels.copy()
        np.minimum.at(moved, src, low)
        np.minimum.at(moved, dst, low)
        moved = moved[moved]
        if np.array_equal(moved, labels):
            return labels
        labels = moved
