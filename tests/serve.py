"""`mnemo serve` in a subprocess on a free loopback port, for tests that need a real server
(real HTTP clients: httpx, authlib, the MCP SDK, mnemo_client, a browser, a Node client).

The command runs under tests/checked_serve.py, which checks each reply against /openapi.json
in the server and writes what it finds to a file the test process reads (tests/contract.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.contract import serving

ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "tests.checked_serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mnemo_serve(database_url: str, **env: str) -> Iterator[str]:
    """Yields the server's base URL once /health answers; stops it afterwards. `env` adds
    environment variables (MNEMO_LOG_LEVEL is WARNING unless given)."""
    port = free_port()
    variables = {
        **os.environ,
        "MNEMO_DATABASE_URL": database_url,
        "MNEMO_LOG_LEVEL": "WARNING",
        **env,
    }
    with tempfile.TemporaryDirectory(prefix="mnemo-serve-") as tmp:
        log = Path(tmp) / "violations.jsonl"
        with serving(log):
            proc = subprocess.Popen(
                [*SERVE, str(log), "--port", str(port)],
                env=variables,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                yield _ready(proc, f"http://127.0.0.1:{port}")
            finally:
                proc.terminate()
                proc.communicate(timeout=10)


def _ready(proc: subprocess.Popen[bytes], base: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/health", timeout=1)
            return base
        except httpx.TransportError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "mnemo serve did not come up"
            time.sleep(0.1)
