"""Exports for other portals and planners: tile archives (PMTiles, MBTiles) and data files, as one user sees them.

Both are made through the code that serves that user: tiles by `brain.tiles.source.TileSource` (the one reader
wrapped in ST_AsMVT, aggregated below the detail zoom exactly as served), data by `brain.api.Session.layer`
(the one reader as a GeoDataFrame). An archive is written beside its target and renamed at the end: an error or
Ctrl-C leaves no partial file.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import mercantile
import shapely

from brain.api import Session
from brain.archives import record
from brain.backend import as_wkb
from brain.errors import BadRequest, NotFound
from brain.layers.catalog import CATALOG
from brain.settings import Settings
from brain.tiles.source import MAX_ZOOM, TileSource

MAX_TILE_BYTES = 500 * 1024  # no archive tile above this (README#exports: how low zooms are kept thin)
DATA_FORMATS = {"geoparquet": ".parquet", "gpkg": ".gpkg", "geojson": ".geojson", "csv": ".csv"}
TILE_FORMATS = ("pmtiles", "mbtiles")
ATTRIBUTION = "brain — one map of the district (permission-filtered export)"


@contextmanager
def _atomic(out: Path) -> Iterator[Path]:
    """A temporary path beside `out`, renamed to `out` when the block ends well, removed otherwise."""
    out = Path(out)
    if out.is_dir():
        raise BadRequest(f"{out} is a folder: give a file name")
    if not out.parent.exists():
        raise BadRequest(f"folder {out.parent} does not exist: create it, or write elsewhere")
    if not os.access(out.parent, os.W_OK):
        raise BadRequest(f"cannot write in {out.parent}: choose a folder you may write to")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


# -- data -------------------------------------------------------------------------------------------------------
def export_data(session: Session, layer: str, fmt: str, out: Path, *, unit: str | None = None,
                part: str | None = None) -> int:
    """Write one layer part as this session's user reads it; returns the number of rows written."""
    if fmt not in DATA_FORMATS:
        raise BadRequest(f"unknown format {fmt!r}: one of {', '.join(DATA_FORMATS)}")
    gdf = session.layer(layer, unit=unit, part=part)
    with _atomic(out) as tmp:
        if fmt == "geoparquet":
            gdf.to_parquet(tmp, index=False)  # with its `geo` metadata (GeoParquet 1.x)
        elif fmt == "gpkg":
            gdf.to_file(tmp, driver="GPKG", layer=layer, engine="pyogrio")
        elif fmt == "geojson":
            gdf.to_file(tmp, driver="GeoJSON", engine="pyogrio")
        else:  # Excel opens UTF-8 CSV as such only with a byte-order mark
            frame = gdf.drop(columns="geometry").assign(wkt=shapely.to_wkt(gdf.geometry.values, rounding_precision=7))
            frame.to_csv(tmp, index=False, encoding="utf-8-sig")
    return len(gdf)


# -- tiles ------------------------------------------------------------------------------------------------------
def export_tiles(session: Session, layers: list[str], minzoom: int, maxzoom: int, fmt: str, out: Path, *,
                 unit: str | None = None, progress: Callable[[int, int], None] | None = None,
                 workers: int | None = None) -> dict:
    """Write the tiles this session's user would be served over a unit (default: their own), z minzoom–maxzoom.

    Only tiles over the unit are made, empty ones skipped. Returns {tiles, bytes, largest, seconds}.
    """
    if fmt not in TILE_FORMATS:
        raise BadRequest(f"unknown format {fmt!r}: one of {', '.join(TILE_FORMATS)}")
    if not 0 <= minzoom <= maxzoom <= MAX_ZOOM:
        raise BadRequest(f"zooms run 0 ≤ minzoom ≤ maxzoom ≤ {MAX_ZOOM}, not {minzoom}–{maxzoom}")
    scope, db = session.scope, session.db
    chosen = []
    for lid in layers:
        lay = CATALOG.get(lid)
        if lay is None or not lay.visible(scope):
            raise NotFound(f"no layer {lid!r} for role {scope.user.role.name}: one of "
                           f"{', '.join(k for k, v in CATALOG.items() if v.visible(scope))}")
        chosen.append(lay)
    code = unit or scope.user.unit_code
    from brain.metrics import unit_of

    code, name, _ = unit_of(db, scope, code)  # NotFound / Forbidden outside the scope
    rows = db.query(f"SELECT {as_wkb(db, 'geom')} FROM admin_units WHERE code = ?", [code])
    poly = shapely.from_wkb(bytes(rows[0][0]))
    shapely.prepare(poly)
    plan = [t for z in range(minzoom, maxzoom + 1) for t in mercantile.tiles(*poly.bounds, z)
            if poly.intersects(shapely.box(*mercantile.bounds(t)))]
    from pmtiles.tile import zxy_to_tileid

    plan.sort(key=lambda t: zxy_to_tileid(t.z, t.x, t.y))  # PMTiles: tiles in tile-id order
    source = TileSource(db, Settings(tile_cache_mb=0))
    t0, written, total, largest = time.perf_counter(), 0, 0, 0
    metadata = _tilejson(chosen, scope, poly, name, minzoom, maxzoom)
    with _atomic(out) as tmp:
        sink = _PMTiles(tmp, poly, minzoom, maxzoom) if fmt == "pmtiles" else _MBTiles(tmp)
        done = 0
        pool = ThreadPoolExecutor(max_workers=workers or 2 * (os.cpu_count() or 1))  # 2 per core: 48 vs 53 s (large)
        try:
            for z in sorted({t.z for t in plan}):  # tile ids grow with the zoom: each zoom's tiles in id order
                tiles = [t for t in plan if t.z == z]
                # a part's features in all of this zoom's tiles at once, where the database can (DuckDB): the
                # same bytes as tile by tile (tests/test_export.py compares them), several times faster
                batched = {}
                for li, lay in enumerate(chosen):
                    for pi, part in enumerate(lay.parts):
                        inner = [t for t in tiles if source.batchable(part, scope, z, t.x, t.y)]
                        got = source.batch(lay, part, scope, z, inner, session.clock)
                        if got is not None:
                            batched[(li, pi)] = (got, {(t.x, t.y) for t in inner})

                def render(t) -> bytes:  # in a worker thread: each has its own cursor on the database
                    chunks = []
                    for li, lay in enumerate(chosen):
                        for pi, part in enumerate(lay.parts):
                            hit = batched.get((li, pi))
                            if hit is not None and (t.x, t.y) in hit[1]:
                                data, n = hit[0].get((t.x, t.y), (b"", 0))
                            else:
                                st = source.part_statement(lay, part, scope, t.z, t.x, t.y, session.clock)
                                if st is None:
                                    continue
                                data, n = db.query(*st)[0]
                            if n:  # MVT layers concatenate into one tile, as the service assembles them
                                chunks.append(bytes(data))
                    return b"".join(chunks)

                for t, data in zip(tiles, pool.map(render, tiles)):
                    done += 1
                    if data:
                        if len(data) > MAX_TILE_BYTES:
                            raise BadRequest(f"tile {t.z}/{t.x}/{t.y} holds {len(data):,} bytes, over the "
                                             f"{MAX_TILE_BYTES:,} an archive allows: start at a higher --minzoom")
                        packed = gzip.compress(data, 6, mtime=0)
                        sink.add(t.z, t.x, t.y, packed)
                        written, total, largest = written + 1, total + len(packed), max(largest, len(data))
                    if progress:
                        progress(done, len(plan))
            sink.finish(metadata)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            sink.close()
        record(out, scope, code, layers, minzoom, maxzoom, fmt)  # whose view it holds (brain.archives)
    session._audit(f"export-tiles:{fmt}", t0, layer=",".join(layers), target=code, features=written)
    return {"tiles": written, "bytes": total, "largest": largest, "seconds": round(time.perf_counter() - t0, 2),
            "planned": len(plan)}


def _tilejson(layers, scope, poly, name: str, minzoom: int, maxzoom: int) -> dict:
    """TileJSON-style metadata with `vector_layers` (as `GET /tiles/{layer}/tilejson.json` gives them)."""
    x0, y0, x1, y1 = poly.bounds
    c = poly.representative_point()
    return {"name": f"{name} ({scope.user.role.name})", "format": "pbf", "type": "overlay",
            "attribution": ATTRIBUTION, "minzoom": minzoom, "maxzoom": maxzoom,
            "bounds": [round(v, 7) for v in (x0, y0, x1, y1)],
            "center": [round(c.x, 7), round(c.y, 7), min(maxzoom, max(minzoom, 14))],
            "vector_layers": [v for lay in layers for v in lay.vector_layers(scope, minzoom, maxzoom)]}


class _PMTiles:
    """A PMTiles v3 archive through the `pmtiles` package (gzip-compressed MVT, clustered)."""

    def __init__(self, path: Path, poly, minzoom: int, maxzoom: int):
        from pmtiles.writer import Writer

        self.f = open(path, "wb")
        self.w = Writer(self.f)
        self.poly, self.minzoom, self.maxzoom = poly, minzoom, maxzoom
        self.n = 0

    def add(self, z: int, x: int, y: int, data: bytes) -> None:
        from pmtiles.tile import zxy_to_tileid

        self.w.write_tile(zxy_to_tileid(z, x, y), data)
        self.n += 1

    def finish(self, metadata: dict) -> None:
        from pmtiles.tile import Compression, TileType

        if not self.n:
            raise BadRequest("no tile over the unit holds anything at these zooms: nothing to archive")
        x0, y0, x1, y1 = self.poly.bounds
        c = self.poly.representative_point()
        self.w.finalize({
            "tile_type": TileType.MVT, "tile_compression": Compression.GZIP,
            "min_lon_e7": int(x0 * 1e7), "min_lat_e7": int(y0 * 1e7),
            "max_lon_e7": int(x1 * 1e7), "max_lat_e7": int(y1 * 1e7),
            "center_zoom": metadata["center"][2], "center_lon_e7": int(c.x * 1e7), "center_lat_e7": int(c.y * 1e7),
        }, metadata)

    def close(self) -> None:
        self.f.close()


class _MBTiles:
    """An MBTiles 1.3 archive: `metadata` (with `json` holding vector_layers) and `tiles` in TMS rows."""

    def __init__(self, path: Path):
        self.con = sqlite3.connect(path)
        self.con.executescript("CREATE TABLE metadata (name TEXT, value TEXT);"
                               "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, "
                               "tile_data BLOB);"
                               "CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);")
        self.n = 0

    def add(self, z: int, x: int, y: int, data: bytes) -> None:
        self.con.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, data))
        self.n += 1

    def finish(self, metadata: dict) -> None:
        if not self.n:
            raise BadRequest("no tile over the unit holds anything at these zooms: nothing to archive")
        rows = {"name": metadata["name"], "format": "pbf", "type": "overlay", "version": "1.3",
                "attribution": metadata["attribution"], "minzoom": str(metadata["minzoom"]),
                "maxzoom": str(metadata["maxzoom"]), "bounds": ",".join(map(str, metadata["bounds"])),
                "center": ",".join(map(str, metadata["center"])),
                "json": json.dumps({"vector_layers": metadata["vector_layers"]}, ensure_ascii=False)}
        self.con.executemany("INSERT INTO metadata VALUES (?, ?)", list(rows.items()))
        self.con.commit()

    def close(self) -> None:
        self.con.close()
