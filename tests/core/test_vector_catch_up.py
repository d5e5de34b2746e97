"""Maintenance gives memories a vector of the current model (issue 21: a deployment that moves
to another embedder, such as the int8 MiniLM package, gets semantic search back without anyone
calling POST /v1/reindex), a bounded share per run, on both stores."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from core.app import brain_maintenance
from core.app.brain_maintenance import maintain_brain
from core.embeddings import get_embedder
from core.kernel.config import Settings
from core.kernel.db.engine import sql, transaction
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient


def _vectors_of(engine: Engine, brain_id: str, model: str) -> int:
    with transaction(engine, write=False) as conn:
        found = conn.execute(
            sql("SELECT count(*) FROM memory_vectors WHERE brain_id = :b AND model = :m"),
            {"b": brain_id, "m": model},
        )
        return int(found.scalar_one())


def test_a_new_model_gets_its_vectors_from_maintenance(
    engine: Engine,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for who in (tenant, other_tenant):
        client = LambdaClient(settings, key=who.key)
        for i in range(5):
            reply = client.post("/v1/memories", {"content": f"dana likes tea {i}", "user_id": "d"})
            assert reply.status == 201
    old = get_embedder(settings.embedder).name
    moved = dataclasses.replace(
        settings, embedder=dataclasses.replace(settings.embedder, builtin_dims=128)
    )
    new = get_embedder(moved.embedder).name
    assert new != old and _vectors_of(engine, tenant.brain_id, new) == 0

    client = LambdaClient(moved, key=tenant.key)
    query = {"query": "dana tea", "mode": "semantic", "user_id": "d"}
    assert client.post("/v1/search", query).json()["results"] == []

    dry = maintain_brain(
        engine, tenant.brain_id, moved.maintenance, tasks=("vectors",), app=moved, dry_run=True
    )
    assert dry["vectors"]["count"] == 0 and dry["vectors"]["pending"]
    assert _vectors_of(engine, tenant.brain_id, new) == 0

    # Two memories a batch: the run loops until the brain has no memory left without one.
    setattr(brain_maintenance, "_REINDEX_BATCH", 2)  # noqa: B010
    try:
        run = maintain_brain(
            engine, tenant.brain_id, moved.maintenance, tasks=("vectors",), app=moved
        )
    finally:
        setattr(brain_maintenance, "_REINDEX_BATCH", 64)  # noqa: B010
    assert run["vectors"] == {
        "count": 5, "model": new, "pending": False, "duration_ms": run["vectors"]["duration_ms"]
    }  # fmt: skip
    assert _vectors_of(engine, tenant.brain_id, new) == 5
    assert _vectors_of(engine, tenant.brain_id, old) == 0  # a memory keeps one vector
    assert _vectors_of(engine, other_tenant.brain_id, new) == 0  # one brain at a time

    found = client.post("/v1/search", query)
    assert found.status == 200 and len(found.json()["results"]) == 5

    again = maintain_brain(
        engine, tenant.brain_id, moved.maintenance, tasks=("vectors",), app=moved
    )
    assert again["vectors"]["count"] == 0 and not again["vectors"]["pending"]
