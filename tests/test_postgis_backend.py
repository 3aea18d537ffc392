"""The PostGIS backend speaks the same protocol as DuckDB's, on a real throwaway PostGIS cluster."""

from __future__ import annotations

import pandas as pd
import pytest

import brain
from brain.auth import add_user, authenticate
from brain.backend import to_pyformat
from brain.errors import BackendError
from brain.schema import init_schema
from conftest import free_port


@pytest.fixture
def pg(pg_cluster, request):
    db = brain.connect(pg_cluster.database(request.node.name.lower()[:50].replace("[", "_").replace("]", "")))
    yield db
    db.close()


def test_placeholders_become_pyformat_outside_quotes_only():
    assert to_pyformat("SELECT ?, '?', \"a?\", strftime(x, '%Y') WHERE y LIKE '%?' AND z = ?") == \
        "SELECT %s, '?', \"a?\", strftime(x, '%%Y') WHERE y LIKE '%%?' AND z = %s"


def test_protocol_round_trip(pg):
    assert pg.dialect == "postgis"
    pg.execute("CREATE TABLE t (k VARCHAR, v DOUBLE PRECISION, g GEOMETRY)")
    pg.execute("INSERT INTO t VALUES (?, ?, ST_Point(?, ?))", ["a?%", 1.5, 113.3, 23.1])
    assert pg.query("SELECT k, v, ST_X(g) FROM t WHERE k = ?", ["a?%"]) == [("a?%", 1.5, 113.3)]
    assert pg.query("SELECT coalesce(NULL, '?') || '%'") == [("?%",)]
    df = pd.DataFrame({"id": ["x", "y"], "n": [1, 2], "f": [0.5, float("nan")], "b": [True, False]})
    pg.register("src", df)
    got = pg.frame("SELECT id, n, f, b FROM src ORDER BY id")
    assert list(got.id) == ["x", "y"] and list(got.n) == [1, 2] and got.f.isna().tolist() == [False, True]
    pg.unregister("src")
    with pytest.raises(Exception):
        with pg.transaction():
            pg.execute("INSERT INTO t VALUES ('rolled back', 0, NULL)")
            raise RuntimeError("boom")
    assert pg.query("SELECT count(*) FROM t WHERE k = 'rolled back'") == [(0,)]


def test_schema_and_users_on_postgis(pg):
    init_schema(pg)
    tables = {t for (t,) in pg.query("SELECT table_name FROM information_schema.tables "
                                     "WHERE table_schema = 'public'")}
    assert {"admin_units", "people", "events", "quarantine", "audit_log", "meta"} <= tables
    pg.execute("INSERT INTO admin_units (code, name, level, district_code) VALUES ('440199', 'x', 'district', "
               "'440199')")
    token = add_user(pg, "analyst", "district_analyst", "440199")
    user = authenticate(pg, token)
    assert user and user.name == "analyst" and user.unit_level == "district"
    init_schema(pg)  # idempotent


def test_a_wrong_url_is_one_clear_error():
    with pytest.raises(BackendError, match="cannot connect"):
        brain.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
