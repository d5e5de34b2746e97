"""Reading import sources without a store (core/transfer/importers): which brain a dump holds,
malformed files named with their line, old mem0 exports, dumps that try to write files.
Imports into a brain on both stores: tests/api/test_importers.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from core.kernel.ids import parse_time
from core.transfer.importers.pipeline import open_source
from core.transfer.importers.records import IdMap, MemoryRecord, Options, SourceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"


def ms(moment: str) -> int:
    return parse_time(moment)


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def test_a_d1_dump_of_several_brains_needs_source_brain() -> None:
    path = FIXTURES / "memoryvault_d1.sql"
    with pytest.raises(SourceError) as caught:
        open_source("memoryvault", [path], Options())
    assert caught.value.message == (
        f"{path}: the dump holds 2 brains (brain-main, brain-other): choose one with --source-brain"
    )
    with pytest.raises(SourceError, match="no brain 'nope' in the dump"):
        open_source("memoryvault", [path], Options(source_brain="nope"))
    other = open_source("memoryvault", [path], Options(source_brain="brain-other"))
    assert other.total == 2  # its memory and its link


@pytest.mark.parametrize(
    ("system", "name", "content", "message"),
    [
        (
            "mem0",
            "export.json",
            '{"results": [\n  {"id": "x",\n   "memory": }\n]}\n',
            ":3: not valid JSON: Expecting value (column 14)",
        ),
        (
            "mem0",
            "export.json",
            '{"memories": []}',
            ':1: not a mem0 get_all export: expected {"results": [...]} or a list of memories',
        ),
        (
            "mem0",
            "history.db",
            "this is not a database\n" * 50,
            ": not a SQLite database (file is not a database)",
        ),
        (
            "memoryvault",
            "export.json",
            '{"schema": "other", "data": {}}',
            ':1: not a MemoryVault export: "schema" must be "memoryvault_export_v1"',
        ),
        (
            "memoryvault",
            "dump.sql",
            "CREATE TABLE memories (id TEXT PRIMARY KEY, brain_id TEXT);\n"
            "INSERT INTO memories VALUES ('a', 'b');\n"
            "\n"
            "INSERT INTO memories VALUES ('a',\n"
            "  'b', 'c');\n",
            ":4: SQL error: table memories has 2 columns but 3 values were supplied",
        ),
        (
            "memoryvault",
            "dump.sql",
            "CREATE TABLE memories (id TEXT, brain_id TEXT);\n"
            "INSERT INTO memories VALUES ('a', 'b')\n",
            ":2: the last statement is not terminated with ';'",
        ),
        ("openmemory", "om.sqlite", "", ": no memories table: not an OpenMemory database"),
    ],
)
def test_malformed_input_names_the_file_and_line(
    tmp_path: Path, system: str, name: str, content: str, message: str
) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(SourceError) as caught:
        open_source(system, [path], Options())
    assert caught.value.message == f"{path}{message}"


def test_a_history_db_without_its_table_or_columns(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(SourceError, match=r"no history table: not a mem0 history\.db"):
        open_source("mem0", [empty], Options())
    odd = tmp_path / "odd.db"
    conn = sqlite3.connect(odd)
    conn.execute("CREATE TABLE history (id TEXT, memory_id TEXT, created_at TEXT)")
    conn.close()
    with pytest.raises(SourceError, match="table history lacks the column"):
        open_source("mem0", [odd], Options())


def test_a_mem0_export_from_before_the_results_wrapper(tmp_path: Path) -> None:
    """mem0 before v1.1 returned get_all as a bare list."""
    path = _write(
        tmp_path,
        "old.json",
        json.dumps([{"id": 7, "memory": "Likes jazz", "created_at": "2024-01-02T03:04:05Z"}]),
    )
    source = open_source("mem0", [path], Options(user_id="carol"))
    [memory] = list(source.records(IdMap("brain-x", "mem0")))
    assert isinstance(memory, MemoryRecord)
    assert (memory.content, memory.user_id, memory.origin.id) == ("Likes jazz", "carol", "7")
    assert memory.created_at == memory.updated_at == ms("2024-01-02T03:04:05Z")
    assert (
        memory.id
        == IdMap("brain-x", "mem0")("memory", "7")
        != IdMap("brain-y", "mem0")("memory", "7")
    )


def test_a_sql_dump_cannot_write_files(tmp_path: Path) -> None:
    """A dump is run into an in-memory database; ATTACH and VACUUM INTO would create files
    wherever the dump says, so they are refused."""
    from core.transfer.importers.sqlite_source import load_sql_dump

    for statement in (
        f"ATTACH DATABASE '{tmp_path / 'attached.db'}' AS x;",
        f"VACUUM INTO '{tmp_path / 'vacuumed.db'}';",
    ):
        dump = tmp_path / "dump.sql"
        dump.write_text("CREATE TABLE t (a TEXT);\nINSERT INTO t VALUES ('x');\n" + statement)
        with pytest.raises(SourceError, match="SQL error"):
            load_sql_dump(dump)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.sql"]
