"""Placement of hand-checked records at each level, from each kind of coordinate, on a hand-drawn district.

The district is 113.0–113.2 E × 23.0–23.2 N: two streets (west/east halves), each two communities
(south/north), each two grids (west/east halves of the community). Every expected code below was worked out
by hand from those boxes; the points sit where an unconverted GCJ-02 / BD-09 coordinate would land in a
*different* unit, so a missing conversion fails the test.
"""

import json

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import yaml
from pyproj import Transformer

from brain.coords import wgs84_to_bd09, wgs84_to_gcj02
from conftest import run_cli


def _units():
    rows = [("100", "示例区", None, "district", shapely.box(113.0, 23.0, 113.2, 23.2))]
    for s, x0 in (("100001", 113.0), ("100002", 113.1)):
        rows.append((s, f"街道{s}", "100", "street", shapely.box(x0, 23.0, x0 + 0.1, 23.2)))
        for c, y0 in ((f"{s}001", 23.0), (f"{s}002", 23.1)):
            rows.append((c, f"社区{c}", s, "community", shapely.box(x0, y0, x0 + 0.1, y0 + 0.1)))
            for g, gx in ((f"{c}01", x0), (f"{c}02", x0 + 0.05)):
                rows.append((g, f"网格{g}", c, "grid", shapely.box(gx, y0, gx + 0.05, y0 + 0.1)))
    return gpd.GeoDataFrame(pd.DataFrame(rows, columns=["code", "name", "parent", "level", "geometry"]),
                            geometry="geometry", crs="EPSG:4326")


EXPECTED = {  # id: (WGS-84 lon, lat, CRS it is delivered in, grid, community, street)
    "A": (113.03, 23.04, "4326", "10000100101", "100001001", "100001"),
    "B": (113.1485, 23.15, "gcj02", "10000200201", "100002002", "100002"),
    "C": (113.098, 23.05, "bd09", "10000100102", "100001001", "100001"),
    "D": (113.12, 23.18, "3857", "10000200201", "100002002", "100002"),
}


@pytest.fixture(scope="module")
def placed(tmp_path_factory, dbs):
    d = tmp_path_factory.mktemp("hand")
    units = _units()
    for level in ("district", "street", "community", "grid"):
        units[units.level == level].drop(columns="level").to_file(d / f"{level}.geojson", driver="GeoJSON")
    sources = []
    to_3857 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    for key, (lon, lat, crs, *_rest) in EXPECTED.items():
        if crs == "gcj02":
            x, y = wgs84_to_gcj02(lon, lat)
        elif crs == "bd09":
            x, y = wgs84_to_bd09(lon, lat)
        elif crs == "3857":
            x, y = to_3857.transform(lon, lat)
        else:
            x, y = lon, lat
        pd.DataFrame([{"id": key, "cls": "城市管理", "st": "上报", "t": "2026-10-01 08:00", "x": float(x),
                       "y": float(y)}]).to_csv(d / f"events_{key}.csv", index=False)
        sources.append({"name": f"events_{key}", "entity": "events", "path": f"events_{key}.csv", "id": "id",
                        "columns": {"class": "cls", "status": "st", "reported_at": "t"},
                        "place": {"x": "x", "y": "y", "crs": crs}})
    # E lies outside the district.
    pd.DataFrame([{"id": "E", "cls": "城市管理", "st": "上报", "t": "2026-10-01", "x": 114.0, "y": 24.0}]).to_csv(
        d / "events_E.csv", index=False)
    sources.append({"name": "events_E", "entity": "events", "path": "events_E.csv", "id": "id",
                    "columns": {"class": "cls", "status": "st", "reported_at": "t"},
                    "place": {"x": "x", "y": "y", "crs": 4326}})
    # A building in the north-west grid and a person whose address names it in a different spelling.
    gpd.GeoDataFrame({"bid": ["B1"], "addr": ["明湖路1号1栋"]},
                     geometry=[shapely.box(113.010, 23.190, 113.0103, 23.1903)], crs="EPSG:4326").to_file(
        d / "buildings.geojson", driver="GeoJSON")
    sources.append({"name": "buildings", "entity": "buildings", "path": "buildings.geojson", "id": "bid",
                    "columns": {"address": "addr"}, "place": {"geometry": True}})
    pd.DataFrame([{"pid": "P1", "kind": "户籍", "addr": "示例区明湖路１号１幢３单元２０２房"},
                  {"pid": "P2", "kind": "户籍", "addr": "明湖路2号1栋"}]).to_csv(d / "people.csv", index=False)
    sources.append({"name": "people", "entity": "people", "path": "people.csv", "id": "pid",
                    "columns": {"residence": "kind", "address": "addr"}, "place": {"address": "addr"}})
    manifest = {"name": "hand-drawn", "sources": sources,
                "admin_units": [{"name": lv, "path": f"{lv}.geojson", "level": lv, "id": "code",
                                 "columns": {"name": "name", "parent_code": "parent"}}
                                for lv in ("district", "street", "community", "grid")]}
    (d / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    url = dbs.empty("placed")
    run_cli("ingest", d / "manifest.yaml", "--db", url, "--report-json", d / "r.json")
    import brain

    db = brain.connect(url, read_only=True)
    yield db, json.loads((d / "r.json").read_text(encoding="utf-8"))
    db.close()


@pytest.mark.parametrize("key", list(EXPECTED))
def test_each_coordinate_system_lands_in_the_hand_checked_units(placed, key):
    db, _ = placed
    lon, lat, _crs, grid, community, street = EXPECTED[key]
    row = db.query("SELECT grid_code, community_code, street_code, district_code, lon, lat FROM events "
                   "WHERE source_id = ?", [key])
    assert row, f"{key} was not loaded"
    assert row[0][:4] == (grid, community, street, "100")
    assert row[0][4] == pytest.approx(lon, abs=1e-6) and row[0][5] == pytest.approx(lat, abs=1e-6)


def test_outside_the_district_is_quarantined_not_dropped(placed):
    db, report = placed
    assert db.query("SELECT reason FROM quarantine WHERE source = 'events_E'") == [("outside-district",)]
    assert {s["name"]: s["quarantined"] for s in report["sources"]}["events_E"] == 1


def test_person_is_placed_at_the_building_of_their_address(placed):
    db, _ = placed
    row = db.query("SELECT building_id, unit_no, room, grid_code, community_code, street_code, district_code "
                   "FROM people WHERE source_id = 'P1'")[0]
    assert row == ("buildings:B1", "3", "202", "10000100201", "100001002", "100001", "100")
    assert db.query("SELECT reason, detail FROM quarantine WHERE source = 'people'") == [
        ("address-unmatched", "no building at 明湖路2号1栋")]


def test_units_carry_their_ancestors(placed):
    db, _ = placed
    assert db.query("SELECT grid_code, community_code, street_code, district_code FROM admin_units "
                    "WHERE code = '10000200202'") == [("10000200202", "100002002", "100002", "100")]
    assert db.query("SELECT grid_code, community_code, street_code, district_code FROM admin_units "
                    "WHERE code = '100002'") == [(None, None, "100002", "100")]
