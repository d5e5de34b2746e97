"""API keys under the brain owner's control: /v1/keys, on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from core.kernel.config import Settings
from tests.conftest import Tenant
from tests.oauth_fixtures import Web, auth_settings


@pytest.fixture
def web(settings: Settings, engine: Engine) -> Web:
    return Web(auth_settings(settings))


@pytest.fixture
def owner(web: Web) -> dict[str, Any]:
    return dict(web.signup())


def test_an_owner_creates_lists_and_revokes_keys(web: Web, owner: dict[str, Any]) -> None:
    token = owner["access_token"]
    made = web.call(
        "POST",
        "/v1/keys",
        json_body={"name": "agent", "user_id": "alice", "read_only": False},
        token=token,
    )
    assert made.status == 201, made.body
    key = made.json()
    assert key["key"].startswith(key["prefix"]) and key["prefix"].startswith("mnemo_")
    assert key["user_id"] == "alice" and key["name"] == "agent"

    # The key works, scoped to its user.
    saved = web.call("POST", "/v1/memories", json_body={"content": "alice's"}, token=key["key"])
    assert saved.status == 201 and saved.json()["user_id"] == "alice"
    seen = web.call("GET", "/v1/memories", token=token).json()["results"]
    assert [m["content"] for m in seen] == ["alice's"]

    listed = web.call("GET", "/v1/keys", token=token)
    assert listed.status == 200
    rows = listed.json()["results"]
    assert [r["id"] for r in rows] == [key["id"]]
    assert rows[0]["prefix"] == key["prefix"] and rows[0]["name"] == "agent"
    assert rows[0]["last_used_at"] is not None
    assert key["key"] not in listed.body  # the secret is shown once, at creation

    revoked = web.call("DELETE", f"/v1/keys/{key['id']}", token=token)
    assert revoked.status == 200
    assert web.call("GET", "/v1/memories", token=key["key"]).status == 401
    assert web.call("GET", "/v1/keys", token=token).json()["results"] == []
    with_revoked = web.call("GET", "/v1/keys", query={"include_revoked": "true"}, token=token)
    assert with_revoked.json()["results"][0]["revoked_at"] is not None
    assert web.call("DELETE", f"/v1/keys/{key['id']}", token=token).status == 404


def test_a_read_only_key_reads_but_cannot_write(web: Web, owner: dict[str, Any]) -> None:
    made = web.call(
        "POST", "/v1/keys", json_body={"read_only": True}, token=owner["access_token"]
    ).json()
    assert made["read_only"] is True
    assert web.call("GET", "/v1/memories", token=made["key"]).status == 200
    refused = web.call("POST", "/v1/memories", json_body={"content": "x"}, token=made["key"])
    assert refused.status == 403 and refused.error_code == "read_only_key"


def test_another_brains_key_cannot_be_revoked(
    web: Web, owner: dict[str, Any], tenant: Tenant
) -> None:
    other = web.signup()
    theirs = web.call(
        "POST", "/v1/keys", json_body={"name": "theirs"}, token=other["access_token"]
    ).json()
    reply = web.call("DELETE", f"/v1/keys/{theirs['id']}", token=owner["access_token"])
    assert reply.status == 404
    assert web.call("GET", "/v1/memories", token=theirs["key"]).status == 200


def test_api_keys_cannot_manage_keys(web: Web, owner: dict[str, Any]) -> None:
    # A key that could mint keys would survive its own revocation through its offspring.
    key = web.call("POST", "/v1/keys", json_body={}, token=owner["access_token"]).json()["key"]
    reply = web.call("POST", "/v1/keys", json_body={}, token=key)
    assert reply.status == 403 and reply.error_code == "account_session_required"
    assert web.call("GET", "/v1/keys", token=key).status == 403


def test_single_key_mode_manages_the_default_brains_keys(
    settings: Settings, engine: Engine
) -> None:
    env_key = "env-key-for-tests-0123456789"
    web = Web(auth_settings(settings).with_(api_key=env_key, default_brain="env-default"))
    made = web.call("POST", "/v1/keys", json_body={"name": "from env"}, token=env_key)
    assert made.status == 201
    key = made.json()["key"]
    web.call("POST", "/v1/memories", json_body={"content": "shared"}, token=key)
    seen = web.call("GET", "/v1/memories", token=env_key).json()["results"]
    assert "shared" in [m["content"] for m in seen]
    assert any(
        r["name"] == "from env"
        for r in web.call("GET", "/v1/keys", token=env_key).json()["results"]
    )


def test_key_listings_and_active_keys_are_bounded(
    web: Web, owner: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A brain holds at most MAX_ACTIVE_KEYS active keys (409 too_many_keys past it, until one
    is revoked), and a listing with the revoked shows only the REVOKED_SHOWN newest of them."""
    from core.identity import keys

    monkeypatch.setattr(keys, "MAX_ACTIVE_KEYS", 3)
    monkeypatch.setattr(keys, "REVOKED_SHOWN", 2)
    token = owner["access_token"]

    def create(name: str) -> Any:
        return web.call("POST", "/v1/keys", json_body={"name": name}, token=token)

    made = [create(f"k{i}").json()["id"] for i in range(3)]
    refused = create("one too many")
    assert refused.status == 409 and refused.json()["error"]["code"] == "too_many_keys"
    for key_id in made:
        assert web.call("DELETE", f"/v1/keys/{key_id}", token=token).status == 200
    fresh = create("after revoking")
    assert fresh.status == 201
    listed = web.call("GET", "/v1/keys", query={"include_revoked": "true"}, token=token)
    rows = listed.json()["results"]
    # The active key and the two most recently revoked, oldest first.
    assert [r["id"] for r in rows] == [made[1], made[2], fresh.json()["id"]]
    assert [r["id"] for r in web.call("GET", "/v1/keys", token=token).json()["results"]] == [
        fresh.json()["id"]
    ]
