"""A throwaway PostgreSQL 15 + PostGIS cluster on a free loopback port, for the test session.

initdb and pg_ctl run as the `postgres` user (pg_ctl refuses root) in a directory that user owns; only the
server runs as postgres, the tests connect over TCP. fsync is off: the cluster is thrown away.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess:
    pre = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*pre, *cmd], capture_output=True, text=True, timeout=120)


class Cluster:
    """initdb + pg_ctl start; `url` is a database with the postgis extension; stop() removes everything."""

    def __init__(self, port: int | None = None):
        port = port or free_port()
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 is missing: `make setup` installs postgresql-15-postgis-3")
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="brain-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        r = _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--locale=C.UTF-8")
        if r.returncode:
            raise RuntimeError(f"initdb failed: {r.stderr}")
        r = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "start",
                         "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -c fsync=off "
                               f"-c unix_socket_directories={self.dir} -c max_connections=200")
        if r.returncode:
            raise RuntimeError(f"pg_ctl start failed: {r.stderr}\n{(self.dir / 'log').read_text()}")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def database(self, name: str) -> str:
        """A fresh database with PostGIS; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return url

    def stop(self) -> None:
        """Stop the server and delete its files."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
