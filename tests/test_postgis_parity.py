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
