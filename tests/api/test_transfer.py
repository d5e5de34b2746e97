"""Export and import of a brain (JSON Lines) on both stores: a round trip reproduces every
memory, link, history row, user, trust and policy row field by field, ids kept or remapped;
the strategies; the REST endpoints and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.kernel.config import EmbedderSettings, Limits, Settings
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import ensure_schema
from core.kernel.errors import Forbidden
from core.kernel.ids import iso
from core.kernel.scope import Scope
from core.transfer import format as fmt
from core.transfer.exporting import export_records
from core.transfer.importing import import_records
from tests.conftest import Tenant, make_tenant
from tests.lambda_client import LambdaClient
from tests.transfer_fixtures import EMBEDDER, add, canonical, dump, fill, owner_scope

ROOT = Path(__file__).resolve().parents[2]


def _import(engine: Engine, target: Scope | str, records: list[dict[str, Any]], **kw: Any) -> Any:
    return import_records(engine, target, iter(records), embedder=EMBEDDER, **kw)


def _brain_id(engine: Engine, slug: str) -> str:
    return owner_scope(engine, slug).brain_id


def test_export_streams_a_header_every_record_and_an_end(engine: Engine, tenant: Tenant) -> None:
    scope = owner_scope(engine, tenant.slug)
    ids = fill(engine, scope)
    records = list(export_records(engine, tenant.slug))
    header, end = records[0], records[-1]
    assert header["kind"] == fmt.FORMAT_KIND and header["version"] == fmt.FORMAT_VERSION
    assert header["brain"]["slug"] == tenant.slug and isinstance(header["exported_at"], int)
    kinds = [r["kind"] for r in records[1:-1]]
    assert kinds == sorted(kinds, key=fmt.RECORD_KINDS.index), "memories first, then the rest"
    assert end == {
        "kind": "end",
        "counts": {"memory": 7, "history": 11, "link": 2, "user": 2, "trust": 1, "policy": 1},
    }
    tea = next(
        r["data"] for r in records if r["kind"] == "memory" and r["data"]["id"] == ids["tea"]
    )
    assert tea["tags"] == ["drinks", "morning"]
    assert tea["metadata"] == {"mood": "calm", "n": 3, "nested": {"a": [1, 2]}}
    assert isinstance(tea["created_at"], int) and tea["occurred_at"] == 1772359200123
    assert set(tea) >= {
        "id", "user_id", "agent_id", "run_id", "type", "title", "key", "content", "tags",
        "source", "confidence", "importance", "metadata", "state", "occurred_at", "created_at",
        "updated_at", "archived_at", "deleted_at", "access_count", "last_accessed_at",
        "superseded_by",
    }  # fmt: skip
    assert "brain_id" not in tea and "content_hash" not in tea
    active = list(export_records(engine, tenant.slug, include_archived=False))
    assert active[-1]["counts"]["memory"] == 4  # Lyon was superseded: archived
    assert {ids["archived"], ids["deleted"]}.isdisjoint(
        r["data"].get("memory_id") for r in active if r["kind"] == "history"
    )


def test_export_pages_through_more_rows_than_a_page(engine: Engine, tenant: Tenant) -> None:
    scope = owner_scope(engine, tenant.slug)
    for i in range(7):
        add(engine, scope, content=f"memory number {i}")
    paged = list(export_records(engine, scope, page_size=2))
    whole = list(export_records(engine, scope))
    assert [r for r in paged if r["kind"] != fmt.FORMAT_KIND] == [
        r for r in whole if r["kind"] != fmt.FORMAT_KIND
    ]
    assert paged[-1]["counts"]["memory"] == 7


def test_round_trip_into_a_new_database_keeps_every_field_and_id(
    engine: Engine, tenant: Tenant, make_empty_database: Callable[[], str], store: str
) -> None:
    scope = owner_scope(engine, tenant.slug)
    fill(engine, scope)
    before = dump(engine, scope.brain_id)
    records = list(export_records(engine, tenant.slug))

    url = make_empty_database()
    target = get_engine(url)
    try:
        ensure_schema(target)
        report = _import(target, "restored", records, strategy="merge")
        after = dump(target, _brain_id(target, "restored"))
        assert report.skipped == 0 and report.remapped == 0 and report.complete
        assert report.kinds["memory"].imported == 7 and report.kinds["history"].imported == 11
        for table in before:
            assert after[table] == before[table], table
        # Searchable at once: full-text and vectors were rebuilt in the import's transactions.
        found = json.dumps(list(export_records(target, "restored")))
        assert "green tea" in found
        with transaction(target, write=False) as conn:
            if store == "sqlite":
                hits = conn.execute(
                    text("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'jazz'")
                ).scalar()
                assert hits == 1
    finally:
        dispose(url)


@pytest.mark.parametrize("remap_ids", [True, False])
def test_round_trip_in_the_same_database_remaps_consistently(
    engine: Engine, tenant: Tenant, remap_ids: bool
) -> None:
    """Ids are global: without remap_ids the ids another brain holds get new ones anyway, and
    links, history, superseded_by and history details follow either way."""
    scope = owner_scope(engine, tenant.slug)
    ids = fill(engine, scope)
    before = dump(engine, scope.brain_id)
    records = list(export_records(engine, tenant.slug))
    target = make_tenant(engine)
    report = _import(engine, target.slug, records, strategy="merge", remap_ids=remap_ids)
    assert report.skipped == 0
    assert report.remapped == 7 + 11 + 2
    after = dump(engine, target.brain_id)
    assert canonical(after) == canonical(before)
    new_ids = {m["id"] for m in after["memories"]}
    assert new_ids.isdisjoint(ids.values())
    lyon = next(m for m in after["memories"] if m["content"] == "Alice lives in Lyon")
    paris = next(m for m in after["memories"] if m["content"] == "Alice lives in Paris")
    assert lyon["superseded_by"] == paris["id"]
    details = [json.loads(h["detail"]) for h in after["memory_history"] if h["detail"]]
    assert {"reason": "superseded", "superseded_by": paris["id"], "from": "active"} in details


def test_strategies_merge_skip_existing_replace(
    engine: Engine, make_empty_database: Callable[[], str]
) -> None:
    url = make_empty_database()
    target = get_engine(url)
    try:
        ensure_schema(target)
        source = make_tenant(engine)
        scope = owner_scope(engine, source.slug)
        ids = fill(engine, scope)
        records = list(export_records(engine, source.slug))
        _import(target, "copy", records, strategy="merge")
        copy_scope = owner_scope(target, "copy")
        original = dump(target, copy_scope.brain_id)

        def drift() -> None:
            with transaction(target) as conn:
                conn.execute(
                    text(
                        "UPDATE memories SET content = 'changed', importance = 0.1 WHERE id = :id"
                    ),
                    {"id": ids["tea"]},
                )
            add(target, copy_scope, content="only in the copy")

        drift()
        skipped = _import(target, copy_scope, records, strategy="skip_existing")
        assert skipped.imported == 0
        assert skipped.kinds["memory"].skipped == {"exists": 7}
        assert skipped.kinds["history"].skipped == {"exists": 11}
        state = dump(target, copy_scope.brain_id)
        tea = next(m for m in state["memories"] if m["id"] == ids["tea"])
        assert tea["content"] == "changed"

        merged = _import(target, copy_scope, records, strategy="merge")
        assert merged.kinds["memory"].updated == 1
        assert merged.kinds["memory"].skipped == {"unchanged": 6}
        state = dump(target, copy_scope.brain_id)
        tea = next(m for m in state["memories"] if m["id"] == ids["tea"])
        assert tea["content"] == "Alice prefers green tea in the morning"
        assert tea["importance"] == 0.8
        assert "only in the copy" in [m["content"] for m in state["memories"]]
        restored = [h for h in state["memory_history"] if h["memory_id"] == ids["tea"]]
        assert restored[-1]["event"] == "UPDATE" and restored[-1]["old_memory"] == "changed"
        assert json.loads(restored[-1]["detail"])["changed"] == ["content", "importance"]

        replaced = _import(target, copy_scope, records, strategy="replace")
        assert replaced.imported == 7 + 11 + 2 + 2 + 1 + 1
        assert dump(target, copy_scope.brain_id) == original
        with transaction(target, write=False) as conn:
            events = conn.execute(
                text(
                    "SELECT event_type, payload FROM changelog WHERE brain_id = :b "
                    "AND event_type = 'brain.imported' ORDER BY created_at, id"
                ),
                {"b": copy_scope.brain_id},
            ).all()
        assert json.loads(events[-1].payload)["strategy"] == "replace"
    finally:
        dispose(url)


def test_duplicates_and_bad_records_are_skipped_with_reasons(
    engine: Engine, tenant: Tenant
) -> None:
    scope = owner_scope(engine, tenant.slug)
    existing = add(engine, scope, content="Same words", user_id="u1")
    now = 1_700_000_000_000
    records = [
        {"kind": "memory", "data": {"id": "src-1", "content": "Same words", "user_id": "u1",
                                    "created_at": now}},
        {"kind": "memory", "data": {"id": "src-2", "content": "New words",
                                    "created_at": "2023-11-14T22:13:20.001Z"}},
        {"kind": "memory", "data": {"id": "src-3", "content": "", "created_at": now}},
        {"kind": "memory", "data": {"id": "src-4", "content": "x", "type": "fact"}},
        {"kind": "memory", "data": {"id": "src-5", "content": "y", "confidence": 3}},
        {"kind": "link", "data": {"from_id": "src-2", "to_id": "src-1", "relation": "supports"}},
        {"kind": "link", "data": {"from_id": "src-2", "to_id": "nowhere", "relation": "related"}},
        {"kind": "link", "data": {"from_id": "src-2", "to_id": "src-1", "relation": "likes"}},
        {"kind": "history", "data": {"memory_id": "src-1", "event": "ADD", "new_memory": "w",
                                     "created_at": now}},
        {"kind": "trust", "data": {"source_key": "chat", "trust": 0.3}},
    ]  # fmt: skip
    report = _import(engine, scope, records, strategy="merge", remap_ids=True)
    memory = report.kinds["memory"]
    assert (memory.read, memory.imported) == (5, 1)
    assert memory.skipped == {"duplicate_content": 1, "invalid": 3}
    assert report.kinds["link"].imported == 1
    assert report.kinds["link"].skipped == {"invalid": 1, "missing_memory": 1}
    with transaction(engine, write=False) as conn:
        link = conn.execute(
            text("SELECT to_id FROM memory_links WHERE brain_id = :b AND relation = 'supports'"),
            {"b": scope.brain_id},
        ).scalar()
        new = conn.execute(
            text(
                "SELECT id, created_at FROM memories WHERE brain_id = :b AND content = 'New words'"
            ),
            {"b": scope.brain_id},
        ).one()
        history = conn.execute(
            text("SELECT memory_id, event, detail FROM memory_history WHERE brain_id = :b "
                 "ORDER BY created_at, id"),
            {"b": scope.brain_id},
        ).all()  # fmt: skip
    assert link == existing["id"], "the duplicate's links attach to the memory holding it"
    assert new.created_at == now + 1, "ISO times are read exactly"
    # The new memory came without history: it got an ADD row saying it was imported.
    added = [h for h in history if h.memory_id == new.id]
    assert [h.event for h in added] == ["ADD"] and json.loads(added[0].detail)["imported"]
    assert any(h.memory_id == existing["id"] and h.event == "ADD" for h in history)
    reasons = {(s["kind"], s["reason"]) for s in report.samples}
    assert ("memory", "invalid") in reasons and ("link", "missing_memory") in reasons


def test_import_refuses_a_bad_header_or_a_user_scoped_key(engine: Engine, tenant: Tenant) -> None:
    scope = owner_scope(engine, tenant.slug)
    from core.kernel.errors import InvalidInput

    with pytest.raises(InvalidInput, match="version 9"):
        _import(engine, scope, [{"kind": fmt.FORMAT_KIND, "version": 9}])
    with pytest.raises(InvalidInput, match="unknown record kind"):
        _import(engine, scope, [{"kind": "memroy", "data": {}}])
    user_scope = Scope(brain_id=scope.brain_id, principal="k", user_id="alice")
    with pytest.raises(Forbidden):
        _import(engine, user_scope, [])
    member = Scope(brain_id=scope.brain_id, principal="k", role="member")
    with pytest.raises(Forbidden, match="owner"):
        _import(engine, member, [], strategy="replace")


def test_a_failing_merge_keeps_committed_batches_and_a_rerun_finishes(
    engine: Engine, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [
        {"kind": "memory", "data": {"id": f"m-{tenant.slug}-{i}", "content": f"note {i}"}}
        for i in range(10)
    ]
    from core.transfer import importing

    real = importing.ImportRun._memory
    calls = {"n": 0}

    def flaky(self: Any, conn: Any, known: Any, data: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("disk on fire")
        real(self, conn, known, data)

    monkeypatch.setattr(importing.ImportRun, "_memory", flaky)
    with pytest.raises(RuntimeError):
        _import(engine, tenant.slug, records, batch_size=4)
    monkeypatch.setattr(importing.ImportRun, "_memory", real)
    scope = owner_scope(engine, tenant.slug)
    assert len(dump(engine, scope.brain_id)["memories"]) == 4  # the first batch only
    again = _import(engine, tenant.slug, records, strategy="skip_existing", batch_size=4)
    assert (again.imported, again.kinds["memory"].skipped) == (6, {"exists": 4})
    assert len(dump(engine, scope.brain_id)["memories"]) == 10


# -- REST -------------------------------------------------------------------------------------


def test_rest_export_streams_ndjson_and_import_reads_it(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    scope = owner_scope(engine, tenant.slug)
    fill(engine, scope)
    # The service embeds with the same model the fixture used, so vectors compare equal.
    settings = settings.with_(embedder=EmbedderSettings(builtin_dims=EMBEDDER.dims))
    client = LambdaClient(settings, key=tenant.key)
    reply = client.get("/v1/export")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith(fmt.MEDIA_TYPE)
    assert f'filename="{tenant.slug}.jsonl"' in reply.headers["content-disposition"]
    lines = reply.body.splitlines()
    assert json.loads(lines[0])["kind"] == fmt.FORMAT_KIND
    assert json.loads(lines[-1])["counts"]["memory"] == 7

    other = make_tenant(engine)
    # An owner (MNEMO_API_KEY owns the default brain): a writer key may not import the policy.
    owner_key = "mnemo-test-owner-key-0123456789"
    into = LambdaClient(settings.with_(api_key=owner_key, default_brain=other.slug), owner_key)
    sent = into.post(
        "/v1/import",
        query={"strategy": "merge", "remap_ids": "true"},
        body=reply.body,
        headers={"content-type": fmt.MEDIA_TYPE},
    )
    assert sent.status == 200, sent.body
    result = sent.json()
    assert result["imported"] == 7 + 11 + 2 + 2 + 1 + 1 and result["skipped"] == 0
    assert result["by_kind"]["memory"]["imported"] == 7
    assert canonical(dump(engine, other.brain_id)) == canonical(dump(engine, scope.brain_id))
    found = into.post("/v1/search", json_body={"query": "green tea"}).json()["results"]
    assert found and found[0]["memory"]["content"].startswith("Alice prefers green tea")


def test_rest_transfer_refusals(engine: Engine, settings: Settings, tenant: Tenant) -> None:
    client = LambdaClient(settings, key=tenant.key)
    scoped = client.as_key(tenant.new_key(user_id="alice"))
    assert scoped.get("/v1/export").error_code == "brain_key_required"
    line = '{"kind": "memory", "data": {"content": "hi"}}\n'
    ndjson = {"content-type": fmt.MEDIA_TYPE}
    assert client.post("/v1/import", body=line).status == 415
    replace = client.post("/v1/import", query={"strategy": "replace"}, body=line, headers=ndjson)
    assert replace.status == 403 and replace.error_code == "owner_only"
    assert (
        client.post("/v1/import", query={"strategy": "all"}, body=line, headers=ndjson).status
        == 422
    )
    bad = client.post("/v1/import", body='{"kind": "memory", "data"\n', headers=ndjson)
    assert bad.status == 422 and bad.error_code == "malformed_export"
    not_utf8 = client.post("/v1/import", body=b'{"kind": "memory"}\n\xff\n', headers=ndjson)
    assert not_utf8.status == 422 and not_utf8.error_code == "malformed_export", not_utf8.body
    small = LambdaClient(settings.with_(max_body_bytes=100), key=tenant.key)
    big = small.post("/v1/import", body=line * 10, headers=ndjson)
    assert big.status == 413
    read_only = client.as_key(tenant.new_key(read_only=True))
    assert read_only.post("/v1/import", body=line, headers=ndjson).status == 403


# -- CLI --------------------------------------------------------------------------------------


def test_cli_export_then_import(
    engine: Engine, database_url: str, tenant: Tenant, tmp_path: Path, store: str
) -> None:
    if store == "postgres":
        pytest.skip("the CLI is the same code on both stores; one run is enough")
    scope = owner_scope(engine, tenant.slug)
    fill(engine, scope)
    env = {**os.environ, "MNEMO_DATABASE_URL": database_url, "MNEMO_BUILTIN_DIMS": "64"}
    out = tmp_path / "brain.jsonl"

    def mnemo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "handlers.cli", *args],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    exported = mnemo("export", "--brain", tenant.slug, "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "7 memory" in exported.stderr
    imported = mnemo("import", str(out), "--brain", "cli-copy", "--remap-ids", "--batch", "5")
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert report["imported"] == 24 and report["batches"] == 6  # 26 lines, header and end included
    assert canonical(dump(engine, _brain_id(engine, "cli-copy"))) == canonical(
        dump(engine, scope.brain_id)
    )


def test_export_streams_over_real_http(database_url: str, engine: Engine, store: str) -> None:
    """Under `mnemo serve` the export arrives in chunks as it is read, page by page."""
    if store == "postgres":
        pytest.skip("the streaming path is the same on both stores")
    import httpx

    from bench.transfer import build
    from core.identity.keys import create_key
    from tests.serve import mnemo_serve

    built = build(database_url, 2500)
    with transaction(engine) as conn:
        key = create_key(conn, "source").secret
    with mnemo_serve(database_url) as base, httpx.Client(base_url=base, timeout=60) as http:
        chunks = 0
        lines: list[str] = []
        pending = ""
        with http.stream("GET", "/v1/export", headers={"authorization": f"Bearer {key}"}) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith(fmt.MEDIA_TYPE)
            for chunk in reply.iter_text():
                chunks += 1
                pending += chunk
                *complete, pending = pending.split("\n")
                lines += complete
    assert chunks > 1
    end = json.loads(lines[-1])
    assert end["counts"]["memory"] == 2500 and end["counts"]["history"] == built["history"]
    assert len(lines) == 2 + sum(end["counts"].values())


def test_rest_import_by_a_non_owner_does_not_set_the_policy(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    """PUT /v1/policy is for owners; a merge import by a writer key must not set it either."""
    client = LambdaClient(settings, key=tenant.key)
    policy = {"kind": "policy", "data": {"policy_json": json.dumps({"snapshot_retention": 1})}}
    memory = {"kind": "memory", "data": {"content": "imported by a writer"}}
    body = "".join(json.dumps(r) + "\n" for r in (memory, policy))
    reply = client.post("/v1/import", body=body, headers={"content-type": fmt.MEDIA_TYPE})
    assert reply.status == 200, reply.body
    skipped = {(s["kind"], s["reason"]) for s in reply.json()["skipped_samples"]}
    assert ("policy", "owner_only") in skipped
    with transaction(engine, write=False) as conn:
        stored = conn.execute(
            text("SELECT policy_json FROM brain_policies WHERE brain_id = :b"),
            {"b": tenant.brain_id},
        ).scalar()
    assert stored is None


def _import_memories(client: LambdaClient, memories: list[dict[str, Any]]) -> Any:
    """POST /v1/import of these memory records; the report."""
    body = "".join(json.dumps({"kind": "memory", "data": d}) + "\n" for d in memories)
    reply = client.post("/v1/import", body=body, headers={"content-type": fmt.MEDIA_TYPE})
    assert reply.status == 200, reply.body
    return reply.json()


def test_rest_import_skips_memories_with_fields_of_the_wrong_type(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    """A malformed field is an `invalid` skip with its reason, never a 500."""
    client = LambdaClient(settings, key=tenant.key)
    bad = [
        {"content": "a", "tags": "drinks"},
        {"content": "b", "metadata": "not json"},
        {"content": "c", "title": {"a": 1}},
        {"content": "d", "user_id": 5},
        {"content": "e", "key": ["k"]},
    ]
    good = {"content": "f", "id": 7}
    result = _import_memories(client, [*bad, good])
    assert result["by_kind"]["memory"]["skipped_by_reason"] == {"invalid": len(bad)}
    assert result["imported"] == 1
    assert all(s["message"] for s in result["skipped_samples"])


def test_imports_hold_to_the_apis_limits_and_a_snapshot_does_not(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    """What POST /v1/memories refuses, POST /v1/import skips (reason over_limit, with the
    limit it broke): an import is no way around the content, tag and metadata limits."""
    limits = Limits(content_bytes=100, tags=2, tag_chars=8, metadata_bytes=64)
    client = LambdaClient(settings.with_(limits=limits), key=tenant.key)
    over = [
        {"content": "x" * 101},
        {"content": "three tags", "tags": ["a", "b", "c"]},
        {"content": "long tag", "tags": ["ninechars"]},
        {"content": "big metadata", "metadata": {"note": "y" * 64}},
        {"content": "long title", "title": "t" * 257},
    ]
    assert client.post("/v1/memories", json_body=over[0]).status == 413
    within = {"content": "x" * 100, "tags": ["a", "b"], "metadata": {"n": 1}}
    result = _import_memories(client, [*over, within])
    assert result["by_kind"]["memory"]["skipped_by_reason"] == {"over_limit": len(over)}
    assert result["imported"] == 1
    assert {s["reason"] for s in result["skipped_samples"]} == {"over_limit"}
    assert any("the limit is 100" in s["message"] for s in result["skipped_samples"])
    # Without limits (what a snapshot restore passes) every one of them is taken as it is.
    lines = [{"kind": "memory", "data": d} for d in over]
    report = _import(engine, f"no-limits-{tenant.brain_id[-8:]}", lines)
    assert report.to_dict()["imported"] == len(over)


def test_rest_import_skips_rows_the_database_would_refuse(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    """Wrong types and values outside a CHECK are `invalid` skips, never a 500 (nor, on
    SQLite, stored as they came)."""
    client = LambdaClient(settings, key=tenant.key)
    memories = [{"kind": "memory", "data": {"id": f"wt-{n}", "content": f"m{n}"}} for n in (1, 2)]
    bad = [
        {"kind": "link", "data": {"from_id": "wt-1", "to_id": "wt-2", "relation": "related",
                                  "weight": "heavy"}},
        {"kind": "link", "data": {"from_id": "wt-1", "to_id": "wt-2", "relation": "supports",
                                  "origin": "guessed"}},
        {"kind": "user", "data": {"user_id": "bob", "reflection_count": "many"}},
        {"kind": "user", "data": {"user_id": {"x": 1}}},
        {"kind": "trust", "data": {"source_key": "chat", "trust": "high"}},
        {"kind": "trust", "data": {"source_key": "chat2", "trust": 7}},
    ]  # fmt: skip
    # A null where the column needs a value takes its default.
    memories.append({"kind": "trust", "data": {"source_key": "chat3", "trust": None}})
    body = "".join(json.dumps(r) + "\n" for r in [*memories, *bad])
    reply = client.post("/v1/import", body=body, headers={"content-type": fmt.MEDIA_TYPE})
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["skipped"] == len(bad) and result["imported"] == 3
    assert {s["reason"] for s in result["skipped_samples"]} == {"invalid"}


def test_imported_keys_are_stored_as_the_api_stores_them(engine: Engine, tenant: Tenant) -> None:
    """Runs of white space in a key become one space (what POST /v1/memories does), so fact
    keys and conflict detection match an imported key as they match any other."""
    scope = owner_scope(engine, tenant.slug)
    records = [
        {
            "kind": "memory",
            "data": {"content": "at noon", "type": "fact", "key": " Lunch \t time "},
        },
        {"kind": "memory", "data": {"content": "blank", "type": "fact", "key": "   "}},
    ]
    report = _import(engine, scope, records)
    assert report.kinds["memory"].imported == 1
    assert report.kinds["memory"].skipped == {"invalid": 1}
    with transaction(engine, write=False) as conn:
        keys = conn.execute(
            text("SELECT key FROM memories WHERE brain_id = :b"), {"b": scope.brain_id}
        ).scalars()
        assert list(keys) == ["Lunch time"]


def test_imported_memories_are_dated_as_writes_are(
    engine: Engine, settings: Settings, tenant: Tenant
) -> None:
    """The dates a memory's content names (memory_dates, read by time-aware ranking) are
    resolved against the imported memory's own time, as for a memory saved through the API;
    a merge that rewrites a memory rewrites its dates."""
    scope = owner_scope(engine, tenant.slug)
    said = "2023-06-08T12:00:00.000Z"  # "yesterday", said then, is 7 June 2023
    records = [
        {
            "kind": "memory",
            "data": {
                "id": "01JIMPORTEDDATED000000000A",
                "content": "Dana flew to Lisbon yesterday",
                "occurred_at": said,
            },
        },
        {"kind": "memory", "data": {"content": "Dana prefers window seats"}},
    ]
    assert _import(engine, scope, records).kinds["memory"].imported == 2

    def dated() -> list[tuple[str, str]]:
        with transaction(engine, write=False) as conn:
            rows = conn.execute(
                text(
                    "SELECT m.content, d.starts_at, d.ends_at FROM memory_dates d "
                    "JOIN memories m ON m.id = d.memory_id WHERE d.brain_id = :b"
                ),
                {"b": scope.brain_id},
            ).all()
        return [(r.content, iso(r.starts_at), iso(r.ends_at)) for r in rows]

    assert dated() == [
        ("Dana flew to Lisbon yesterday", "2023-06-07T00:00:00.000Z", "2023-06-08T00:00:00.000Z")
    ]
    client = LambdaClient(settings, key=tenant.key)
    when = client.post("/v1/search", json_body={"query": "where was Dana on 7 June 2023"})
    assert when.json()["results"][0]["memory"]["content"] == "Dana flew to Lisbon yesterday"

    moved = dict(records[0], data={**records[0]["data"], "content": "Dana flew home last week"})
    assert _import(engine, scope, [moved], strategy="merge").kinds["memory"].updated == 1
    assert dated() == [
        ("Dana flew home last week", "2023-05-29T00:00:00.000Z", "2023-06-05T00:00:00.000Z")
    ]
