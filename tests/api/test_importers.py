"""Importers from mem0, OpenMemory and MemoryVault, each on a fixture built from the schemas of
the seeds (tests/fixtures/importers: SQL text run into SQLite files here, and JSON exports),
written into a brain on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core.kernel.db.engine import transaction
from core.kernel.ids import parse_time
from core.transfer.importers.pipeline import MigrationReport, run_import
from core.transfer.importers.records import SourceError
from tests.lambda_client import LambdaClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"
ROOT = Path(__file__).resolve().parents[2]


def ms(moment: str) -> int:
    return parse_time(moment)


def sqlite_fixture(tmp_path: Path, name: str) -> Path:
    """The SQLite database a fixture's SQL describes, made fresh for the test."""
    path = tmp_path / f"{name}.db"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / f"{name}.sql").read_text())
    conn.close()
    return path


def new_slug() -> str:
    return f"imp-{uuid.uuid4().hex[:10]}"


def _brain(conn: Any, slug: str) -> str:
    return str(conn.execute(text("SELECT id FROM brains WHERE slug = :s"), {"s": slug}).scalar())


def memories(engine: Engine, slug: str) -> dict[str, dict[str, Any]]:
    """The brain's memories by the id they had in the source."""
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text(
                "SELECT id, user_id, agent_id, run_id, type, title, key, content, tags, source, "
                "confidence, importance, metadata, state, superseded_by, created_at, updated_at, "
                "archived_at, deleted_at, last_accessed_at FROM memories WHERE brain_id = :b"
            ),
            {"b": _brain(conn, slug)},
        ).mappings()
        out = {}
        for row in rows:
            memory = {
                **row,
                "tags": json.loads(row["tags"]),
                "metadata": json.loads(row["metadata"]),
            }
            out[memory["metadata"]["imported_from"]["id"]] = memory
    return out


def history(engine: Engine, slug: str, memory_id: str) -> list[dict[str, Any]]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text(
                "SELECT event, old_memory, new_memory, detail, actor_id, role, is_deleted, "
                "user_id, created_at, updated_at FROM memory_history "
                "WHERE brain_id = :b AND memory_id = :m ORDER BY created_at, id"
            ),
            {"b": _brain(conn, slug), "m": memory_id},
        ).mappings()
        return [{**r, "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]


def links(engine: Engine, slug: str) -> list[tuple[Any, ...]]:
    """(from, to, relation, label, weight, origin, created_at), ends by source id."""
    by_id = {m["id"]: source for source, m in memories(engine, slug).items()}
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text(
                "SELECT from_id, to_id, relation, label, weight, origin, created_at "
                "FROM memory_links WHERE brain_id = :b"
            ),
            {"b": _brain(conn, slug)},
        ).all()
    return sorted(
        (by_id[r.from_id], by_id[r.to_id], r.relation, r.label, r.weight, r.origin, r.created_at)
        for r in rows
    )


def users(engine: Engine, slug: str) -> dict[str, tuple[Any, ...]]:
    """user_id -> (summary, reflection_count, created_at, updated_at, summarized_at)."""
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            text(
                "SELECT user_id, summary, reflection_count, created_at, updated_at, summarized_at "
                "FROM users WHERE brain_id = :b"
            ),
            {"b": _brain(conn, slug)},
        ).all()
    return {r.user_id: tuple(r)[1:] for r in rows}


def table_count(engine: Engine, slug: str, table: str) -> int:
    with transaction(engine, write=False) as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE brain_id = :b"), {"b": _brain(conn, slug)}
            ).scalar_one()
        )


def imported(report: MigrationReport) -> dict[str, int]:
    assert report.imported is not None
    return {k: r.imported for k, r in report.imported.kinds.items() if r.imported}


def assert_rerun_imports_nothing(
    engine: Engine, slug: str, system: str, paths: list[Path], **options: Any
) -> None:
    tables = ("memories", "memory_history", "memory_links", "users")
    before = {t: table_count(engine, slug, t) for t in tables}
    for strategy in ("skip_existing", "merge"):
        again = run_import(engine, system, paths, slug, strategy=strategy, **options)
        assert again.imported is not None
        assert again.imported.imported == 0 and again.imported.updated == 0, again.lines()
    assert {t: table_count(engine, slug, t) for t in tables} == before


# -- mem0 -----------------------------------------------------------------------------------


def test_mem0_current_history_rebuilds_memories_and_carries_the_rows(
    engine: Engine, tmp_path: Path
) -> None:
    db = sqlite_fixture(tmp_path, "mem0_history_current")
    slug = new_slug()
    report = run_import(engine, "mem0", [db], slug)

    assert report.read == 11
    assert imported(report) == {"memory": 5, "history": 8}
    assert report.skipped_by_reason() == {
        "history: no memory_id": 1,
        "history: no time, nor any other row of its memory": 1,
        "history: unknown event 'NOOP'": 1,
        "memory: duplicate_content": 1,
    }
    found = memories(engine, slug)
    assert set(found) == {"mem-tea", "mem-city", "mem-peanut", "mem-job", "mem-dark"}
    tea = found["mem-tea"]
    assert (tea["content"], tea["state"], tea["user_id"], tea["type"]) == (
        "Likes green tea with honey",
        "active",
        None,
        "note",
    )
    assert tea["created_at"] == ms("2024-07-01T10:00:00-07:00")
    assert tea["updated_at"] == ms("2024-07-03T09:30:00-07:00")
    assert tea["metadata"] == {
        "imported_from": {"system": "mem0", "id": "mem-tea", "rebuilt_from": "history"}
    }
    assert [
        (h["event"], h["old_memory"], h["new_memory"], h["actor_id"], h["role"], h["created_at"])
        for h in history(engine, slug, tea["id"])
    ] == [
        ("ADD", None, "Likes green tea", "alice", "user", ms("2024-07-01T10:00:00-07:00")),
        (
            "UPDATE",
            "Likes green tea",
            "Likes green tea with honey",
            "alice",
            "user",
            ms("2024-07-03T09:30:00-07:00"),
        ),
    ]
    assert history(engine, slug, tea["id"])[0]["detail"] == {
        "imported_from": {"system": "mem0", "id": "h-101"}
    }

    # Deleted in mem0: imported in state deleted, its DELETE row (written without a time by
    # mem0) placed just after the ADD.
    city = found["mem-city"]
    added = ms("2024-07-02T08:00:00-07:00")
    assert (city["content"], city["state"], city["created_at"], city["deleted_at"]) == (
        "Lives in Lyon",
        "deleted",
        added,
        added + 1,
    )
    assert [
        (h["event"], h["old_memory"], h["new_memory"], h["is_deleted"], h["created_at"])
        for h in history(engine, slug, city["id"])
    ] == [("ADD", None, "Lives in Lyon", 0, added), ("DELETE", "Lives in Lyon", None, 1, added + 1)]

    # Only an UPDATE row: born at the row's created_at, changed at its updated_at.
    job = found["mem-job"]
    assert (job["content"], job["created_at"], job["updated_at"]) == (
        "Works at Initech",
        ms("2024-06-01T09:00:00-07:00"),
        ms("2024-07-05T09:00:00-07:00"),
    )
    # The duplicate's history joins the memory holding the content.
    assert [
        (h["event"], h["created_at"]) for h in history(engine, slug, found["mem-dark"]["id"])
    ] == [("ADD", ms("2024-07-06T10:00:00-07:00")), ("ADD", ms("2024-07-07T10:00:00-07:00"))]

    assert_rerun_imports_nothing(engine, slug, "mem0", [db])


def test_mem0_legacy_six_column_history(engine: Engine, tmp_path: Path) -> None:
    db = sqlite_fixture(tmp_path, "mem0_history_legacy")
    db = db.rename(tmp_path / "history.db")
    slug = new_slug()
    report = run_import(engine, "mem0", [tmp_path], slug, user_id="bob")  # mem0's directory

    assert "legacy table" in report.description
    assert imported(report) == {"memory": 2, "history": 4}
    [(reason, count)] = report.skipped_by_reason().items()
    assert reason.startswith("history: unreadable time") and "yesterday-ish" in reason
    assert count == 1
    found = memories(engine, slug)
    name, chess = found["old-name"], found["old-chess"]
    assert (name["content"], name["user_id"], name["state"]) == ("Name is Robert", "bob", "active")
    assert (name["created_at"], name["updated_at"]) == (
        ms("2024-05-01T12:00:00Z"),
        ms("2024-05-02T12:00:00Z"),
    )
    assert (chess["content"], chess["state"], chess["deleted_at"]) == (
        "Plays chess",
        "deleted",
        ms("2024-05-04T12:00:00Z"),
    )
    assert [
        (h["event"], h["old_memory"], h["new_memory"], h["user_id"], h["is_deleted"])
        for h in history(engine, slug, chess["id"])
    ] == [("ADD", None, "Plays chess", "bob", 0), ("DELETE", "Plays chess", None, "bob", 1)]
    assert set(users(engine, slug)) == {"bob"}
    assert_rerun_imports_nothing(engine, slug, "mem0", [db], user_id="bob")


def test_mem0_get_all_export(engine: Engine) -> None:
    path = FIXTURES / "mem0_get_all.json"
    slug = new_slug()
    report = run_import(engine, "mem0", [path], slug)

    assert report.read == 5  # four memories and one relation
    assert imported(report) == {"memory": 3}
    assert report.skipped_by_reason() == {
        "memory: no memory text": 1,
        "relation: graph relations name entities, not memories: not imported": 1,
    }
    found = memories(engine, slug)
    assert set(found) == {"mem-tea", "mem-trip", "mem-bob-city"}
    tea = found["mem-tea"]
    assert tea["content"] == "Likes green tea with honey"
    assert (tea["user_id"], tea["agent_id"], tea["run_id"]) == ("alice", None, None)
    assert tea["tags"] == ["food", "preferences"]
    assert tea["metadata"] == {
        "category": "food",
        "imported_from": {
            "system": "mem0",
            "id": "mem-tea",
            "hash": "5b1d5c4e2f0a8f1b2e3c4d5e6f708192",
        },
    }
    assert tea["created_at"] == ms("2024-07-01T10:00:00.123-07:00")
    assert tea["updated_at"] == ms("2024-07-03T09:30:00-07:00")
    trip = found["mem-trip"]
    assert (trip["agent_id"], trip["run_id"]) == ("travel-bot", "run-7")
    assert trip["metadata"]["mem0"] == {"score": 0.42}
    assert trip["updated_at"] == trip["created_at"] == ms("2024-07-09T18:15:00-07:00")
    assert found["mem-bob-city"]["user_id"] == "bob"
    # No history in a get_all export: each memory gets the ADD the import writes.
    [add] = history(engine, slug, tea["id"])
    assert (add["event"], add["new_memory"], add["created_at"]) == (
        "ADD",
        "Likes green tea with honey",
        tea["created_at"],
    )
    assert add["detail"]["imported"] is True
    assert set(users(engine, slug)) == {"alice", "bob"}
    assert_rerun_imports_nothing(engine, slug, "mem0", [path])


def test_mem0_export_with_its_history_db(engine: Engine, tmp_path: Path) -> None:
    """The JSON is the current state (user ids, tags); history.db brings the history rows and
    the memories only it knows."""
    paths = [FIXTURES / "mem0_get_all.json", sqlite_fixture(tmp_path, "mem0_history_current")]
    slug = new_slug()
    report = run_import(engine, "mem0", paths, slug)

    assert imported(report) == {"memory": 7, "history": 8}
    found = memories(engine, slug)
    tea = found["mem-tea"]
    assert (tea["user_id"], tea["tags"]) == ("alice", ["food", "preferences"])
    assert [(h["event"], h["user_id"]) for h in history(engine, slug, tea["id"])] == [
        ("ADD", "alice"),
        ("UPDATE", "alice"),
    ]
    assert found["mem-city"]["state"] == "deleted"
    assert found["mem-bob-city"]["state"] == "active"  # bob's, not the deleted one's user


# -- OpenMemory -----------------------------------------------------------------------------


def test_openmemory_v1_1(engine: Engine, tmp_path: Path) -> None:
    db = sqlite_fixture(tmp_path, "openmemory_v1_1")
    slug = new_slug()
    report = run_import(engine, "openmemory", [db], slug)

    assert report.description.startswith("OpenMemory v1.1 database")
    assert report.read == 7
    assert imported(report) == {"memory": 3, "link": 1}
    assert report.skipped_by_reason() == {
        "memory: no content": 1,
        "waypoint: links a memory to itself": 1,
        "waypoint: memory om-gone is not imported": 1,
    }
    found = memories(engine, slug)
    kyoto = found["om-kyoto"]
    assert (kyoto["content"], kyoto["type"], kyoto["user_id"]) == (
        "Visited Kyoto temples in spring",
        "journal",
        None,
    )
    assert kyoto["tags"] == ["travel", "japan", "episodic"]
    assert kyoto["importance"] == pytest.approx(0.8)
    assert (kyoto["created_at"], kyoto["updated_at"], kyoto["last_accessed_at"]) == (
        1717200000000,
        1717250000000,
        1717300000000,
    )
    assert kyoto["metadata"] == {
        "source": "chat",
        "mood": "calm",
        "openmemory": {
            "salience": 0.8,
            "decay_lambda": 0.015,
            "version": 2,
            "feedback_score": 0.5,
            "segment": 0,
            "simhash": "a1b2c3d4",
            "primary_sector": "episodic",
            "sectors": ["emotional", "episodic"],
        },
        "imported_from": {"system": "openmemory", "id": "om-kyoto"},
    }
    window = found["om-window"]
    assert (window["type"], window["tags"], window["importance"]) == (
        "note",
        ["preferences", "semantic"],
        1.0,  # salience 1.4, clamped
    )
    deploy = found["om-deploy"]
    assert deploy["tags"] == ["procedural"]
    assert deploy["updated_at"] == deploy["created_at"] == 1717220000000
    assert deploy["last_accessed_at"] is None
    assert links(engine, slug) == [
        ("om-kyoto", "om-window", "related", "waypoint", 0.62, "inferred", 1717210000500)
    ]
    assert users(engine, slug) == {}
    assert_rerun_imports_nothing(engine, slug, "openmemory", [db])


def test_openmemory_v1_2_users_summaries_and_waypoints(
    engine: Engine, tmp_path: Path, client: LambdaClient, tenant: Any
) -> None:
    db = sqlite_fixture(tmp_path, "openmemory_v1_2")
    report = run_import(engine, "openmemory", [db], tenant.slug)

    assert report.description.startswith("OpenMemory v1.2 database")
    assert report.read == 9
    assert imported(report) == {"memory": 4, "link": 2, "user": 3}
    assert report.skipped == 0
    found = memories(engine, tenant.slug)
    assert {k: (m["user_id"], m["type"], m["tags"]) for k, m in found.items()} == {
        "om-py": ("user_123", "note", ["learning", "achievement", "semantic"]),
        "om-ts": ("user_123", "note", ["preferences", "semantic"]),
        "om-rex": ("user_456", "journal", ["episodic"]),
        "om-maint": (None, "note", ["ops", "schedule", "reflective"]),
    }
    assert found["om-maint"]["importance"] == 0.0  # salience -0.2, clamped
    assert found["om-py"]["metadata"]["course"] == "py101"
    assert links(engine, tenant.slug) == [
        ("om-rex", "om-py", "related", "waypoint", 0.21, "inferred", 1718130000500),
        ("om-ts", "om-py", "related", "waypoint", 0.55, "inferred", 1718120000500),
    ]
    assert users(engine, tenant.slug) == {
        "user_123": (
            "Learning Python; prefers TypeScript.",
            3,
            1718100000000,
            1718150000000,
            1718150000000,
        ),
        "user_456": (None, 0, 1718130000000, 1718130000000, None),
        "user_789": ("New user, no memories yet.", 1, 1718160000000, 1718160000000, 1718160000000),
    }
    # The imported summary is served as is: no memory of the user is newer than it.
    response = client.get("/v1/users/user_123/summary")
    assert response.status == 200, response.body
    body = response.json()
    assert (body["summary"], body["reflection_count"], body["new_memories"]) == (
        "Learning Python; prefers TypeScript.",
        3,
        0,
    )
    assert_rerun_imports_nothing(engine, tenant.slug, "openmemory", [db])


# -- MemoryVault ----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["memoryvault_export.json", "memoryvault_d1.sql"])
def test_memoryvault(engine: Engine, fixture: str) -> None:
    path = FIXTURES / fixture
    dump = fixture.endswith(".sql")
    slug = new_slug()
    report = run_import(engine, "memoryvault", [path], slug, source_brain="main" if dump else None)

    expected_skips = {
        "changelog: a link event: 'link_created'": 1,
        "changelog: event 'memory_viewed' has no history equivalent": 1,
        "changelog: memory mv-gone is not imported": 1,
        "link: memory mv-missing is not imported": 1,
        "memory: a fact without a key": 1,
        "memory: no content": 1,
        "memory_conflict_resolutions: conflict resolutions are not imported: Mnemo detects "
        "conflicts again": 1,
        "memory_watches: watches are not imported: their webhook URLs and secrets are not in "
        "the export; create them again": 1,
        "policy: Mnemo's brain policy has no such field": 1,
    }
    if not dump:
        expected_skips["link: unknown relation type 'inspires'"] = 1
    assert report.skipped_by_reason() == expected_skips
    assert report.read == (19 if dump else 20)
    assert imported(report) == {"memory": 4, "history": 6, "link": 2, "trust": 2, "policy": 1}

    found = memories(engine, slug)
    assert set(found) == {"mv-note1", "mv-fact-old", "mv-fact-new", "mv-journal"}
    note = found["mv-note1"]
    assert {k: note[k] for k in ("type", "title", "key", "content", "tags", "source")} == {
        "type": "note",
        "title": "Launch plan",
        "key": None,
        "content": "Ship the beta on May 1",
        "tags": ["launch", "planning"],
        "source": "slack #eng",
    }
    assert (note["confidence"], note["importance"], note["user_id"]) == (0.8, 0.9, None)
    assert (note["created_at"], note["updated_at"], note["state"]) == (
        1714000000000,
        1714100000000,
        "active",
    )
    new, old = found["mv-fact-new"], found["mv-fact-old"]
    assert (new["type"], new["key"], new["content"], new["state"]) == (
        "fact",
        "home city",
        "Lives in Lyon",
        "active",
    )
    # Two current facts for one key in MemoryVault: the older is archived, superseded.
    assert (old["key"], old["state"], old["archived_at"], old["superseded_by"]) == (
        "home city",
        "archived",
        1714200000000,
        new["id"],
    )
    journal = found["mv-journal"]
    assert (journal["type"], journal["state"], journal["archived_at"], journal["tags"]) == (
        "journal",
        "archived",
        1714400000000,
        [],
    )

    def events(source_id: str) -> list[tuple[Any, ...]]:
        return [
            (h["event"], h["new_memory"], h["created_at"])
            for h in history(engine, slug, found[source_id]["id"])
        ]

    assert events("mv-note1") == [
        ("ADD", "Ship the beta on May 1", 1714000000000),
        ("UPDATE", None, 1714100000000),
    ]
    assert history(engine, slug, note["id"])[0]["detail"] == {
        "imported_from": {
            "system": "memoryvault",
            "id": "cl-1",
            "event_type": "memory_saved",
            "summary": "Saved note: Launch plan",
            "payload": {"type": "note"},
        }
    }
    assert events("mv-journal") == [
        ("ADD", "Met Dana about the API", 1714300000000),
        ("ARCHIVE", None, 1714400000000),
    ]
    assert events("mv-fact-old") == [
        ("ADD", "Lives in Paris", 1714000100000),
        ("ARCHIVE", None, 1714200000000),
    ]
    assert events("mv-fact-new") == [("ADD", "Lives in Lyon", 1714200000000)]
    assert links(engine, slug) == [
        ("mv-fact-new", "mv-fact-old", "supersedes", None, 1.0, "manual", 1714200001000),
        ("mv-note1", "mv-journal", "supports", "context", 1.0, "manual", 1714300100000),
    ]
    with transaction(engine, write=False) as conn:
        brain = _brain(conn, slug)
        trust = conn.execute(
            text(
                "SELECT source_key, trust, notes, created_at, updated_at FROM brain_source_trust "
                "WHERE brain_id = :b ORDER BY source_key"
            ),
            {"b": brain},
        ).all()
        policy = conn.execute(
            text("SELECT policy_json, created_at FROM brain_policies WHERE brain_id = :b"),
            {"b": brain},
        ).one()
        leaked = conn.execute(
            text("SELECT count(*) FROM memories WHERE content LIKE 'Another tenant%'")
        ).scalar_one()
    assert [tuple(row) for row in trust] == [
        ("example.com", 0.3, None, 1714000000000, 1714000000000),
        ("slack #eng", 0.9, "team channel", 1714000000000, 1714000500000),
    ]
    assert json.loads(policy.policy_json) == {"decay_days": 45, "retention_days": None}
    assert policy.created_at == (1714000000000 if dump else 1714700000000)
    assert leaked == 0  # the dump's other brain stays out
    assert_rerun_imports_nothing(
        engine, slug, "memoryvault", [path], source_brain="main" if dump else None
    )


# -- malformed input ------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def test_a_malformed_source_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, "export.json", '{"results": [')
    slug = new_slug()
    with pytest.raises(SourceError):
        run_import(engine, "mem0", [path], slug)
    with transaction(engine, write=False) as conn:
        made = conn.execute(text("SELECT count(*) FROM brains WHERE slug = :s"), {"s": slug})
        assert made.scalar_one() == 0


# -- the command ----------------------------------------------------------------------------


def _mnemo(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNEMO_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "handlers.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_shows_progress_and_the_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/mnemo.db"
    db = sqlite_fixture(tmp_path, "openmemory_v1_1")
    done = _mnemo(url, "import", "--from", "openmemory", str(db), "--brain", "om")
    assert done.returncode == 0, done.stderr
    # Four records (three memories, one link) from seven source rows.
    assert "100%" in done.stderr and "4/4" in done.stderr
    assert done.stdout.splitlines()[:4] == [
        "OpenMemory v1.1 database (4 memories, 3 waypoints) -> brain 'om' (merge)",
        "read: 7 source rows",
        "imported: 4 (3 memory, 1 link)",
        "skipped: 3",
    ]
    assert "    waypoint om-deploy->om-gone: memory om-gone is not imported" in done.stdout

    again = _mnemo(
        url, "import", "--from", "openmemory", str(db), "--brain", "om",
        "--strategy", "skip_existing", "--json",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["imported"], report["skipped_by_reason"]["memory: exists"]) == (0, 3)

    bad = _write(tmp_path, "bad.json", '{"schema": "memoryvault_export_v1",\n"data": [}')
    failed = _mnemo(url, "import", "--from", "memoryvault", str(bad), "--brain", "mv")
    assert failed.returncode == 2
    assert failed.stderr.strip() == (f"error: {bad}:2: not valid JSON: Expecting value (column 10)")
