"""Snapshots on both stores, through the Lambda handler: create, list, get, restore merge and
replace in one transaction (a failure midway changes nothing), delete, retention, S3 payloads
with moto, and another brain's snapshot is a 404."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.identity.brains import ensure_brain
from core.kernel.config import EmbedderSettings, Settings, SnapshotSettings
from core.kernel.db.engine import transaction
from core.transfer import importing, snapshots
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient
from tests.transfer_fixtures import EMBEDDER, add, dump, fill, owner_scope


class Owner:
    """Single-key mode (MNEMO_API_KEY): the key acts as its brain's owner."""

    def __init__(self, engine: Engine, settings: Settings, slug: str) -> None:
        with transaction(engine) as conn:
            ensure_brain(conn, slug)
        self.slug = slug
        self.scope = owner_scope(engine, slug)
        key = f"env-{uuid.uuid4().hex}"
        self.settings = settings.with_(
            api_key=key,
            default_brain=slug,
            embedder=EmbedderSettings(builtin_dims=EMBEDDER.dims),
        )
        self.client = LambdaClient(self.settings, key=key)


@pytest.fixture
def owner(engine: Engine, settings: Settings) -> Owner:
    return Owner(engine, settings, f"s-{uuid.uuid4().hex[:10]}")


def _events(engine: Engine, brain_id: str, prefix: str = "snapshot.") -> list[tuple[str, Any]]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text(
                "SELECT event_type, payload FROM changelog WHERE brain_id = :b "
                "AND event_type LIKE :p ORDER BY created_at, id"
            ),
            {"b": brain_id, "p": prefix + "%"},
        ).all()
    return [(r.event_type, json.loads(r.payload)) for r in rows]


def _snapshot(owner: Owner, **body: Any) -> dict[str, Any]:
    reply = owner.client.post("/v1/snapshots", json_body={"label": "before", **body})
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.json()
    return created


def test_create_list_get_then_restore_merge_and_replace(engine: Engine, owner: Owner) -> None:
    ids = fill(engine, owner.scope)
    at_snapshot = dump(engine, owner.scope.brain_id)
    snap = _snapshot(owner, note="all of it", include_archived=True)
    assert (snap["label"], snap["note"], snap["include_archived"]) == ("before", "all of it", True)
    assert (snap["memory_count"], snap["link_count"], snap["storage"]) == (7, 2, "database")
    assert snap["format_version"] == 1 and snap["encoding"] == "gzip" and snap["size_bytes"] > 0
    client = owner.client
    assert client.get("/v1/snapshots").json()["results"] == [snap]
    assert client.get(f"/v1/snapshots/{snap['id']}").json() == snap

    patched = client.patch(f"/v1/memories/{ids['tea']}", json_body={"content": "Coffee now"})
    assert patched.status == 200
    later = client.post("/v1/memories", json_body={"content": "Written after the snapshot"})
    assert later.status == 201

    merged = client.post(f"/v1/snapshots/{snap['id']}/restore", json_body={"mode": "merge"})
    assert merged.status == 200, merged.body
    report = merged.json()["report"]
    assert report["by_kind"]["memory"]["updated"] == 1
    assert report["by_kind"]["memory"]["skipped_by_reason"] == {"unchanged": 6}
    tea = client.get(f"/v1/memories/{ids['tea']}").json()
    assert tea["content"] == "Alice prefers green tea in the morning"
    assert client.get(f"/v1/memories/{later.json()['id']}").status == 200, "merge keeps later ones"
    history = client.get(f"/v1/memories/{ids['tea']}/history").json()["results"]
    assert history[-1]["event"] == "UPDATE" and history[-1]["detail"]["reason"] == (
        "snapshot.restored"
    )

    replaced = client.post(f"/v1/snapshots/{snap['id']}/restore", json_body={"mode": "replace"})
    assert replaced.status == 200, replaced.body
    assert replaced.json()["cleared"]["memory"] == 8
    assert client.get(f"/v1/memories/{later.json()['id']}").status == 404
    assert dump(engine, owner.scope.brain_id) == at_snapshot, "exactly the snapshot again"
    found = client.post("/v1/search", json_body={"query": "green tea"}).json()["results"]
    assert found[0]["memory"]["id"] == ids["tea"], "the restored brain is searchable"
    events = _events(engine, owner.scope.brain_id)
    assert [e for e, _ in events] == ["snapshot.created", "snapshot.restored", "snapshot.restored"]
    assert [p["mode"] for e, p in events[1:]] == ["merge", "replace"]


def test_a_snapshot_without_archived_memories_restores_only_active_ones(
    engine: Engine, owner: Owner
) -> None:
    ids = fill(engine, owner.scope)
    snap = _snapshot(owner)
    assert (snap["include_archived"], snap["memory_count"], snap["link_count"]) == (False, 4, 1)
    reply = owner.client.post(f"/v1/snapshots/{snap['id']}/restore", json_body={"mode": "replace"})
    assert reply.status == 200, reply.body
    states = {m["state"] for m in dump(engine, owner.scope.brain_id)["memories"]}
    assert states == {"active"}
    assert owner.client.get(f"/v1/memories/{ids['archived']}").status == 404


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_a_memory_purged_after_the_snapshot_stays_purged(
    engine: Engine, owner: Owner, mode: str
) -> None:
    """A purge promises the text is gone for good: restoring an older snapshot keeps it gone,
    with its history and links, while everything else comes back."""
    ids = fill(engine, owner.scope)
    snap = _snapshot(owner, include_archived=True)
    client = owner.client
    purged = client.post(f"/v1/memories/{ids['tea']}/purge", json_body={"confirm": True})
    assert purged.status == 200, purged.body
    reply = client.post(f"/v1/snapshots/{snap['id']}/restore", json_body={"mode": mode})
    assert reply.status == 200, reply.body
    assert reply.json()["purged_left_out"] == 1
    assert client.get(f"/v1/memories/{ids['tea']}").status == 404
    brain = dump(engine, owner.scope.brain_id)
    assert ids["tea"] not in {m["id"] for m in brain["memories"]}
    assert all(ids["tea"] not in (k["from_id"], k["to_id"]) for k in brain["memory_links"])
    assert all(h["memory_id"] != ids["tea"] for h in brain["memory_history"])
    assert len(brain["memories"]) == snap["memory_count"] - 1


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_a_restore_that_fails_midway_leaves_the_brain_as_it_was(
    engine: Engine, owner: Owner, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = fill(engine, owner.scope)
    snap = snapshots.create(
        engine, owner.scope, SnapshotSettings(), label="before", include_archived=True
    )
    owner.client.patch(f"/v1/memories/{ids['tea']}", json_body={"content": "Coffee now"})
    add(engine, owner.scope, content="Written after the snapshot")
    before = dump(engine, owner.scope.brain_id)
    events_before = _events(engine, owner.scope.brain_id, prefix="")

    real = importing.ImportRun._memory
    calls = {"n": 0}

    def fail_on_the_fourth(self: Any, conn: Any, known: Any, data: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # the brain is already emptied (replace) and half rewritten
            raise RuntimeError("the disk filled up")
        real(self, conn, known, data)

    monkeypatch.setattr(importing.ImportRun, "_memory", fail_on_the_fourth)
    with pytest.raises(RuntimeError, match="disk filled up"):
        snapshots.restore(
            engine, owner.scope, snap["id"], SnapshotSettings(), mode=mode, embedder=EMBEDDER
        )
    assert calls["n"] == 4
    assert dump(engine, owner.scope.brain_id) == before
    assert _events(engine, owner.scope.brain_id, prefix="") == events_before
    # Through the API the same failure is a 500 and, again, changes nothing.
    calls["n"] = 0
    reply = owner.client.post(f"/v1/snapshots/{snap['id']}/restore", json_body={"mode": mode})
    assert reply.status == 500
    assert dump(engine, owner.scope.brain_id) == before


def test_a_payload_that_changed_is_refused_before_anything_is_written(
    engine: Engine, owner: Owner
) -> None:
    fill(engine, owner.scope)
    snap = _snapshot(owner, include_archived=True)
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE snapshots SET payload = :p WHERE id = :id"),
            {"p": gzip.compress(b'{"kind": "mnemo-export", "version": 1}\n'), "id": snap["id"]},
        )
    before = dump(engine, owner.scope.brain_id)
    reply = owner.client.post(f"/v1/snapshots/{snap['id']}/restore", json_body={"mode": "replace"})
    assert reply.status == 409 and reply.error_code == "snapshot_corrupt"
    assert dump(engine, owner.scope.brain_id) == before


def test_restore_and_delete_are_for_owners_and_other_brains_get_404(
    engine: Engine, settings: Settings, owner: Owner, tenant: Tenant
) -> None:
    snap = _snapshot(owner)
    member = owner.client.as_key(_brain_key(engine, owner.slug))
    assert member.get(f"/v1/snapshots/{snap['id']}").status == 200
    assert member.post(f"/v1/snapshots/{snap['id']}/restore").error_code == "owner_only"
    assert member.delete(f"/v1/snapshots/{snap['id']}").error_code == "owner_only"
    scoped = owner.client.as_key(_brain_key(engine, owner.slug, user_id="alice"))
    assert scoped.get("/v1/snapshots").error_code == "brain_key_required"

    stranger = Owner(engine, settings, f"x-{uuid.uuid4().hex[:10]}")
    for reply in (
        stranger.client.get(f"/v1/snapshots/{snap['id']}"),
        stranger.client.post(f"/v1/snapshots/{snap['id']}/restore", json_body={"mode": "merge"}),
        stranger.client.delete(f"/v1/snapshots/{snap['id']}"),
    ):
        assert reply.status == 404 and reply.error_code == "snapshot_not_found"
    assert stranger.client.get("/v1/snapshots").json()["results"] == []
    other = LambdaClient(settings, key=tenant.key)
    assert other.get(f"/v1/snapshots/{snap['id']}").status == 404

    deleted = owner.client.delete(f"/v1/snapshots/{snap['id']}")
    assert deleted.json() == {"id": snap["id"], "deleted": True}
    assert owner.client.get(f"/v1/snapshots/{snap['id']}").status == 404
    assert _events(engine, owner.scope.brain_id)[-1][0] == "snapshot.deleted"


def _brain_key(engine: Engine, slug: str, *, user_id: str | None = None) -> str:
    from core.identity.keys import create_key

    with transaction(engine) as conn:
        return create_key(conn, slug, user_id=user_id).secret


def test_retention_keeps_the_newest_the_policy_allows(engine: Engine, owner: Owner) -> None:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO brain_policies (brain_id, policy_json, created_at, updated_at) "
                "VALUES (:b, :p, 0, 0)"
            ),
            {"b": owner.scope.brain_id, "p": json.dumps({"snapshot_retention": 2})},
        )
    made = [_snapshot(owner, note=str(i)) for i in range(3)]
    listed = owner.client.get("/v1/snapshots").json()["results"]
    assert [s["id"] for s in listed] == [made[2]["id"], made[1]["id"]]
    page = owner.client.get("/v1/snapshots", query={"limit": 1}).json()
    assert [s["id"] for s in page["results"]] == [made[2]["id"]]
    rest = owner.client.get("/v1/snapshots", query={"limit": 1, "cursor": page["next_cursor"]})
    assert [s["id"] for s in rest.json()["results"]] == [made[1]["id"]]
    events = _events(engine, owner.scope.brain_id)
    assert events[-1][0] == "snapshot.deleted" and events[-1][1]["reason"] == "retention"


def test_a_non_owner_cannot_push_snapshots_out_through_retention(
    engine: Engine, owner: Owner
) -> None:
    """Deleting a snapshot is for owners; a member creating snapshots past the retention must
    not delete the oldest ones instead."""
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO brain_policies (brain_id, policy_json, created_at, updated_at) "
                "VALUES (:b, :p, 0, 0)"
            ),
            {"b": owner.scope.brain_id, "p": json.dumps({"snapshot_retention": 2})},
        )
    kept = [_snapshot(owner, note=str(i)) for i in range(2)]
    member = owner.client.as_key(_brain_key(engine, owner.slug))
    refused = member.post("/v1/snapshots", json_body={"label": "mine"})
    assert (refused.status, refused.error_code) == (409, "snapshot_retention_reached")
    listed = owner.client.get("/v1/snapshots").json()["results"]
    assert sorted(s["id"] for s in listed) == sorted(s["id"] for s in kept)
    # An owner's snapshot still makes room by retention.
    newest = _snapshot(owner, note="owner")
    listed = owner.client.get("/v1/snapshots").json()["results"]
    assert [s["id"] for s in listed] == [newest["id"], kept[1]["id"]]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="mnemo-snapshots")
        yield client


def test_payloads_go_to_s3_when_a_bucket_is_set(engine: Engine, owner: Owner, s3: Any) -> None:
    ids = fill(engine, owner.scope)
    at_snapshot = dump(engine, owner.scope.brain_id)
    bucket = SnapshotSettings(bucket="mnemo-snapshots", region="us-east-1")
    snap = snapshots.create(engine, owner.scope, bucket, label="to s3", include_archived=True)
    assert snap["storage"] == "s3"
    with transaction(engine, write=False) as conn:
        row = conn.execute(
            text("SELECT payload, s3_key FROM snapshots WHERE id = :id"), {"id": snap["id"]}
        ).one()
    assert row.payload is None
    key = f"snapshots/{owner.scope.brain_id}/{snap['id']}.jsonl.gz"
    assert row.s3_key == f"s3://mnemo-snapshots/{key}"
    stored = s3.get_object(Bucket="mnemo-snapshots", Key=key)["Body"].read()
    assert len(stored) == snap["size_bytes"]
    assert json.loads(gzip.decompress(stored).splitlines()[0])["kind"] == "mnemo-export"

    add(engine, owner.scope, content="Written after the snapshot")
    with transaction(engine) as conn:
        conn.execute(
            text("UPDATE memories SET content = 'gone wrong' WHERE id = :id"), {"id": ids["tea"]}
        )
    result = snapshots.restore(
        engine, owner.scope, snap["id"], bucket, mode="replace", embedder=EMBEDDER
    )
    assert result["report"]["by_kind"]["memory"]["imported"] == 7
    assert dump(engine, owner.scope.brain_id) == at_snapshot

    snapshots.delete(engine, owner.scope, snap["id"], bucket)
    assert s3.list_objects_v2(Bucket="mnemo-snapshots").get("KeyCount") == 0


def test_cli_snapshot_create_list_restore_delete(
    engine: Engine, database_url: str, owner: Owner, store: str
) -> None:
    if store == "postgres":
        pytest.skip("the CLI is the same code on both stores; one run is enough")
    import os
    import subprocess
    import sys
    from pathlib import Path

    ids = fill(engine, owner.scope)
    env = {**os.environ, "MNEMO_DATABASE_URL": database_url, "MNEMO_BUILTIN_DIMS": "64"}

    def mnemo(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "handlers.cli", "snapshot", *args, "--brain", owner.slug],
            env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    made = mnemo("create", "--label", "nightly", "--include-archived")
    assert made["memory_count"] == 7
    assert [s["id"] for s in mnemo("list")] == [made["id"]]
    add(engine, owner.scope, content="Written after the snapshot")
    restored = mnemo("restore", made["id"], "--mode", "replace")
    assert restored["cleared"]["memory"] == 8 and restored["report"]["skipped"] == 0
    assert owner.client.get(f"/v1/memories/{ids['tea']}").status == 200
    assert mnemo("delete", made["id"]) == {"id": made["id"], "deleted": True}
    assert mnemo("list") == []
