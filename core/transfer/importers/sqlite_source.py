"""Reading another system's SQLite file, or a SQL dump loaded into an in-memory one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from core.transfer.importers.records import SourceError


def open_database(path: Path) -> sqlite3.Connection:
    """Read-only: an import never changes its source."""
    if not path.is_file():
        raise SourceError(path, "no such file")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SourceError(path, f"not a SQLite database ({exc})") from None
    return conn


def load_sql_dump(path: Path) -> sqlite3.Connection:
    """A .sql dump (CREATE TABLE and INSERT statements, as `wrangler d1 export` writes) run into
    an in-memory SQLite database, statement by statement so an error names its line."""
    if not path.is_file():
        raise SourceError(path, "no such file")
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    # ATTACH, and VACUUM INTO (which SQLite authorizes as an attach), would create files
    # wherever the dump names; a dump only needs to fill the in-memory database.
    conn.set_authorizer(_no_attach)
    statement: list[str] = []
    start = 1
    with path.open(encoding="utf-8") as lines:
        try:
            for number, line in enumerate(lines, start=1):
                if not statement:
                    if not line.strip():
                        continue
                    start = number
                statement.append(line)
                text = "".join(statement)
                if sqlite3.complete_statement(text):
                    _run(conn, path, text, start)
                    statement = []
        except UnicodeDecodeError as exc:
            raise SourceError(path, f"not UTF-8 text ({exc.reason})") from None
    leftover = "".join(statement).strip()
    if leftover and not _only_comments(leftover):
        raise SourceError(path, "the last statement is not terminated with ';'", line=start)
    return conn


def _no_attach(action: int, *_args: object) -> int:
    return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_ATTACH else sqlite3.SQLITE_OK


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


def _run(conn: sqlite3.Connection, path: Path, text: str, line: int) -> None:
    try:
        conn.executescript(text)
    except sqlite3.Error as exc:
        raise SourceError(path, f"SQL error: {exc}", line=line) from None


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]


def count(conn: sqlite3.Connection, table: str, where: str = "", *args: Any) -> int:
    query = f'SELECT count(*) FROM "{table}"' + (f" WHERE {where}" if where else "")
    return int(conn.execute(query, args).fetchone()[0])


def read_json_file(path: Path) -> Any:
    """A JSON document, with the line of the first syntax error when there is one."""
    if not path.is_file():
        raise SourceError(path, "no such file")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise SourceError(
            path, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno
        ) from None
    except UnicodeDecodeError as exc:
        raise SourceError(path, f"not UTF-8 text ({exc.reason})") from None
