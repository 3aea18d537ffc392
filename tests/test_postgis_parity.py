"""Parity: the same manifest ingested into DuckDB and into PostGIS gives the same counts, quarantine,
indicators and decoded tile features (order-insensitive), in the library and over HTTP.

The rest of the suite runs once per backend (the `backend` fixture in conftest); this module compares the two.
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
from conftest import AS_OF, Databases, free_port, run_cli


@pytest.fixture
def copies(ingested_duckdb, ingested_postgis, pg_cluster, tmp_path_factory):
    """Writable copies of the sample as ingested into each backend: (duckdb url, postgis url)."""
    return (Databases("duckdb", tmp_path_factory).clone(ingested_duckdb[0], "parity"),
            Databases("postgis", tmp_path_factory, pg_cluster).clone(ingested_postgis[0], "parity"))


@pytest.fixture(scope="module")
def both(ingested_duckdb, ingested_postgis, pg_cluster, tmp_path_factory):
    """The two ingests, open: (duckdb, postgis)."""
    duck = brain.connect(Databases("duckdb", tmp_path_factory).clone(ingested_duckdb[0], "both"), read_only=True)
    pg = brain.connect(Databases("postgis", tmp_path_factory, pg_cluster).clone(ingested_postgis[0], "both"))
    yield duck, pg
    pg.close()
    duck.close()


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


def test_ingest_into_postgis_matches_duckdb_and_is_idempotent(sample_dir, ingested_duckdb, ingested_postgis,
                                                             pg_cluster, tmp_path):
    import json

    report, want = ingested_postgis[1], ingested_duckdb[1]
    assert [(s["name"], s["read"], s["loaded"], s["quarantined"], s["reasons"]) for s in report["sources"]] == \
        [(s["name"], s["read"], s["loaded"], s["quarantined"], s["reasons"]) for s in want["sources"]]
    pg = brain.connect(ingested_postgis[0])
    duck = brain.connect(ingested_duckdb[0], read_only=True)
    try:
        for table in ("admin_units", "people", "buildings", "organisations", "events", "party_members", "devices",
                      "device_readings", "rasters", "quarantine", "households", "party_links"):
            assert pg.query(f"SELECT count(*) FROM {table}") == duck.query(f"SELECT count(*) FROM {table}"), table
        q = "SELECT source, reason, count(*) FROM quarantine GROUP BY 1, 2 ORDER BY 1, 2"
        assert pg.query(q) == duck.query(q)
        q = "SELECT id, grid_code, community_code, street_code, district_code FROM people ORDER BY id"
        assert pg.query(q) == duck.query(q)  # every row placed in the same units
    finally:
        pg.close()
        duck.close()
    url = Databases("postgis", None, pg_cluster).clone(ingested_postgis[0], "reingest")
    run_cli("ingest", sample_dir / "manifest.yaml", "--db", url, "--report-json", tmp_path / "r2.json")
    again = json.loads((tmp_path / "r2.json").read_text(encoding="utf-8"))
    assert all(s["inserted"] == 0 and s["updated"] == 0 for s in again["sources"])


def test_serve_on_postgis_answers_as_on_duckdb(copies):
    """`brain serve` on each backend's own ingest: same layers, tiles and indicators for the same users."""
    import httpx

    from brain.auth import add_user
    from conftest import Server

    tokens, home = {}, {}
    for url in copies:
        db = brain.connect(url)
        try:
            units = dict(db.query("SELECT level, max(code) FROM admin_units GROUP BY 1"))
            lon, lat = db.query("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM admin_units "
                                "WHERE level = 'district'")[0]
            for role in ("district_analyst", "community_staff"):
                tokens[url, role] = add_user(db, f"pa-{role}", role, units[ROLES[role].level])
                home[role] = units[ROLES[role].level]
        finally:
            db.close()
    servers = [Server(url) for url in copies]
    try:
        for role in ("district_analyst", "community_staff"):
            (duck, h_duck), (pg, h_pg) = ((srv, {"Authorization": f"Bearer {tokens[url, role]}"})
                                          for srv, url in zip(servers, copies))
            assert httpx.get(f"{pg.url}/layers", headers=h_pg).json() == \
                [dict(l, tiles=l["tiles"].replace(duck.url, pg.url), tilejson=l["tilejson"].replace(
                    duck.url, pg.url)) for l in httpx.get(f"{duck.url}/layers", headers=h_duck).json()]
            served = 0
            for layer in CATALOG:
                for z in (13, 16):
                    t = mercantile.tile(lon, lat, z)
                    a = httpx.get(f"{duck.url}/tiles/{layer}/{z}/{t.x}/{t.y}.mvt", headers=h_duck)
                    b = httpx.get(f"{pg.url}/tiles/{layer}/{z}/{t.x}/{t.y}.mvt", headers=h_pg)
                    assert a.status_code == b.status_code == 200
                    fa, fb = features(a.content), features(b.content)
                    assert {k: [x[:2] for x in v] for k, v in fa.items()} == \
                        {k: [x[:2] for x in v] for k, v in fb.items()}, (role, layer, z)
                    served += sum(map(len, fa.values()))
            assert served > 0, role
            code = home[role]
            ma = httpx.get(f"{duck.url}/units/{code}/metrics", headers=h_duck).json()["values"]
            mb = httpx.get(f"{pg.url}/units/{code}/metrics", headers=h_pg).json()["values"]
            assert ma == mb and ma["population"] > 0
            assert httpx.get(f"{pg.url}/", params={"token": tokens[copies[1], role]},
                             follow_redirects=True).status_code == 200
    finally:
        for srv in servers:
            srv.stop()
    pg_db = brain.connect(copies[1])
    try:
        assert pg_db.query("SELECT count(*) FROM audit_log WHERE user_name = 'pa-district_analyst'")[0][0] > 10
    finally:
        pg_db.close()


def test_db_init_and_copy_through_the_cli(ingested_duckdb, pg_cluster):
    url = pg_cluster.database("cli")
    run_cli("db", "init", "--db", url)
    out = run_cli("db", "copy", "--from", ingested_duckdb[0], "--to", url)
    assert "copied" in out.stdout
    pg, duck = brain.connect(url), brain.connect(ingested_duckdb[0], read_only=True)
    try:
        for table in ("admin_units", "people", "events", "quarantine", "households"):
            assert pg.query(f"SELECT count(*) FROM {table}") == duck.query(f"SELECT count(*) FROM {table}")
    finally:
        pg.close()
        duck.close()
    bad = run_cli("db", "copy", "--from", ingested_duckdb[0], "--to",
                  f"postgresql://postgres@127.0.0.1:{free_port()}/x", check=False)
    assert bad.returncode == 2 and "cannot connect" in bad.stderr and "Traceback" not in bad.stderr
