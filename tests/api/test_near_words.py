"""Typos in queries: a word the index does not hold is matched as the indexed words one edit
away, on both stores, within a tenant, and only for words that need it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import Engine

from core.kernel.config import Settings
from core.retrieval import near_words
from core.retrieval.near_words import correct
from tests.conftest import Tenant, make_tenant
from tests.lambda_client import LambdaClient
from tests.statements import statements_sent

MEMORIES = [
    "Ana is allergic to peanuts and carries an EpiPen.",
    "Ana drives a blue Toyota car to work.",
    "The team meets every Tuesday to plan the sprint.",
    "Ana's sister teaches piano in Lisbon.",
]


def _load(client: LambdaClient) -> None:
    reply = client.post("/v1/memories/batch", {"memories": [{"content": c} for c in MEMORIES]})
    assert reply.status == 201, reply.body


def _found(client: LambdaClient, query: str, mode: str = "lexical") -> list[str]:
    reply = client.post("/v1/search", {"query": query, "mode": mode, "limit": 3})
    assert reply.status == 200, reply.body
    return [r["memory"]["content"] for r in reply.json()["results"]]


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_a_misspelt_query_finds_what_it_meant(client: LambdaClient, mode: str) -> None:
    _load(client)
    assert _found(client, "alergic to penauts", mode)[0] == MEMORIES[0]
    assert _found(client, "teh tuesdya sprnt", mode)[0] == MEMORIES[2]


def test_near_words_can_be_turned_off(settings: Settings, tenant: Tenant) -> None:
    ranking = replace(settings.ranking, near_words=False)
    client = LambdaClient(replace(settings, ranking=ranking), key=tenant.key)
    _load(client)
    assert _found(client, "alergic to penauts") == []


def test_known_words_are_not_corrected(
    engine: Engine, tenant: Tenant, client: LambdaClient
) -> None:
    _load(client)
    words = ["peanuts", "carries", "tuesday", "cars", "penauts"]
    with engine.connect() as conn:
        found = correct(conn, words, brain_id=tenant.brain_id)
    # Every word but the typo is in the index ("cars" stems to "car"): only "penauts" changes.
    assert found == {"penauts": ["peanuts"]}


def test_short_and_foreign_words_are_left_alone(
    engine: Engine, tenant: Tenant, client: LambdaClient
) -> None:
    _load(client)
    with engine.connect() as conn:
        assert correct(conn, ["cra", "ana", "東京", "p3anuts"], brain_id=tenant.brain_id) == {}


def test_at_most_three_words_are_corrected(
    engine: Engine, tenant: Tenant, client: LambdaClient
) -> None:
    _load(client)
    words = ["penauts", "alergic", "tuesdya", "sprnit", "lisbn"]
    with engine.connect() as conn:
        found = correct(conn, words, brain_id=tenant.brain_id)
    assert list(found) == ["penauts", "alergic", "tuesdya"]


def test_another_tenants_words_never_bring_back_its_memories(
    engine: Engine, settings: Settings, client: LambdaClient
) -> None:
    _load(client)
    stranger = make_tenant(engine)
    other = LambdaClient(settings, key=stranger.key)
    reply = other.post("/v1/memories", {"content": "Bo keeps a jar of cashews at his desk."})
    assert reply.status == 201, reply.body
    # "peanuts" is in the first tenant's memories only: the stranger's typo finds nothing.
    assert _found(other, "penauts") == []
    assert _found(other, "cashwes")[0] == "Bo keeps a jar of cashews at his desk."


def test_a_word_saved_after_it_was_corrected_is_found_as_itself(client: LambdaClient) -> None:
    _load(client)
    assert _found(client, "pesnuts")[0] == MEMORIES[0]  # corrected, and remembered a while
    reply = client.post("/v1/memories", {"content": "Pesnuts is the name of Ana's hamster."})
    assert reply.status == 201, reply.body
    assert _found(client, "pesnuts")[0] == "Pesnuts is the name of Ana's hamster."


def test_corrections_come_from_the_callers_brain_only(
    engine: Engine, settings: Settings, client: LambdaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether a typo is corrected must not reveal another tenant's words. A tiny read budget
    # sends SQLite's lookups of words common elsewhere through the brain's own scope word.
    monkeypatch.setattr(near_words, "_POSTINGS_READ", 2)
    _load(client)
    for content in ("Peanuts again", "More peanuts"):
        assert client.post("/v1/memories", {"content": content}).status == 201
    stranger = make_tenant(engine)
    with engine.connect() as conn:
        assert correct(conn, ["penauts", "alergic"], brain_id=stranger.brain_id) == {}
    other = LambdaClient(settings, key=stranger.key)
    reply = other.post("/v1/memories", {"content": "Bo shares his peanuts and cashews."})
    assert reply.status == 201, reply.body
    with engine.connect() as conn:
        # Its one memory comes after the first tenant's three in the index. (Other typos than
        # above: a word's near words are remembered a while.)
        found = correct(conn, ["paenuts", "cashwes"], brain_id=stranger.brain_id)
    assert "peanuts" in found["paenuts"] and "cashews" in found["cashwes"]


def test_which_words_are_held_comes_with_the_candidates(
    engine: Engine, client: LambdaClient, store: str
) -> None:
    """On PostgreSQL the question of which query words the brain holds goes in the full-text
    statement (a round trip each saved): a query of known words reads the index once; a typo
    then looks up its near words and reads the candidates again, with the same answers as a
    lookup of its own. SQLite asks in a statement of its own: it costs no round trip there."""
    if store == "sqlite":
        pytest.skip("SQLite's statements cost no round trip: the lookup stays its own")
    _load(client)
    with statements_sent(engine) as sent:
        assert _found(client, "allergic peanuts")[0] == MEMORIES[0]
    lookups = [s for s in sent.statements if s.startswith("SELECT c.w")]
    fulltext = [s for s in sent.statements if "plainto_tsquery" in s]
    assert lookups == [] and len(fulltext) == 1
    with statements_sent(engine) as sent:
        assert _found(client, "alergic to penauts")[0] == MEMORIES[0]
    lookups = [s for s in sent.statements if s.startswith("SELECT c.w")]
    fulltext = [s for s in sent.statements if "WITH w AS" in s]
    assert len(lookups) == 1 and len(fulltext) == 2  # the near words, then the candidates
