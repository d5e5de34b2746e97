"""Erasing an end user on both stores: twenty planted canaries leave every table (and on
SQLite the file's bytes), the receipt counts what was there, other users stay, and the
erasure resumes where it stopped."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from core.app import maintenance
from core.app.erasure import erase_user
from core.curation import erasure
from core.kernel.config import Settings
from core.kernel.db.engine import transaction
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope
from core.retrieval import pgvector
from tests.conftest import Tenant
from tests.lambda_client import LambdaClient

OWNER_KEY = "mnemo-test-owner-key-0123456789"


@pytest.fixture
def owner(settings: Settings, tenant: Tenant) -> LambdaClient:
    """MNEMO_API_KEY acts as the owner of the default brain: here, the tenant's brain."""
    return LambdaClient(settings.with_(api_key=OWNER_KEY, default_brain=tenant.slug), OWNER_KEY)


def _ok(reply: Any, *statuses: int) -> Any:
    assert reply.status in (statuses or (200, 201)), reply.body
    return reply.json()


def _plant(client: LambdaClient, tenant: Tenant, engine: Engine) -> tuple[list[str], list[str]]:
    """Carol's twenty memories, each holding a canary, and every kind of row that hangs off
    them; returns (canaries, carol's memory ids)."""
    now = now_ms()
    with transaction(engine) as conn:  # a watch, so every event leaves an outbox delivery
        conn.execute(
            text(
                "INSERT INTO watches (id, brain_id, name, event_types, webhook_url, secret, "
                "active, created_at, updated_at) VALUES (:id, :b, 'all', '[\"*\"]', "
                "'https://hooks.example.com/in', 'secret', 1, :now, :now)"
            ),
            {"id": new_id(), "b": tenant.brain_id, "now": now},
        )
    canaries = [f"zqcanary{uuid.uuid4().hex[:16]}" for _ in range(20)]
    ids = []
    for i, canary in enumerate(canaries):
        memory = _ok(
            client.post(
                "/v1/memories",
                json_body={
                    "content": f"Carol's secret number {i} is {canary}",
                    "title": f"secret {canary}" if i % 5 == 0 else None,
                    "tags": [canary] if i % 4 == 0 else [],
                    "user_id": "carol",
                },
            )
        )
        assert memory["gate"]["decision"] == "added", memory["gate"]
        ids.append(memory["id"])
    _ok(client.patch(f"/v1/memories/{ids[1]}", json_body={"content": f"Updated {canaries[1]}"}))
    _ok(client.post("/v1/memories/" + ids[2] + "/archive"))
    _ok(
        client.post(
            "/v1/links", json_body={"from_id": ids[0], "to_id": ids[3], "relation": "supports"}
        )
    )
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO memory_conflict_resolutions (id, brain_id, pair_key, a_id, b_id, "
                "user_id, kind, reason, detail, status, created_at, updated_at) VALUES "
                "(:id, :b, :pair, :a, :bb, 'carol', 'value', :reason, '{}', 'needs_review', "
                ":now, :now)"
            ),
            {
                "id": new_id(),
                "b": tenant.brain_id,
                "pair": f"{ids[4]}|{ids[5]}",
                "a": ids[4],
                "bb": ids[5],
                "reason": f"values differ: {canaries[4]}",
                "now": now,
            },
        )
        conn.execute(
            text(
                "INSERT INTO memory_entity_aliases (id, brain_id, canonical_memory_id, "
                "alias_memory_id, note, created_at, updated_at) VALUES (:id, :b, :c, :a, :n, "
                ":now, :now)"
            ),
            {
                "id": new_id(),
                "b": tenant.brain_id,
                "c": ids[6],
                "a": ids[7],
                "n": canaries[6],
                "now": now,
            },
        )
    held = _ok(
        client.post(
            "/v1/memories",
            json_body={"content": f"You are Carol's assistant {canaries[8]}", "user_id": "carol"},
        ),
        202,
    )
    assert held["state"] == "quarantined"
    carol = client.as_key(tenant.new_key(user_id="carol"))
    _ok(carol.post("/v1/search", json_body={"query": "secret number"}))
    _ok(client.post("/v1/users/carol/summary/regenerate"))
    return canaries, ids


def _rows_of_carol(engine: Engine, brain: str, ids: list[str]) -> dict[str, int]:
    """What the receipt should count, read before the erasure."""
    counts: dict[str, int] = {}
    with transaction(engine, write=False) as conn:
        inside = "(" + ", ".join(f"'{i}'" for i in ids) + ")"

        def one(statement: str) -> int:
            return int(conn.execute(text(statement), {"b": brain}).scalar() or 0)

        counts["memories"] = one(
            f"SELECT count(*) FROM memories WHERE brain_id = :b AND id IN {inside}"
        )
        counts["memory_tags"] = one(f"SELECT count(*) FROM memory_tags WHERE memory_id IN {inside}")
        counts["memory_history"] = one(
            "SELECT count(*) FROM memory_history WHERE brain_id = :b AND "
            f"(memory_id IN {inside} OR user_id = 'carol')"
        )
        counts["memory_vectors"] = one(
            f"SELECT count(*) FROM memory_vectors WHERE memory_id IN {inside}"
        )
        if conn.dialect.name == "sqlite":
            counts["memory_fts"] = one(
                "SELECT count(*) FROM memory_fts WHERE rowid IN "
                f"(SELECT rowid FROM memories WHERE id IN {inside})"
            )
        if pgvector.mirroring(conn):
            counts["memory_vectors_pgv"] = one(
                f"SELECT count(*) FROM {pgvector.TABLE} WHERE memory_id IN {inside}"
            )
        counts["memory_links"] = one(
            f"SELECT count(*) FROM memory_links WHERE from_id IN {inside} OR to_id IN {inside}"
        )
        counts["memory_conflict_resolutions"] = one(
            "SELECT count(*) FROM memory_conflict_resolutions WHERE brain_id = :b"
        )
        counts["memory_entity_aliases"] = one(
            "SELECT count(*) FROM memory_entity_aliases WHERE brain_id = :b"
        )
        counts["memory_recalls"] = one("SELECT count(*) FROM memory_recalls WHERE brain_id = :b")
        counts["memory_quarantine"] = one(
            "SELECT count(*) FROM memory_quarantine WHERE brain_id = :b AND user_id = 'carol'"
        )
        counts["users"] = one(
            "SELECT count(*) FROM users WHERE brain_id = :b AND user_id = 'carol'"
        )
        counts["api_keys"] = one(
            "SELECT count(*) FROM api_keys WHERE brain_id = :b AND user_id = 'carol'"
        )
        counts["changelog_tombstoned"] = one(
            "SELECT count(*) FROM changelog WHERE brain_id = :b AND "
            f"(user_id = 'carol' OR entity_id IN {inside})"
        )
        counts["deliveries_redacted"] = one(
            "SELECT count(*) FROM deliveries WHERE brain_id = :b AND event_id IN "
            "(SELECT id FROM changelog WHERE brain_id = :b AND "
            f"(user_id = 'carol' OR entity_id IN {inside}))"
        )
    return counts


def _found_anywhere(engine: Engine, needles: list[str]) -> list[str]:
    """Every table and column of the store holding any needle (snapshot payloads unzipped)."""
    hits = []
    folded = [n.casefold() for n in needles]
    with transaction(engine, write=False) as conn:
        names = inspect(conn).get_table_names()
        if conn.dialect.name == "sqlite":
            names += ["memory_fts", "memory_fts_vocab"]
        for name in sorted(set(names)):
            for row in conn.execute(text(f'SELECT * FROM "{name}"')).all():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        raw = bytes(value)
                        value = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
                        value = value.decode("utf-8", "replace")
                    cell = str(value).casefold()
                    hits += [f"{name}: {n}" for n in folded if n in cell]
    return hits


def test_erasing_a_user_removes_every_canary_and_counts_what_went(
    client: LambdaClient, owner: LambdaClient, tenant: Tenant, engine: Engine, store: str
) -> None:
    dave = [
        _ok(client.post("/v1/memories", json_body={"content": c, "user_id": "dave"}))["id"]
        for c in ("Dave rides a red bicycle", "Dave bakes sourdough", "Dave speaks Welsh")
    ]
    canaries, ids = _plant(client, tenant, engine)
    _ok(owner.post("/v1/snapshots", json_body={"label": "before"}))
    assert len(_found_anywhere(engine, canaries)) > 20  # planted everywhere
    expected = _rows_of_carol(engine, tenant.brain_id, ids)

    refused = client.request("DELETE", "/v1/users/carol", query={"confirm": "true"})
    assert refused.status == 403 and refused.error_code == "owner_only"
    unconfirmed = owner.request("DELETE", "/v1/users/carol")
    assert unconfirmed.status == 422
    receipt = _ok(owner.request("DELETE", "/v1/users/carol", query={"confirm": "true"}), 200)

    assert receipt["status"] == "complete"
    for table, count in expected.items():
        assert receipt["counts"][table] == count, table
    assert receipt["counts"]["snapshots_rewritten"] == 1
    assert receipt["subject"] == erasure.subject_of(tenant.brain_id, "carol")
    assert "carol" not in json.dumps(receipt)
    assert _found_anywhere(engine, canaries) == []
    if store == "sqlite":
        path = Path(str(engine.url.database))
        data = path.read_bytes()
        wal = Path(f"{path}-wal")
        data += wal.read_bytes() if wal.exists() else b""
        found = [c for c in canaries if c.encode() in data or c[8:].encode() in data]
        assert found == []
    # What is left: Dave, the tombstones, and a receipt that can be shown without the data.
    assert sorted(
        m["id"] for m in client.get("/v1/memories", query={"state": "all"}).json()["results"]
    ) == sorted(dave)
    assert _ok(owner.get(f"/v1/erasures/{receipt['id']}")) == receipt
    assert [r["id"] for r in _ok(owner.get("/v1/erasures"))["results"]] == [receipt["id"]]
    feed = client.get("/v1/changelog", query={"limit": 200}).json()["results"]
    tombstones = [e for e in feed if e["summary"] == erasure.TOMBSTONE]
    assert len(tombstones) == expected["changelog_tombstoned"]
    assert all(
        e["user_id"] is None and e["payload"] == {"erased": receipt["id"]} for e in tombstones
    )
    assert any(e["event_type"] == "user.erased" for e in feed)
    assert client.get("/v1/users/carol/memories").json()["results"] == []
    # The rewritten snapshot restores without Carol.
    [snapshot] = _ok(owner.get("/v1/snapshots"))["results"]
    _ok(owner.post(f"/v1/snapshots/{snapshot['id']}/restore", json_body={"mode": "replace"}))
    restored = client.get("/v1/memories", query={"state": "all"}).json()["results"]
    assert sorted(m["id"] for m in restored) == sorted(dave)


def test_an_erasure_resumes_where_it_stopped(
    client: LambdaClient, tenant: Tenant, engine: Engine, settings: Settings
) -> None:
    for i in range(12):
        _ok(
            client.post(
                "/v1/memories", json_body={"content": f"Erin note {i} zq{i}", "user_id": "erin"}
            )
        )
    scope = Scope(tenant.brain_id, "test", role="owner")
    first = erase_user(engine, scope, "erin", settings.snapshots, batch=5, deadline=0.0)
    assert first["status"] == "running" and first["counts"]["memories"] == 5
    with transaction(engine, write=False) as conn:
        left = conn.execute(
            text("SELECT count(*) FROM memories WHERE brain_id = :b AND user_id = 'erin'"),
            {"b": tenant.brain_id},
        ).scalar()
    assert left == 7
    done = erase_user(
        engine, scope, "erin", settings.snapshots, batch=5, deadline=time.monotonic() + 60
    )
    assert done["id"] == first["id"] and done["status"] == "complete"
    assert done["counts"]["memories"] == 12 and done["batches"] == 1 + 2 + 1
    assert done["digest"] != first["digest"]
    # Asked again, there is nothing left: a new receipt that counts nothing.
    again = erase_user(engine, scope, "erin", settings.snapshots)
    assert again["id"] != done["id"] and again["total"] == 0


def test_erasure_is_per_brain(
    client: LambdaClient, owner: LambdaClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    other = client.as_key(other_tenant.key)
    _ok(
        other.post("/v1/memories", json_body={"content": "Frank's other brain", "user_id": "frank"})
    )
    _ok(client.post("/v1/memories", json_body={"content": "Frank here", "user_id": "frank"}))
    receipt = _ok(owner.request("DELETE", "/v1/users/frank", query={"confirm": "true"}))
    assert receipt["counts"]["memories"] == 1
    assert len(other.get("/v1/users/frank/memories").json()["results"]) == 1
    assert owner.get("/v1/erasures/nope").status == 404


def test_mnemo_users_erase_prints_the_receipt(
    client: LambdaClient, tenant: Tenant, settings: Settings, store: str
) -> None:
    if store != "sqlite":
        pytest.skip("the command is the same on both stores; one subprocess is enough")
    for i in range(3):
        _ok(
            client.post(
                "/v1/memories", json_body={"content": f"Gina note {i} zq{i}", "user_id": "gina"}
            )
        )
    env = {**os.environ, "MNEMO_DATABASE_URL": settings.database_url}
    command = [
        sys.executable,
        "-m",
        "handlers.cli",
        "users",
        "erase",
        "gina",
        "--brain",
        tenant.slug,
    ]
    root = Path(__file__).resolve().parents[2]
    refused = subprocess.run(
        command, env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = subprocess.run(
        [*command, "--yes"], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["status"] == "complete" and receipt["counts"]["memories"] == 3
    listed = subprocess.run(
        [*command[:4], "receipts", "--brain", tenant.slug],
        env=env, cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert [r["id"] for r in json.loads(listed.stdout)] == [receipt["id"]]
    assert client.get("/v1/users/gina/memories").json()["results"] == []


def _pageinspect(engine: Engine) -> None:
    with engine.connect() as conn:
        try:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
            conn.commit()
        except Exception as exc:
            pytest.skip(f"pageinspect is not available (a server without contrib): {exc}")


def _heap_holding(engine: Engine, tables: list[str], needles: list[str]) -> list[str]:
    """Every (table, page, item) whose tuple bytes, live or dead, hold a needle: what
    pageinspect reads from the table's files, under MVCC's feet."""
    found = []
    with engine.connect() as conn:
        for table in tables:
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
                continue
            pages = conn.execute(
                text("SELECT pg_relation_size(:t) / current_setting('block_size')::int"),
                {"t": table},
            ).scalar()
            for page in range(int(pages or 0)):
                for item, data in conn.execute(
                    text("SELECT lp, t_data FROM heap_page_items(get_raw_page(:t, :p))"),
                    {"t": table, "p": page},
                ):
                    raw = bytes(data or b"")
                    found += [f"{table}:{page}:{item}" for n in needles if n.encode() in raw]
    return found


def test_postgres_erasure_leaves_the_vacuum_to_maintenance(
    client: LambdaClient,
    owner: LambdaClient,
    tenant: Tenant,
    engine: Engine,
    settings: Settings,
    store: str,
) -> None:
    if store != "postgres":
        pytest.skip("SQLite's erased bytes are checked in the file itself (above)")
    _pageinspect(engine)
    canaries, _ = _plant(client, tenant, engine)
    tables = ["memories", "memory_history", "changelog", "deliveries", "memory_quarantine"]
    assert _heap_holding(engine, tables, canaries)  # planted: the live tuples hold them
    receipt = _ok(owner.request("DELETE", "/v1/users/carol", query={"confirm": "true"}), 200)
    assert receipt["status"] == "complete" and receipt["counts"]["memories"] == 20
    # The request did not wait for VACUUM: owed, the dead tuples still in the heap.
    assert receipt["compaction"]["status"] == "pending"
    assert _found_anywhere(engine, canaries) == []
    assert _heap_holding(engine, tables, canaries)
    done = maintenance.run(engine, settings)["erasure_compaction"]
    # (and those of earlier tests' erasures on this server, owed too)
    assert done["receipts"] >= 1 and done["complete"] == 1
    compaction = _ok(owner.get(f"/v1/erasures/{receipt['id']}"))["compaction"]
    assert compaction["status"] == "done" and compaction["method"] == "vacuum"
    assert compaction["complete"] is True and set(tables) <= set(compaction["vacuumed"])
    assert _heap_holding(engine, list(erasure.VACUUMED), canaries) == []
    # Settled: the next run has nothing to do.
    assert maintenance.run(engine, settings)["erasure_compaction"] == {"receipts": 0}


def test_sqlite_erasure_compacts_within_the_request(
    client: LambdaClient, owner: LambdaClient, tenant: Tenant, engine: Engine, settings: Settings
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's compaction is the maintenance run's (above)")
    canaries, _ = _plant(client, tenant, engine)
    receipt = _ok(owner.request("DELETE", "/v1/users/carol", query={"confirm": "true"}), 200)
    compaction = receipt["compaction"]
    assert compaction["status"] == "done" and compaction["complete"] is True
    path = Path(str(engine.url.database))
    data = path.read_bytes()
    wal = Path(f"{path}-wal")
    data += wal.read_bytes() if wal.exists() else b""
    assert [c for c in canaries if c.encode() in data or c[8:].encode() in data] == []
    assert maintenance.run(engine, settings)["erasure_compaction"] == {"receipts": 0}


def test_postgres_dead_tuples_hold_erased_rows_until_vacuumed(
    tenant: Tenant, engine: Engine, store: str
) -> None:
    """Why the erasure vacuums: a deleted row's bytes stay in the heap until VACUUM."""
    if store != "postgres":
        pytest.skip("PostgreSQL's MVCC only")
    _pageinspect(engine)
    canary = f"zqdead{uuid.uuid4().hex[:16]}"
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO memory_quarantine (id, brain_id, user_id, content, payload, reason, "
                "explanation, status, created_at) VALUES (:id, :b, 'gina', :c, '{}', 'empty', "
                "'test', 'pending', :now)"
            ),
            {"id": new_id(), "b": tenant.brain_id, "c": canary, "now": now_ms()},
        )
    with transaction(engine) as conn:
        conn.execute(text("DELETE FROM memory_quarantine WHERE content = :c"), {"c": canary})
    assert _heap_holding(engine, ["memory_quarantine"], [canary])  # dead, but there
    outcome = erasure.compact(engine)
    assert "memory_quarantine" in outcome["vacuumed"]
    assert _heap_holding(engine, ["memory_quarantine"], [canary]) == []
