"""One BLAS thread wherever Mnemo runs (issue 21): on a busy 2-core machine a second OpenBLAS
thread made a 100,000-memory search 3x slower at p50. Each entry point is imported in a fresh
process, numpy then used, and the BLAS thread pools counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_PROBE = """
import json, sys, importlib
importlib.import_module(sys.argv[1])
import numpy
numpy.ones((64, 64)) @ numpy.ones((64, 64))
from threadpoolctl import threadpool_info
print(json.dumps([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]))
"""


@pytest.mark.parametrize("entry", ["handlers.api", "handlers.cli", "handlers.events", "bench"])
def test_every_entry_point_runs_one_blas_thread(entry: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, entry],
        env={**env, "PYTHONPATH": str(ROOT), "MNEMO_LOG_LEVEL": "WARNING"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    assert pools and set(pools) == {1}, pools


def test_an_operators_own_setting_is_kept() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "handlers.api"],
        env={**env, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "2"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2]
