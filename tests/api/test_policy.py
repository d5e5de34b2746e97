"""Brain policy on both stores: defaults, validation and clamping, owners only, per brain."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.memory.policy import DEFAULT_POLICY, BrainPolicy, policy_for
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient

OWNER_KEY = "mnemo-test-owner-key-0123456789"


@pytest.fixture
def owner(settings: Settings, tenant: Tenant) -> LambdaClient:
    """MNEMO_API_KEY acts as the owner of the default brain: here, the tenant's brain."""
    return LambdaClient(settings.with_(api_key=OWNER_KEY, default_brain=tenant.slug), OWNER_KEY)


def _put(client: LambdaClient, body: Any) -> Any:
    return client.request("PUT", "/v1/policy", json_body=body)


def test_a_brain_without_a_policy_gets_the_defaults(client: LambdaClient, tenant: Tenant) -> None:
    reply = client.get("/v1/policy")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["policy"] == DEFAULT_POLICY.to_dict()
    assert body["overrides"] == {}
    assert body["bounds"]["decay_days"]["max"] == 3650
    with transaction(tenant.engine, write=False) as conn:
        assert policy_for(conn, tenant.brain_id) == BrainPolicy()


def test_an_owner_sets_the_policy_and_out_of_range_values_are_clamped(
    owner: LambdaClient, tenant: Tenant
) -> None:
    reply = _put(
        owner,
        {"decay_days": 10, "decay_rate": 5, "importance_floor": -1, "retention_days": 400},
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["policy"]["decay_days"] == 10
    assert body["policy"]["decay_rate"] == 0.9  # clamped to the top of 0..0.9
    assert body["policy"]["importance_floor"] == 0.0
    assert body["policy"]["retention_days"] == 400
    assert body["clamped"] == {"decay_rate": 5, "importance_floor": -1}
    assert body["overrides"] == {
        "decay_days": 10,
        "decay_rate": 0.9,
        "importance_floor": 0.0,
        "retention_days": 400,
    }
    # Effective everywhere, not only in the response.
    with transaction(tenant.engine, write=False) as conn:
        stored = policy_for(conn, tenant.brain_id)
        assert (stored.decay_days, stored.decay_rate, stored.retention_days) == (10, 0.9, 400)
        changes = conn.execute(
            text(
                "SELECT count(*) FROM changelog WHERE brain_id = :b "
                "AND event_type = 'policy.updated'"
            ),
            {"b": tenant.brain_id},
        ).scalar()
    assert changes == 1
    assert owner.get("/v1/policy").json()["policy"]["decay_rate"] == 0.9


def test_put_replaces_the_whole_policy(owner: LambdaClient) -> None:
    assert _put(owner, {"retention_days": 30, "path_max_hops": 3}).status == 200
    body = _put(owner, {"path_max_hops": 4}).json()
    assert body["policy"]["retention_days"] is None  # left out: the default, keep forever
    assert body["policy"]["path_max_hops"] == 4
    assert _put(owner, {"retention_days": None}).json()["policy"]["retention_days"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decay_days": "thirty"}, "decay_days"),
        ({"decay_days": 2.5}, "decay_days"),
        ({"decay_rate": True}, "decay_rate"),
        ({"decay_rate": "0.1"}, "decay_rate"),
        ({"decay_days": None}, "decay_days"),
        ({"decay_speed": 3}, "decay_speed"),
    ],
)
def test_bad_policy_values_are_a_422_naming_the_field(
    owner: LambdaClient, body: dict[str, Any], field: str
) -> None:
    reply = _put(owner, body)
    assert reply.status == 422, reply.body
    error = reply.json()["error"]
    assert field in reply.body
    assert error["message"]
    assert owner.get("/v1/policy").json()["overrides"] == {}


def test_only_an_owner_sets_the_policy(client: LambdaClient, tenant: Tenant) -> None:
    reply = _put(client, {"decay_days": 5})
    assert reply.status == 403
    assert reply.error_code == "owner_only"
    assert client.get("/v1/policy").json()["policy"]["decay_days"] == DEFAULT_POLICY.decay_days


def test_a_policy_belongs_to_one_brain(
    owner: LambdaClient, tenant: Tenant, other_tenant: Tenant, settings: Settings
) -> None:
    assert _put(owner, {"decay_days": 7}).status == 200
    other = LambdaClient(settings, other_tenant.key)
    assert other.get("/v1/policy").json()["policy"]["decay_days"] == DEFAULT_POLICY.decay_days


def test_a_stored_policy_out_of_todays_bounds_is_clamped_on_read(
    engine: Engine, tenant: Tenant
) -> None:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO brain_policies (brain_id, policy_json, created_at, updated_at) "
                "VALUES (:b, :j, 0, 0)"
            ),
            {"b": tenant.brain_id, "j": '{"path_max_hops": 99, "gone_field": 1}'},
        )
    with transaction(engine, write=False) as conn:
        assert policy_for(conn, tenant.brain_id).path_max_hops == 12
