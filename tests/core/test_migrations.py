"""ensure_schema and the migrations: from empty, idempotent, race-safe, cheap when warm."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, inspect, text

from core.identity import sessions
from core.kernel.db import migrations
from core.kernel.db.engine import dispose, get_engine, transaction
from core.kernel.db.migrations import LATEST_VERSION, MIGRATIONS, ensure_schema, migrate
from core.kernel.db.schema import DIALECT_EXTRAS, metadata


def _versions(engine: Engine) -> list[tuple[int, str]]:
    with transaction(engine, write=False) as conn:
        rows = conn.execute(text("SELECT version, name FROM schema_version ORDER BY version"))
        return [(int(v), str(n)) for v, n in rows]


def _shape(engine: Engine) -> dict[str, Any]:
    """Tables, columns (name, nullability), primary keys and indexes, as the database sees them."""
    with warnings.catch_warnings():
        # SQLite reflection skips expression indexes with a warning; we compare their names.
        warnings.simplefilter("ignore")
        insp = inspect(engine)
        shape: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            shape[table] = {
                "columns": sorted((c["name"], c["nullable"]) for c in insp.get_columns(table)),
                "pk": sorted(insp.get_pk_constraint(table)["constrained_columns"]),
                "indexes": sorted(
                    (i["name"], bool(i["unique"]), tuple(c or "<expr>" for c in i["column_names"]))
                    for i in insp.get_indexes(table)
                ),
                "uniques": sorted(
                    tuple(u["column_names"]) for u in insp.get_unique_constraints(table)
                ),
                "fks": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in insp.get_foreign_keys(table)
                ),
            }
    return shape


def _sqlite_autoindexes(shape: dict[str, Any]) -> dict[str, Any]:
    for table in shape.values():
        table["indexes"] = [i for i in table["indexes"] if not i[0].startswith("sqlite_autoindex")]
    return shape


def _without_dialect_extras(shape: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Check the objects metadata cannot declare are there, then drop them from the shape."""
    extras = DIALECT_EXTRAS[dialect]
    for table in extras["tables"]:
        assert shape.pop(table, None) is not None, f"missing {table}"
    for qualified in extras["columns"]:
        table, column = qualified.split(".")
        names = [c[0] for c in shape[table]["columns"]]
        assert column in names, f"missing {qualified}"
        shape[table]["columns"] = [c for c in shape[table]["columns"] if c[0] != column]
    for qualified in extras["indexes"]:
        table, index = qualified.split(".")
        assert any(i[0] == index for i in shape[table]["indexes"]), f"missing {qualified}"
        shape[table]["indexes"] = [i for i in shape[table]["indexes"] if i[0] != index]
    return shape


@pytest.fixture
def empty_engine(empty_database_url: str) -> Any:
    engine = get_engine(empty_database_url)
    yield engine
    dispose(empty_database_url)


def test_builds_the_whole_schema_from_empty_and_is_idempotent(empty_engine: Engine) -> None:
    assert ensure_schema(empty_engine) == LATEST_VERSION
    assert _versions(empty_engine) == [(m.version, m.name) for m in MIGRATIONS]
    before = _shape(empty_engine)
    tables = set(metadata.tables) | set(DIALECT_EXTRAS[empty_engine.dialect.name]["tables"])
    assert set(before) == tables

    migrations.forget()
    assert ensure_schema(empty_engine) == LATEST_VERSION
    assert migrate(empty_engine) == []
    assert _versions(empty_engine) == [(m.version, m.name) for m in MIGRATIONS]
    assert _shape(empty_engine) == before


def test_one_by_one_matches_the_declared_schema(
    empty_engine: Engine, store: str, make_empty_database: Callable[[], str]
) -> None:
    for migration in MIGRATIONS:
        applied = migrate(empty_engine, target=migration.version)
        assert [m.version for m in applied] == [migration.version]
        assert _versions(empty_engine)[-1] == (migration.version, migration.name)
    migrated = _shape(empty_engine)

    declared_engine = create_engine(make_empty_database())
    metadata.create_all(declared_engine)
    declared = _shape(declared_engine)
    declared_engine.dispose()

    if store == "sqlite":
        migrated, declared = _sqlite_autoindexes(migrated), _sqlite_autoindexes(declared)
    assert _without_dialect_extras(migrated, empty_engine.dialect.name) == declared


def _race(url: str, ready: Any, start: Any, results: Any) -> None:
    engine = get_engine(url)
    ready.put(True)
    start.wait(timeout=30)
    try:
        results.put(("ok", ensure_schema(engine)))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc)))


@contextmanager
def _sqlite_write_lock(url: str) -> Iterator[None]:
    """Hold SQLite's write lock (BEGIN IMMEDIATE) while the block runs; a no-op elsewhere."""
    if not url.startswith("sqlite"):
        yield
        return
    path = url.removeprefix("sqlite:///")
    held = sqlite3.connect(path, isolation_level=None)
    try:
        # WAL first (the engine's own setting): the racers' connect-time PRAGMA is then a no-op
        # that needs no lock, and their reads go on beside our write lock.
        held.execute("PRAGMA journal_mode = WAL")
        held.execute("BEGIN IMMEDIATE")
        yield
    finally:
        held.execute("ROLLBACK")
        held.close()


def test_two_cold_starts_racing_on_an_empty_database(empty_database_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    workers = [
        ctx.Process(target=_race, args=(empty_database_url, ready, start, results))
        for _ in range(3)
    ]
    # On SQLite the first process to start could migrate everything before the others even
    # read the version, and the race would not happen. Holding the write lock while they start
    # makes all three read "no schema" and queue on the lock, so each but the first finds every
    # migration applied when its turn comes (as PostgreSQL's advisory lock makes them).
    with _sqlite_write_lock(empty_database_url):
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=60)
        start.set()
        time.sleep(1.0 if empty_database_url.startswith("sqlite") else 0)
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert outcomes == [("ok", LATEST_VERSION)] * 3
    engine = get_engine(empty_database_url)
    try:
        assert _versions(engine) == [(m.version, m.name) for m in MIGRATIONS]
    finally:
        dispose(empty_database_url)


def test_a_migrator_with_a_stale_version_applies_nothing_twice(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interleaving a racing cold start goes through, made certain: it read "no schema",
    # then another process applied every migration before this one took the lock.
    ensure_schema(empty_engine)
    before = migrations.applied(empty_engine)
    monkeypatch.setattr(migrations, "current_version", lambda _conn: None)
    assert migrate(empty_engine) == []
    monkeypatch.undo()
    assert migrations.applied(empty_engine) == before


class _Counter:
    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._count)
        self.engine = engine

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def test_warm_calls_touch_nothing_and_a_probe_notices_a_newer_schema(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_schema(engine)
    counter = _Counter(engine)
    try:
        for _ in range(100):
            assert ensure_schema(engine, probe_seconds=60) == LATEST_VERSION
        assert counter.statements == []

        # Another process (a newer deployment) applies a migration this code does not know.
        with transaction(engine) as conn:
            conn.execute(
                text("INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'x', 0)")
            )
        assert ensure_schema(engine, probe_seconds=60) == LATEST_VERSION  # memoised
        with caplog.at_level("WARNING", logger="mnemo.migrate"):
            assert ensure_schema(engine, probe_seconds=0) == 999
        assert "newer than this code" in caplog.text
        assert not any("CREATE" in s.upper() for s in counter.statements)
    finally:
        counter.close()
        with transaction(engine) as conn:
            conn.execute(text("DELETE FROM schema_version WHERE version = 999"))


def test_dry_run_prints_sql_and_changes_nothing(empty_engine: Engine) -> None:
    plan = migrations.dry_run_sql(empty_engine)
    assert [m.version for m, _ in plan] == [m.version for m in MIGRATIONS]
    assert any("CREATE TABLE memories" in s for _, statements in plan for s in statements)
    assert inspect(empty_engine).get_table_names() == []
    assert migrations.pending(empty_engine) == list(MIGRATIONS)


def test_a_failing_migration_leaves_no_trace(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = migrations.Migration(
        LATEST_VERSION + 1, "broken", "CREATE TABLE half_done (id TEXT); SELECT * FROM nowhere"
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(Exception, match="nowhere"):
        migrate(empty_engine)
    assert "half_done" not in inspect(empty_engine).get_table_names()
    assert _versions(empty_engine)[-1][0] == LATEST_VERSION


def test_migration_18_gives_each_token_its_sessions_audience(empty_engine: Engine) -> None:
    """Tokens issued before per-token audiences keep working, bound to what their session was
    (and a first-party login's to nothing); migrate() then applies only what is above 17."""
    migrate(empty_engine, target=17)
    now = int(time.time() * 1000)
    later = now + 3_600_000
    grant = "https://mnemo.example/mcp https://mnemo.example/v1"
    tokens = {"oauth_access": "mnemo_at_" + "a" * 43, "login_access": "mnemo_at_" + "b" * 43}
    with transaction(empty_engine) as conn:
        run = conn.exec_driver_sql
        run(
            "INSERT INTO brains (id, slug, name, created_at, updated_at) "
            f"VALUES ('b1', 'b1', 'B', {now}, {now})"
        )
        run(
            "INSERT INTO accounts (id, email, password_hash, created_at, updated_at) "
            f"VALUES ('a1', 'a@example.com', 'x', {now}, {now})"
        )
        run(
            "INSERT INTO brain_members (brain_id, account_id, role, created_at) "
            f"VALUES ('b1', 'a1', 'owner', {now})"
        )
        run(
            "INSERT INTO oauth_clients (client_id, redirect_uris, grant_types, response_types, "
            f"created_at) VALUES ('mcp_c', '[]', '[]', '[]', {now})"
        )
        for session, client, audience in (("s1", "'mcp_c'", f"'{grant}'"), ("s2", "NULL", "NULL")):
            run(
                "INSERT INTO auth_sessions (id, account_id, brain_id, client_id, audience, "
                f"created_at, last_used_at, expires_at) VALUES ('{session}', 'a1', 'b1', "
                f"{client}, {audience}, {now}, {now}, {later})"
            )
        rows = [
            (sessions.token_hash(tokens["oauth_access"]), "s1", "access"),
            ("r1", "s1", "refresh"),
            (sessions.token_hash(tokens["login_access"]), "s2", "access"),
            ("r2", "s2", "refresh"),
        ]
        for token_hash, session, kind in rows:
            run(
                "INSERT INTO auth_tokens (token_hash, session_id, kind, created_at, expires_at) "
                f"VALUES ('{token_hash}', '{session}', '{kind}', {now}, {later})"
            )

    assert [m.version for m in migrate(empty_engine)] == list(range(18, LATEST_VERSION + 1))
    with transaction(empty_engine, write=False) as conn:
        audiences = dict(
            conn.execute(text("SELECT session_id || ':' || kind, audience FROM auth_tokens")).all()
        )
        assert audiences == {
            "s1:access": grant,
            "s1:refresh": grant,
            "s2:access": None,
            "s2:refresh": None,
        }
        oauth = sessions.verify_access(conn, tokens["oauth_access"])
        login = sessions.verify_access(conn, tokens["login_access"])
    assert oauth is not None and oauth.audience == grant
    assert login is not None and login.audience is None
