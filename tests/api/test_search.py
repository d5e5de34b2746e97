"""Retrieval through the Lambda handler, on both stores: ranking properties, filters, hostile
queries, isolation through the vector cache, context packs and reindexing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Tenant
from tests.lambda_client import LambdaClient


def _add(client: LambdaClient, **fields: Any) -> str:
    reply = client.post("/v1/memories", json_body=fields)
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def _search(client: LambdaClient, query: str, **body: Any) -> list[dict[str, Any]]:
    reply = client.post("/v1/search", json_body={"query": query, **body})
    assert reply.status == 200, reply.body
    results: list[dict[str, Any]] = reply.json()["results"]
    return results


def _ids(results: list[dict[str, Any]]) -> list[str]:
    return [r["memory"]["id"] for r in results]


def _lexical_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements core.retrieval.lexical runs from now on (it reads through the driver, past
    SQLAlchemy's events)."""
    from core.retrieval import lexical

    executed: list[str] = []
    original = lexical.tuples

    def spy(conn: Any, statement: str, params: Any) -> Any:
        executed.append(statement)
        return original(conn, statement, params)

    monkeypatch.setattr(lexical, "tuples", spy)
    return executed


@pytest.fixture
def garden(client: LambdaClient) -> dict[str, str]:
    return {
        "tomato": _add(client, content="Tomatoes need six hours of sun and deep watering."),
        "basil": _add(
            client, content="Basil grows well next to tomatoes in the garden.", tags=["herbs"]
        ),
        "roses": _add(client, content="Prune the roses in late winter before new growth."),
        "car": _add(
            client, content="The car is due for an oil change in March.", source="calendar"
        ),
        "deploy": _add(
            client,
            type="fact",
            key="deploy window",
            content="Deploys happen on Tuesdays after the standup.",
            metadata={"team": "platform", "priority": 2},
        ),
    }


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "semantic"])
def test_finds_the_right_memory_in_every_mode(
    client: LambdaClient, garden: dict[str, str], mode: str
) -> None:
    results = _search(client, "how much sun do tomatoes need", mode=mode)
    assert _ids(results)[0] == garden["tomato"]
    assert all(0.0 <= r["score"] <= 1.0 for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_an_exact_key_match_outranks_a_loose_match(
    client: LambdaClient, garden: dict[str, str]
) -> None:
    _add(client, content="The deploy window was discussed at length in a meeting about releases.")
    assert _ids(_search(client, "deploy window"))[0] == garden["deploy"]


def test_a_rare_word_outweighs_a_common_one(client: LambdaClient) -> None:
    """Both stores weigh a word by how rare it is in the scope (BM25's IDF; on PostgreSQL
    ts_rank per word times that IDF): a memory holding only the rare word of the question
    beats one holding the common word twice, in a shorter text."""
    for i in range(30):
        _add(client, content=f"She said hello to neighbour number {i} on the way home.")
    chatty = _add(client, content="He said it and said it again.")
    pottery = _add(client, content="Her first evening class in pottery went by far too quickly.")
    results = _search(client, "what was said about pottery", mode="lexical")
    assert _ids(results)[0] == pottery
    assert _ids(results).index(chatty) > 0


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
def test_the_answer_two_turns_after_the_question_is_found(client: LambdaClient, mode: str) -> None:
    """A conversation saved turn by turn: the words of the question are in one turn, the
    answer comes two turns later (a reply in between) and shares none of them. Thread context
    lends it evidence from the matching turn two places away, never more than that turn has."""
    chat = [
        "Mia: The weather has been lovely for a walk along the river.",
        "Sam: It has! I saw herons there on Sunday.",
        "Mia: Guess what I picked up at the flea market this morning!",
        "Sam: No idea, tell me everything.",
        "Mia: A second-hand violin, and it already sounds lovely.",
        "Sam: Amazing. My brother finally repaired his bicycle.",
        "Mia: Good for him, he rides to work every day.",
        "Sam: He does, rain or shine, even in winter.",
        "Mia: I should start cycling again when spring comes.",
        "Sam: Let us plan a ride along the coast in April.",
    ]
    ids = [_add(client, content=turn, user_id="mia") for turn in chat]
    ranked = _ids(_search(client, "What did Mia pick up at the flea market?", mode=mode))
    match, answer = ids[2], ids[4]
    assert ranked[0] == match
    # After the turns on either side of the match, which borrow more, and before the turns
    # farther on (about other things, they borrow nothing and match nothing).
    assert answer in ranked[:4]
    assert all(ranked.index(answer) < ranked.index(i) for i in ids[6:] if i in ranked)


def test_superseded_memory_ranks_below_its_successor(client: LambdaClient) -> None:
    old = _add(
        client, type="fact", key="favourite fruit", content="Sam's favourite fruit is apples"
    )
    new = _add(client, type="fact", key="favourite fruit", content="Sam's favourite fruit is pears")
    results = _search(client, "Sam favourite fruit", filters={"state": "all"}, explain=True)
    order = _ids(results)
    assert order.index(new) < order.index(old)
    demoted = next(r for r in results if r["memory"]["id"] == old)
    assert demoted["explain"]["superseded"] is True
    assert _ids(_search(client, "Sam favourite fruit")) == [new]  # active only by default


def test_min_score_and_explain(client: LambdaClient, garden: dict[str, str]) -> None:
    results = _search(client, "tomatoes garden sun", explain=True)
    assert len(results) >= 2
    for r in results:
        e = r["explain"]
        assert set(e) == {
            "lexical",
            "semantic",
            "context",
            "relevance",
            "importance",
            "confidence",
            "trust",
            "recency",
            "superseded",
            "time",
            "score",
        }
        assert e["score"] == r["score"]
        assert all(0.0 <= e[k] <= 1.0 for k in ("relevance", "recency", "importance", "confidence"))
    cut = results[-1]["score"] + 1e-6
    kept = _search(client, "tomatoes garden sun", min_score=cut)
    assert all(r["score"] >= cut for r in kept)
    assert results[-1]["memory"]["id"] not in _ids(kept)
    assert _ids(kept) == [r["memory"]["id"] for r in results if r["score"] >= cut]


def test_importance_breaks_a_tie(client: LambdaClient) -> None:
    low = _add(client, content="Meeting notes for project atlas", importance=0.1)
    high = _add(client, content="Meeting notes on project atlas", importance=0.9)
    assert _ids(_search(client, "project atlas meeting notes"))[:2] == [high, low]


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced',
        "tomato AND NOT (",
        "content: tomato*",
        "NEAR(tomato basil, 2)",
        "^tomato + -basil",
        "' OR 1=1; DROP TABLE memories; --",
        "🍅🌿 tomato",
        "томаты и базилик",
        "トマト",
        "",
        "   ",
        "!!! ??? ...",
        "x" * 10_000,
        " ".join(f"word{i}" for i in range(2000))[:10_000],
    ],
)
def test_hostile_queries_are_answered(
    client: LambdaClient, garden: dict[str, str], query: str
) -> None:
    for mode in ("hybrid", "lexical", "semantic"):
        reply = client.post("/v1/search", json_body={"query": query, "mode": mode})
        assert reply.status == 200, (mode, reply.body)
    count = client.get("/v1/memories", query={"include_total": "true", "limit": 1}).json()["total"]
    assert count == 5


def test_too_long_a_query_is_a_clear_422(client: LambdaClient) -> None:
    reply = client.post("/v1/search", json_body={"query": "x" * 10_001})
    assert reply.status == 422 and reply.json()["error"]["details"][0]["field"] == "query"


def test_list_filters_apply_to_search(client: LambdaClient, garden: dict[str, str]) -> None:
    assert _ids(_search(client, "tomatoes", filters={"tag": ["herbs"]})) == [garden["basil"]]
    assert _ids(_search(client, "oil change car", filters={"source": "calendar"})) == [
        garden["car"]
    ]
    assert _search(client, "oil change car", filters={"type": "fact"}) == []
    assert _ids(_search(client, "deploys tuesday", filters={"type": "fact"})) == [garden["deploy"]]


@pytest.fixture
def tagged(client: LambdaClient) -> dict[str, str]:
    rows = {
        "a": {"team": "platform", "priority": 1, "owner": {"name": "Ada"}, "note": "Urgent fix"},
        "b": {"team": "platform", "priority": 5, "owner": {"name": "Bo"}},
        "c": {"team": "data", "priority": 3, "flag": True},
        "d": {},
    }
    return {
        name: _add(client, content=f"incident report {name}", metadata=meta)
        for name, meta in rows.items()
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"team": "platform"}, {"a", "b"}),
        ({"team": {"eq": "data"}}, {"c"}),
        ({"team": {"ne": "platform"}}, {"c", "d"}),
        ({"team": {"in": ["data", "platform"]}}, {"a", "b", "c"}),
        ({"team": {"nin": ["platform"]}}, {"c", "d"}),
        ({"priority": {"gt": 1}}, {"b", "c"}),
        ({"priority": {"gte": 3, "lte": 5}}, {"b", "c"}),
        ({"priority": {"lt": 3}}, {"a"}),
        ({"owner.name": "Ada"}, {"a"}),
        ({"note": {"contains": "URGENT"}}, {"a"}),
        ({"flag": True}, {"c"}),
        ({"OR": [{"team": "data"}, {"priority": {"lt": 2}}]}, {"a", "c"}),
        ({"AND": [{"team": "platform"}, {"priority": {"gt": 2}}]}, {"b"}),
        ({"NOT": {"team": "platform"}}, {"c"}),
        ({"NOT": {"team": "platform"}, "priority": {"gte": 0}}, {"c"}),
    ],
)
def test_metadata_filter_operators(
    client: LambdaClient, tagged: dict[str, str], expression: dict[str, Any], expected: set[str]
) -> None:
    found = _ids(_search(client, "incident report", filters={"metadata": expression}, limit=20))
    assert set(found) == {tagged[name] for name in expected}


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ({"team": {"like": "x"}}, "filters.metadata.team.like"),
        ({"team": {"in": "data"}}, "filters.metadata.team.in"),
        ({"bad key!": 1}, "filters.metadata"),
        ({"AND": {"team": "x"}}, "filters.metadata.AND"),
        ({"team": {"eq": {"nested": 1}}}, "filters.metadata.team.eq"),
        ({}, "filters.metadata"),
    ],
)
def test_bad_metadata_filters_are_422_naming_the_place(
    client: LambdaClient, expression: dict[str, Any], field: str
) -> None:
    reply = client.post("/v1/search", json_body={"query": "x", "filters": {"metadata": expression}})
    assert reply.status == 422, reply.body
    assert reply.json()["error"]["details"]["field"] == field


def test_search_pages_with_a_cursor(client: LambdaClient) -> None:
    for i in range(12):
        _add(client, content=f"weekly report number {i} about revenue")
    first = client.post(
        "/v1/search", json_body={"query": "weekly revenue report", "limit": 5}
    ).json()
    assert len(first["results"]) == 5 and first["next_cursor"]
    second = client.post(
        "/v1/search",
        json_body={"query": "weekly revenue report", "limit": 5, "cursor": first["next_cursor"]},
    ).json()
    assert not set(_ids(first["results"])) & set(_ids(second["results"]))
    assert first["results"][-1]["score"] >= second["results"][0]["score"]
    other = client.post(
        "/v1/search", json_body={"query": "something else", "cursor": first["next_cursor"]}
    )
    assert other.status == 422 and other.json()["error"]["details"]["field"] == "cursor"


def test_returned_memories_count_as_accessed(
    client: LambdaClient, garden: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted off the read path: tallied by the search, written in a batch later."""
    from core.memory import access

    access.flush()
    monkeypatch.setattr(access, "_FLUSH_SECONDS", 3600.0)
    hit = _ids(_search(client, "prune roses winter", limit=1))[0]
    _search(client, "prune roses winter", limit=1)
    memory = client.get(f"/v1/memories/{hit}").json()
    assert memory["access_count"] == 0  # the reads wrote nothing
    assert access.flush() == 1
    memory = client.get(f"/v1/memories/{hit}").json()
    assert memory["access_count"] == 2 and memory["last_accessed_at"] is not None
    # A tally is written by the read that finds it due.
    monkeypatch.setattr(access, "_FLUSH_IDS", 1)
    _search(client, "prune roses winter", limit=1)
    assert client.get(f"/v1/memories/{hit}").json()["access_count"] == 3


def test_cache_follows_updates_state_changes_and_purges(client: LambdaClient) -> None:
    mid = _add(client, content="The spare key is under the blue flowerpot")
    assert _ids(_search(client, "spare key flowerpot", mode="semantic")) == [mid]
    client.patch(f"/v1/memories/{mid}", json_body={"content": "Quarterly taxes are due in April"})
    assert mid not in _ids(_search(client, "spare key flowerpot", mode="semantic"))
    assert _ids(_search(client, "quarterly taxes due", mode="semantic"))[0] == mid
    client.post(f"/v1/memories/{mid}/archive")
    assert _search(client, "quarterly taxes due", mode="semantic") == []
    assert _ids(
        _search(client, "quarterly taxes", mode="semantic", filters={"state": "archived"})
    ) == [mid]
    client.post(f"/v1/memories/{mid}/restore")
    assert _ids(_search(client, "quarterly taxes due", mode="semantic")) == [mid]
    client.post(f"/v1/memories/{mid}/purge", json_body={"confirm": True})
    assert _search(client, "quarterly taxes due", filters={"state": "all"}) == []


def test_search_never_crosses_brains_or_users(
    client: LambdaClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    _add(client, content="Alice's locker code is 4471", user_id="alice")
    _add(client, content="Bob's locker code is 9120", user_id="bob")
    other = client.as_key(other_tenant.key)
    _add(other, content="Carol's locker code is 5555")
    bob = client.as_key(tenant.new_key(user_id="bob"))
    for mode in ("hybrid", "lexical", "semantic"):
        seen = [r["memory"]["content"] for r in _search(bob, "locker code", mode=mode)]
        assert seen == ["Bob's locker code is 9120"], mode
        assert _search(bob, "locker code", mode=mode, user_id="alice") == []
        theirs = [r["memory"]["content"] for r in _search(other, "locker code", mode=mode)]
        assert theirs == ["Carol's locker code is 5555"]
        mine = {r["memory"]["content"] for r in _search(client, "locker code", mode=mode)}
        assert mine == {"Alice's locker code is 4471", "Bob's locker code is 9120"}


def test_temporal_filters_and_occurred_at(client: LambdaClient) -> None:
    old = _add(client, content="Trip to Lisbon with the team", occurred_at="2023-05-01T00:00:00Z")
    new = _add(client, content="Trip to Porto with the team", occurred_at="2026-05-01T00:00:00Z")
    assert _ids(_search(client, "team trip", filters={"occurred_before": "2024-01-01"})) == [old]
    assert _ids(_search(client, "team trip", filters={"occurred_after": "2024-01-01"})) == [new]
    both = _search(client, "team trip", explain=True)
    by_id = {r["memory"]["id"]: r["explain"]["recency"] for r in both}
    assert by_id[new] > by_id[old]


def test_context_pack_cites_packs_and_explains_omissions(
    client: LambdaClient, tenant: Tenant
) -> None:
    main = _add(client, content="The launch is scheduled for June 3rd in Berlin.")
    support = _add(client, content="Venue contract signed with the Berlin conference centre.")
    old = _add(client, type="fact", key="launch city", content="Launch city is Munich")
    _add(client, type="fact", key="launch city", content="Launch city is Berlin")
    for i in range(20):
        _add(client, content=f"Launch checklist item {i}: confirm catering and badges for Berlin")
    with tenant.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO memory_links (id, brain_id, from_id, to_id, relation, weight, "
                "created_at) VALUES ('l1', :b, :s, :m, 'supports', 1.0, 0)"
            ),
            {"b": tenant.brain_id, "s": support, "m": main},
        )
    reply = client.post(
        "/v1/context",
        json_body={
            "query": "When and where is the launch?",
            "max_tokens": 120,
            "filters": {"state": "all"},
        },
    )
    assert reply.status == 200, reply.body
    pack = reply.json()
    assert pack["tokens"] <= 120
    lines = pack["text"].splitlines()
    assert [c["n"] for c in pack["citations"]] == list(range(1, len(lines) + 1))
    assert all(line.startswith(f"[{i + 1}] ") for i, line in enumerate(lines))
    reasons = {o["reason"] for o in pack["omitted"]}
    assert "budget" in reasons
    assert {"id": old, "reason": "superseded"} in pack["omitted"]
    assert "Munich" not in pack["text"]
    roomy = client.post(
        "/v1/context", json_body={"query": "launch venue contract", "max_tokens": 4000}
    ).json()
    cited = [c["id"] for c in roomy["citations"]]
    assert main in cited and support in cited
    linked = next(c for c in roomy["citations"] if c["id"] == support)
    assert linked["via"] in (None, main)


def test_reindex_fills_missing_vectors(client: LambdaClient, tenant: Tenant) -> None:
    mid = _add(client, content="Remember to water the ficus on Fridays")
    with tenant.engine.begin() as conn:
        conn.execute(text("DELETE FROM memory_vectors WHERE brain_id = :b"), {"b": tenant.brain_id})
    assert _search(client, "water the ficus", mode="semantic") == []
    result = client.post("/v1/reindex").json()
    assert result["reindexed"] == 1 and result["remaining"] == 0
    assert _ids(_search(client, "water the ficus", mode="semantic")) == [mid]
    read_only = client.as_key(tenant.new_key(read_only=True))
    assert read_only.post("/v1/reindex").status == 403


def test_the_full_text_fast_path_ranks_as_the_scopes_own_share_does(
    client: LambdaClient, tenant: Tenant, engine: Any, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a scope holding most of the index takes the best matches of the whole index
    (fast path), and when a filter leaves too few of those, searches its own share. Either
    way the candidates are those the scope's own share gives, in the same order."""
    from core.kernel.db.engine import transaction
    from core.kernel.scope import Scope
    from core.memory.store import filter_sql
    from core.retrieval import lexical
    from core.retrieval.models import SearchFilters

    notes = [{"content": f"alpha report number {i}"} for i in range(80)]  # more than the pool
    assert client.post("/v1/memories/batch", json_body={"memories": notes}).status == 201
    _add(client, title="alpha", content="the alpha summary")
    for i in range(3):  # longer and longer: BM25 ranks them below every note
        _add(client, type="fact", key=f"k{i}", content="alpha " + "filler " * (30 + 10 * i))
    executed = _lexical_statements(monkeypatch)
    scope = Scope(brain_id=tenant.brain_id, principal="test")

    def candidates(conn: Any, filters: SearchFilters, in_scope: int) -> list[str]:
        params: dict[str, Any] = {}
        where = filter_sql(scope, filters, params, alias="m")
        executed.clear()
        found = lexical.candidates(
            conn, ["alpha"], where, params, 50, brain_id=scope.brain_id, user_id=None,
            in_scope=in_scope,
        )  # fmt: skip
        return [row[1] for row in found]

    with transaction(engine, write=False) as conn:
        for filters, expected in ((SearchFilters(), 50), (SearchFilters(type="fact"), 3)):
            whole = candidates(conn, filters, in_scope=84)  # the scope is the whole index
            ran = [*executed]
            assert len(whole) == expected
            # A scope this small searches its own share at once: the same candidates.
            assert candidates(conn, filters, in_scope=1) == whole
            if store != "sqlite":
                continue
            assert "memory_fts.rowid" in executed[-1]
            if filters.type is None:  # enough of the global best were in scope
                assert len(ran) == 2 and "LIMIT :lex_pool" in ran[-1]
            else:  # too few, and more matched than the pool held: count, then own share
                assert "count(*)" in ran[-2] and "memory_fts.rowid" in ran[-1]


def test_a_small_tenant_is_found_beside_a_large_one(
    client: LambdaClient, other_tenant: Tenant, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full-text fast path ranks the best matches of the whole index; when another
    tenant's memories fill it, the search must fall back to the tenant's own share."""
    big = client.as_key(other_tenant.key)
    items = [{"content": f"alpha report number {i}"} for i in range(260)]
    assert big.post("/v1/memories/batch", json_body={"memories": items}).status == 201
    # Long, so BM25 ranks it below every short memory of the other tenant.
    mine = _add(client, content="alpha " + " ".join(f"filler{i}" for i in range(40)))

    executed = _lexical_statements(monkeypatch)
    for mode in ("lexical", "hybrid"):
        assert _ids(_search(client, "alpha", mode=mode)) == [mine]
    if store == "sqlite":  # the fallback to the tenant's own share of the index ran
        assert any("JOIN memories m ON m.rowid = memory_fts.rowid" in sql for sql in executed)
    assert len(_search(big, "alpha report", limit=100)) == 100


def test_a_warm_cache_catches_a_vector_committed_late(
    client: LambdaClient, tenant: Tenant, engine: Any, store: str
) -> None:
    """PostgreSQL: a memory written in a transaction that commits after the cache refreshed
    carries a time before that refresh. The cache must not step past it."""
    if store != "postgres":
        pytest.skip("SQLite runs one writer at a time: what is visible is settled")
    from core.embeddings import get_embedder
    from core.kernel.config import Limits
    from core.kernel.scope import Scope
    from core.memory import store as memories
    from core.memory.models import MemoryIn
    from core.retrieval.indexing import SearchIndexer

    _add(client, content="Groceries: oat milk and bread")
    embedder = get_embedder(client.app.state.services.settings.embedder)
    scope = Scope(brain_id=tenant.brain_id, principal="test")
    with engine.connect() as late:
        writing = late.begin()
        spice = memories.create(
            late,
            scope,
            MemoryIn(content="The Zanzibar spice market"),
            Limits(),
            SearchIndexer(embedder),
        )
        before = _ids(_search(client, "Zanzibar spice market", mode="semantic"))
        assert spice["id"] not in before  # the cache is warm now, the memory not committed
        writing.commit()
    found = _search(client, "Zanzibar spice market", mode="semantic")
    assert found[0]["memory"]["id"] == spice["id"]


def test_a_warm_cache_catches_a_writer_whose_clock_is_behind(
    client: LambdaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers on other hosts disagree about the time: a vector written by one whose clock is an
    hour behind still reaches a cache that refreshed before it (and no margin of re-reading is
    needed for that: stamps follow commit order, not the writer's clock)."""
    from core.kernel import ids
    from core.retrieval import vectors

    _add(client, content="Groceries: oat milk and bread")
    _search(client, "groceries", mode="semantic")  # the cache is warm
    hour_ago = ids.now_ms() - 3_600_000
    monkeypatch.setattr(vectors, "now_ms", lambda: hour_ago)
    late = _add(client, content="The Zanzibar spice market")
    monkeypatch.undo()
    found = _search(client, "Zanzibar spice market", mode="semantic")
    assert found[0]["memory"]["id"] == late
