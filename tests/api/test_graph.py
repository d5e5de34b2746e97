"""The graph through the Lambda handler, on both stores: neighbours, subgraphs (around a memory
or a query; radius, node limit, relation filter), shortest paths, stats, and their bounds."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Engine, event, text

from core.graph import traversal as graph
from core.graph.models import PathQuery, SubgraphQuery
from core.kernel.db.engine import transaction
from core.kernel.errors import Conflict, NotFound
from core.kernel.ids import new_id
from core.kernel.scope import Scope
from core.memory.policy import set_policy
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient
from tests.statements import statements_sent


def _memory(client: LambdaClient, content: str, **fields: Any) -> str:
    reply = client.post("/v1/memories", json_body={"content": content, **fields})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def _link(client: LambdaClient, from_id: str, to_id: str, relation: str = "related") -> str:
    reply = client.post(
        "/v1/links", json_body={"from_id": from_id, "to_id": to_id, "relation": relation}
    )
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def _chain(client: LambdaClient, n: int, **fields: Any) -> list[str]:
    """m0 - m1 - ... - m(n-1), links pointing alternately forwards and backwards."""
    ids = [_memory(client, f"chain memory number {i}", **fields) for i in range(n)]
    for i in range(n - 1):
        if i % 2:
            _link(client, ids[i + 1], ids[i], "supports")
        else:
            _link(client, ids[i], ids[i + 1], "related")
    return ids


def _subgraph(client: LambdaClient, **query: Any) -> Any:
    reply = client.get("/v1/graph/subgraph", query=query)
    assert reply.status == 200, reply.body
    return reply.json()


def _path(client: LambdaClient, from_id: str, to_id: str, **query: Any) -> Any:
    return client.get("/v1/graph/path", query={"from_id": from_id, "to_id": to_id, **query})


def test_neighbours_both_ways_strongest_first(client: LambdaClient) -> None:
    centre = _memory(client, "centre")
    out_strong = _memory(client, "out strong")
    out_weak = _memory(client, "out weak")
    incoming = _memory(client, "incoming")
    archived = _memory(client, "archived neighbour")
    for to_id, weight in ((out_strong, 0.9), (out_weak, 0.2), (archived, 1.0)):
        body = {"from_id": centre, "to_id": to_id, "relation": "related", "weight": weight}
        assert client.post("/v1/links", json_body=body).status == 201
    _link(client, incoming, centre, "causes")
    client.post(f"/v1/memories/{archived}/archive")

    reply = client.get(f"/v1/memories/{centre}/neighbors")
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    assert [r["memory"]["id"] for r in results] == [incoming, out_strong, out_weak]
    assert [r["direction"] for r in results] == ["in", "out", "out"]
    assert results[0]["link"]["relation"] == "causes"
    assert results[0]["memory"]["content"] == "incoming"
    with_archived = client.get(
        f"/v1/memories/{centre}/neighbors", query={"include_archived": "true"}
    ).json()["results"]
    assert [r["memory"]["id"] for r in with_archived] == [incoming, archived, out_strong, out_weak]
    only_causes = client.get(f"/v1/memories/{centre}/neighbors", query={"relation": "causes"})
    assert [r["memory"]["id"] for r in only_causes.json()["results"]] == [incoming]
    outgoing = client.get(
        f"/v1/memories/{centre}/neighbors", query={"direction": "out", "limit": 1}
    ).json()["results"]
    assert [r["memory"]["id"] for r in outgoing] == [out_strong]


def test_subgraph_around_a_memory_respects_radius_limit_and_relation(
    client: LambdaClient,
) -> None:
    ids = _chain(client, 6)
    around = _subgraph(client, memory_id=ids[2], radius=2)
    assert {n["id"]: n["depth"] for n in around["nodes"]} == {
        ids[0]: 2,
        ids[1]: 1,
        ids[2]: 0,
        ids[3]: 1,
        ids[4]: 2,
    }
    assert around["seeds"] == [ids[2]] and around["truncated"] is False
    assert len(around["edges"]) == 4
    node_ids = {n["id"] for n in around["nodes"]}
    assert all(e["from_id"] in node_ids and e["to_id"] in node_ids for e in around["edges"])

    limited = _subgraph(client, memory_id=ids[2], radius=3, limit=3)
    assert len(limited["nodes"]) == 3 and limited["truncated"] is True
    assert limited["nodes"][0]["id"] == ids[2]
    assert {n["depth"] for n in limited["nodes"][1:]} == {1}

    # Only `related` links: m2 -related-> m3 (m1 -supports-> m2 is filtered out).
    related = _subgraph(client, memory_id=ids[2], radius=4, relation="related")
    assert {n["id"] for n in related["nodes"]} == {ids[2], ids[3]}
    assert {e["relation"] for e in related["edges"]} == {"related"}

    alone = _subgraph(client, memory_id=ids[2], radius=0)
    assert [n["id"] for n in alone["nodes"]] == [ids[2]] and alone["edges"] == []


def test_subgraph_skips_archived_memories_unless_asked(client: LambdaClient) -> None:
    ids = _chain(client, 4)
    client.post(f"/v1/memories/{ids[1]}/archive")
    active = _subgraph(client, memory_id=ids[0], radius=3)
    assert [n["id"] for n in active["nodes"]] == [ids[0]]
    everything = _subgraph(client, memory_id=ids[0], radius=3, include_archived="true")
    assert {n["id"] for n in everything["nodes"]} == set(ids)
    inactive = client.get("/v1/graph/subgraph", query={"memory_id": ids[1]})
    assert inactive.status == 422 and inactive.error_code == "memory_inactive"


def test_subgraph_around_a_query_seeds_from_search(client: LambdaClient) -> None:
    kyoto = _memory(client, "Alice visited the temples of Kyoto in April")
    osaka = _memory(client, "The train from Osaka took an hour")
    budget = _memory(client, "Quarterly budget review with finance")
    _link(client, kyoto, osaka, "related")
    _link(client, budget, _memory(client, "Finance wants the numbers by Friday"))
    found = _subgraph(client, query="temples Kyoto", seeds=1, radius=1)
    assert found["seeds"] == [kyoto]
    assert {n["id"]: n["depth"] for n in found["nodes"]} == {kyoto: 0, osaka: 1}
    assert _subgraph(client, query="nothing matches zzzqqq")["nodes"] == []
    for query in ({}, {"memory_id": kyoto, "query": "Kyoto"}):
        reply = client.get("/v1/graph/subgraph", query=query)
        assert reply.status == 422 and reply.error_code == "invalid_subgraph_centre"


def test_the_policy_caps_the_subgraph(client: LambdaClient, tenant: Tenant) -> None:
    centre = _memory(client, "a star's centre")
    for i in range(6):
        _link(client, centre, _memory(client, f"a star's point {i}"))
    with transaction(tenant.engine) as conn:
        set_policy(conn, Scope(brain_id=tenant.brain_id, principal="t"), {"subgraph_max_nodes": 4})
    capped = _subgraph(client, memory_id=centre, limit=100)
    assert len(capped["nodes"]) == 4 and capped["limit"] == 4 and capped["truncated"] is True


def test_shortest_path_both_ways_and_bounded(client: LambdaClient) -> None:
    ids = _chain(client, 6)
    shortcut = _memory(client, "a shortcut")
    _link(client, ids[0], shortcut, "causes")
    _link(client, ids[4], shortcut, "example_of")
    reply = _path(client, ids[0], ids[5])
    assert reply.status == 200, reply.body
    found = reply.json()
    assert found["hops"] == 3
    assert [n["id"] for n in found["nodes"]] == [ids[0], shortcut, ids[4], ids[5]]
    assert [n["depth"] for n in found["nodes"]] == [0, 1, 2, 3]
    assert [(e["relation"], e["direction"]) for e in found["edges"]] == [
        ("causes", "forward"),
        ("example_of", "backward"),
        ("related", "forward"),
    ]
    # Without the shortcut's relations the chain itself is the only way: five hops.
    chain_only = _path(client, ids[0], ids[5], relation="related,supports").json()
    assert chain_only["hops"] == 5
    assert [n["id"] for n in chain_only["nodes"]] == ids
    too_short = _path(client, ids[0], ids[5], relation="related,supports", max_hops=4)
    assert too_short.status == 404 and too_short.error_code == "no_path"
    assert too_short.json()["error"]["details"]["max_hops"] == 4
    same = _path(client, ids[2], ids[2]).json()
    assert same["hops"] == 0 and [n["id"] for n in same["nodes"]] == [ids[2]]


def test_path_errors_are_clear(
    client: LambdaClient, tenant: Tenant, settings: Any, other_tenant: Tenant
) -> None:
    a = _memory(client, "island one", user_id="alice")
    b = _memory(client, "island two", user_id="alice")
    unconnected = _path(client, a, b)
    assert unconnected.status == 404 and unconnected.error_code == "no_path"
    stranger = _memory(LambdaClient(settings, key=other_tenant.key), "elsewhere")
    other_brain = _path(client, a, stranger)
    assert other_brain.status == 404 and other_brain.error_code == "memory_not_found"
    bob = client.as_key(tenant.new_key(user_id="bob"))
    assert _path(bob, a, b).error_code == "memory_not_found"
    ids = _chain(client, 3)
    client.post(f"/v1/memories/{ids[1]}/archive")
    assert _path(client, ids[0], ids[2]).error_code == "no_path"
    assert _path(client, ids[0], ids[2], include_archived="true").json()["hops"] == 2
    assert _path(client, ids[0], ids[1]).error_code == "memory_inactive"
    assert client.get("/v1/graph/path", query={"from_id": a}).status == 422
    assert _path(client, a, b, max_hops=13).status == 422


def test_a_path_whose_link_goes_mid_search_is_a_409(
    client: LambdaClient, engine: Engine, tenant: Tenant
) -> None:
    ids = _chain(client, 3)  # m0 -related-> m1 <-supports- m2
    scope = Scope(brain_id=tenant.brain_id, principal="test")
    with transaction(engine, write=False) as conn:
        gone = conn.execute(
            text("SELECT id FROM memory_links WHERE from_id = :f"), {"f": ids[2]}
        ).scalar_one()
    fired: list[bool] = []

    def delete_link_before_the_path_is_read_back(*args: Any) -> None:
        statement = args[2]
        if fired or "relation = " not in statement or "to_id = " not in statement:
            return
        fired.append(True)
        with transaction(engine) as other:  # another connection: a concurrent delete
            other.execute(text("DELETE FROM memory_links WHERE id = :id"), {"id": gone})

    event.listen(engine, "before_cursor_execute", delete_link_before_the_path_is_read_back)
    try:
        with transaction(engine, write=False) as conn:
            graph.path(conn, scope, PathQuery(from_id=ids[0], to_id=ids[2]))
        # SQLite reads from one snapshot: the walk and its read-back agree.
        assert engine.dialect.name == "sqlite"
    except Conflict as error:
        assert error.code == "graph_changed"
    finally:
        event.remove(engine, "before_cursor_execute", delete_link_before_the_path_is_read_back)
    assert fired


def test_graph_stats(client: LambdaClient, tenant: Tenant) -> None:
    ids = _chain(client, 4, user_id="alice")
    hub = _memory(client, "bob's hub", user_id="bob")
    spokes = [_memory(client, f"bob's spoke {i}", user_id="bob") for i in range(3)]
    for spoke in spokes:
        _link(client, hub, spoke, "example_of")
    _memory(client, "bob's loner", user_id="bob")
    _memory(client, "alice's loner", user_id="alice")
    stats = client.get("/v1/graph/stats").json()
    assert (stats["nodes"], stats["edges"], stats["isolated"]) == (10, 6, 2)
    assert stats["components"] == 4 and stats["largest_component"] == 4
    assert stats["relations"] == {"example_of": 3, "related": 2, "supports": 1}
    assert stats["hubs"][0]["id"] == hub and stats["hubs"][0]["degree"] == 3
    assert stats["hubs"][0]["memory"]["preview"] == "bob's hub"
    assert stats["sampled"] is False
    alice = client.get("/v1/graph/stats", query={"user_id": "alice", "top": 1}).json()
    assert (alice["nodes"], alice["edges"], alice["components"]) == (5, 3, 2)
    assert len(alice["hubs"]) == 1 and alice["hubs"][0]["id"] in ids[1:3]
    scoped = client.as_key(tenant.new_key(user_id="bob")).get("/v1/graph/stats").json()
    assert (scoped["nodes"], scoped["edges"]) == (5, 3)


def test_walks_on_a_bulk_loaded_brain_stay_bounded(engine: Engine, tenant: Tenant) -> None:
    """2,000 memories, 8,000 random links: node limits hold, each level is one bounded query."""
    rng = random.Random(5)
    brain = tenant.brain_id
    ids = [new_id() for _ in range(2000)]
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO memories (id, brain_id, type, content, tags, content_hash, "
                "created_at, updated_at) VALUES (:id, :b, 'note', :c, '[]', :h, :t, :t)"
            ),
            [
                {"id": m, "b": brain, "c": f"m{i}", "h": f"{i:064x}", "t": i}
                for i, m in enumerate(ids)
            ],
        )
        pairs = {(rng.randrange(2000), rng.randrange(2000)) for _ in range(8500)}
        pairs = {p for p in pairs if p[0] != p[1]}
        conn.execute(
            text(
                "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, weight, "
                "created_at) VALUES (:id, :b, :f, :t, 'related', 0.5, 0)"
            ),
            [{"id": new_id(), "b": brain, "f": ids[a], "t": ids[z]} for a, z in pairs],
        )
    scope = Scope(brain_id=brain, principal="t")
    with statements_sent(engine) as sent, transaction(engine, write=False) as conn:
        result = graph.subgraph(conn, scope, SubgraphQuery(memory_id=ids[0], radius=3, limit=50))
    assert len(result["nodes"]) == 50 and result["truncated"] is True
    assert len({n["id"] for n in result["nodes"]}) == 50
    assert len(sent.statements) <= 3 + 5  # one per level, plus policy, centre, nodes and edges
    walks = [s for s in sent.statements if "memory_links" in s]
    assert walks and all("LIMIT" in s for s in walks)

    with statements_sent(engine) as sent, transaction(engine, write=False) as conn:
        found = graph.path(conn, scope, PathQuery(from_id=ids[1], to_id=ids[2], max_hops=6))
    assert 1 <= found["hops"] <= 6
    assert found["nodes"][0]["id"] == ids[1] and found["nodes"][-1]["id"] == ids[2]
    for edge, (a, z) in zip(
        found["edges"], zip(found["nodes"], found["nodes"][1:], strict=False), strict=True
    ):
        assert {edge["from_id"], edge["to_id"]} == {a["id"], z["id"]}
    assert len(sent.statements) <= 6 + 6  # at most one query per level, plus the fixed ones

    # Shortest, as a plain breadth-first search over every link says.
    neighbours: dict[str, set[str]] = {m: set() for m in ids}
    for a, z in pairs:
        neighbours[ids[a]].add(ids[z])
        neighbours[ids[z]].add(ids[a])

    def hops(start: str, goal: str, limit: int) -> int | None:
        seen_at = {start: 0}
        queue = [start]
        for node in queue:
            if seen_at[node] < limit:
                for nxt in neighbours[node] - seen_at.keys():
                    seen_at[nxt] = seen_at[node] + 1
                    queue.append(nxt)
        return seen_at.get(goal)

    for _ in range(15):
        a, z = rng.choice(ids), rng.choice(ids)
        expected = hops(a, z, 4)
        with transaction(engine, write=False) as conn:
            try:
                got = graph.path(conn, scope, PathQuery(from_id=a, to_id=z, max_hops=4))["hops"]
            except NotFound as error:
                assert error.code == "no_path"
                got = None
        assert got == expected, (a, z)
    with transaction(engine, write=False) as conn:
        stats = graph.stats(conn, scope, max_links=1000)
    assert stats["sampled"] is True and stats["edges"] == 1000
