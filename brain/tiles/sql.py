"""Tile SQL: one pure function turns (part, mode, scope fields, dialect) into SQL; a request binds z/x/y values.

The shape follows what keeps DuckDB spatial 1.5 on its R-tree: the tile envelope (a bound constant) filters
the table first in a MATERIALIZED CTE, and the scope predicate (one equality on a placement column) runs on
those few rows. Rows outside the scope never leave the database; the aggregate is ordered, so a tile is
byte-for-byte the same every time it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from brain.backend import quote_ident
from brain.layers.catalog import MVT_TYPES, Part
from brain.metrics import INDICATORS
from brain.scope import Disclosure

EXTENT = 4096
BUFFER = 64


@dataclass(frozen=True)
class TileQuery:
    """SQL of one part of a tile, and the order of its parameters."""

    sql: str
    params: tuple[str, ...]  # names of values bound at request time, in order


def _prop(part: Part, name: str) -> str:
    typ = MVT_TYPES[part.field_type(name)]
    return f"CAST(t.{quote_ident(name)} AS {typ})"


@lru_cache(maxsize=None)
def tile_query(part: Part, mode: str, fields: tuple[str, ...], level_column: str, clip: bool,
               dialect: str = "duckdb", disclosure: tuple[tuple[str, Disclosure | None], ...] = ()) -> TileQuery:
    """SQL returning (mvt bytes, feature count) for one part; cached, so built once per (part, role, level).

    `clip`: the tile straddles the edge of the scope's unit, so features are cut along it.
    `disclosure`: (table, how the role's per-grid counts of it are protected) for tables whose counts are not
    exact (`brain.scope.disclosure`).
    """
    if dialect not in ("duckdb", "postgis"):
        raise NotImplementedError(f"no tile SQL for dialect {dialect!r}")
    pg = dialect == "postgis"
    scope_col = quote_ident(level_column)
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

    if mode == "features":
        cols = ", ".join(f"{_prop(part, f)} AS {quote_ident(f)}" for f in fields)
        geom = "t.geom_3857"
        scope_cte = ""
        if clip:
            # asked only for a tile that straddles the scope's edge (TileSource decides, on the unit's polygon):
            # inside the scope nothing a tile draws can cross the edge, since MVT geometry is clipped to the same
            # buffered tile, and a district's polygon is costly to fetch and test once per tile
            scope_cte = ", s AS MATERIALIZED (SELECT geom_3857 AS g FROM admin_units WHERE code = ?)"
            geom = "CASE WHEN ST_Within(t.geom_3857, s.g) THEN t.geom_3857 ELSE ST_Intersection(t.geom_3857, s.g) END"
        where = f" AND ({part.where})" if part.where else ""
        if part.zoom_filter:
            where += f" AND ({part.zoom_filter})"
        names = [*fields, *(n for n, _ in part.computed)]
        props = ", ".join(["'id': f.id"] + [f"{_q_str(f)}: f.{quote_ident(f)}" for f in names])
        computed = "".join(f", CAST(({expr}) AS BOOLEAN) AS {quote_ident(n)}" for n, expr in part.computed)
        clock_cte = (", c AS (SELECT CAST(? AS TIMESTAMP) AS as_of, CAST(? AS DOUBLE PRECISION) AS respond_s, "
                     "CAST(? AS DOUBLE PRECISION) AS close_s)") if part.computed else ""
        sql = (
            f"WITH hits AS {'' if pg else 'MATERIALIZED '}(SELECT * FROM {quote_ident(part.table)} t "
            f"WHERE {hit('t.geom_3857')}{where}){scope_cte}{clock_cte} "
            f"SELECT {mvt(props, part.name, 'f.id')}, " + drawn(
                f"SELECT t.{quote_ident(part.id_column)} AS id, "
                f"ST_AsMVTGeom({geom}, {box}, {EXTENT}, {BUFFER}, true) AS mvtgeom"
                + (f", {cols}" if cols else "") + computed
                + f" FROM hits t{', s' if clip else ''}{', c' if part.computed else ''} WHERE t.{scope_col} = ?")
        )
        order = ((Q,) + (("z",) if part.zoom_filter else ()) + (("unit",) if clip else ())
                 + (("clock",) if part.computed else ()) + (E, "unit"))
        return TileQuery(sql, order)
    # per-grid aggregates: the grid polygons in the tile and the scope, with the part's indicators, each counted
    # on its own table (a people part's `households` counts households, not residents)
    protect = dict(disclosure)
    inds = [INDICATORS[n] for n in part.aggregate]
    tables = list(dict.fromkeys(i.table for i in inds))
    shown, cells = [], {tb: [] for tb in tables}
    for i in inds:
        a, dis = f"a{tables.index(i.table)}", protect.get(i.table)
        v = f"{a}.{quote_ident(i.name)}"
        if dis is None:
            cells[i.table].append((i.name, i.expr))
            shown.append(f"CAST(coalesce({v}, 0) AS BIGINT)" if i.kind == "count"
                         else f"CAST({v} AS DOUBLE PRECISION)")
        elif i.kind == "count":  # each grid's count rounded, as brain.scope.Disclosure publishes it
            cells[i.table].append((i.name, i.expr))
            shown.append(dis.sql(f"coalesce({v}, 0)"))
        elif i.ratio:  # a rate of the rounded counts
            num, den = (dis.sql(f"coalesce({a}.{quote_ident(i.name + x)}, 0)") for x in ("_num", "_den"))
            cells[i.table] += [(i.name + "_num", f"count(*) FILTER (WHERE {i.ratio[0]})"),
                               (i.name + "_den", f"count(*) FILTER (WHERE {i.ratio[1]})")]
            shown.append(f"CASE WHEN {den} = 0 THEN NULL ELSE CAST({num} AS DOUBLE PRECISION) / {den} END")
        else:  # a median of one grid: never released to a protected role (NULL properties are left out)
            shown.append("CAST(NULL AS DOUBLE PRECISION)")
    ctes = []
    for k, tb in enumerate(tables):
        exprs = ", ".join(f"{e} AS {quote_ident(n)}" for n, e in cells[tb]) or "count(*) AS _rows"
        where = f" AND ({part.where})" if part.where and tb == part.table else ""
        ctes.append(f"a{k} AS (SELECT t.grid_code AS code, {exprs} FROM {quote_ident(tb)} t, c "
                    f"WHERE t.{scope_col} = ? AND t.grid_code IN (SELECT code FROM g){where} GROUP BY 1)")
    props = ", ".join(["'code': f.code", "'name': f.name"] + [f"{_q_str(i.name)}: f.{quote_ident(i.name)}"
                                                              for i in inds])
    sql = (
        f"WITH g AS MATERIALIZED (SELECT u.code, u.name, u.geom_3857 FROM admin_units u "
        f"WHERE {hit('u.geom_3857')} AND u.level = 'grid' AND u.{scope_col} = ?), "
        f"c AS (SELECT CAST(? AS TIMESTAMP) AS as_of, CAST(? AS DOUBLE PRECISION) AS respond_s, "
        f"CAST(? AS DOUBLE PRECISION) AS close_s), " + ", ".join(ctes) + " "
        f"SELECT {mvt(props, part.name, 'f.code')}, " + drawn(
            f"SELECT g.code, g.name, ST_AsMVTGeom(g.geom_3857, {box}, {EXTENT}, {BUFFER}, true) AS mvtgeom, "
            + ", ".join(f"{s} AS {quote_ident(i.name)}" for s, i in zip(shown, inds))
            + " FROM g" + "".join(f" LEFT JOIN a{k} ON a{k}.code = g.code" for k in range(len(tables))))
    )
    return TileQuery(sql, (Q, "unit", "clock") + ("unit",) * len(tables) + (E,))


def _q_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
