"""Shared fixtures: the small sample generated and ingested once per session, into real DuckDB files."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from pgcluster import free_port

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


# -- the two backends ----------------------------------------------------------------------------------------
BACKENDS = ("duckdb", "postgis")
_DB_NUMBERS = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL 15 + PostGIS cluster for the session (never skipped: a missing server fails)."""
    from pgcluster import Cluster

    cluster = Cluster()
    yield cluster
    cluster.stop()


class Databases:
    """Fresh databases of one backend: empty ones, and clones of a database nobody holds open.

    DuckDB: files in a temporary directory, cloned by copying the file. PostGIS: databases in the session's
    cluster, cloned with CREATE DATABASE … TEMPLATE (the template must have no open connection).
    """

    def __init__(self, backend: str, tmp_path_factory, cluster=None):
        self.backend, self._tmp, self._cluster = backend, tmp_path_factory, cluster

    def _name(self, hint: str) -> str:
        return f"{hint}_{next(_DB_NUMBERS)}"  # unique in the session's cluster, across every Databases

    def empty(self, hint: str = "db") -> str:
        """The URL of a new database with nothing in it (PostGIS: the extension only)."""
        name = self._name(hint)
        if self.backend == "duckdb":
            return f"duckdb:///{self._tmp.mktemp(name) / 'brain.duckdb'}"
        return self._cluster.database(name)

    def clone(self, url: str, hint: str = "copy") -> str:
        """A copy of the database at `url`, which must not be open anywhere."""
        import shutil

        name = self._name(hint)
        if self.backend == "duckdb":
            path = self._tmp.mktemp(name) / "brain.duckdb"
            shutil.copy(url.removeprefix("duckdb:///"), path)
            return f"duckdb:///{path}"
        import psycopg

        template = url.rsplit("/", 1)[1]
        with psycopg.connect(self._cluster.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """The backend every test below `ingested` runs on: the embedded default, then PostGIS."""
    return request.param


@pytest.fixture(scope="session")
def dbs(backend, tmp_path_factory, request) -> Databases:
    cluster = request.getfixturevalue("pg_cluster") if backend == "postgis" else None
    return Databases(backend, tmp_path_factory, cluster)


def _ingest(sample_dir: Path, url: str, work: Path):
    run_cli("ingest", sample_dir / "manifest.yaml", "--db", url, "--report-json", work / "report.json")
    return url, json.loads((work / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def ingested_duckdb(sample_dir, tmp_path_factory):
    """(url, report) of the small sample ingested into a DuckDB file through the CLI; never opened for writing."""
    work = tmp_path_factory.mktemp("ingested")
    return _ingest(sample_dir, f"duckdb:///{work / 'brain.duckdb'}", work)


@pytest.fixture(scope="session")
def ingested_postgis(sample_dir, pg_cluster, tmp_path_factory):
    """(url, report) of the same sample ingested into PostGIS through the CLI."""
    return _ingest(sample_dir, pg_cluster.database("ingested"), tmp_path_factory.mktemp("ingested_pg"))


@pytest.fixture(scope="session")
def ingested_copy(backend, request, dbs):
    """A function returning a fresh, writable copy of the ingested sample on the backend under test."""
    url, _ = request.getfixturevalue(f"ingested_{backend}")
    return lambda hint="copy": dbs.clone(url, hint)


@pytest.fixture(scope="session")
def ingested(backend, request, ingested_copy):
    """(db url, report dict) of the small sample ingested on the backend under test.

    The URL is a copy, so that tests may hold it open while `ingested_copy` still clones the original.
    """
    return ingested_copy("ingested"), request.getfixturevalue(f"ingested_{backend}")[1]


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


class Served(NamedTuple):
    url: str  # the database the `server` fixture serves
    users: dict  # name → dict(role, unit, level, token[, password])
    truth: Path  # a DuckDB file with the same data, which no server holds
    pristine: str  # the database before any server touched it: clone it with dbs.clone(pristine)


@pytest.fixture(scope="session")
def served_db(ingested_copy, dbs, tmp_path_factory) -> Served:
    """A copy of the ingested sample with one user per unit and role.

    The truth file is one more copy (for PostGIS: the database copied into DuckDB), for the tests to read what
    the data really is and check the served answers against it.
    """
    import shutil

    import brain
    from brain.auth import ROLES, add_user, set_password
    from brain.transfer import copy_database

    pristine = ingested_copy("served_pristine")
    db = brain.connect(pristine)
    users = {}
    units = db.query("SELECT code, level FROM admin_units ORDER BY code")
    for role in ROLES.values():
        for code, level in units:
            if level == role.level:
                name = f"{role.name}-{code}"
                users[name] = {"role": role.name, "unit": code, "level": level,
                               "token": add_user(db, name, role.name, code)}
    first = sorted(n for n, u in users.items() if u["role"] == "community_staff")[0]
    set_password(db, first, "correct horse battery")
    users[first]["password"] = "correct horse battery"
    truth = tmp_path_factory.mktemp("truth") / "truth.duckdb"
    if dbs.backend == "duckdb":
        db.close()
        shutil.copy(pristine.removeprefix("duckdb:///"), truth)
    else:
        out = brain.connect(f"duckdb:///{truth}")
        copy_database(db, out)
        out.close()
        db.close()
    return Served(dbs.clone(pristine, "served"), users, truth, pristine)


@pytest.fixture(scope="session")
def server(served_db, tmp_path_factory):
    """The service with its tile cache on."""
    srv = Server(served_db.url)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def server_nocache(served_db, dbs):
    """The same database (a copy) served with the tile cache off."""
    srv = Server(dbs.clone(served_db.pristine, "nocache"), BRAIN_TILE_CACHE_MB="0")
    yield srv
    srv.stop()
