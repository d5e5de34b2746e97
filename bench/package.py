"""`python -m bench.package [--extras GROUPS] [--embedder minilm|minilm-numpy|builtin]`: build the
Lambda package as `sam build` does (the Makefile's scripts/package.py, wheels for Python 3.12 on
arm64 from PyPI, the MiniLM model unless `--embedder builtin`: int8 for ONNX Runtime by default,
float16 for numpy with `minilm-numpy`) and report its size against
Lambda's limits: 250 MB unzipped (code and layers), 50 MB zipped for a direct upload (sam
uploads through S3, so only the first binds)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from scripts import package

LIMIT_UNZIPPED_MB = 250


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.package", description=__doc__)
    parser.add_argument("--extras", default="", help="optional dependency groups to include")
    parser.add_argument(
        "--embedder", choices=package.EMBEDDERS, default="minilm", help="the model to ship"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mnemo-package-") as tmp:
        target = Path(tmp) / "package"
        argv_build = [str(target), "--embedder", args.embedder]
        argv_build += ["--extras", args.extras] if args.extras else []
        package.main(argv_build)
        total = _size(target)
        archive = Path(tmp) / "package.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(target.rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(target).as_posix())
        parts = sorted(
            ((_size(p) if p.is_dir() else p.stat().st_size, p.name) for p in target.iterdir()),
            reverse=True,
        )
        mb = 1024 * 1024
        extras = f", +{args.extras}" if args.extras else ""
        print(f"| package (embedder {args.embedder}{extras}) | MB |")
        print("|---|---|")
        print(f"| unzipped (limit {LIMIT_UNZIPPED_MB}) | {total / mb:.1f} |")
        print(f"| zipped | {archive.stat().st_size / mb:.1f} |")
        for size, name in parts[:8]:
            print(f"| {name} | {size / mb:.1f} |")
        print(f"| share of the limit | {100 * total / mb / LIMIT_UNZIPPED_MB:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
