"""Brains and memberships through /v1/brains and /auth/session/brain, on both stores: roles
enforced (members read and write memories, owners manage), the last owner kept, other tenants'
brains invisible."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from tests.conftest import Tenant
from tests.oauth_fixtures import Web, auth_settings, new_email


@pytest.fixture
def web(settings: Settings, engine: Engine) -> Web:
    return Web(auth_settings(settings))


@pytest.fixture
def owner(web: Web) -> dict[str, Any]:
    return dict(web.signup(brain_name="Team brain"))


def _add(web: Web, owner: dict[str, Any], email: str, role: str = "member") -> Any:
    return web.call(
        "POST",
        f"/v1/brains/{owner['brain']['id']}/members",
        json_body={"email": email, "role": role},
        token=owner["access_token"],
    )


@pytest.fixture
def member(web: Web, owner: dict[str, Any]) -> dict[str, Any]:
    """A second account, added to the owner's brain as a member and switched onto it."""
    email = new_email()
    body = dict(web.signup(email))
    assert _add(web, owner, email).status == 201
    switched = web.call(
        "POST",
        "/auth/session/brain",
        json_body={"brain_id": owner["brain"]["id"]},
        token=body["access_token"],
    )
    assert switched.status == 200, switched.body
    return body


def test_create_list_get_rename(web: Web, owner: dict[str, Any]) -> None:
    token = owner["access_token"]
    made = web.call("POST", "/v1/brains", json_body={"name": "Side project"}, token=token)
    assert made.status == 201
    brain = made.json()
    assert brain["role"] == "owner" and brain["slug"].startswith("side-project-")
    listed = web.call("GET", "/v1/brains", token=token).json()["results"]
    assert [b["name"] for b in listed] == ["Team brain", "Side project"]
    renamed = web.call(
        "PATCH", f"/v1/brains/{brain['id']}", json_body={"name": "Renamed"}, token=token
    )
    assert renamed.status == 200 and renamed.json()["name"] == "Renamed"
    assert web.call("GET", f"/v1/brains/{brain['id']}", token=token).json()["name"] == "Renamed"


def test_a_chosen_slug_must_be_free_and_valid(web: Web, owner: dict[str, Any]) -> None:
    token = owner["access_token"]
    slug = f"s-{new_email()[5:15]}"
    assert (
        web.call("POST", "/v1/brains", json_body={"name": "A", "slug": slug}, token=token).status
        == 201
    )
    taken = web.call("POST", "/v1/brains", json_body={"name": "B", "slug": slug}, token=token)
    assert taken.status == 409 and taken.error_code == "slug_taken"
    bad = web.call("POST", "/v1/brains", json_body={"name": "C", "slug": "Not OK!"}, token=token)
    assert bad.status == 422


def test_delete_needs_the_slug_as_confirmation_and_takes_everything(
    web: Web, owner: dict[str, Any], engine: Engine
) -> None:
    token = owner["access_token"]
    brain = web.call("POST", "/v1/brains", json_body={"name": "Doomed"}, token=token).json()
    web.call("POST", "/auth/session/brain", json_body={"brain_id": brain["id"]}, token=token)
    saved = web.call("POST", "/v1/memories", json_body={"content": "to be erased"}, token=token)
    assert saved.status == 201
    key = web.call("POST", "/v1/keys", json_body={"name": "k"}, token=token).json()["key"]

    unconfirmed = web.call(
        "DELETE", f"/v1/brains/{brain['id']}", json_body={"confirm": "yes"}, token=token
    )
    assert unconfirmed.status == 422 and unconfirmed.error_code == "confirmation_required"
    assert web.call("DELETE", f"/v1/brains/{brain['id']}", token=token).status == 415

    gone = web.call(
        "DELETE", f"/v1/brains/{brain['id']}", json_body={"confirm": brain["slug"]}, token=token
    )
    assert gone.status == 200 and gone.json() == {"id": brain["id"], "deleted": True}
    assert web.call("GET", f"/v1/brains/{brain['id']}", token=token).status == 404
    assert web.call("GET", "/v1/memories", token=key).status == 401
    with transaction(engine, write=False) as conn:
        left = conn.execute(
            text("SELECT count(*) FROM memories WHERE brain_id = :b"), {"b": brain["id"]}
        ).scalar()
    assert left == 0
    # The session survives without an active brain, and can switch to another one.
    me = web.call("GET", "/auth/me", token=token)
    assert me.status == 200 and me.json()["brain"] is None
    no_brain = web.call("GET", "/v1/memories", token=token)
    assert no_brain.status == 403 and no_brain.error_code == "no_active_brain"
    back = web.call(
        "POST", "/auth/session/brain", json_body={"brain_id": owner["brain"]["id"]}, token=token
    )
    assert back.status == 200
    assert web.call("GET", "/v1/memories", token=token).status == 200


def test_a_member_reads_and_writes_memories(
    web: Web, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    token = member["access_token"]
    saved = web.call("POST", "/v1/memories", json_body={"content": "from a member"}, token=token)
    assert saved.status == 201
    seen = web.call("GET", "/v1/memories", token=owner["access_token"]).json()["results"]
    assert [m["content"] for m in seen] == ["from a member"]
    listed = web.call("GET", "/v1/brains", token=token).json()["results"]
    assert {b["role"] for b in listed if b["id"] == owner["brain"]["id"]} == {"member"}


def test_a_member_cannot_do_owner_only_operations(
    web: Web, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    token = member["access_token"]
    brain = owner["brain"]["id"]
    attempts = [
        ("PATCH", f"/v1/brains/{brain}", {"name": "mine now"}),
        ("DELETE", f"/v1/brains/{brain}", {"confirm": owner["brain"]["slug"]}),
        ("POST", f"/v1/brains/{brain}/members", {"email": new_email(), "role": "member"}),
        ("PATCH", f"/v1/brains/{brain}/members/{member['account']['id']}", {"role": "owner"}),
        ("DELETE", f"/v1/brains/{brain}/members/{owner['account']['id']}", None),
        ("POST", "/v1/keys", {"name": "sneaky"}),
        ("GET", "/v1/keys", None),
    ]
    for method, path, body in attempts:
        reply = web.call(method, path, json_body=body, token=token)
        assert reply.status == 403, (method, path, reply.body)
        assert reply.error_code == "owner_only"
    assert web.call("GET", f"/v1/brains/{brain}", token=token).json()["name"] == "Team brain"
    members = web.call("GET", f"/v1/brains/{brain}/members", token=owner["access_token"]).json()
    assert {m["role"] for m in members["results"]} == {"owner", "member"}


def test_roles_change_and_take_effect_at_once(
    web: Web, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    brain = owner["brain"]["id"]
    promoted = web.call(
        "PATCH",
        f"/v1/brains/{brain}/members/{member['account']['id']}",
        json_body={"role": "owner"},
        token=owner["access_token"],
    )
    assert promoted.status == 200 and promoted.json()["role"] == "owner"
    # The member's existing token now carries the owner role: no new login needed.
    renamed = web.call(
        "PATCH", f"/v1/brains/{brain}", json_body={"name": "Co-owned"}, token=member["access_token"]
    )
    assert renamed.status == 200
    assert web.call("GET", "/v1/keys", token=member["access_token"]).status == 200
    bad_role = web.call(
        "PATCH",
        f"/v1/brains/{brain}/members/{member['account']['id']}",
        json_body={"role": "admin"},
        token=owner["access_token"],
    )
    assert bad_role.status == 422


def test_the_last_owner_cannot_leave_or_step_down(web: Web, owner: dict[str, Any]) -> None:
    brain = owner["brain"]["id"]
    me = owner["account"]["id"]
    token = owner["access_token"]
    leave = web.call("DELETE", f"/v1/brains/{brain}/members/{me}", token=token)
    assert leave.status == 409 and leave.error_code == "last_owner"
    demote = web.call(
        "PATCH", f"/v1/brains/{brain}/members/{me}", json_body={"role": "member"}, token=token
    )
    assert demote.status == 409 and demote.error_code == "last_owner"

    # With a second owner, the first may go.
    email = new_email()
    second = web.signup(email)
    assert _add(web, owner, email, "owner").status == 201
    assert web.call("DELETE", f"/v1/brains/{brain}/members/{me}", token=token).status == 200
    assert web.call("GET", f"/v1/brains/{brain}", token=token).status == 404
    assert (
        web.call("GET", f"/v1/brains/{brain}", token=second["access_token"]).json()["role"]
        == "owner"
    )


def test_a_member_can_leave_and_loses_access_at_once(
    web: Web, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    brain = owner["brain"]["id"]
    token = member["access_token"]
    assert web.call("GET", "/v1/memories", token=token).status == 200
    left = web.call("DELETE", f"/v1/brains/{brain}/members/{member['account']['id']}", token=token)
    assert left.status == 200
    refused = web.call("GET", "/v1/memories", token=token)
    assert refused.status == 403 and refused.error_code == "no_active_brain"
    assert web.call("GET", f"/v1/brains/{brain}", token=token).status == 404


def test_adding_members(web: Web, owner: dict[str, Any]) -> None:
    unknown = _add(web, owner, new_email())
    assert unknown.status == 404 and unknown.error_code == "account_not_found"
    email = new_email()
    web.signup(email)
    added = _add(web, owner, email.upper())
    assert added.status == 201 and added.json()["email"] == email.lower()
    again = _add(web, owner, email)
    assert again.status == 409 and again.error_code == "already_member"


def test_another_tenants_brain_is_a_404_everywhere(web: Web, owner: dict[str, Any]) -> None:
    stranger = web.signup()
    brain = owner["brain"]["id"]
    token = stranger["access_token"]
    attempts = [
        ("GET", f"/v1/brains/{brain}", None),
        ("PATCH", f"/v1/brains/{brain}", {"name": "x"}),
        ("DELETE", f"/v1/brains/{brain}", {"confirm": owner["brain"]["slug"]}),
        ("GET", f"/v1/brains/{brain}/members", None),
        ("POST", f"/v1/brains/{brain}/members", {"email": new_email(), "role": "owner"}),
        ("PATCH", f"/v1/brains/{brain}/members/{owner['account']['id']}", {"role": "member"}),
        ("DELETE", f"/v1/brains/{brain}/members/{owner['account']['id']}", None),
        ("POST", "/auth/session/brain", {"brain_id": brain}),
        ("GET", "/v1/brains/not-a-brain-id", None),
    ]
    for method, path, body in attempts:
        reply = web.call(method, path, json_body=body, token=token)
        assert reply.status == 404, (method, path, reply.body)
    assert web.call("GET", f"/v1/brains/{brain}", token=owner["access_token"]).status == 200


def test_switching_the_active_brain_moves_the_session(web: Web, owner: dict[str, Any]) -> None:
    token = owner["access_token"]
    web.call("POST", "/v1/memories", json_body={"content": "in the first"}, token=token)
    second = web.call("POST", "/v1/brains", json_body={"name": "Second"}, token=token).json()
    switched = web.call(
        "POST", "/auth/session/brain", json_body={"brain_id": second["id"]}, token=token
    )
    assert switched.status == 200 and switched.json()["brain"]["id"] == second["id"]
    assert web.call("GET", "/v1/memories", token=token).json()["results"] == []
    assert web.call("GET", "/auth/me", token=token).json()["brain"]["id"] == second["id"]
    # Login can start on a chosen brain too.
    login = web.login(owner["account"]["email"], brain_id=second["id"]).json()
    assert login["brain"]["id"] == second["id"]


def test_brain_routes_need_an_account_session(web: Web, tenant: Tenant) -> None:
    reply = web.call("GET", "/v1/brains", token=tenant.key)
    assert reply.status == 403 and reply.error_code == "account_session_required"
    assert web.call("GET", "/v1/brains").status == 401
