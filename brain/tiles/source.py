"""Tiles of the catalog for one scope: SQL from brain.tiles.sql, bytes from the backend, an LRU cache in front.

The cache key is (layer, scope key = role + level + unit, z, x, y, data version[, clock minute]): two scopes
never share an entry, so a tile built for one community can never be handed to its neighbour.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass

import mercantile
import pandas as pd
import shapely
from cachetools import LRUCache  # a size-bounded LRU keyed by bytes, with no reason to hand-write one

from brain.backend import Backend, as_wkb
from brain.errors import BadRequest, NotFound
from brain.layers.catalog import CATALOG, Layer
from brain.layers.reader import part_disclosure
from brain.metrics import INDICATORS, Clock
from brain.schema import data_version
from brain.scope import Scope
from brain.tiles.sql import BATCH_TILES, BUFFER, EXTENT, batch_query, outside_query, tile_query

MAX_ZOOM = 22
OUTSIDE = "outside"  # the MVT layer of `TileSource.outside` (not a catalog layer: no table's rows)


@dataclass
class Tile:
    """One rendered tile: MVT bytes and the number of features (what the cache holds)."""

    data: bytes
    features: int
    gzipped: bytes | None = None  # filled the first time a client asks for gzip, then kept with the tile

    def gzip(self) -> bytes:
        """The tile gzipped (compressed once, on the first request that asks)."""
        if self.gzipped is None:
            self.gzipped = gzip.compress(self.data, 5)
        return self.gzipped


def check_tile(z: int, x: int, y: int) -> None:
    """Raise BadRequest unless z/x/y address a tile of the Web Mercator pyramid."""
    if not 0 <= z <= MAX_ZOOM:
        raise BadRequest(f"zoom {z} is out of range: 0 to {MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise BadRequest(f"tile {z}/{x}/{y} does not exist: at zoom {z}, x and y run from 0 to {n - 1}")


def envelopes(z: int, x: int, y: int) -> tuple[list[float], list[float]]:
    """A tile's envelope and its envelope with the buffer, in EPSG:3857 (xmin, ymin, xmax, ymax)."""
    b = mercantile.xy_bounds(x, y, z)
    pad = (b.right - b.left) * BUFFER / EXTENT
    return [b.left, b.bottom, b.right, b.top], [b.left - pad, b.bottom - pad, b.right + pad, b.top + pad]


def _uses_clock(layer: Layer) -> bool:
    return any(p.computed or any("c." in INDICATORS[n].expr for n in p.aggregate) for p in layer.parts)


class TileSource:
    """Renders catalog layers for a scope, with a shared, scope-keyed cache."""

    def __init__(self, db: Backend, settings, catalog: dict[str, Layer] | None = None):
        self.db = db
        self.settings = settings
        self.catalog = catalog or CATALOG
        size = settings.tile_cache_mb * 2**20
        self._cache = LRUCache(maxsize=size, getsizeof=lambda t: len(t.data) + 200) if size else None
        self._lock = threading.Lock()
        self._version = (0.0, 0)
        self._units: dict[str, tuple[int, object]] = {}  # unit code -> (data version, prepared polygon)

    def layer(self, layer_id: str, scope: Scope) -> Layer:
        """The layer, if it exists and the scope gets anything from it."""
        layer = self.catalog.get(layer_id)
        if layer is None:
            raise NotFound(f"no layer {layer_id!r}: one of {', '.join(self.catalog)}")
        if not layer.visible(scope):
            raise NotFound(f"no layer {layer_id!r} for role {scope.user.role.name}")
        return layer

    def layers(self, ids: str, scope: Scope) -> list[Layer]:
        """The layers a tile address names: one id, or several joined by commas (a composite tile, as Martin serves
        them), each existing and visible to the scope; each named once."""
        names = ids.split(",")
        if any(not n for n in names):
            raise BadRequest(f"{ids!r} names an empty layer: join layer ids with single commas, e.g. units,roads")
        if len(set(names)) != len(names):
            raise BadRequest(f"{ids!r} names a layer twice: name each once")
        return [self.layer(n, scope) for n in names]

    async def acomposite(self, ids: str, scope: Scope, z: int, x: int, y: int, clock: Clock) -> tuple[Tile, bool]:
        """The tile of one layer or of several (their MVT layers one after another: a tile's layers are a repeated
        field, so concatenated tiles are one tile), each from the cache or built; and whether all were cached."""
        tiles, hit = [], True
        for layer in self.layers(ids, scope):
            t = self.cached(layer.id, scope, z, x, y, clock)
            if t is None:
                hit = False
                t = await self.abuild(layer.id, scope, z, x, y, clock)
            tiles.append(t)
        if len(tiles) == 1:
            return tiles[0], hit
        return Tile(b"".join(t.data for t in tiles), sum(t.features for t in tiles)), hit

    def data_version(self) -> int:
        """The database's data version, read at most once a second (ingest bumps it)."""
        at, v = self._version
        now = time.monotonic()
        if now - at > 1.0:
            v = data_version(self.db)
            self._version = (now, v)
        return v

    def _key(self, layer: Layer, scope: Scope, z: int, x: int, y: int, clock: Clock) -> tuple:
        return (layer.id, scope.key, z, x, y, self.data_version(),
                clock.as_of.replace(second=0) if _uses_clock(layer) else None)

    def _get(self, key: tuple) -> Tile | None:
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.get(key)

    def _put(self, key: tuple, tile: Tile) -> Tile:
        if self._cache is not None:
            with self._lock:
                self._cache[key] = tile
        return tile

    def cached(self, layer_id: str, scope: Scope, z: int, x: int, y: int, clock: Clock) -> Tile | None:
        """The tile from the cache, or None (after the same checks as `tile`)."""
        check_tile(z, x, y)
        layer = self.layer(layer_id, scope)
        if not layer.minzoom <= z <= layer.maxzoom:
            return None
        return self._get(self._key(layer, scope, z, x, y, clock))

    def tile(self, layer_id: str, scope: Scope, z: int, x: int, y: int, clock: Clock) -> Tile:
        """One tile of one layer as this scope may see it (from the cache when there)."""
        hit = self.cached(layer_id, scope, z, x, y, clock)
        if hit is not None:
            return hit
        layer = self.catalog[layer_id]
        return self._keep(layer, scope, z, x, y, clock, self.render(layer, scope, z, x, y, clock))

    async def abuild(self, layer_id: str, scope: Scope, z: int, x: int, y: int, clock: Clock) -> Tile:
        """Build a tile on the service's event loop (the backend's `aquery`) and keep it in the cache.

        For the caller that has just missed in `cached`, which also checked the address and the layer.
        """
        layer = self.catalog[layer_id]
        rows = [(await self.db.aquery(sql, params))[0]
                for sql, params in self.statements(layer, scope, z, x, y, clock)]
        return self._keep(layer, scope, z, x, y, clock, _assemble(rows))

    def _keep(self, layer: Layer, scope: Scope, z: int, x: int, y: int, clock: Clock, tile: Tile) -> Tile:
        if layer.minzoom <= z <= layer.maxzoom:
            self._put(self._key(layer, scope, z, x, y, clock), tile)
        return tile

    def render(self, layer: Layer, scope: Scope, z: int, x: int, y: int, clock: Clock) -> Tile:
        """Build a tile in the database (ST_AsMVT), part by part, without the cache."""
        statements = self.statements(layer, scope, z, x, y, clock)
        return _assemble([self.db.query(sql, params)[0] for sql, params in statements])

    def statements(self, layer: Layer, scope: Scope, z: int, x: int, y: int, clock: Clock) -> list[tuple[str, list]]:
        """(SQL, parameters) of each part the scope gets at this zoom; none outside the layer's zooms."""
        if not layer.minzoom <= z <= layer.maxzoom:
            return []
        return [st for part in layer.parts if (st := self.part_statement(layer, part, scope, z, x, y, clock))]

    def part_statement(self, layer: Layer, part, scope: Scope, z: int, x: int, y: int,
                       clock: Clock) -> tuple[str, list] | None:
        """(SQL, parameters) of one part of a tile, or None when the scope gets nothing of it there."""
        if not layer.minzoom <= z <= layer.maxzoom:
            return None
        env, qenv = envelopes(z, x, y)
        values = {
            "env": env,
            "qenv": qenv,
            "unit": [scope.user.unit_code],
            "clock": [clock.as_of, clock.respond_s, clock.close_s],
            "z": [z],
            "tile": [z, x, y],
        }
        mode = layer.mode(part, scope, z)
        if mode is None:
            return None
        clip = False
        if part.clip and mode == "features":
            where = self._where(scope, values["qenv"])
            if where == "outside":  # cut along the scope's edge, every feature would be empty
                return None
            clip = where == "edge"
        fields = part.visible_fields(scope) if mode == "features" else ()
        dis = part_disclosure(part, scope) if mode == "aggregate" else ()
        q = tile_query(part, mode, fields, scope.user.unit_level, clip, self.db.dialect, dis)
        return q.sql, [v for name in q.params for v in values[name]]

    def batch(self, layer: Layer, part, scope: Scope, z: int, tiles: list, clock: Clock) -> dict | None:
        """The features of one part in many tiles of zoom z, built in one statement (DuckDB): {(x, y): (mvt, n)}
        for the tiles that hold any, each byte for byte the tile `render` builds alone. None when this part is
        not served as features there, or on another backend (an export then builds tile by tile). Tiles that
        straddle the scope's edge of a part cut along it are left to `render`: `batchable` says which.
        """
        if self.db.dialect != "duckdb" or not layer.minzoom <= z <= layer.maxzoom \
                or layer.mode(part, scope, z) != "features":
            return None
        q = batch_query(part, part.visible_fields(scope), scope.user.unit_level)
        rows = []
        for t in tiles:
            env, qenv = envelopes(z, t.x, t.y)
            rows.append((t.x, t.y, *env, *qenv))
        if not rows:
            return {}
        frame = pd.DataFrame(rows, columns=list(BATCH_TILES))
        values = {"pre": [frame.qxmin.min(), frame.qymin.min(), frame.qxmax.max(), frame.qymax.max()], "z": [z],
                  "unit": [scope.user.unit_code], "clock": [clock.as_of, clock.respond_s, clock.close_s]}
        self.db.register("tiles_src", frame)
        try:
            got = self.db.query(q.sql, [v for name in q.params for v in values[name]])
        finally:
            self.db.unregister("tiles_src")
        return {(int(x), int(y)): (bytes(data), int(n)) for x, y, data, n in got}

    def batchable(self, part, scope: Scope, z: int, x: int, y: int) -> bool:
        """Whether `batch` builds this tile of the part as `render` would (not one cut along the scope's edge)."""
        if not part.clip:
            return True
        return self._where(scope, envelopes(z, x, y)[1]) == "inside"

    def _unit(self, scope: Scope):
        """The scope's unit polygon in EPSG:3857, prepared (fetched once per data version), or None."""
        code, version = scope.user.unit_code, self.data_version()
        hit = self._units.get(code)
        if hit is None or hit[0] != version:
            rows = self.db.query(f"SELECT {as_wkb(self.db, 'geom_3857')} FROM admin_units WHERE code = ?", [code])
            poly = shapely.from_wkb(bytes(rows[0][0])) if rows and rows[0][0] is not None else None
            if poly is not None:
                shapely.prepare(poly)
            hit = self._units[code] = (version, poly)
        return hit[1]

    def _where(self, scope: Scope, qenv: list[float]) -> str:
        """Where the buffered tile lies against the scope's unit: 'inside', 'edge' or 'outside'.

        Decided here with GEOS on the unit's polygon (fetched once per data version and prepared), the same
        predicates ST_Contains/ST_Intersects would run in the database, where fetching a district's polygon for
        every tile cost more than a tile of buildings itself.
        """
        poly = self._unit(scope)
        box = shapely.box(*qenv)
        if poly is None or not poly.intersects(box):
            return "outside"
        return "inside" if poly.contains(box) else "edge"

    def outside(self, scope: Scope, z: int, x: int, y: int) -> Tile:
        """The world outside the scope's unit in one tile (and its buffer): one polygon, MVT layer `outside`, for a
        map to dim what the user does not govern; an empty tile inside the unit.

        No row of any table: the tile's box less the unit's polygon (GEOS, as `_where`), encoded by the database
        as every tile is (`brain.tiles.sql.outside_query`). It depends only on the unit, so users of one unit share
        it in the cache.
        """
        check_tile(z, x, y)
        key = (OUTSIDE, scope.user.unit_code, z, x, y, self.data_version())
        hit = self._get(key)
        if hit is not None:
            return hit
        env, qenv = envelopes(z, x, y)
        poly, box = self._unit(scope), shapely.box(*qenv)
        rest = box if poly is None else box.difference(poly)
        tile = Tile(b"", 0)
        if not rest.is_empty:
            tile = _assemble(self.db.query(outside_query(self.db.dialect), [shapely.to_wkb(rest), *env]))
        return self._put(key, tile)

    def clear(self) -> None:
        """Drop every cached tile."""
        if self._cache is not None:
            with self._lock:
                self._cache.clear()


def _assemble(rows: list[tuple]) -> Tile:
    """One tile from the (mvt bytes, feature count) row of each part: MVT layers concatenate into one tile."""
    parts = [(bytes(data), int(n)) for data, n in rows if n]
    return Tile(b"".join(d for d, _ in parts), sum(n for _, n in parts))
