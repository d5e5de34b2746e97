"""The HTTP surface: one error shape, the right status for each kind of bad input, auth."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from core.kernel.config import Settings
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient, http_event


def _assert_error(reply: object, status: int, code: str) -> None:
    from tests.lambda_client import Reply

    assert isinstance(reply, Reply)
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "details" in body["error"]
    assert "Traceback" not in reply.body


def test_malformed_json_is_400(client: LambdaClient) -> None:
    reply = client.post(
        "/v1/memories", body="{not json", headers={"content-type": "application/json"}
    )
    _assert_error(reply, 400, "malformed_json")


def test_nan_and_infinity_are_malformed_json_and_store_nothing(client: LambdaClient) -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        reply = client.post(
            "/v1/memories",
            body=f'{{"content": "x", "metadata": {{"a": {constant}}}}}',
            headers={"content-type": "application/json"},
        )
        _assert_error(reply, 400, "malformed_json")
    listed = client.get("/v1/memories")
    assert listed.status == 200 and listed.json()["results"] == []


def test_nul_characters_are_400_and_store_nothing(client: LambdaClient) -> None:
    """PostgreSQL text cannot hold NUL: in an id, a filter or a body it is refused up front,
    on both stores alike, instead of failing in SQL."""
    for path, query in (("/v1/memories/%00", None), ("/v1/memories", {"tag": "a\x00b"})):
        _assert_error(client.get(path, query=query), 400, "invalid_character")
    for body in ('{"content": "a\\u0000b"}', '{"content": "x", "metadata": {"k\\u0000": 1}}'):
        reply = client.post("/v1/memories", body=body, headers={"content-type": "application/json"})
        _assert_error(reply, 400, "invalid_character")
    # An escaped backslash before "u0000" is text, not NUL.
    reply = client.post(
        "/v1/memories",
        body='{"content": "C:\\\\u0000"}',
        headers={"content-type": "application/json"},
    )
    assert reply.status == 201 and reply.json()["content"] == "C:\\u0000"
    assert len(client.get("/v1/memories").json()["results"]) == 1


def test_wrong_content_type_is_415(client: LambdaClient) -> None:
    reply = client.post("/v1/memories", body="content=x", headers={"content-type": "text/plain"})
    _assert_error(reply, 415, "unsupported_media_type")


def test_body_that_is_not_an_object_is_422(client: LambdaClient) -> None:
    _assert_error(client.post("/v1/memories", json_body=[1, 2]), 422, "invalid_input")


def test_oversized_body_is_413(settings: Settings, tenant: Tenant) -> None:
    small = LambdaClient(settings.with_(max_body_bytes=1000), key=tenant.key)
    reply = small.post("/v1/memories", json_body={"content": "x" * 2000})
    _assert_error(reply, 413, "body_too_large")
    assert reply.json()["error"]["details"] == {"limit": 1000}


def test_oversized_body_without_content_length_is_413(settings: Settings, tenant: Tenant) -> None:
    small = LambdaClient(settings.with_(max_body_bytes=1000), key=tenant.key)
    event = http_event(
        "POST",
        "/v1/memories",
        headers={"content-type": "application/json", "authorization": f"Bearer {tenant.key}"},
        body='{"content": "' + "x" * 2000 + '"}',
    )
    del event["headers"]["content-length"]
    _assert_error(small.invoke(event), 413, "body_too_large")


def test_unknown_route_is_404_and_wrong_method_is_405(client: LambdaClient) -> None:
    _assert_error(client.get("/v2/nothing"), 404, "not_found")
    _assert_error(client.request("PUT", "/v1/memories"), 405, "method_not_allowed")
    _assert_error(client.request("POST", "/health"), 405, "method_not_allowed")


def test_validation_errors_name_the_field(client: LambdaClient) -> None:
    reply = client.post("/v1/memories", json_body={"content": "x", "importance": 2})
    _assert_error(reply, 422, "invalid_input")
    assert reply.json()["error"]["details"][0]["field"] == "importance"
    reply = client.post("/v1/memories", json_body={"content": "x", "colour": "red"})
    _assert_error(reply, 422, "invalid_input")
    assert reply.json()["error"]["details"][0]["field"] == "colour"
    reply = client.get("/v1/memories", query={"colour": "red"})
    _assert_error(reply, 422, "invalid_input")


def test_missing_or_wrong_key_is_401_with_bearer_challenge(client: LambdaClient) -> None:
    for reply, code in [
        (client.as_key(None).get("/v1/memories"), "missing_credentials"),
        (client.as_key("mnemo_nope_nope").get("/v1/memories"), "invalid_key"),
        (client.as_key("").get("/v1/memories"), "missing_credentials"),
        (
            client.as_key(None).get(
                "/v1/memories", headers={"authorization": "Basic Zm9vOmJhcg=="}
            ),
            "missing_credentials",
        ),
    ]:
        _assert_error(reply, 401, code)
        challenge = reply.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="mnemo"')
        # RFC 6750 section 3.1: the error is named only when a credential was sent.
        assert ('error="invalid_token"' in challenge) == (code == "invalid_key"), challenge


def test_a_revoked_key_stops_working(client: LambdaClient, tenant: Tenant) -> None:
    from core.identity.keys import find_key, revoke_key
    from core.kernel.db.engine import transaction

    key = tenant.new_key()
    assert client.as_key(key).get("/v1/memories").status == 200
    with transaction(tenant.engine) as conn:
        match = find_key(conn, key)
        assert match is not None
        assert revoke_key(conn, tenant.brain_id, match.key_id)
    _assert_error(client.as_key(key).get("/v1/memories"), 401, "invalid_key")


def test_single_key_mode_maps_to_the_default_brain(settings: Settings) -> None:
    single = LambdaClient(settings.with_(api_key="s3cret-single-key"), key="s3cret-single-key")
    created = single.post("/v1/memories", json_body={"content": "single key mode works"})
    assert created.status == 201
    assert single.get(f"/v1/memories/{created.json()['id']}").status == 200
    _assert_error(single.as_key("s3cret-single-kez").get("/v1/memories"), 401, "invalid_key")


def test_health_needs_no_key(client: LambdaClient) -> None:
    assert client.as_key(None).get("/health").status == 200


def test_request_id_is_echoed_or_made(client: LambdaClient) -> None:
    assert client.get("/health", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    assert len(client.get("/health").headers["x-request-id"]) >= 16


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_openapi_is_valid_3_1_and_covers_the_routes(client: LambdaClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    assert {"/health", "/v1/memories", "/v1/memories/{id}", "/v1/facts/{key}"} <= set(spec["paths"])
    create = spec["paths"]["/v1/memories"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    # A memory, or a conversation to make memories from.
    assert body.endswith("/MemoryOrConversation")
    either = spec["components"]["schemas"]["MemoryOrConversation"]["anyOf"]
    assert {s["$ref"].rsplit("/", 1)[1] for s in either} == {"MemoryIn", "Conversation"}
    assert "content" in spec["components"]["schemas"]["MemoryIn"]["required"]
    assert create["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Error"
    )


def test_an_unexpected_error_is_a_500_without_a_stack_trace(
    client: LambdaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.memory import store as memories

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(memories, "get", boom)
    reply = client.get("/v1/memories/whatever")
    _assert_error(reply, 500, "internal_error")
    assert "secret internals" not in reply.body
