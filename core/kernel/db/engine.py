"""URL -> engine, one per process and URL, created lazily and reused across warm invocations."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from core.kernel.db.credentials import Credentials, CredentialSource, is_auth_failure
from core.kernel.ids import now_ms

log = logging.getLogger("mnemo.db")


@dataclass(frozen=True)
class PostgresOptions:
    """How a PostgreSQL engine connects beyond what its URL says."""

    # Where the user and password come from when the URL carries none (Secrets Manager, an
    # RDS IAM token): core/kernel/db/credentials.py.
    credentials: CredentialSource | None = None
    application_name: str | None = None
    connect_timeout_seconds: int | None = None
    # A Lambda instance serves one invocation at a time, so it keeps one connection: the
    # database sees as many connections as there are warm instances, no more.
    one_connection: bool = False


_engines: dict[tuple[str, PostgresOptions | None], Engine] = {}
_lock = threading.Lock()

WRITE = "mnemo_write"
_SINGLE_READ = "mnemo_single_read"


@lru_cache(maxsize=1024)
def sql(statement: str) -> TextClause:
    """`text(statement)`, parsed once per process: building a TextClause re-scans the string
    for bind parameters each time (~10 µs), and a write runs a dozen statements."""
    return text(statement)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


# How far a writer's clock may trail the database's (see settled_before).
_CLOCK_MARGIN_MS = 1_000
# The most settled_before holds readers back: a transaction left open (or a long restore)
# must not stall them, nor make every refresh re-read a growing tail.
_HOLD_BACK_AT_MOST_MS = 60_000


def settled_before(conn: Connection) -> int | None:
    """A time (epoch ms) before which every change stamped is visible, for readers that follow
    rows by their time stamp (conflict detection's watermark, the vector cache) not to step
    past a row still to come; None when all that is visible is settled. Ask it before
    reading. On PostgreSQL a transaction open now may commit rows stamped before rows already
    visible (it stamped them when it wrote them, it commits later): the start of the oldest
    open client transaction that has written (reads get no transaction id and hold nothing
    back), never more than _HOLD_BACK_AT_MOST_MS ago; a writer whose start this role may not
    see (another role, without pg_read_all_stats) counts as that old. SQLite runs one writer
    at a time, each stamping after the last committed: None."""
    if conn.dialect.name != "postgresql":
        return None
    oldest, hidden = conn.execute(
        sql(
            "SELECT CAST(extract(epoch FROM min(xact_start)) * 1000 AS BIGINT), "
            "count(*) FILTER (WHERE xact_start IS NULL) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
        )
    ).one()
    if oldest is None and not hidden:
        return None
    floor = now_ms() - _HOLD_BACK_AT_MOST_MS
    return floor if hidden else max(int(oldest) - _CLOCK_MARGIN_MS, floor)


def db_settled(conn: Connection) -> int | None:
    """settled_before for rows stamped with the database's own clock (PostgreSQL's
    clock_timestamp(), as the vector rows are): a time on that clock before which every row
    stamped is visible to the next statement. The start of the oldest open transaction that
    has written, or now; less a margin for a writer that stamped its row just before this
    asked and got its transaction id just after; never more than _HOLD_BACK_AT_MOST_MS ago.
    SQLite: None (see settled_before)."""
    if conn.dialect.name != "postgresql":
        return None
    now, oldest, hidden = conn.execute(
        sql(
            "SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT), "
            "CAST(extract(epoch FROM min(xact_start)) * 1000 AS BIGINT), "
            "count(*) FILTER (WHERE xact_start IS NULL) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
        )
    ).one()
    floor = int(now) - _HOLD_BACK_AT_MOST_MS
    if hidden:
        return floor
    start = int(now) if oldest is None else min(int(oldest), int(now))
    return max(start - _CLOCK_MARGIN_MS, floor)


def tuples(conn: Connection, statement: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of one read as plain tuples, for hot paths that turn a few hundred rows into
    arrays (search). On SQLite the statement goes straight to the driver, which takes `:name`
    parameters as SQLAlchemy does: SQLAlchemy's per-statement bookkeeping and Row objects
    cost more there than the query itself; SQLAlchemy's listeners do not see it. Not for
    writes.

    On PostgreSQL, measured per statement: SQLAlchemy's execution context and result metadata
    cost 110 us, its Row objects 1.7 us a row, where psycopg's own execute and fetch of a
    search's 170 rows cost 240 us. Outside a transaction (engine.reads, single_read) the
    statement goes to the driver too, compiled once by SQLAlchemy, its cursor events sent and
    its errors raised as SQLAlchemy's (a lost connection invalidated): the same to listeners
    and callers. Inside one, SQLAlchemy executes it, so that it knows the transaction began,
    and the rows come from the driver's cursor."""
    driver = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        assert driver is not None
        found: list[tuple[Any, ...]] = driver.execute(statement, params).fetchall()
        return found
    if driver is not None and driver.autocommit:
        return _driver_rows(conn, driver, statement, params)
    result = conn.execute(sql(statement), params)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


@lru_cache(maxsize=1024)
def _driver_form(statement: str, dialect: Dialect) -> str:
    """`statement` as the driver takes it (psycopg's %(name)s), from SQLAlchemy's compiler."""
    return sql(statement).compile(dialect=dialect).string


def _driver_rows(
    conn: Connection, driver: Any, statement: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    query = _driver_form(statement, conn.dialect)
    cursor = driver.cursor()
    conn.dispatch.before_cursor_execute(conn, cursor, query, params, None, False)
    try:
        cursor.execute(query, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    except conn.dialect.loaded_dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, driver, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            query, params, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=lost
        ) from exc
    finally:
        cursor.close()
    conn.dispatch.after_cursor_execute(conn, cursor, query, params, None, False)
    return rows


def get_engine(
    url: str,
    *,
    busy_timeout_ms: int = 30_000,
    on_lambda: bool = False,
    postgres: PostgresOptions | None = None,
) -> Engine:
    key = (url, postgres)
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create(
                url, busy_timeout_ms=busy_timeout_ms, on_lambda=on_lambda, postgres=postgres
            )
            _engines[key] = engine
    return engine


def dispose(url: str) -> None:
    with _lock:
        found = [_engines.pop(key) for key in [k for k in _engines if k[0] == url]]
    for engine in found:
        engine.dispose()


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


class MissingDriver(RuntimeError):
    """MNEMO_DATABASE_URL names a store whose driver is not installed."""


def check_driver(url: str) -> None:
    """Fail at startup, naming the extra to install, when the URL is PostgreSQL and psycopg is
    missing: otherwise every request would be a 500 and only the log would say why."""
    if not url.startswith("postgresql"):
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingDriver(
            "MNEMO_DATABASE_URL is a PostgreSQL URL but the psycopg driver is not installed: "
            "pip install 'mnemo-server[postgres]' (from a checkout: pip install '.[postgres]')"
        ) from None


def _create(
    url: str, *, busy_timeout_ms: int, on_lambda: bool, postgres: PostgresOptions | None
) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite(url, busy_timeout_ms=busy_timeout_ms, on_lambda=on_lambda)
    if parsed.get_backend_name() == "postgresql":
        check_driver(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = postgres or PostgresOptions()
        if options.one_connection:
            # The pool keeps one; overflow is for a nested connection should a code path
            # ever take one while holding another (closed as soon as it is returned), so a
            # slip costs a connect, never a deadlock on a pool of one.
            engine = create_engine(parsed, pool_size=1, max_overflow=2, pool_timeout=30)
        else:
            engine = create_engine(parsed, pool_size=2, max_overflow=4)
        _connect_with(engine, options)
        _ping_when_idle(engine)
        return engine
    raise ValueError(
        f"MNEMO_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, got {url!r}"
    )


def _connect_with(engine: Engine, options: PostgresOptions) -> None:
    """Fill in what the URL leaves out at each new connection: the credentials (fetched when
    the first connection opens, never at import: a SnapStart snapshot holds none), the
    application name and the connect timeout. A login the database refuses is retried once
    with credentials read anew, which is how a rotated secret is picked up."""
    if (
        options.credentials is None
        and options.application_name is None
        and options.connect_timeout_seconds is None
    ):
        return
    source = options.credentials

    @event.listens_for(engine, "do_connect")
    def _do_connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        if options.application_name:
            cparams.setdefault("application_name", options.application_name)
        if options.connect_timeout_seconds:
            cparams.setdefault("connect_timeout", options.connect_timeout_seconds)
        if source is None:
            return None  # SQLAlchemy connects with the parameters as amended
        given = dict(cparams)
        try:
            return dialect.connect(*cargs, **_with_credentials(given, source.current()))
        except dialect.loaded_dbapi.OperationalError as exc:
            if not is_auth_failure(exc):
                raise
            log.warning("store: the database refused the credentials; reading them again")
        return dialect.connect(*cargs, **_with_credentials(given, source.fresh()))


# The keyword arguments of the DB-API driver's connect(): the driver's own names, from the URL.
ConnectParams = dict[str, Any]


def _with_credentials(cparams: ConnectParams, creds: Credentials) -> ConnectParams:
    out = dict(cparams)
    if creds.username:
        out["user"] = creds.username
    if creds.password is not None:
        out["password"] = creds.password
    # Where to connect stays the URL's; the secret fills in only what it leaves out.
    if not out.get("host") and creds.host:
        out["host"] = creds.host
    if not out.get("port") and creds.port:
        out["port"] = creds.port
    if not out.get("dbname") and creds.dbname:
        out["dbname"] = creds.dbname
    return out


# SQLite reads through a memory map this large at most (address space, not memory).
_MMAP_BYTES = 1 << 30


def _create_sqlite(url: str, *, busy_timeout_ms: int, on_lambda: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        path = Path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        if on_lambda and str(path).startswith("/tmp"):  # noqa: S108
            log.warning(
                "store: SQLite at %s. On Lambda only /tmp is writable and it is ephemeral and "
                "per instance: data is lost when the instance is recycled. Set "
                "MNEMO_DATABASE_URL to a PostgreSQL URL for durable storage.",
                path,
            )
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Deleted rows are overwritten with zeros, not left in free space: a purge or a user's
        # erasure (core/curation/erasure.py) must take the text out of the file's bytes.
        cursor.execute("PRAGMA secure_delete = ON")
        # Reads through a memory map instead of a read() system call per page: a search walks
        # a few thousand index entries, and the calls were a sixth of its SQL time (measured on
        # the 10,000-memory search bench). A mapping is address space, not memory.
        cursor.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
        # The page cache stays SQLite's 2 MB: pages of the file come through the map, not
        # the cache, and 32 MB left adds at 10,000 memories no faster while a process's peak
        # memory grew by 26 MB per connection (docs/benchmarks.md, write gate).
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(_SINGLE_READ, False):
            return
        # A writer takes the write lock up front: a deferred transaction that later upgrades
        # can fail with "database is locked" regardless of the busy timeout. Straight to the
        # driver: through SQLAlchemy's statement machinery it cost more than the BEGIN itself,
        # and every request opens one or two transactions.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE" if options.get(WRITE, False) else "BEGIN")

    return engine


# A pooled connection unused for longer than this is pinged before it is handed out: a warm
# Lambda, thawed after minutes, may hold one the server has since closed. A busy process skips
# the ping, which on PostgreSQL is a network round trip on every checkout (pool_pre_ping).
_IDLE_PING_SECONDS = 10.0


def _clock() -> float:
    """Wall time, not monotonic: whether a monotonic clock advances while Lambda has the
    instance frozen is the platform's business, and the idle time that matters (the server
    or Aurora's pause closing the connection) is real time."""
    return time.time()


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = _clock()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or abs(_clock() - returned) < _IDLE_PING_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool drops this connection and checks out (or opens) another.
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


# SQLSTATE classes of a server that cannot serve now (a retry later can succeed): 08
# connection exception, 53 insufficient resources (too many connections, disk full), 57P
# operator intervention (shutdown, restart, "the database system is starting up").
_UNAVAILABLE_STATES = ("08", "53", "57P")
# SQLite's words for a file it cannot use now: another writer held it past busy_timeout, or
# the volume went away.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file", "disk i/o error")


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached or is too busy for now, rather than
    that a statement is at fault: the caller should be told to retry, not that we failed."""
    if isinstance(exc, SQLAlchemyTimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return state.startswith(_UNAVAILABLE_STATES)
    if type(orig).__module__.startswith("psycopg"):
        # No SQLSTATE: the client failed before the server answered (refused, reset, timeout).
        return isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, OperationalError) and str(orig).lower().startswith(_SQLITE_UNAVAILABLE)


@contextmanager
def single_read(engine: Engine) -> Iterator[Connection]:
    """A connection for one read statement and nothing else: a single statement is atomic on
    its own, so it runs without BEGIN and COMMIT (on PostgreSQL, two round trips fewer). For
    the per-request credential check, which every request pays."""
    with engine.connect() as conn:
        if is_sqlite(engine):
            # The driver never begins on its own (see _on_connect); skipping ours is enough.
            yield conn.execution_options(**{_SINGLE_READ: True})
        else:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def reads(engine: Engine) -> Iterator[Connection]:
    """A connection for a run of read statements that need no snapshot in common (search,
    context packs: each copes with a memory changed between its statements). On PostgreSQL it
    runs without a transaction: under READ COMMITTED each statement sees what is committed when
    it starts, inside a transaction or not, so BEGIN and COMMIT were two round trips that bought
    nothing. Never for a write: each statement would commit on its own. On SQLite it is a read
    transaction (one snapshot for all; there BEGIN costs no round trip)."""
    if is_sqlite(engine):
        with transaction(engine, write=False) as conn:
            yield conn
        return
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


_AFTER_COMMIT = "mnemo_after_commit"


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` once the transaction `conn` is in has committed (never on rollback):
    for what must not happen before the change is visible, like waking the webhook drainer."""
    callbacks: dict[int, Callable[[], None]] = conn.info.setdefault(_AFTER_COMMIT, {})
    # Keyed by the callback, so a transaction that wrote 500 deliveries wakes a drainer once.
    callbacks[id(callback)] = callback


@contextmanager
def transaction(engine: Engine, *, write: bool = True) -> Iterator[Connection]:
    """One transaction: committed on success, rolled back on any exception."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE: write})
        # conn.info lives with the pooled DB-API connection: drop what a rolled-back
        # transaction left there.
        conn.info.pop(_AFTER_COMMIT, None)
        with conn.begin():
            yield conn
        callbacks = conn.info.pop(_AFTER_COMMIT, None)
    if callbacks:
        for callback in callbacks.values():
            callback()
