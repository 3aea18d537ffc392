"""Shared fixtures: the small sample generated and ingested once per session, into real DuckDB files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `brain` command line in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "brain.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"brain {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """A freshly generated small sample."""
    out = tmp_path_factory.mktemp("sample")
    run_cli("sample", "--scale", "small", "--out", out)
    return out


@pytest.fixture(scope="session")
def ingested(sample_dir, tmp_path_factory):
    """(db url, report dict) of the small sample ingested through the CLI."""
    work = tmp_path_factory.mktemp("ingested")
    url = f"duckdb:///{work / 'brain.duckdb'}"
    run_cli("ingest", sample_dir / "manifest.yaml", "--db", url, "--report-json", work / "report.json")
    return url, json.loads((work / "report.json").read_text(encoding="utf-8"))


@pytest.fixture
def db_of():
    """Open a backend read-only and close it after the test."""
    import brain

    opened = []

    def _open(url: str, read_only: bool = True):
        db = brain.connect(url, read_only=read_only)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        db.close()


# -- the HTTP service ----------------------------------------------------------------------------------------
AS_OF = "2026-10-01T12:00:00"  # a fixed clock, so overdue and age bands are reproducible


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`brain serve` in a child process on a loopback port; stop() shuts it down cleanly (audit flushed)."""

    def __init__(self, db_url: str, *args: str, **env: str):
        import os
        import time

        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "BRAIN_AS_OF": AS_OF, **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "brain.cli", "serve", "--db", db_url, "--port",
                                      str(self.port), *args], cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"brain serve exited {self.proc.returncode}:\n{self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("brain serve did not answer /health within 60 s")

    def stop(self) -> str:
        """Stop the server (SIGINT, as Ctrl-C) and return what it printed."""
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.stdout.read() if self.proc.stdout else ""


@pytest.fixture(scope="session")
def served_db(ingested, tmp_path_factory):
    """A copy of the ingested sample with one user per unit and role: (path, users, truth path).

    users: name → dict(role, unit, level, token). The truth path is one more copy, which no server holds,
    for the tests to read what the data really is and check the served answers against it.
    """
    import shutil

    import brain
    from brain.auth import ROLES, add_user

    path = tmp_path_factory.mktemp("served") / "brain.duckdb"
    shutil.copy(ingested[0].removeprefix("duckdb:///"), path)
    db = brain.connect(f"duckdb:///{path}")
    users = {}
    units = db.query("SELECT code, level FROM admin_units ORDER BY code")
    for role in ROLES.values():
        for code, level in units:
            if level == role.level:
                name = f"{role.name}-{code}"
                users[name] = {"role": role.name, "unit": code, "level": level,
                               "token": add_user(db, name, role.name, code)}
    from brain.auth import set_password

    first = sorted(n for n, u in users.items() if u["role"] == "community_staff")[0]
    set_password(db, first, "correct horse battery")
    users[first]["password"] = "correct horse battery"
    db.close()
    truth = path.with_name("truth.duckdb")
    shutil.copy(path, truth)
    return path, users, truth


@pytest.fixture(scope="session")
def server(served_db, tmp_path_factory):
    """The service with its tile cache on."""
    srv = Server(f"duckdb:///{served_db[0]}")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def server_nocache(served_db, tmp_path_factory):
    """The same database (a copy) served with the tile cache off."""
    import shutil

    path = tmp_path_factory.mktemp("nocache") / "brain.duckdb"
    shutil.copy(served_db[0], path)
    srv = Server(f"duckdb:///{path}", BRAIN_TILE_CACHE_MB="0")
    yield srv
    srv.stop()
