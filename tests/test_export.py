"""Exports (issue 13.2–13.3): tile archives and data files hold exactly what one user is served, read back with
GDAL (pyogrio's), the `pmtiles` reader and GeoPandas; bad requests exit 2 with one line and leave no file."""

from __future__ import annotations

import gzip
import json
import sqlite3

import geopandas as gpd
import pyogrio
import pytest
import shapely

import brain
from conftest import run_cli
from test_tiles import decode, fetch

ALLOWED = {"community_staff": {"events": {"id", "class", "type", "status", "reported_at", "channel", "reporter_phone",
                                          "overdue"}},
           "street_staff": {"events": {"id", "class", "type", "status", "reported_at", "channel", "overdue"}}}


@pytest.fixture(scope="module")
def export_db(served_db, dbs):
    return dbs.clone(served_db.pristine, "export")


@pytest.fixture(scope="module")
def truth(served_db):
    db = brain.connect(f"duckdb:///{served_db.truth}", read_only=True)
    units = {c: shapely.from_wkb(bytes(w)) for c, w in db.query("SELECT code, ST_AsWKB(geom) FROM admin_units")}
    placed = {}
    for t in ("events", "buildings", "organisations"):
        for row in db.query(f"SELECT id, district_code, street_code, community_code, grid_code FROM {t}"):
            placed[row[0]] = dict(zip(("district", "street", "community", "grid"), row[1:]))
    db.close()
    return units, placed


def _user(served_db, role, k=0):
    return sorted((u for u in served_db.users.values() if u["role"] == role), key=lambda u: u["unit"])[k]


@pytest.mark.parametrize("fmt, role, level", [("pmtiles", "street_staff", "street"),
                                               ("mbtiles", "street_staff", "street"),
                                               ("pmtiles", "community_staff", "community")])
def test_an_archive_holds_its_units_features_and_its_roles_fields_only(tmp_path, served_db, export_db, truth, fmt,
                                                                       role, level):
    units, placed = truth
    staff = _user(served_db, role)
    out = tmp_path / f"{role}.{fmt}"
    proc = run_cli("export", "tiles", "--layers", "events,buildings", "--minzoom", "14", "--maxzoom", "16",
                   "--role", role, "--unit", staff["unit"], "--out", out, "--db", export_db)
    assert "tiles" in proc.stdout and out.exists() and not list(tmp_path.glob(".*partial*"))
    layers = {name for name, _ in pyogrio.list_layers(out)}
    assert {"events", "buildings"} <= layers
    personal = "reporter_phone" in pyogrio.read_info(out, layer="events")["fields"]
    assert personal == (role == "community_staff")  # a personal field: only for roles that read them
    fence = units[staff["unit"]].buffer(0.0005)
    # GDAL reads one zoom level of an archive (ZOOM_LEVEL), in EPSG:3857
    events = pyogrio.read_dataframe(out, layer="events", ZOOM_LEVEL="16").to_crs(4326)
    assert len(events) > 5 and events["id"].notna().all()
    filled = {c for c in events.columns if c != "geometry" and events[c].notna().any()}
    assert filled <= ALLOWED[role]["events"] | {"mvt_id"}
    assert all(placed[i][level] == staff["unit"] for i in events["id"])  # nothing of a neighbour
    assert all(fence.contains(g) for g in events.geometry)
    low = pyogrio.read_dataframe(out, layer="events", ZOOM_LEVEL="14")  # below the detail zoom: per grid
    assert len(low) > 0 and low["id"].isna().all() and low["code"].notna().all()
    assert all(placed_unit == staff["unit"] for placed_unit in (c[:len(staff["unit"])] for c in low["code"]))
    buildings = pyogrio.read_dataframe(out, layer="buildings", ZOOM_LEVEL="16").to_crs(4326)
    assert len(buildings) > 5 and all(fence.contains(g) for g in buildings.geometry)


def test_the_pmtiles_reader_agrees_and_the_archive_tile_is_the_served_tile(tmp_path, server, served_db, export_db,
                                                                           truth):
    from pmtiles.reader import MmapSource, Reader, all_tiles

    staff = _user(served_db, "community_staff")
    out = tmp_path / "staff.pmtiles"
    run_cli("export", "tiles", "--layers", "events", "--minzoom", "13", "--maxzoom", "15", "--token", staff["token"],
            "--out", out, "--db", export_db)
    mb = tmp_path / "staff.mbtiles"
    run_cli("export", "tiles", "--layers", "events", "--minzoom", "13", "--maxzoom", "15", "--token", staff["token"],
            "--out", mb, "--db", export_db)
    with open(out, "rb") as f:
        reader = Reader(MmapSource(f))
        header, meta = reader.header(), reader.metadata()
        tiles = {zxy: gzip.decompress(data) for zxy, data in all_tiles(MmapSource(f))}
    assert header["addressed_tiles_count"] == len(tiles) > 0
    assert header["min_zoom"] == 13 and header["max_zoom"] == 15
    x0, y0, x1, y1 = truth[0][staff["unit"]].bounds
    assert abs(header["min_lon_e7"] / 1e7 - x0) < 1e-6 and abs(header["max_lat_e7"] / 1e7 - y1) < 1e-6
    assert [v["id"] for v in meta["vector_layers"]] == ["events"]
    assert "reporter_phone" in meta["vector_layers"][0]["fields"]
    con = sqlite3.connect(mb)
    assert con.execute("SELECT count(*) FROM tiles").fetchone()[0] == len(tiles)
    assert json.loads(dict(con.execute("SELECT name, value FROM metadata"))["json"])["vector_layers"] == \
        meta["vector_layers"]
    con.close()
    compared = 0
    for (z, x, y), data in sorted(tiles.items())[:12]:  # the served tile decodes to the same features
        served = decode(fetch(server, staff, "events", z, x, y).content, z, x, y)
        archived = decode(data, z, x, y)
        assert sorted((n, p["id"] if "id" in p else p["code"], json.dumps(p, sort_keys=True)) for n, _, p in archived) \
            == sorted((n, p["id"] if "id" in p else p["code"], json.dumps(p, sort_keys=True)) for n, _, p in served)
        compared += len(archived)
    assert compared > 0


def test_a_portal_archive_holds_no_person_and_no_personal_field(tmp_path, served_db, export_db):
    portal = _user(served_db, "portal")
    out = tmp_path / "portal.pmtiles"
    run_cli("export", "tiles", "--layers", "people,events", "--minzoom", "12", "--maxzoom", "16", "--role", "portal",
            "--unit", portal["unit"], "--out", out, "--db", export_db)
    for layer in ("people", "events"):
        assert "id" not in pyogrio.read_info(out, layer=layer)["fields"]
        df = pyogrio.read_dataframe(out, layer=layer, ZOOM_LEVEL="16")
        assert len(df) > 0 and df["code"].notna().all()  # per-grid counts, never a feature of its own
        counts = [c for c in df.columns if c in ("population", "households", "events", "open_events")]
        assert counts and all((df[c] % 5 == 0).all() for c in counts)
        assert not {"birth_date", "reporter_phone", "household_id"} & set(df.columns)


@pytest.mark.parametrize("fmt, ext", [("geoparquet", "parquet"), ("gpkg", "gpkg"), ("geojson", "geojson"),
                                      ("csv", "csv")])
def test_data_exports_hold_what_the_api_reads(tmp_path, served_db, export_db, fmt, ext):
    staff = _user(served_db, "community_staff")
    out = tmp_path / f"events.{ext}"
    run_cli("export", "data", "--layer", "events", "--role", "community_staff", "--unit", staff["unit"],
            "--out", out, "--db", export_db)
    with brain.open(export_db, role="community_staff", unit=staff["unit"]) as s:
        want = s.layer("events")
    if fmt == "csv":
        raw = out.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")
        got = __import__("pandas").read_csv(out, encoding="utf-8-sig")
        assert "wkt" in got.columns
    else:
        got = gpd.read_parquet(out) if fmt == "geoparquet" else gpd.read_file(out, engine="pyogrio")
        assert got.crs.to_epsg() == 4326
    assert sorted(got["id"]) == sorted(want["id"]) and len(got) > 5
    if fmt == "geoparquet":
        import pyarrow.parquet as pq

        assert b"geo" in pq.read_schema(out).metadata


@pytest.mark.parametrize("args, needle", [
    (["tiles", "--layers", "events", "--role", "community_staff", "--unit", "nowhere"], "no admin unit 'nowhere'"),
    (["tiles", "--layers", "nope", "--role", "portal", "--unit", "{district}"], "no layer 'nope'"),
    (["tiles", "--layers", "events", "--minzoom", "16", "--maxzoom", "12", "--role", "portal", "--unit", "{district}"],
     "minzoom ≤ maxzoom"),
    (["tiles", "--layers", "events", "--role", "portal", "--unit", "{community}"], "a portal is bound to a district"),
    (["tiles", "--layers", "events", "--token", "not-a-token"], "unknown or disabled token"),
    (["data", "--layer", "party", "--part", "party_links", "--role", "portal", "--unit", "{district}"],
     "has no part 'party_links'"),
    (["data", "--layer", "events", "--role", "portal", "--unit", "{district}", "--format", "xls"], "unknown format"),
])
def test_bad_exports_exit_2_with_one_line_and_leave_no_file(tmp_path, served_db, export_db, args, needle):
    district = _user(served_db, "portal")["unit"]
    community = _user(served_db, "community_staff")["unit"]
    args = [a.format(district=district, community=community) for a in args]
    out = tmp_path / ("x.pmtiles" if args[0] == "tiles" else "x.gpkg")
    proc = run_cli("export", *args, "--out", out, "--db", export_db, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_path_and_a_removed_users_token_leave_nothing(tmp_path, served_db, export_db):
    staff = _user(served_db, "grid_worker")
    proc = run_cli("export", "data", "--layer", "events", "--token", staff["token"], "--out",
                   tmp_path / "missing" / "x.gpkg", "--db", export_db, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    name = next(n for n, u in served_db.users.items() if u is staff)
    run_cli("users", "remove", name, "--db", export_db)
    proc = run_cli("export", "data", "--layer", "events", "--token", staff["token"], "--out", tmp_path / "x.gpkg",
                   "--db", export_db, check=False)
    assert proc.returncode == 2 and "unknown or disabled token" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_archive_tile_is_the_tile_the_service_builds(tmp_path, served_db, export_db, monkeypatch):
    """Where the database can (DuckDB), an export builds a zoom of a part in one statement: each tile must still be
    byte for byte the tile `TileSource` builds alone — tiles cut along the unit's edge included."""
    from pmtiles.reader import MmapSource, all_tiles

    from brain.layers.catalog import CATALOG
    from brain.settings import Settings
    from brain.tiles.source import TileSource
    from conftest import AS_OF

    monkeypatch.setenv("BRAIN_AS_OF", AS_OF)  # the export's clock and the one below: overdue alike
    layers = ["buildings", "events", "organisations", "party"]
    for role in ("district_analyst", "community_staff"):
        u = _user(served_db, role)
        out = tmp_path / f"{role}.pmtiles"
        run_cli("export", "tiles", "--layers", ",".join(layers), "--minzoom", "12", "--maxzoom", "17",
                "--token", u["token"], "--out", out, "--db", export_db)
        with open(out, "rb") as f:
            got = {zxy: gzip.decompress(data) for zxy, data in all_tiles(MmapSource(f))}
        assert len(got) > 20
        with brain.open(export_db, token=u["token"], as_of=__import__("datetime").datetime.fromisoformat(AS_OF)) as s:
            src = TileSource(s.db, Settings(tile_cache_mb=0))
            for (z, x, y), data in got.items():
                want = b"".join(src.render(CATALOG[lid], s.scope, z, x, y, s.clock).data for lid in layers)
                assert data == want, (role, z, x, y)
