"""Tiles over real HTTP, decoded as a map client decodes them: nothing outside the scope, no field too many.

The checks are independent of the SQL that filters: every decoded geometry is tested against the unit's
polygon (read from a copy of the database no server holds), every id against the row's placement there.
"""

from __future__ import annotations

import gzip

import httpx
import numpy as np
import mapbox_vector_tile
import mercantile
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brain
from brain.auth import ROLES
from brain.layers.catalog import CATALOG
from brain.scope import disclosure

EXTENT = 4096
TABLE_OF_PART = {p.name: p.source for layer in CATALOG.values() for p in layer.parts}  # roads: their pieces
PART = {p.name: p for layer in CATALOG.values() for p in layer.parts}
LEVEL_COL = {lv: f"{lv}_code" for lv in ("district", "street", "community", "grid")}


@pytest.fixture(scope="module")
def truth(served_db):
    """Unit polygons (EPSG:3857) and every feature id's placement codes, from the unserved copy."""
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    units = {code: (level, shapely.from_wkb(bytes(wkb)))
             for code, level, wkb in db.query("SELECT code, level, ST_AsWKB(geom_3857) FROM admin_units")}
    codes = {}
    for table in {*TABLE_OF_PART.values()} - {"admin_units"}:
        for row in db.query(f"SELECT id, district_code, street_code, community_code, grid_code FROM {table}"):
            codes[row[0]] = dict(zip(("district", "street", "community", "grid"), row[1:]))
    for code, level, d, s, c, g in db.query("SELECT code, level, district_code, street_code, community_code, "
                                            "grid_code FROM admin_units"):
        codes[code] = {"district": d, "street": s, "community": c, "grid": g}
    points = {t: db.frame(f"SELECT id, ST_X(geom_3857) x, ST_Y(geom_3857) y, {', '.join(LEVEL_COL.values())} "
                          f"FROM {t}") for t in ("events", "devices", "organisations")}
    bbox = db.query("SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM admin_units "
                    "WHERE level = 'district'")[0]
    db.close()
    return {"units": units, "codes": codes, "points": points, "bbox": bbox}


def fetch(srv, user, layer, z, x, y, gz=False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {user['token']}"}
    if gz:
        headers["Accept-Encoding"] = "gzip"
    r = httpx.get(f"{srv.url}/tiles/{layer}/{z}/{x}/{y}.mvt", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r


def decode(data: bytes, z: int, x: int, y: int) -> list[tuple[str, object, dict]]:
    """(MVT layer, geometry in EPSG:3857, properties) of every feature of a tile."""
    if not data:
        return []
    b = mercantile.xy_bounds(x, y, z)
    sx, sy = (b.right - b.left) / EXTENT, (b.top - b.bottom) / EXTENT
    out = []
    for name, layer in mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}).items():
        assert layer["extent"] == EXTENT
        for f in layer["features"]:
            g = shapely.geometry.shape(f["geometry"])
            g = shapely.transform(g, lambda c: c * [sx, -sy] + [b.left, b.top])
            out.append((name, g, f["properties"]))
    return out


def check_tile(features, user, layer_id, z, x, y, truth) -> None:
    """Every feature inside the user's unit, with only the fields their role reads, ids placed in scope."""
    role = ROLES[user["role"]]
    level, scope_geom = truth["units"][user["unit"]]
    b = mercantile.xy_bounds(x, y, z)
    tol = 2 * (b.right - b.left) / EXTENT + 0.05  # MVT snaps coordinates to a 4096 grid per tile
    fence = scope_geom.buffer(tol)
    layer = CATALOG[layer_id]
    for name, geom, props in features:
        part = PART[name]
        assert part in layer.parts, f"{layer_id} tile carries foreign layer {name}"
        assert geom.is_empty or fence.contains(geom), \
            f"{user['role']} {user['unit']}: {name} feature {props.get('id') or props.get('code')} outside scope"
        if "id" in props:  # an individual feature
            allowed = {"id", *(f for f in part.fields if role.personal or not part.personal(f)),
                       *(n for n, _ in part.computed)}
            assert set(props) <= allowed, f"{name}: fields {set(props) - allowed} leaked to {role.name}"
            assert layer.mode(part, _scope(user), z) == "features"
            assert truth["codes"][props["id"]][level] == user["unit"], f"{props['id']} placed outside scope"
        else:  # a per-grid aggregate
            allowed = {"code", "name", *part.aggregate}
            assert set(props) <= allowed, f"{name}: fields {set(props) - allowed} leaked to {role.name}"
            assert truth["codes"][props["code"]][level] == user["unit"]
            dis = disclosure(_scope(user), part.table)
            if dis:  # counts of rows the role may not see one by one: rounded grid cells (brain.scope.Disclosure)
                off = {k: v for k, v in props.items() if k in part.aggregate and isinstance(v, int) and v % dis.base}
                assert not off, f"{role.name}: counts not rounded to {dis.base}: {off}"


def _scope(user):
    from brain.auth import User
    from brain.scope import Scope

    return Scope(User("t", ROLES[user["role"]], user["unit"], user["level"]))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_users_and_tiles_stay_in_scope(server, server_nocache, served_db, truth, data):
    users = served_db[1]
    user = users[data.draw(st.sampled_from(sorted(users)), label="user")]
    layer = data.draw(st.sampled_from(sorted(CATALOG)), label="layer")
    z = data.draw(st.integers(10, 18), label="z")
    xmin, ymin, xmax, ymax = truth["bbox"]
    lon = data.draw(st.floats(xmin - 0.002, xmax + 0.002), label="lon")
    lat = data.draw(st.floats(ymin - 0.002, ymax + 0.002), label="lat")
    t = mercantile.tile(lon, lat, z)
    srv = data.draw(st.sampled_from([server, server_nocache]), label="server")
    r = fetch(srv, user, layer, z, t.x, t.y)
    check_tile(decode(r.content, z, t.x, t.y), user, layer, z, t.x, t.y, truth)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_composite_tile_is_its_layers_tiles_one_after_another(server, server_nocache, served_db, truth, data):
    """/tiles/units,water,roads/… (as the map asks for its base layers): each member as its own tile would be, in
    the order named, so every check of a single layer's tile holds for it."""
    users = served_db[1]
    user = users[data.draw(st.sampled_from(sorted(users)), label="user")]
    ids = data.draw(st.lists(st.sampled_from(sorted(CATALOG)), min_size=2, max_size=5, unique=True), label="layers")
    z = data.draw(st.integers(10, 18), label="z")
    xmin, ymin, xmax, ymax = truth["bbox"]
    t = mercantile.tile(data.draw(st.floats(xmin, xmax), label="lon"), data.draw(st.floats(ymin, ymax), label="lat"), z)
    srv = data.draw(st.sampled_from([server, server_nocache]), label="server")
    whole = fetch(srv, user, ",".join(ids), z, t.x, t.y, gz=True)
    parts = [fetch(srv, user, layer, z, t.x, t.y) for layer in ids]
    assert whole.content == b"".join(p.content for p in parts)
    assert int(whole.headers["x-features"]) == sum(int(p.headers["x-features"]) for p in parts)
    features = decode(whole.content, z, t.x, t.y)
    assert len(features) == int(whole.headers["x-features"])
    for layer, p in zip(ids, parts):
        check_tile(decode(p.content, z, t.x, t.y), user, layer, z, t.x, t.y, truth)


def test_a_composite_names_each_layer_once_and_only_layers_there_are(server, served_db, truth):
    user = next(u for u in served_db[1].values() if u["role"] == "community_staff")
    auth = {"Authorization": f"Bearer {user['token']}"}
    for bad, status, says in (("units,,roads", 400, "empty layer"), ("units,roads,units", 400, "twice"),
                              ("units,nowhere", 404, "no layer 'nowhere'")):
        r = httpx.get(f"{server.url}/tiles/{bad}/14/13338/7131.mvt", headers=auth)
        assert r.status_code == status and says in r.json()["detail"], (bad, r.status_code, r.text)
        r = httpx.get(f"{server.url}/tiles/{bad}/tilejson.json", headers=auth)
        assert r.status_code == status and says in r.json()["detail"], (bad, r.status_code, r.text)
    tj = httpx.get(f"{server.url}/tiles/units,water,roads,buildings/tilejson.json", headers=auth).json()
    assert [v["id"] for v in tj["vector_layers"]] == ["units", "unit_labels", "waters", "roads", "buildings"]
    assert tj["tiles"][0].endswith("/tiles/units,water,roads,buildings/{z}/{x}/{y}.mvt")
    assert tj["minzoom"] == min(CATALOG[x].minzoom for x in ("units", "water", "roads", "buildings"))


@pytest.mark.parametrize("role", ["district_analyst", "community_staff"])
def test_unit_names_come_once_per_unit_inside_it_at_their_levels_zooms(server, served_db, truth, role):
    """The map's unit labels: one point per unit over the tiles that cover the user's unit, on that unit's
    surface, only for the levels a map names at that zoom (streets z10-13, communities z12-15, grids z14-18)."""
    user = next(u for u in served_db[1].values() if u["role"] == role)
    own = truth["units"][user["unit"]][1]
    west, south = mercantile.lnglat(own.bounds[0], own.bounds[1])
    east, north = mercantile.lnglat(own.bounds[2], own.bounds[3])
    shown = {10: {"street"}, 12: {"street", "community"}, 14: {"community", "grid"}, 16: {"grid"}}
    for z, levels in shown.items():
        seen = []
        for t in mercantile.tiles(west, south, east, north, z):
            for name, geom, props in decode(fetch(server, user, "units", z, t.x, t.y).content, z, t.x, t.y):
                b = mercantile.xy_bounds(t)
                # a point in the tile's buffer is its neighbour's: a map draws a label from its own tile only
                if name == "unit_labels" and b.left <= geom.x < b.right and b.bottom < geom.y <= b.top:
                    level, polygon = truth["units"][props["code"]]
                    assert props["level"] == level and polygon.buffer(2 * (b.right - b.left) / EXTENT).contains(geom)
                    seen.append((props["code"], level))
        codes = [c for c, _ in seen]
        assert len(codes) == len(set(codes)), f"z{z}: a unit named twice"
        want = {c for c, (lv, g) in truth["units"].items() if lv in levels and own.buffer(1).contains(g)}
        assert set(codes) == want, (z, sorted(want - set(codes))[:5], sorted(set(codes) - want)[:5])


@pytest.mark.parametrize("role", ["district_analyst", "community_staff"])
def test_outside_is_the_tile_less_the_users_unit(server, served_db, truth, role):
    """/outside/{z}/{x}/{y}.mvt (the map's dimming): in each tile around the user's unit, one polygon covering
    the tile but the unit, nothing over the unit; an empty tile inside it. Bad addresses are refused."""
    user = next(u for u in served_db[1].values() if u["role"] == role)
    own = truth["units"][user["unit"]][1]
    west, south = mercantile.lnglat(own.bounds[0], own.bounds[1])
    east, north = mercantile.lnglat(own.bounds[2], own.bounds[3])
    auth = {"Authorization": f"Bearer {user['token']}"}
    kinds = set()
    for z in (12, 14):
        for t in mercantile.tiles(west - 0.01, south - 0.01, east + 0.01, north + 0.01, z):
            r = httpx.get(f"{server.url}/outside/{z}/{t.x}/{t.y}.mvt", headers=auth)
            assert r.status_code == 200, r.text
            b = mercantile.xy_bounds(t)
            tile = shapely.box(b.left, b.bottom, b.right, b.top)
            got = shapely.union_all([g for name, g, _ in decode(r.content, z, t.x, t.y)
                                     if name == "outside"] or [shapely.Polygon()]).intersection(tile)
            want = tile.difference(own)
            snap = 2 * (b.right - b.left) / EXTENT  # MVT snaps coordinates to a 4096 grid per tile
            assert got.symmetric_difference(want).area <= snap * (want.length + tile.length), (z, t)
            assert got.intersection(own.buffer(-snap)).area <= snap * own.length
            kinds.add("inside" if want.is_empty else "outside" if want.equals(tile) else "edge")
            assert int(r.headers["x-features"]) == (0 if want.area < snap * tile.length else 1)
    assert {"edge", "outside"} <= kinds
    for bad, status in (("12/99999/1", 400), ("30/1/1", 400), ("12/a/1", 422)):
        r = httpx.get(f"{server.url}/outside/{bad}.mvt", headers=auth)
        assert r.status_code == status and r.json()["detail"], (bad, r.text)
    assert httpx.get(f"{server.url}/outside/12/3333/1780.mvt").status_code == 401


def _lnglat(point_3857):
    lng, lat = mercantile.lnglat(point_3857.x, point_3857.y)
    return shapely.Point(lng, lat)


def _neighbours(truth, level):
    """Pairs of touching units of one level, with a point on their shared edge."""
    units = sorted((c, g) for c, (lv, g) in truth["units"].items() if lv == level)
    pairs = []
    for i, (a, ga) in enumerate(units):
        for b, gb in units[i + 1:]:
            shared = ga.buffer(1).intersection(gb.buffer(1))
            if not shared.is_empty and shared.area > 10:
                pairs.append((a, b, _lnglat(shared.representative_point())))
    return pairs


@pytest.mark.parametrize("level,role", [("community", "community_staff"), ("grid", "grid_worker"),
                                        ("street", "street_staff")])
def test_tiles_straddling_neighbours_never_mix_even_through_the_cache(server, server_nocache, served_db, truth,
                                                                      level, role):
    users = {u["unit"]: u for u in served_db[1].values() if u["role"] == role}
    analyst = next(u for u in served_db[1].values() if u["role"] == "district_analyst")
    pairs = _neighbours(truth, level)
    assert pairs, f"no touching {level}s in the sample"
    seen_own = removed = 0
    for a, b, p in pairs[:6]:
        for z in (14, 15, 16, 17):
            t = mercantile.tile(p.x, p.y, z)
            for layer in CATALOG:
                # A, then B, then A again from the cache: a cache keyed too loosely would hand B's tile to A
                got = {}
                for who in (a, b, a):
                    r = fetch(server, users[who], layer, z, t.x, t.y)
                    feats = decode(r.content, z, t.x, t.y)
                    check_tile(feats, users[who], layer, z, t.x, t.y, truth)
                    if who in got:
                        assert r.headers["X-Cache"] == "HIT" and r.content == got[who]
                    got[who] = r.content
                    seen_own += len(feats)
                    cold = fetch(server_nocache, users[who], layer, z, t.x, t.y)
                    assert cold.content == r.content, "cached tile differs from a freshly built one"
                full = decode(fetch(server, analyst, layer, z, t.x, t.y).content, z, t.x, t.y)
                removed += len(full) - len(decode(got[a], z, t.x, t.y))
    assert seen_own > 0, "the neighbours' tiles were all empty: the test proved nothing"
    assert removed > 0, "no tile lost anything to the scope filter: the test proved nothing"


def test_point_tiles_hold_every_feature_of_the_scope_and_no_other(server, served_db, truth):
    """Completeness: the decoded features are exactly the scope's rows inside the tile (plus its buffer)."""
    users = [u for u in served_db[1].values() if u["role"] in ("community_staff", "grid_worker")]
    checked = 0
    for user in users:
        level, geom = truth["units"][user["unit"]]
        c = _lnglat(geom.centroid)
        for layer, table in (("events", "events"), ("devices", "devices"), ("organisations", "organisations")):
            z = CATALOG[layer].detail_zoom if CATALOG[layer].detail_zoom else 15
            t = mercantile.tile(c.x, c.y, max(z, 15))
            b = mercantile.xy_bounds(t)
            pad = (b.right - b.left) * 64 / EXTENT
            df = truth["points"][table]
            inside = df[(df[LEVEL_COL[level]] == user["unit"]) & df.x.between(b.left - pad, b.right + pad)
                        & df.y.between(b.bottom - pad, b.top + pad)]
            if layer == "organisations":
                ids = set(inside.id) - _party_ids(served_db)
            else:
                ids = set(inside.id)
            feats = decode(fetch(server, user, layer, t.z, t.x, t.y).content, t.z, t.x, t.y)
            assert {p["id"] for _, _, p in feats} == ids
            checked += len(ids)
    assert checked > 20


def _party_ids(served_db):
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    try:
        return {i for (i,) in db.query("SELECT id FROM organisations WHERE kind IN ('party_org', 'service_centre')")}
    finally:
        db.close()


def test_roles_get_the_fields_and_modes_their_role_allows(server, served_db, truth):
    users = served_db[1]
    by_role = {u["role"]: u for u in users.values()}
    xmin, ymin, xmax, ymax = truth["bbox"]
    t = mercantile.tile((xmin + xmax) / 2, (ymin + ymax) / 2, 17)
    people = {role: decode(fetch(server, by_role[role], "people", 17, t.x, t.y).content, 17, t.x, t.y)
              for role in ("district_analyst", "street_staff", "portal")}
    assert people["district_analyst"] and "name" in people["district_analyst"][0][2]
    assert all("id" not in p for _, _, p in people["street_staff"])  # no personal access: counts per grid
    assert all("id" not in p for _, _, p in people["portal"])
    events = decode(fetch(server, by_role["street_staff"], "events", 17, t.x, t.y).content, 17, t.x, t.y)
    assert events and all("reporter_phone" not in p and "id" in p for _, _, p in events)
    t12 = mercantile.tile((xmin + xmax) / 2, (ymin + ymax) / 2, 12)
    party = decode(fetch(server, by_role["portal"], "party", 12, t12.x, t12.y).content, 12, t12.x, t12.y)
    assert party and {n for n, _, _ in party} == {"party_orgs"}  # member ↔ household links are personal


def test_gzip_tilejson_and_determinism(server_nocache, served_db, truth):
    user = next(u for u in served_db[1].values() if u["role"] == "district_analyst")
    xmin, ymin, xmax, ymax = truth["bbox"]
    t = mercantile.tile((xmin + xmax) / 2, (ymin + ymax) / 2, 14)
    plain = fetch(server_nocache, user, "events", 14, t.x, t.y).content
    again = fetch(server_nocache, user, "events", 14, t.x, t.y).content
    assert plain and plain == again, "a rebuilt tile must be byte-identical"
    raw = httpx.get(f"{server_nocache.url}/tiles/events/14/{t.x}/{t.y}.mvt",
                    headers={"Authorization": f"Bearer {user['token']}", "Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.content == plain  # httpx undoes the gzip, as a browser does
    with httpx.stream("GET", f"{server_nocache.url}/tiles/events/14/{t.x}/{t.y}.mvt",
                      headers={"Authorization": f"Bearer {user['token']}", "Accept-Encoding": "gzip"}) as s:
        assert gzip.decompress(b"".join(s.iter_raw())) == plain
    tj = httpx.get(f"{server_nocache.url}/tiles/party/tilejson.json", params={"token": user["token"]}).json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith(f".mvt?token={user['token']}")
    assert {v["id"] for v in tj["vector_layers"]} == {"party_orgs", "party_links"}
    portal = next(u for u in served_db[1].values() if u["role"] == "portal")
    tj = httpx.get(f"{server_nocache.url}/tiles/people/tilejson.json", params={"token": portal["token"]}).json()
    assert set(tj["vector_layers"][0]["fields"]) == {"code", "name", "population", "registered", "floating", "age_60_79",
                                                      "age_80_plus", "households"}


def test_head_answers_tiles_and_tilejson_without_a_body(server_nocache, served_db, truth):
    """Issue 13.5: GDAL and caches ask HEAD first; unknown non-page paths answer 404 JSON, never the page."""
    user = next(u for u in served_db[1].values() if u["role"] == "district_analyst")
    xmin, ymin, xmax, ymax = truth["bbox"]
    t = mercantile.tile((xmin + xmax) / 2, (ymin + ymax) / 2, 14)
    auth = {"Authorization": f"Bearer {user['token']}"}
    for path in (f"/tiles/events/14/{t.x}/{t.y}.mvt", "/tiles/events/tilejson.json"):
        get, head = (httpx.request(m, server_nocache.url + path, headers=auth) for m in ("GET", "HEAD"))
        assert head.status_code == get.status_code == 200 and head.content == b"" and get.content
        assert head.headers["content-type"] == get.headers["content-type"]
    assert httpx.head(f"{server_nocache.url}/tiles/events/14/{t.x}/{t.y}.mvt").status_code == 401
    missing = httpx.get(f"{server_nocache.url}/tiles/events/14/{t.x}/{t.y}.png", headers=auth)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/json")


def test_event_tiles_flag_overdue_events_as_the_events_api_does(server, served_db):
    analyst = next(u for u in served_db[1].values() if u["role"] == "district_analyst")
    h = {"Authorization": f"Bearer {analyst['token']}"}
    for overdue in (True, False):
        events = httpx.get(f"{server.url}/events", params={"overdue": str(overdue).lower(), "size": 5},
                           headers=h).json()["items"]
        assert events
        for e in events:
            t = mercantile.tile(e["lon"], e["lat"], 17)
            feats = {p["id"]: p for _, _, p in decode(fetch(server, analyst, "events", 17, t.x, t.y).content,
                                                      17, t.x, t.y)}
            assert feats[e["id"]]["overdue"] is overdue, e["id"]


def test_tiles_inside_the_unit_are_not_cut_along_its_edge_and_draw_the_same(served_db, truth):
    """TileSource cuts features along the user's unit only in tiles that straddle its edge (decided on the unit's
    polygon in Python); cutting every feature of a tile that lies inside must draw the same features."""
    from brain.metrics import Clock
    from brain.settings import Settings
    from brain.tiles.source import TileSource
    from brain.tiles.sql import BUFFER

    class CutEverywhere(TileSource):
        def _where(self, scope, qenv):
            where = super()._where(scope, qenv)
            return "edge" if where == "inside" else where

    db = brain.connect(served_db.pristine, read_only=True)
    try:
        plain, cut = (cls(db, Settings(tile_cache_mb=0)) for cls in (TileSource, CutEverywhere))
        clock = Clock.from_settings(Settings())
        analyst = next(u for u in served_db.users.values() if u["role"] == "district_analyst")
        staff = sorted((u for u in served_db.users.values() if u["role"] == "community_staff"),
                       key=lambda u: u["unit"])[:3]
        inside = features = 0
        for user in (analyst, *staff):
            scope, (_, unit) = _scope(user), truth["units"][user["unit"]]
            lng0, lat0 = mercantile.lnglat(*unit.bounds[:2])
            lng1, lat1 = mercantile.lnglat(*unit.bounds[2:])
            for z in (15, 16, 17):
                def qenv(t):
                    b = mercantile.xy_bounds(t)
                    pad = (b.right - b.left) * BUFFER / EXTENT
                    return [b.left - pad, b.bottom - pad, b.right + pad, b.top + pad]

                tiles = [t for t in mercantile.tiles(lng0, lat0, lng1, lat1, z)
                         if plain._where(scope, qenv(t)) == "inside"]
                for t in tiles[:: max(1, len(tiles) // 4)][:4]:  # four, spread over the unit
                    b = mercantile.xy_bounds(t)
                    inside += 1
                    for layer in ("buildings", "party"):
                        got = [{(name, p.get("id")): (g, p) for name, g, p in
                                decode(src.tile(layer, scope, z, t.x, t.y, clock).data, z, t.x, t.y)}
                               for src in (plain, cut)]
                        assert got[0].keys() == got[1].keys(), f"{layer} {z}/{t.x}/{t.y}: other features"
                        px = (b.right - b.left) / EXTENT
                        for key, (g, p) in got[0].items():
                            g2, p2 = got[1][key]
                            assert p == p2 and g.hausdorff_distance(g2) <= 2 * px, f"{key} drawn differently"
                        features += len(got[0])
        assert inside >= 10 and features > 0, f"{inside} tiles inside, {features} features: proved nothing"
    finally:
        db.close()


def test_portal_grid_aggregates_are_the_rounded_grid_cells_the_metrics_api_serves(server, served_db, truth):
    """The aggregated tiles and /units/{grid}/metrics publish the same rounded cells (brain.scope.Disclosure)."""
    users = served_db[1]
    portal = next(u for u in users.values() if u["role"] == "portal")
    analyst = next(u for u in users.values() if u["role"] == "district_analyst")
    xmin, ymin, xmax, ymax = truth["bbox"]
    seen = small = 0
    for t in mercantile.tiles(xmin, ymin, xmax, ymax, 13):
        got = {role: {p["code"]: p for _, _, p in decode(fetch(server, u, "people", 13, t.x, t.y).content,
                                                         13, t.x, t.y)} for role, u in (("p", portal), ("a", analyst))}
        for code, props in got["p"].items():
            exact = got["a"][code]
            api = httpx.get(f"{server.url}/units/{code}/metrics", params={"names": "population,households"},
                            headers={"Authorization": f"Bearer {portal['token']}"}).json()["values"]
            for name in ("population", "households"):
                assert props.get(name, 0) == (exact.get(name, 0) + 2) // 5 * 5 == api[name], (code, name)
                small += 0 < exact.get(name, 0) % 5
            seen += 1
    assert seen >= 16 and small  # every grid of the sample, some of them not multiples of 5


def _crossing(grids: dict) -> tuple[str, str, shapely.LineString]:
    """Two grids of different communities sharing an edge, and a line from inside one across it into the other."""
    for a, (ca, ga) in sorted(grids.items()):
        for b, (cb, gb) in sorted(grids.items()):
            if ca >= cb:
                continue
            edge = ga.boundary.intersection(gb.boundary)
            if edge.length < 1e-4:
                continue
            mid = edge.interpolate(0.5, normalized=True)
            pa, pb = ga.representative_point(), gb.representative_point()
            line = shapely.LineString([(mid.x + (pa.x - mid.x) * 0.3, mid.y + (pa.y - mid.y) * 0.3), (mid.x, mid.y),
                                       (mid.x + (pb.x - mid.x) * 0.3, mid.y + (pb.y - mid.y) * 0.3)])
            if ga.union(gb).buffer(1e-9).contains(line) and min(line.intersection(g).length for g in (ga, gb)) > 1e-4:
                return a, b, line
    raise AssertionError("no two neighbouring grids of different communities in the sample")


def test_roads_and_rivers_are_cut_along_the_grids_edges(served_db, dbs):
    """A road or a river delivered across grids (a surveyed segment, a whole river) is placed in one grid by one
    point (brain.ingest); the map reads its pieces (brain.layers.derive): the grid workers and community staff on
    both sides each get the piece in their unit, and no piece reaches past it."""
    from pyproj import Transformer

    from brain.backend import as_wkb
    from brain.layers import derive
    from conftest import Server

    url = dbs.clone(served_db.pristine, "pieces")
    db = brain.connect(url)
    try:
        grids = {code: (community, shapely.from_wkb(bytes(wkb))) for code, community, wkb in db.query(
            f"SELECT code, community_code, {as_wkb(db, 'geom')} FROM admin_units WHERE level = 'grid'")}
        a, b, line = _crossing(grids)
        lake = line.buffer(2e-4)
        to_3857 = ("ST_Transform(geom, 3857)" if db.dialect == "postgis"
                   else "ST_Transform(geom, 'EPSG:4326', 'EPSG:3857', always_xy := true)")
        wkt = "ST_GeomFromText(?, 4326)" if db.dialect == "postgis" else "ST_GeomFromText(?)"
        # a road and a lake of grid a (as ingest placed them: by one point) now run across into grid b
        rid = db.query("SELECT id FROM roads WHERE grid_code = ? ORDER BY id LIMIT 1", [a])[0][0]
        wid = db.query("SELECT id FROM waters ORDER BY id LIMIT 1")[0][0]
        for table, rid_, geom in (("roads", rid, line), ("waters", wid, lake)):
            db.execute(f"UPDATE {table} SET grid_code = ?, geom = {wkt} WHERE id = ?", [a, geom.wkt, rid_])
            db.execute(f"UPDATE {table} SET geom_3857 = {to_3857} WHERE id = ?", [rid_])
        placed = {c: db.query("SELECT community_code, street_code FROM admin_units WHERE code = ?", [c])[0]
                  for c in (a, b)}
        for table, rid_ in (("roads", rid), ("waters", wid)):
            db.execute(f"UPDATE {table} SET community_code = ?, street_code = ? WHERE id = ?", [*placed[a], rid_])
        derive.cut(db)
        units = {code: shapely.from_wkb(bytes(wkb)) for code, wkb in db.query(
            f"SELECT code, {as_wkb(db, 'geom_3857')} FROM admin_units")}
    finally:
        db.close()
    users = {(u["level"], u["unit"]): u for u in served_db.users.values()
             if u["role"] in ("grid_worker", "community_staff")}
    mercator = Transformer.from_crs(4326, 3857, always_xy=True)
    to_3857 = lambda g: shapely.transform(g, lambda c: np.column_stack(mercator.transform(c[:, 0], c[:, 1])))  # noqa
    srv = Server(url)
    try:
        for grid in (a, b):
            for level, unit in (("grid", grid), ("community", grids[grid][0])):
                user = users[(level, unit)]
                own = units[unit]
                for layer, record, shape in (("roads", rid, line), ("water", wid, lake)):
                    size = (lambda g: g.length) if layer == "roads" else (lambda g: g.area)  # noqa: E731
                    got = []
                    for t in mercantile.tiles(*shape.bounds, 16):
                        b = mercantile.xy_bounds(t)
                        for name, geom, props in decode(fetch(srv, user, layer, t.z, t.x, t.y).content, t.z, t.x, t.y):
                            assert own.buffer(2 * (b.right - b.left) / EXTENT + 0.05).contains(geom), \
                                f"{layer} {props['id']} outside {unit}"
                            if props["id"].startswith(record + "@"):  # its part in this tile (tiles overlap)
                                got.append((props["id"], geom.intersection(shapely.box(*b))))
                    # the record's pieces in this user's unit, and no other: the part in the other grid is not theirs
                    mine = {g for g, (community, _) in grids.items() if unit in (g, community)}
                    want = {f"{record}@{g}" for g in mine
                            if size(to_3857(shape).intersection(units[g])) > derive.SLIVER}
                    assert f"{record}@{grid}" in want and {i for i, _ in got} == want, (layer, unit, got)
                    drawn, inside = shapely.union_all([g for _, g in got]), to_3857(shape).intersection(own)
                    assert abs(size(drawn) - size(inside)) <= 0.02 * size(inside), (layer, unit)
    finally:
        srv.stop()


def test_a_database_without_the_pieces_gets_them_when_served(served_db, dbs, truth):
    """A database made by an earlier brain has no pieces: `brain serve` derives them as it starts, on either
    backend (on PostGIS too, though ingest derives in DuckDB), and the roads' tiles are served cut."""
    from conftest import Server

    url = dbs.clone(served_db.pristine, "before-pieces")
    db = brain.connect(url)
    try:
        want = {t: db.query(f"SELECT count(*) FROM {t}")[0][0] for t in ("road_pieces", "water_pieces")}
        for table in want:
            db.execute(f"DROP TABLE {table}")
    finally:
        db.close()
    srv = Server(url)
    try:
        analyst = next(u for u in served_db.users.values() if u["role"] == "district_analyst")
        xmin, ymin, xmax, ymax = truth["bbox"]
        t = mercantile.tile((xmin + xmax) / 2, (ymin + ymax) / 2, 12)
        roads = [p for name, _, p in decode(fetch(srv, analyst, "roads", 12, t.x, t.y).content, 12, t.x, t.y)
                 if name == "roads"]
        assert roads and all("@" in p["id"] for p in roads)
    finally:
        srv.stop()
    db = brain.connect(url)
    try:
        assert {t: db.query(f"SELECT count(*) FROM {t}")[0][0] for t in want} == want
    finally:
        db.close()
