"""Build one Lambda package: Mnemo's code and its runtime wheels, nothing else.

`sam build` runs this through the Makefile (template.yaml: `BuildMethod: makefile`) with
ARTIFACTS_DIR set. It ships core/ and handlers/ (sources and the console's static files),
never tests/, bench/, docs/, data/ (./scripts/serve's SQLite file, with password hashes and
memories), .venv or caches. The wheels are pip's manylinux builds for Lambda's Python and
architecture, whatever Python runs this: `sam build` needs no local Python 3.12 and no
container, and an x86 laptop builds the arm64 package.

    python3 scripts/package.py ARTIFACTS_DIR [--no-deps] [--extras local-embeddings]

`--extras` adds optional dependency groups from pyproject.toml (e.g. a local embedder's).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
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


def copy_code(target: Path, root: Path = ROOT) -> int:
    count = 0
    for rel in code_files(root):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
        count += 1
    return count


def install_deps(target: Path, extras: Sequence[str]) -> None:
    subprocess.run(  # noqa: S603 - pip, with our own arguments
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(target),
            *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            *requirements(extras),
        ],
        check=True,
    )
    # Console scripts (numpy's f2py) cannot run there, and bytecode is compiled on import.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="the package folder (sam's ARTIFACTS_DIR)")
    parser.add_argument("--no-deps", action="store_true", help="the code only")
    parser.add_argument("--extras", default="", help="comma-separated optional groups")
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    args.target.mkdir(parents=True, exist_ok=True)
    if not args.no_deps:
        install_deps(args.target, extras)
    copied = copy_code(args.target)
    print(f"packaged {copied} code files into {args.target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
