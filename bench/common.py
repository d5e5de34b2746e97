"""Shared pieces: statistics, markdown tables, the machine description, an in-process Lambda
handler, and a throwaway PostgreSQL server."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


# --- progress and output ---------------------------------------------------------------------


def say(message: str) -> None:
    """Progress goes to stderr so stdout stays clean markdown."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    return "PASS" if value < target else "FAIL"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Summary:
    n: int
    median: float
    p95: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            n=len(values),
            median=statistics.median(values),
            p95=percentile(values, 95),
            mean=statistics.fmean(values),
            min=min(values),
            max=max(values),
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "median": self.median,
            "p95": self.p95,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
        }


# --- the machine -----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    import mangum
    import pydantic
    import sqlalchemy
    import starlette

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg_at_start": load_avg(),
        "git": _git(),
        "versions": {
            "starlette": starlette.__version__,
            "mangum": _dist_version("mangum", getattr(mangum, "__version__", None)),
            "sqlalchemy": sqlalchemy.__version__,
            "pydantic": pydantic.VERSION,
        },
    }


def _git() -> str:
    """The commit measured, and whether the working tree had uncommitted changes."""
    import subprocess

    if os.environ.get("MNEMO_BENCH_GIT"):  # a snapshot outside the repository, labelled
        return os.environ["MNEMO_BENCH_GIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (uncommitted changes)" if dirty else head


def _dist_version(name: str, fallback: str | None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return fallback or "unknown"


def machine_markdown(info: dict[str, Any]) -> str:
    v = info["versions"]
    return table(
        ["date", "nproc", "CPU", "python", "sqlite3", "load avg (1/5/15 min)"],
        [
            [
                info["date"],
                info["nproc"],
                info["cpu"],
                info["python"],
                info["sqlite"],
                info["loadavg_at_start"],
            ]
        ],
    ) + (
        f"\n\nstarlette {v['starlette']}, mangum {v['mangum']}, "
        f"SQLAlchemy {v['sqlalchemy']}, pydantic {v['pydantic']}; {info['platform']}; "
        f"commit {info['git']}"
    )


# --- scratch space ---------------------------------------------------------------------------


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"mnemo-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'mnemo.db'}"


# --- statements, counted ---------------------------------------------------------------------


@dataclass
class Counts:
    statements: int = 0  # what the store is asked, BEGIN included; COMMIT and ROLLBACK not
    checkouts: int = 0  # connections taken from the pool (transactions and single reads)


@contextmanager
def counting(engine: Any) -> Iterator[Counts]:
    """Count the SQL statements and pool checkouts on `engine` while the block runs. On SQLite
    from the driver's own trace (search, the credential check and BEGIN go straight to the
    driver, past SQLAlchemy's events); on PostgreSQL from SQLAlchemy's, which sees them all
    but BEGIN, counted from the transactions begun on a connection not in autocommit."""
    from sqlalchemy import event as sa_event

    counts = Counts()
    sqlite = engine.dialect.name == "sqlite"

    def on_statement(*_args: Any) -> None:
        counts.statements += 1

    def on_trace(statement: str) -> None:
        # "-- " marks what SQLite runs inside a statement (FTS5 reading its shadow tables).
        if statement.startswith("--"):
            return
        if statement.split(None, 1)[0].upper() not in ("COMMIT", "ROLLBACK"):
            counts.statements += 1

    def on_checkout(dbapi_connection: Any, *_args: Any) -> None:
        counts.checkouts += 1
        if sqlite:
            dbapi_connection.set_trace_callback(on_trace)

    def on_checkin(dbapi_connection: Any, *_args: Any) -> None:
        if sqlite and dbapi_connection is not None:
            dbapi_connection.set_trace_callback(None)

    def on_begin(conn: Any) -> None:
        # psycopg sends BEGIN before a transaction's first statement, past the cursor events;
        # an autocommit connection sends none.
        driver = conn.connection.driver_connection
        if driver is not None and not driver.autocommit:
            counts.statements += 1

    if not sqlite:
        sa_event.listen(engine, "before_cursor_execute", on_statement)
        sa_event.listen(engine, "begin", on_begin)
    sa_event.listen(engine.pool, "checkout", on_checkout)
    sa_event.listen(engine.pool, "checkin", on_checkin)
    try:
        yield counts
    finally:
        if not sqlite:
            sa_event.remove(engine, "before_cursor_execute", on_statement)
            sa_event.remove(engine, "begin", on_begin)
        sa_event.remove(engine.pool, "checkout", on_checkout)
        sa_event.remove(engine.pool, "checkin", on_checkin)


# --- the Lambda handler, in-process ----------------------------------------------------------


def quiet_logs(level: str = "WARNING") -> None:
    """Set mnemo's loggers (configured once per process by `handlers.logs`) to `level`."""
    logging.getLogger("mnemo").setLevel(level)


def make_handler(
    database_url: str, *, log_level: str = "WARNING", pgvector: str | None = None
) -> Handler:
    """What `handlers.api.handler` is, for a database of our choosing: `events.dispatch` in front
    of Mangum in front of `create_app(settings)`. `pgvector` ("auto", "off") overrides the
    vector search setting."""
    from dataclasses import replace

    from mangum import Mangum

    from core.kernel.config import Settings, VectorSearchSettings
    from handlers import events
    from handlers.api import create_app

    settings = Settings(database_url=database_url, log_level=log_level)
    if pgvector is not None:
        settings = replace(settings, vector_search=VectorSearchSettings(pgvector=pgvector))
    app = create_app(settings)
    quiet_logs(log_level)
    http = Mangum(app, lifespan="off")
    services = app.state.services

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result: dict[str, Any] = events.dispatch(event, context, http=http, services=services)
        return result

    return handler


def context() -> Any:
    from tests.lambda_client import LambdaContext

    return LambdaContext()


def event(
    method: str,
    path: str,
    *,
    key: str | None = None,
    json_body: Any = None,
    query: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A real API Gateway HTTP API v2 event (the test suite's builder)."""
    from tests.lambda_client import http_event

    headers: dict[str, str] = {}
    body = None
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    if json_body is not None:
        body = json.dumps(json_body)
        headers["content-type"] = "application/json"
    return http_event(method, path, query=query, headers=headers, body=body)


def reply_body(result: dict[str, Any]) -> str:
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return str(body)


def reply_json(result: dict[str, Any]) -> Any:
    return json.loads(reply_body(result))


def error_code(result: dict[str, Any]) -> str:
    try:
        data = reply_json(result)
    except ValueError:
        return f"http_{result.get('statusCode')}_non_json"
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("code"))
    return f"http_{result.get('statusCode')}"


def new_tenant(database_url: str) -> tuple[str, str]:
    """Migrate the store and create a brain with a brain-wide key: (slug, secret)."""
    from core.identity.keys import create_key
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.db.migrations import ensure_schema

    engine = get_engine(database_url)
    ensure_schema(engine)
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    with transaction(engine) as conn:
        secret = create_key(conn, slug, name="bench").secret
    return slug, secret


# --- PostgreSQL ------------------------------------------------------------------------------


@dataclass
class Postgres:
    admin_url: str
    server: Any = field(default=None, repr=False)

    def new_database(self) -> str:
        from sqlalchemy import create_engine, text

        name = f"bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def postgres() -> Iterator[Postgres]:
    """MNEMO_BENCH_POSTGRES_URL if set (an admin URL), else a throwaway local server."""
    given = os.environ.get("MNEMO_BENCH_POSTGRES_URL")
    if given:
        yield Postgres(given)
        return
    from tests.pg_server import PostgresServer, wait_for

    server = PostgresServer()
    say("starting a throwaway PostgreSQL server")
    url = server.start()
    try:
        wait_for(url)
        yield Postgres(url, server)
    finally:
        server.stop()


def postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def write_json(name: str, data: dict[str, Any], path: str | None) -> Path:
    if path in (None, "auto"):
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = RESULTS / f"{name}-{stamp}.json"
    else:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return target
