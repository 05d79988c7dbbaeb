"""A real PostgreSQL server on loopback for tests (Debian's `postgresql` package).

PostgreSQL refuses to run as root, so as root the data directory belongs to the `postgres` user
and the server runs as that user. The server is a child that dies with the test process.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from vmpool.procs import free_port, spawn_sync


def pg_bin_dir() -> Path | None:
    """The directory holding initdb and postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    candidates = ([str(Path(found).resolve().parent)] if found else []) + sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), reverse=True
    )
    for cand in candidates:
        if (Path(cand) / "initdb").exists() and (Path(cand) / "postgres").exists():
            return Path(cand)
    return None


@dataclass
class PostgresServer:
    port: int
    base: Path
    proc: subprocess.Popen

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A fresh database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        # "fast" shutdown (SIGINT): clients are cut off and the checkpoint still runs. SIGTERM's
        # "smart" one waits for every client to leave: a connection some test left open held
        # the end of each xdist worker 8-18 s (the full suite, 2026-12-01, load ~13)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb into a fresh temp directory and start ``postgres`` on a free loopback port."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, postgres) are not installed")
    user = "postgres" if os.geteuid() == 0 else None
    # directly under /tmp: the postgres user cannot enter pytest's root-only tmp directories
    base = Path(tempfile.mkdtemp(prefix="tidegate-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if user:
        shutil.chown(base, user)
        shutil.chown(sock, user)
    run_as = ["runuser", "-u", user, "--"] if user else []
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for attempt in range(5):  # postgres cannot listen on port 0: a free port, taken at times
        port = free_port()  # by another process before postgres binds it
        proc = spawn_sync(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sock),
                "-c",
                "listen_addresses=127.0.0.1",
                # writes still reach the kernel at each commit (a killed postgres or gateway
                # loses nothing); only the flush to disk is skipped, which made the shutdown
                # checkpoint of a session's databases take 6-7 s (loaded host, test_ledger_*)
                "-c",
                "fsync=off",
            ],
            log_path=base / "postgres.log",
            user=user,
            cwd=base,
        )
        server = PostgresServer(port, base, proc)
        try:
            _wait_accepting(server)
            return server
        except RuntimeError as exc:
            if "Address already in use" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _wait_accepting(server: PostgresServer, timeout_s: float = 60.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        if server.proc.poll() is not None:
            log = (server.base / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres exited with {server.proc.returncode}: {log}")
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _fixtures():
    import pytest

    @pytest.fixture(scope="session")
    def postgres_server():
        """One PostgreSQL server for the session; skipped only when it is not installed."""
        if pg_bin_dir() is None:
            pytest.skip(
                "PostgreSQL is not installed (Debian: apt-get install postgresql; "
                "`make test` does it)"
            )
        server = start_postgres()
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def postgres_url(postgres_server) -> str:
        """A fresh, empty database on the session's server."""
        return postgres_server.create_database()

    return postgres_server, postgres_url


postgres_server, postgres_url = _fixtures()
