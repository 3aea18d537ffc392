"""Parity (partial, issue 5 in progress): the sample copied into PostGIS serves the same tiles and indicators.

Ingest into PostGIS is not ported yet; the data get there through brain.transfer.copy_database.
"""

from __future__ import annotations

import mapbox_vector_tile
import mercantile
import pytest

import brain
from brain.auth import ROLES, User
from brain.layers.catalog import CATALOG
from brain.metrics import Clock, indicators, unit_area
from brain.scope import Scope
from brain.settings import Settings
from brain.tiles.source import TileSource
from brain.transfer import copy_database
from conftest import AS_OF, free_port
from pgcluster import Cluster


@pytest.fixture(scope="module")
def both(served_db):
    cluster = Cluster(free_port())
    duck = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    pg = brain.connect(cluster.database("parity"))
    copy_database(duck, pg)
    yield duck, pg
    pg.close()
    duck.close()
    cluster.stop()


def features(data: bytes) -> dict:
    out = {}
    for name, layer in mapbox_vector_tile.decode(data).items() if data else []:
        out[name] = sorted(((f["properties"].get("id") or f["properties"].get("code")),
                            tuple(sorted(f["properties"].items())), f["geometry"]["type"])
                           for f in layer["features"])
    return out


def scopes(db):
    units = db.query("SELECT code, level FROM admin_units ORDER BY code")
    by_level = {lv: [c for c, l in units if l == lv] for lv in ("district", "street", "community", "grid")}
    for role in ROLES.values():
        code = by_level[role.level][-1]
        yield Scope(User(f"p-{role.name}", role, code, role.level))


def test_tiles_decode_to_the_same_features_on_both_backends(both):
    duck, pg = both
    clock = Clock.from_settings(Settings(as_of=AS_OF))
    lon, lat = duck.query("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM admin_units "
                          "WHERE level = 'district'")[0]
    sources = [TileSource(db, Settings(tile_cache_mb=0)) for db in (duck, pg)]
    compared = 0
    for scope in scopes(duck):
        for layer in CATALOG:
            for z in (12, 14, 15, 17):
                t = mercantile.tile(lon, lat, z)
                a, b = (s.tile(layer, scope, z, t.x, t.y, clock) for s in sources)
                assert a.features == b.features, (scope.user.role.name, layer, z)
                fa, fb = features(a.data), features(b.data)
                assert {k: [x[:2] for x in v] for k, v in fa.items()} == \
                    {k: [x[:2] for x in v] for k, v in fb.items()}, (scope.user.role.name, layer, z)
                compared += a.features
    assert compared > 500


def test_indicators_are_the_same_on_both_backends(both):
    duck, pg = both
    clock = Clock.from_settings(Settings(as_of=AS_OF))
    for scope in scopes(duck):
        for (code,) in duck.query("SELECT code FROM admin_units ORDER BY code"):
            try:
                area = unit_area(duck, scope, code)
            except brain.errors.BrainError:
                continue
            a = indicators(duck, scope, area, clock)
            b = indicators(pg, scope, area, clock)
            assert a["values"].keys() == b["values"].keys()
            for k in a["values"]:
                va, vb = a["values"][k], b["values"][k]
                assert va == vb or (isinstance(va, float) and abs(va - vb) < 1e-3), (code, k, va, vb)
            assert a["origin"] == b["origin"]


def test_ingest_into_postgis_matches_duckdb_and_is_idempotent(sample_dir, ingested, tmp_path):
    from conftest import run_cli
    import json

    cluster = Cluster(free_port())
    try:
        url = cluster.database("ingest")
        first = run_cli("ingest", sample_dir / "manifest.yaml", "--db", url, "--report-json", tmp_path / "r.json")
        report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
        want = ingested[1]
        assert [(s["name"], s["read"], s["loaded"], s["quarantined"], s["reasons"]) for s in report["sources"]] == \
            [(s["name"], s["read"], s["loaded"], s["quarantined"], s["reasons"]) for s in want["sources"]], first.stdout
        run_cli("ingest", sample_dir / "manifest.yaml", "--db", url, "--report-json", tmp_path / "r2.json")
        again = json.loads((tmp_path / "r2.json").read_text(encoding="utf-8"))
        assert all(s["inserted"] == 0 and s["updated"] == 0 for s in again["sources"])
        pg = brain.connect(url)
        duck = brain.connect(ingested[0], read_only=True)
        try:
            for table in ("admin_units", "people", "buildings", "events", "quarantine", "households", "party_links"):
                assert pg.query(f"SELECT count(*) FROM {table}") == duck.query(f"SELECT count(*) FROM {table}"), table
            q = "SELECT source, reason, count(*) FROM quarantine GROUP BY 1, 2 ORDER BY 1, 2"
            assert pg.query(q) == duck.query(q)
        finally:
            pg.close()
            duck.close()
    finally:
        cluster.stop()


def test_serve_on_postgis_answers_as_on_duckdb(both, served_db, server):
    """`brain serve --db postgresql://…` on the copied sample: same layers, tiles and indicators as DuckDB's."""
    import httpx

    from brain.auth import add_user
    from conftest import Server

    duck, pg = both
    analyst = next(u for u in served_db[1].values() if u["role"] == "district_analyst")
    staff = next(u for u in served_db[1].values() if u["role"] == "community_staff")
    tokens = {"district_analyst": add_user(pg, "pg-analyst", "district_analyst", analyst["unit"]),
              "community_staff": add_user(pg, "pg-staff", "community_staff", staff["unit"])}
    srv = Server(pg.url)
    try:
        lon, lat = duck.query("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM admin_units "
                              "WHERE level = 'district'")[0]
        for role, user in (("district_analyst", analyst), ("community_staff", staff)):
            h_pg = {"Authorization": f"Bearer {tokens[role]}"}
            h_duck = {"Authorization": f"Bearer {user['token']}"}
            assert httpx.get(f"{srv.url}/layers", headers=h_pg).json() == \
                [dict(l, tiles=l["tiles"].replace(server.url, srv.url), tilejson=l["tilejson"].replace(
                    server.url, srv.url)) for l in httpx.get(f"{server.url}/layers", headers=h_duck).json()]
            for layer in CATALOG:
                for z in (13, 16):
                    t = mercantile.tile(lon, lat, z)
                    a = httpx.get(f"{server.url}/tiles/{layer}/{z}/{t.x}/{t.y}.mvt", headers=h_duck)
                    b = httpx.get(f"{srv.url}/tiles/{layer}/{z}/{t.x}/{t.y}.mvt", headers=h_pg)
                    assert a.status_code == b.status_code == 200
                    fa, fb = features(a.content), features(b.content)
                    assert {k: [x[:2] for x in v] for k, v in fa.items()} == \
                        {k: [x[:2] for x in v] for k, v in fb.items()}, (role, layer, z)
            ma = httpx.get(f"{server.url}/units/{user['unit']}/metrics", headers=h_duck).json()["values"]
            mb = httpx.get(f"{srv.url}/units/{user['unit']}/metrics", headers=h_pg).json()["values"]
            assert ma == mb
            assert httpx.get(f"{srv.url}/", params={"token": tokens[role]}, follow_redirects=True).status_code == 200
    finally:
        srv.stop()
    assert pg.query("SELECT count(*) FROM audit_log WHERE user_name = 'pg-analyst'")[0][0] > 10


def test_db_init_and_copy_through_the_cli(ingested, tmp_path):
    from conftest import run_cli

    cluster = Cluster(free_port())
    try:
        url = cluster.database("cli")
        run_cli("db", "init", "--db", url)
        out = run_cli("db", "copy", "--from", ingested[0], "--to", url)
        assert "copied" in out.stdout
        pg, duck = brain.connect(url), brain.connect(ingested[0], read_only=True)
        try:
            for table in ("admin_units", "people", "events", "quarantine", "households"):
                assert pg.query(f"SELECT count(*) FROM {table}") == duck.query(f"SELECT count(*) FROM {table}")
        finally:
            pg.close()
            duck.close()
        bad = run_cli("db", "copy", "--from", ingested[0], "--to", f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                      check=False)
        assert bad.returncode == 2 and "cannot connect" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        cluster.stop()
