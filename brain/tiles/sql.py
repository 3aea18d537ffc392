"""Tile SQL: the one reader's select (brain.layers.reader) wrapped in ST_AsMVT; a request binds z/x/y values.

The shape follows what keeps DuckDB spatial 1.5 on its R-tree: the tile envelope (a bound constant) filters
the table first in a MATERIALIZED CTE (the reader's prefilter), and the scope predicate (one equality on a
placement column, `brain.scope.scope_sql`) runs on those few rows. Rows outside the scope never leave the
database; the aggregate is ordered, so a tile is byte-for-byte the same every time it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from brain.backend import quote_ident
from brain.layers.catalog import Part
from brain.layers.reader import aggregate_select, feature_select
from brain.scope import Disclosure

EXTENT = 4096
BUFFER = 64


@dataclass(frozen=True)
class TileQuery:
    """SQL of one part of a tile, and the order of its parameters."""

    sql: str
    params: tuple[str, ...]  # names of values bound at request time, in order


@lru_cache(maxsize=None)
def tile_query(part: Part, mode: str, fields: tuple[str, ...], level: str, clip: bool,
               dialect: str = "duckdb", disclosure: tuple[tuple[str, Disclosure | None], ...] = ()) -> TileQuery:
    """SQL returning (mvt bytes, feature count) for one part; cached, so built once per (part, role, level).

    `level`: the level of the scope's unit. `clip`: the tile straddles the edge of the scope's unit, so features
    are cut along it. `disclosure`: (table, how the role's per-grid counts of it are protected) for tables
    whose counts are not exact (`brain.scope.disclosure`).
    """
    if dialect not in ("duckdb", "postgis"):
        raise NotImplementedError(f"no tile SQL for dialect {dialect!r}")
    pg = dialect == "postgis"
    # the tile's envelope, and the same with the buffer: PostGIS builds them from z/x/y (bound as "tile"), DuckDB
    # takes the bounds computed by mercantile ("env", "qenv")
    if pg:
        tile = "CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS INTEGER)"
        env, qenv = f"ST_TileEnvelope({tile})", f"ST_TileEnvelope({tile}, margin => {BUFFER / EXTENT!r})"
        E, Q = "tile", "tile"
    else:
        env = qenv = "ST_MakeEnvelope(?, ?, ?, ?)"
        E, Q = "env", "qenv"
    # PostgreSQL runs a tile as a prepared statement with a generic plan, where bound values are not folded into
    # constants: as a sub-select the tile's box is computed once, not once per feature (10-14% of a tile's time)
    box = f"(SELECT {env}::box2d)" if pg else f"ST_Extent({env})"
    # PostGIS: `&&` (bounding boxes) is the index condition alone; ST_AsMVTGeom already drops what does not reach
    # the buffered tile, and ST_AsMVT skips the NULLs it returns, so the rows are not tested twice. DuckDB needs
    # ST_Intersects to use its R-tree.
    hit = (lambda g: f"{g} && {qenv}") if pg else (lambda g: f"ST_Intersects({g}, {qenv})")
    # ...and `OFFSET 0` keeps PostgreSQL from inlining the rows into the aggregates, where it would build each
    # feature's geometry twice, once for ST_AsMVT and once for the count (buildings at z15: 7.7 → 5.2 ms)
    drawn = ("count(f.mvtgeom) FROM ({} OFFSET 0) f" if pg
             else "count(*) FROM ({}) f WHERE f.mvtgeom IS NOT NULL").format

    def mvt(props: str, name: str, order: str) -> str:
        # DuckDB's ST_AsMVT takes a STRUCT; PostGIS's takes the row, every column but the geometry a property
        if pg:
            return f"ST_AsMVT(f, {_q_str(name)}, {EXTENT}, 'mvtgeom' ORDER BY {order})"
        return f"ST_AsMVT({{'geometry': f.mvtgeom, {props}}}, {_q_str(name)}, {EXTENT}, 'geometry' ORDER BY {order})"

    def rows(sel, head: int) -> str:  # the reader's rows, their geometry in tile coordinates (after the key columns)
        cols = [f"r.{quote_ident(c)}" for c in sel.columns if c != "geom"]
        mvtgeom = f"ST_AsMVTGeom(r.geom, {box}, {EXTENT}, {BUFFER}, true) AS mvtgeom"
        return f"SELECT {', '.join(cols[:head] + [mvtgeom] + cols[head:])} FROM ({sel.body}) r"

    if mode == "features":
        # clip is asked only for a tile that straddles the scope's edge (TileSource decides, on the unit's polygon):
        # inside the scope nothing a tile draws can cross the edge, since MVT geometry is clipped to the same
        # buffered tile, and a district's polygon is costly to fetch and test once per tile
        sel = feature_select(part, fields, level, clip=clip, geom="geom_3857", prefilter=hit("t.geom_3857"),
                             zoom=True, materialize=not pg)
        names = [c for c in sel.columns if c not in ("id", "geom")]
        props = ", ".join(["'id': f.id"] + [f"{_q_str(n)}: f.{quote_ident(n)}" for n in names])
        sql = (f"WITH {', '.join(sel.ctes)} SELECT {mvt(props, part.name, 'f.id')}, "
               + drawn(rows(sel, 1)))
        params = tuple(Q if n == "pre" else n for n in sel.params[:-1]) + (E, sel.params[-1])
        return TileQuery(sql, params)
    sel = aggregate_select(part, level, disclosure, geom="geom_3857", prefilter=hit("u.geom_3857"))
    names = [c for c in sel.columns if c not in ("code", "name", "geom")]
    props = ", ".join(["'code': f.code", "'name': f.name"] + [f"{_q_str(n)}: f.{quote_ident(n)}" for n in names])
    sql = (f"WITH {', '.join(sel.ctes)} SELECT {mvt(props, part.name, 'f.code')}, "
           + drawn(rows(sel, 2)))
    return TileQuery(sql, tuple(Q if n == "pre" else n for n in sel.params) + (E,))


@lru_cache(maxsize=None)
def outside_query(dialect: str = "duckdb") -> str:
    """SQL returning (mvt bytes, feature count) of one polygon given as WKB (EPSG:3857) in a tile whose envelope
    follows it (xmin, ymin, xmax, ymax): MVT layer `outside` (`TileSource.outside`)."""
    if dialect == "postgis":
        return (f"SELECT ST_AsMVT(f, 'outside', {EXTENT}, 'g'), count(f.g) FROM (SELECT ST_AsMVTGeom("
                f"ST_GeomFromWKB(?, 3857), ST_MakeEnvelope(?, ?, ?, ?, 3857)::box2d, {EXTENT}, {BUFFER}, true) AS g) f")
    if dialect != "duckdb":
        raise NotImplementedError(f"no tile SQL for dialect {dialect!r}")
    return (f"SELECT ST_AsMVT({{'geometry': f.g}}, 'outside', {EXTENT}, 'geometry'), count(*) FROM (SELECT "
            f"ST_AsMVTGeom(ST_GeomFromWKB(?), ST_Extent(ST_MakeEnvelope(?, ?, ?, ?)), {EXTENT}, {BUFFER}, true) AS g) f "
            f"WHERE f.g IS NOT NULL")


#: The tiles a batch builds: one row per tile, its envelope and buffered envelope in EPSG:3857.
BATCH_TILES = ("x", "y", "xmin", "ymin", "xmax", "ymax", "qxmin", "qymin", "qxmax", "qymax")


@lru_cache(maxsize=None)
def batch_query(part: Part, fields: tuple[str, ...], level: str) -> TileQuery:
    """SQL returning (x, y, mvt bytes, feature count) for the features of one part in many tiles of one zoom at
    once (DuckDB): the tiles are a relation `tiles_src` (BATCH_TILES) joined to the reader's rows, each tile's
    features encoded as `tile_query` encodes them alone — byte for byte the same tile, for tiles that do not
    straddle the scope's edge (those are cut along it one by one). An export builds a zoom of a layer so.
    """
    sel = feature_select(part, fields, level, clip=False, geom="geom_3857",
                         prefilter="ST_Intersects(t.geom_3857, ST_MakeEnvelope(?, ?, ?, ?))", zoom=True)
    names = [c for c in sel.columns if c not in ("id", "geom")]
    props = ", ".join(["'id': f.id"] + [f"{_q_str(n)}: f.{quote_ident(n)}" for n in names])
    cols = ", ".join(f"r.{quote_ident(c)}" for c in sel.columns if c != "geom")
    sql = (f"WITH {', '.join(sel.ctes)}, tl AS (SELECT * FROM tiles_src) "
           f"SELECT f.x, f.y, ST_AsMVT({{'geometry': f.mvtgeom, {props}}}, {_q_str(part.name)}, {EXTENT}, 'geometry' "
           f"ORDER BY f.id), count(*) FROM (SELECT tl.x, tl.y, {cols}, ST_AsMVTGeom(r.geom, "
           f"ST_Extent(ST_MakeEnvelope(tl.xmin, tl.ymin, tl.xmax, tl.ymax)), {EXTENT}, {BUFFER}, true) AS mvtgeom "
           f"FROM ({sel.body}) r JOIN tl ON ST_Intersects(r.geom, ST_MakeEnvelope(tl.qxmin, tl.qymin, tl.qxmax, "
           f"tl.qymax))) f WHERE f.mvtgeom IS NOT NULL GROUP BY f.x, f.y")
    return TileQuery(sql, sel.params)


def _q_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
