"""Hostile input answers a 4xx in the error shape on both stores, never a 500: each case is one
an attacker's probe found (issue 16), and each stands for its class (every cursor, every JSON
body, every number that reaches SQL)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from core.kernel.config import Settings
from core.memory.models import MAX_FILTER_TAGS
from handlers.http import MAX_JSON_DEPTH
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient, Reply


def _assert_4xx(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def _cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def test_patch_with_null_tags_is_422_and_changes_nothing(client: LambdaClient) -> None:
    made = client.post("/v1/memories", {"content": "tagged", "tags": ["keep"]}).json()
    error = _assert_4xx(client.patch(f"/v1/memories/{made['id']}", {"tags": None}), 422)
    assert error["details"] == {"field": "tags"}
    assert "[]" in error["message"]  # says how to clear them
    assert client.get(f"/v1/memories/{made['id']}").json()["tags"] == ["keep"]
    cleared = client.patch(f"/v1/memories/{made['id']}", {"tags": []})
    assert cleared.status == 200 and cleared.json()["tags"] == []


# A keyset position is {"t": ms, "i": id}; a search's {"o": offset, "q": key}. Each tampering
# below was a 500 on one store or the other.
_TAMPERED = [
    {"t": {}, "i": "x"},
    {"t": [], "i": "x"},
    {"t": True, "i": "x"},
    {"t": 1e308, "i": "x"},
    {"t": "not a number", "i": "x"},
    {"t": 10**30, "i": "x"},
    {"t": 1, "i": {"x": 1}},
    {"t": 1},
    [1, 2],
]


def _list_paths(client: LambdaClient, settings: Settings) -> list[str]:
    memory = client.post("/v1/memories", {"content": "cursor probe", "user_id": "u1"}).json()
    return [
        "/v1/memories",
        "/v1/conflicts",
        f"/v1/memories/{memory['id']}/links",
        "/v1/trust",
        "/v1/maintenance/runs",
        "/v1/users/u1/memories",
        "/v1/changelog",
        "/v1/snapshots",
    ]


def test_a_tampered_cursor_is_422_on_every_list(client: LambdaClient, settings: Settings) -> None:
    for path in _list_paths(client, settings):
        for position in _TAMPERED:
            reply = client.get(path, query={"cursor": _cursor(position)})
            _assert_4xx(reply, 422, "invalid_input")
    for position in [*_TAMPERED, {"o": 10**30, "q": "x"}, {"o": -5, "q": "x"}, {"o": 1.5}]:
        reply = client.post("/v1/search", {"query": "probe", "cursor": _cursor(position)})
        _assert_4xx(reply, 422, "invalid_input")
    for position in [{"a": 10**30}, {"a": {}}, {"b": "x"}]:
        reply = client.post("/v1/consolidate", {"cursor": _cursor(position)})
        _assert_4xx(reply, 422, "invalid_input")


def test_a_real_cursor_still_pages(client: LambdaClient) -> None:
    for i in range(3):
        client.post("/v1/memories", {"content": f"page {i}"})
    first = client.get("/v1/memories", query={"limit": 2}).json()
    rest = client.get("/v1/memories", query={"limit": 2, "cursor": first["next_cursor"]})
    assert rest.status == 200 and len(rest.json()["results"]) == 1


def _deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/memories", '{"content": "x", "extra": ' + _deep_array(1000) + "}"),
        ("/v1/memories", '{"content": "x", "metadata": ' + _deep_object(1000) + "}"),
        ("/v1/search", '{"query": "x", "filters": {"metadata": ' + _deep_object(1000) + "}}"),
        ("/v1/search", '{"query": "x", "filters": {"metadata": ' + _deep_object(70) + "}}"),
        ("/v1/memories/batch", '{"memories": [' + _deep_object(100_000) + "]}"),
    ],
)
def test_deeply_nested_json_is_400(client: LambdaClient, path: str, body: str) -> None:
    reply = client.post(path, body=body, headers={"content-type": "application/json"})
    error = _assert_4xx(reply, 400, "json_too_deep")
    assert error["details"] == {"limit": MAX_JSON_DEPTH}


def test_nesting_within_the_limit_is_stored(client: LambdaClient) -> None:
    metadata = json.loads(_deep_object(MAX_JSON_DEPTH - 1))
    made = client.post("/v1/memories", {"content": "nested", "metadata": metadata})
    assert made.status == 201, made.body
    assert made.json()["metadata"] == metadata


def test_deep_json_is_refused_by_mcp_and_openmemory_too(client: LambdaClient) -> None:
    deep = '{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": ' + _deep_object(1000) + "}"
    reply = client.post(
        "/mcp",
        body=deep,
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    assert reply.status == 400 and reply.json()["error"]["code"] == -32700
    om = client.post(
        "/memory/add",
        body='{"content": "x", "metadata": ' + _deep_object(1000) + "}",
        headers={"content-type": "application/json"},
    )
    assert om.status == 400 and om.json()["err"] == "malformed_json"


def test_a_huge_in_filter_is_422_before_any_sql(client: LambdaClient) -> None:
    client.post("/v1/memories", {"content": "filtered", "metadata": {"n": 5}})
    reply = client.post(
        "/v1/search",
        {"query": "filtered", "filters": {"metadata": {"n": {"in": list(range(50_000))}}}},
    )
    error = _assert_4xx(reply, 422, "filter_too_large")
    assert error["details"]["limit"] == 100
    within = client.post(
        "/v1/search", {"query": "filtered", "filters": {"metadata": {"n": {"in": [4, 5, 6]}}}}
    )
    assert [h["memory"]["metadata"] for h in within.json()["results"]] == [{"n": 5}]


def test_a_tag_filter_past_the_limit_is_422(client: LambdaClient) -> None:
    tags = [f"t{i}" for i in range(MAX_FILTER_TAGS + 1)]
    for path in ("/v1/search", "/v1/context"):
        reply = client.post(path, {"query": "x", "filters": {"tag": tags}})
        _assert_4xx(reply, 422, "invalid_input")
    listed = client.get("/v1/memories", query={"tag": ",".join(tags)})
    _assert_4xx(listed, 422, "invalid_input")
    fine = client.post("/v1/search", {"query": "x", "filters": {"tag": tags[:MAX_FILTER_TAGS]}})
    assert fine.status == 200


@pytest.mark.parametrize(
    "condition",
    [{"gt": 1e308}, {"lt": -1e308}, {"gt": 10**30}, {"eq": -(10**30)}, {"in": [1, 10**19]}],
)
def test_extreme_numbers_in_a_filter_are_answered(
    client: LambdaClient, condition: dict[str, Any]
) -> None:
    client.post("/v1/memories", {"content": "numbers", "metadata": {"n": 5}})
    reply = client.post(
        "/v1/search", {"query": "numbers", "filters": {"metadata": {"n": condition}}}
    )
    if any(isinstance(v, int) for v in condition.values()) or "in" in condition:
        _assert_4xx(reply, 422, "invalid_input")
    else:  # a float that large is a fine bound: nothing is past it
        assert reply.status == 200, reply.body
        assert reply.json()["results"] == []


def test_a_number_too_large_for_a_double_is_400(client: LambdaClient) -> None:
    reply = client.post(
        "/v1/memories",
        body='{"content": "x", "metadata": {"n": 1e400}}',
        headers={"content-type": "application/json"},
    )
    _assert_4xx(reply, 400, "malformed_json")


@pytest.mark.parametrize("param", ["u", "l"])
def test_openmemory_offsets_past_64_bits_are_400(client: LambdaClient, param: str) -> None:
    reply = client.get("/users/h/memories", query={param: "100000000000000000000"})
    assert reply.status == 400
    assert reply.json()["err"] == "invalid_pagination"
    assert client.get("/users/h/memories", query={param: "5"}).status == 200


def test_a_watch_url_with_an_oversized_host_label_is_422(
    settings: Settings, tenant: Tenant
) -> None:
    owner_key = f"owner-{uuid.uuid4().hex}"
    owner = LambdaClient(
        settings.with_(api_key=owner_key, default_brain=f"w-{uuid.uuid4().hex[:10]}"),
        key=owner_key,
    )
    for host in ("a" * 300 + ".example.com", "x." * 130 + "com", "a..b.example"):
        reply = owner.post("/v1/watches", {"name": "w", "webhook_url": f"https://{host}/hook"})
        error = _assert_4xx(reply, 422, "unsafe_webhook_url")
        assert "host name" in error["message"]
    # A well-formed public address still works, and its deliveries list refuses bad cursors.
    made = owner.post("/v1/watches", {"name": "w", "webhook_url": "https://93.184.216.34/hook"})
    assert made.status == 201, made.body
    path = f"/v1/watches/{made.json()['id']}/deliveries"
    for position in _TAMPERED:
        _assert_4xx(owner.get(path, query={"cursor": _cursor(position)}), 422, "invalid_input")
    owner.delete(f"/v1/watches/{made.json()['id']}")


# Found in review: the column and tag filters, and times given as epoch seconds, had no bound.
@pytest.mark.parametrize(
    "expression",
    [
        {"$user_id": {"in": [f"u{i}" for i in range(5_000)]}},
        {"$tag": {"nin": [f"t{i}" for i in range(5_000)]}},
    ],
)
def test_a_long_column_or_tag_list_is_422(client: LambdaClient, expression: Any) -> None:
    reply = client.post("/v1/search", {"query": "x", "filters": {"metadata": expression}})
    _assert_4xx(reply, 422, "filter_too_large")


@pytest.mark.parametrize("moment", [1e300, 1e17, -1e300])
def test_a_time_out_of_range_is_422(client: LambdaClient, moment: float) -> None:
    filters = {"metadata": {"$created_at": {"gt": moment}}}
    _assert_4xx(client.post("/v1/search", {"query": "x", "filters": filters}), 422)
    conversation = {"messages": [{"role": "user", "content": "hi"}], "timestamp": moment}
    _assert_4xx(client.post("/v1/memories", conversation), 422)
