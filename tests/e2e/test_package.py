"""The Lambda package holds Mnemo's code and nothing else.

Built the way `sam build` builds it: template.yaml's functions say `BuildMethod: makefile`, so
sam runs `make build-<LogicalId>` with ARTIFACTS_DIR; here with PACKAGE_FLAGS=--no-deps (the
wheels come from PyPI; `python -m bench package` builds the full package and measures it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import package
from tests.e2e.test_template import ROOT, functions, load_template

FORBIDDEN = ("tests", "bench", "docs", "data", "events", "scripts", ".venv", "mnemo_client")


def built_files(target: Path) -> set[str]:
    return {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each function's package, built by its make target as sam would."""
    out = {}
    for name, props in functions(load_template()).items():
        assert props["CodeUri"] == ".", name  # the Makefile sits at the root
        target = tmp_path_factory.mktemp(name)
        subprocess.run(
            [
                "make",
                "-s",
                "-C",
                str(ROOT),
                f"build-{name}",
                f"ARTIFACTS_DIR={target}",
                f"PYTHON={sys.executable}",
                "PACKAGE_FLAGS=--no-deps",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        out[name] = target
    return out


def test_every_function_builds_with_the_makefile() -> None:
    template = load_template()
    for name, res in template["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            assert res["Metadata"] == {"BuildMethod": "makefile"}, name
            assert f"build-{name}" in (ROOT / "Makefile").read_text(), name


def test_package_holds_the_code_and_nothing_else(built: dict[str, Path]) -> None:
    for name, target in built.items():
        files = built_files(target)
        assert {"handlers/api.py", "handlers/events.py", "core/kernel/config.py"} <= files, name
        # The console's assets are data files the app reads: they ship too.
        assert "handlers/console/static/console.js" in files, name
        tops = {f.split("/", 1)[0] for f in files}
        assert tops == {"core", "handlers"}, (name, tops)
        assert not [f for f in files if f.endswith((".pyc", ".db", ".sqlite", ".db-wal"))]
        assert not [f for f in files if "__pycache__" in f]
        for forbidden in FORBIDDEN:
            assert not [f for f in files if f.split("/")[0] == forbidden], (name, forbidden)
        # Every tracked source of core/ and handlers/ is there: nothing the app needs is left.
        tracked = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "core", "handlers"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert set(tracked) <= files, set(tracked) - files
    first = built_files(next(iter(built.values())))
    assert all(built_files(t) == first for t in built.values())  # one package, three functions


def test_files_outside_the_code_are_never_copied(tmp_path: Path) -> None:
    """A checkout with a local SQLite store, tests and caches: only the code is taken."""
    root = tmp_path / "repo"
    for rel in (
        "core/__init__.py",
        "core/x.py",
        "core/__pycache__/x.cpython-312.pyc",
        "handlers/api.py",
        "handlers/console/static/app.css",
        "data/mnemo.db",
        "tests/test_x.py",
        "bench/b.py",
        "docs/d.md",
        ".venv/lib/site.py",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    target = tmp_path / "out"
    assert package.copy_code(target, root) == 4
    assert built_files(target) == {
        "core/__init__.py",
        "core/x.py",
        "handlers/api.py",
        "handlers/console/static/app.css",
    }


_IMPORT = """
import json, sys
import handlers.api
loaded = {
    name: getattr(module, "__file__", None) or ""
    for name, module in list(sys.modules.items())
    if name.split(".")[0] in ("core", "handlers", "tests", "bench", "mnemo_client", "scripts")
}
print(json.dumps(loaded))
"""


def test_the_handler_imports_from_the_package_alone(built: dict[str, Path], tmp_path: Path) -> None:
    """Imported with the package first on the path (as Lambda's /var/task): every Mnemo
    module comes from the package, none from the checkout."""
    target = built["ApiFunction"]
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "MNEMO_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    assert "handlers.api" in loaded
    outside = {n: f for n, f in loaded.items() if not f.startswith(str(target))}
    assert outside == {}


def test_requirements_cover_the_runtime_and_extras_can_be_added() -> None:
    reqs = package.requirements([])
    names = {r.split(">")[0].split("=")[0].split("[")[0].lower() for r in reqs}
    assert {"starlette", "mangum", "sqlalchemy", "numpy", "pydantic", "psycopg"} <= names
    # boto3 comes with Lambda's Python runtime; uvicorn is for `mnemo serve` only.
    assert "boto3" not in names and "uvicorn" not in names
    # An optional group of pyproject.toml (a local embedder's, later) can ride along.
    with_aws = package.requirements(["aws"])
    assert len(with_aws) == len(reqs) + 1 and with_aws[-1].startswith("boto3")
    with pytest.raises(SystemExit):
        package.requirements(["no-such-extra"])
