"""The memory's own columns in a filter expression ("$user_id", "$tag", ...), on both stores:
what mem0's v2 filters are translated into, and open to POST /v1/search's callers too."""

from __future__ import annotations

from typing import Any

import pytest

from tests.lambda_client import LambdaClient

MEMORIES = [
    {"content": "tea in Lyon", "user_id": "ana", "tags": ["drink"], "metadata": {"n": 1}},
    {"content": "tea in Kyoto", "user_id": "bo", "agent_id": "guide", "tags": ["drink", "trip"]},
    {"content": "tea without a user", "metadata": {"n": 3}},
]


@pytest.fixture
def seeded(client: LambdaClient) -> LambdaClient:
    reply = client.post("/v1/memories/batch", {"memories": MEMORIES})
    assert reply.status == 201, reply.body
    return client


def _found(client: LambdaClient, expression: dict[str, Any]) -> list[str]:
    reply = client.post("/v1/search", {"query": "tea", "filters": {"metadata": expression}})
    assert reply.status == 200, reply.body
    return sorted(hit["memory"]["content"] for hit in reply.json()["results"])


CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({"$user_id": "ana"}, ["tea in Lyon"]),
    ({"$user_id": {"in": ["ana", "bo"]}}, ["tea in Kyoto", "tea in Lyon"]),
    ({"$user_id": {"exists": False}}, ["tea without a user"]),
    ({"$user_id": {"nin": ["ana"]}}, ["tea in Kyoto", "tea without a user"]),
    ({"OR": [{"$user_id": "ana"}, {"$agent_id": "guide"}]}, ["tea in Kyoto", "tea in Lyon"]),
    ({"$tag": "trip"}, ["tea in Kyoto"]),
    ({"$tag": {"ne": "drink"}}, ["tea without a user"]),
    ({"$tag": {"in": ["TRIP", "nothing"]}}, ["tea in Kyoto"]),
    ({"$content": {"contains": "KYOTO"}}, ["tea in Kyoto"]),
    ({"$created_at": {"gte": "2000-01-01"}, "n": {"gte": 2}}, ["tea without a user"]),
    ({"$created_at": {"lt": 946684800}}, []),
    ({"n": {"exists": True}}, ["tea in Lyon", "tea without a user"]),
]


def test_columns_filter_search(seeded: LambdaClient) -> None:
    # One seeded brain for every case: a fresh one per case would cost a second each.
    for expression, expected in CASES:
        assert _found(seeded, expression) == expected, expression


BAD: list[tuple[dict[str, Any], str]] = [
    ({"$password": "x"}, "not a memory column"),
    ({"$created_at": {"gte": "yesterday"}}, "not an ISO 8601 time"),
    ({"$user_id": {"like": "a%"}}, "unknown operator"),
    ({"$tag": {"gt": "a"}}, "$tag takes"),
    ({"$user_id": 3}, "takes a string"),
]


def test_bad_column_filters_say_what_to_fix(client: LambdaClient) -> None:
    for expression, message in BAD:
        reply = client.post("/v1/search", {"query": "tea", "filters": {"metadata": expression}})
        assert reply.status == 422 and reply.error_code == "invalid_input", expression
        assert message in reply.json()["error"]["message"]


def test_another_brains_tags_never_match(
    seeded: LambdaClient, other_tenant: Any, settings: Any
) -> None:
    other = LambdaClient(settings, key=other_tenant.key)
    assert other.post("/v1/memories", {"content": "tea", "tags": ["secret"]}).status == 201
    assert _found(seeded, {"$tag": "secret"}) == []
