"""The engine's connection handling: single reads without a transaction around them, and
pooled PostgreSQL connections pinged only after they sat idle."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError

from core.kernel.db import engine as engines
from core.kernel.db.engine import single_read, transaction


def _statements(engine: Engine) -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split()).upper())

    event.listen(engine, "before_cursor_execute", record)
    return seen, record


def _terminate(engine: Engine, pid: int) -> None:
    """End a backend from a connection of its own, outside the engine's pool."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_single_read_runs_outside_a_transaction(engine: Engine, store: str) -> None:
    seen, listener = _statements(engine)
    try:
        with single_read(engine) as conn:
            assert conn.execute(text("SELECT count(*) FROM brains")).scalar_one() >= 0
            if store == "postgres":
                # No transaction was opened: PostgreSQL assigns none to an autocommit read.
                assert conn.execute(text("SELECT now() = statement_timestamp()")).scalar_one()
            else:
                # Our own BEGIN (sent straight to the driver) is skipped for the single read...
                assert not conn.connection.driver_connection.in_transaction
        with transaction(engine, write=False) as conn:
            conn.execute(text("SELECT 1"))
            if store == "sqlite":  # ...and issued for the transaction
                assert conn.connection.driver_connection.in_transaction
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    if store == "sqlite":
        assert seen == ["SELECT COUNT(*) FROM BRAINS", "SELECT 1"]
    # The connection went back to the pool in its ordinary mode: writes still commit atomically.
    with pytest.raises(RuntimeError), transaction(engine) as conn:
        conn.execute(text("CREATE TABLE scratch_t (x INTEGER)"))
        raise RuntimeError("roll back")
    with transaction(engine, write=False) as conn:
        exists = conn.execute(
            text(
                "SELECT count(*) FROM sqlite_master WHERE name = 'scratch_t'"
                if store == "sqlite"
                else "SELECT count(*) FROM pg_tables WHERE tablename = 'scratch_t'"
            )
        ).scalar_one()
    assert exists == 0


@pytest.fixture
def own_engine(engine: Engine, store: str) -> Iterator[Engine]:
    """An engine of this test's own, so its pool holds exactly the one connection it uses."""
    if store != "postgres":
        pytest.skip("PostgreSQL only: SQLite has no server to close a connection")
    url = engine.url.update_query_dict({"application_name": f"t{uuid.uuid4().hex[:8]}"})
    name = url.render_as_string(hide_password=False)
    yield engines.get_engine(name)
    engines.dispose(name)


def test_an_idle_postgres_connection_closed_by_the_server_is_replaced(
    own_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = own_engine
    with transaction(engine, write=False) as conn:
        victim = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # Another connection ends the pooled one's backend, as a server restart or idle timeout
    # would while a Lambda instance is frozen.
    _terminate(engine, victim)
    time.sleep(0.2)
    monkeypatch.setattr(engines, "_IDLE_PING_SECONDS", 0.0)
    with transaction(engine, write=False) as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != victim


def test_a_busy_postgres_connection_is_not_pinged(own_engine: Engine) -> None:
    engine = own_engine
    with transaction(engine, write=False) as conn:
        conn.execute(text("SELECT 1"))
        before = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    _terminate(engine, before)
    time.sleep(0.2)
    # Used a moment ago, so it is handed out unchecked and the dead connection shows: this is
    # what the idle threshold trades for skipping a round trip on every checkout.
    with (
        pytest.raises(DBAPIError, match=r"terminat|closed|connection"),
        transaction(engine, write=False) as conn,
    ):
        conn.execute(text("SELECT 1"))
    # The failure invalidated the pool's connections: the next request gets a fresh one.
    with transaction(engine, write=False) as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != before


def test_tuples_outside_a_transaction_reads_as_sqlalchemy_would(own_engine: Engine) -> None:
    # On PostgreSQL the statement goes to the driver (engines.tuples): the same rows, the
    # listeners see it, and a statement at fault raises SQLAlchemy's error, not the driver's.
    engine = own_engine
    seen, listener = _statements(engine)
    statement = "SELECT x, x * 2.5, 'a:b' || x, :tail FROM (SELECT 1 AS x UNION ALL SELECT 2) t"
    try:
        with engines.reads(engine) as conn:
            rows = engines.tuples(conn, statement + " ORDER BY x", {"tail": "%s", "unused": 1})
            assert rows == [(1, 2.5, "a:b1", "%s"), (2, 5.0, "a:b2", "%s")]
            with pytest.raises(DBAPIError, match="division by zero"):
                engines.tuples(conn, "SELECT 1 / (x - x) FROM (SELECT :x AS x) t", {"x": 1})
            # The failed statement left the connection usable.
            assert engines.tuples(conn, "SELECT :v", {"v": 7}) == [(7,)]
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert sum("* 2.5" in s for s in seen) == 1
    assert sum("1 / (X - X)" in s for s in seen) == 1


def test_tuples_on_a_lost_connection_raise_unavailable_and_invalidate(own_engine: Engine) -> None:
    engine = own_engine
    with engines.reads(engine) as conn:
        victim = engines.tuples(conn, "SELECT pg_backend_pid()", {})[0][0]
        _terminate(engine, victim)
        time.sleep(0.2)
        with pytest.raises(DBAPIError) as raised:
            engines.tuples(conn, "SELECT 1", {})
    assert engines.unavailable(raised.value)
    # Invalidated: the pool hands out a new connection, not the dead one.
    with engines.reads(engine) as conn:
        assert engines.tuples(conn, "SELECT pg_backend_pid()", {})[0][0] != victim


def test_settled_before_follows_open_writers_within_a_bound(
    engine: Engine, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time before which every stamped change is visible: None with no writer open (and on
    SQLite, whose single writer stamps after the last commit); an open writer holds it at its
    start, a reader does not; never more than the bound back."""
    from core.kernel.ids import now_ms

    def settled() -> int | None:
        # A transaction of its own: PostgreSQL keeps one view of pg_stat_activity per
        # transaction, as each search or detection pass asks once in its own.
        with engine.connect() as conn:
            return engines.settled_before(conn)

    if store == "sqlite":
        assert settled() is None
        return
    assert settled() is None
    with engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM brains")).scalar()
        assert settled() is None  # a read gets no transaction id
        reader.rollback()
    with engine.connect() as writer:
        began = now_ms()
        writer.execute(text("CREATE TEMPORARY TABLE settle_probe (x INTEGER)"))
        writer.execute(text("INSERT INTO settle_probe VALUES (1)"))
        held = settled()
        assert held is not None and began - 3_000 < held <= began
        monkeypatch.setattr(engines, "_HOLD_BACK_AT_MOST_MS", 0)
        bounded = settled()
        assert bounded is not None and bounded >= began  # no further back than now
        writer.rollback()
    assert settled() is None


# Ids as stored and as a client may choose them: quotes, backslashes, braces, commas, blanks,
# the word NULL and non-ASCII text each reach the database as the very same string.
_AWKWARD_IDS = ["plain-id", 'q"uote', "back\\slash", "{brace}", "a,b", " lead", "NULL", "é ü", ""]


def test_an_id_list_bound_as_one_value_holds_each_id_unchanged(engine: Engine) -> None:
    from core.kernel.db.id_lists import id_in, id_table

    with single_read(engine) as conn:
        members, value = id_table(conn, "ids", alias="t")
        rows = conn.execute(text(f"SELECT t.value FROM {members}"), {"ids": value(_AWKWARD_IDS)})
        assert [row[0] for row in rows] == _AWKWARD_IDS
        empty = conn.execute(text(f"SELECT count(*) FROM {members}"), {"ids": value([])})
        assert empty.scalar() == 0
        among, bound = id_in(conn, ['q"uote', "NULL"])
        values = " UNION ALL ".join(f"SELECT '{v}' AS v" for v in ('q"uote', "NULL", "null", "x"))
        found = conn.execute(text(f"SELECT v FROM ({values}) AS s WHERE v {among}"), {"ids": bound})
        assert sorted(row[0] for row in found) == ["NULL", 'q"uote']
