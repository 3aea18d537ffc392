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
