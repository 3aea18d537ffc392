"""The one reader: what a scope may read of a layer part, as one SQL select — tiles, exports and the Python API.

`feature_select` gives the features a scope may read with only the fields its role may read; `aggregate_select`
gives the per-grid indicators served instead (below a layer's detail zoom, or to roles that may not read the
rows one by one), each grid's counts protected as `brain.scope.disclosure` says. The row scope is
`brain.scope.scope_sql`, decided there once; nothing here or in the callers restates it.

Each select is (CTEs, body): the body is `SELECT … FROM …` over the CTEs, with `geom` as the geometry column in
the requested SRID. A tile wraps the body in ST_AsMVTGeom/ST_AsMVT; an export or a GeoDataFrame reads it as it
is. A caller may narrow the rows first (`prefilter`: a tile's envelope, an export's bounding box) on the same
geometry column, bound with its own parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from brain.backend import quote_ident
from brain.layers.catalog import MVT_TYPES, Part
from brain.metrics import INDICATORS
from brain.scope import Disclosure, scope_sql

CLOCK_CTE = ("c AS (SELECT CAST(? AS TIMESTAMP) AS as_of, CAST(? AS DOUBLE PRECISION) AS respond_s, "
             "CAST(? AS DOUBLE PRECISION) AS close_s)")


@dataclass(frozen=True)
class Select:
    """One reader select: CTEs, a body selecting `columns` (geometry as `geom`), and the names of its parameters.

    Parameter names: "unit" (the scope's unit code), "clock" (as_of, respond_s, close_s), "z" (a zoom) and
    "pre" (the caller's prefilter values), in order of appearance.
    """

    ctes: tuple[str, ...]
    body: str
    params: tuple[str, ...]
    columns: tuple[str, ...]

    def sql(self) -> str:
        """The select on its own (WITH … SELECT …)."""
        return (f"WITH {', '.join(self.ctes)} " if self.ctes else "") + self.body


def _prop(part: Part, name: str) -> str:
    typ = MVT_TYPES[part.field_type(name)]
    return f"CAST(t.{quote_ident(name)} AS {typ})"


@lru_cache(maxsize=None)
def feature_select(part: Part, fields: tuple[str, ...], level: str, *, clip: bool = False, geom: str = "geom_3857",
                   prefilter: str = "", zoom: bool = False, materialize: bool = True) -> Select:
    """The part's features in the scope of `level` (one of LEVELS), with `fields` (the role's visible fields).

    `clip`: cut features along the scope's unit (a building straddling a community edge is shown to that
    community only up to the edge). `geom`: the geometry column (geom_3857 for tiles, geom for exports).
    `prefilter`: SQL over alias t narrowing the rows first, its values bound as "pre". `zoom`: apply the part's
    zoom filter, bound as "z". `materialize`: keep the narrowed rows in a MATERIALIZED CTE (DuckDB's R-tree is
    used only on the table itself).
    """
    g = quote_ident(geom)
    where = [w for w in (prefilter, part.where, part.zoom_filter if zoom else "") if w]
    order = (("pre",) if prefilter else ()) + (("z",) if zoom and part.zoom_filter else ())
    ctes = [f"hits AS {'MATERIALIZED ' if materialize else ''}(SELECT * FROM {quote_ident(part.source)} t"
            + (f" WHERE {' AND '.join(f'({w})' for w in where)}" if where else "") + ")"]
    out = f"ST_PointOnSurface(t.{g})" if part.label_point else f"t.{g}"
    if clip:
        ctes.append(f"s AS MATERIALIZED (SELECT {g} AS g FROM admin_units WHERE code = ?)")
        order += ("unit",)
        out = f"CASE WHEN ST_Within(t.{g}, s.g) THEN t.{g} ELSE ST_Intersection(t.{g}, s.g) END"
    if part.computed:
        ctes.append(CLOCK_CTE)
        order += ("clock",)
    cols = [f"t.{quote_ident(part.id_column)} AS id", f"{out} AS geom"]
    cols += [f"{_prop(part, f)} AS {quote_ident(f)}" for f in fields]
    cols += [f"CAST(({expr}) AS BOOLEAN) AS {quote_ident(n)}" for n, expr in part.computed]
    body = (f"SELECT {', '.join(cols)} FROM hits t{', s' if clip else ''}{', c' if part.computed else ''} "
            f"WHERE {scope_sql(level, 't')}")
    return Select(tuple(ctes), body, order + ("unit",), ("id", "geom", *fields, *(n for n, _ in part.computed)))


@lru_cache(maxsize=None)
def aggregate_select(part: Part, level: str, disclosure: tuple[tuple[str, Disclosure | None], ...] = (), *,
                     geom: str = "geom_3857", prefilter: str = "") -> Select:
    """The part's indicators per grid of the scope of `level`, each counted on its own table (a people part's
    `households` counts households, not residents); counts over tables in `disclosure` rounded per grid, rates
    taken of the rounded counts, medians left out (NULL).

    `prefilter`: SQL over alias u (the grids) narrowing them first, bound as "pre".
    """
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
    g = quote_ident(geom)
    ctes = [f"g AS MATERIALIZED (SELECT u.code, u.name, u.{g} AS geom FROM admin_units u WHERE "
            + (f"({prefilter}) AND " if prefilter else "") + f"u.level = 'grid' AND {scope_sql(level, 'u')})",
            CLOCK_CTE]
    order = (("pre",) if prefilter else ()) + ("unit", "clock")
    for k, tb in enumerate(tables):
        exprs = ", ".join(f"{e} AS {quote_ident(n)}" for n, e in cells[tb]) or "count(*) AS _rows"
        where = f" AND ({part.where})" if part.where and tb == part.table else ""
        ctes.append(f"a{k} AS (SELECT t.grid_code AS code, {exprs} FROM {quote_ident(tb)} t, c "
                    f"WHERE {scope_sql(level, 't')} AND t.grid_code IN (SELECT code FROM g){where} GROUP BY 1)")
        order += ("unit",)
    body = ("SELECT g.code, g.name, g.geom, " + ", ".join(f"{s} AS {quote_ident(i.name)}" for s, i in zip(shown, inds))
            + " FROM g" + "".join(f" LEFT JOIN a{k} ON a{k}.code = g.code" for k in range(len(tables))))
    return Select(tuple(ctes), body, order, ("code", "name", "geom", *(i.name for i in inds)))


def part_disclosure(part: Part, scope) -> tuple[tuple[str, Disclosure | None], ...]:
    """How each table a part's per-grid indicators count is protected for this scope (aggregate_select's
    `disclosure`)."""
    from brain.scope import disclosure

    return tuple((tb, disclosure(scope, tb)) for tb in dict.fromkeys(INDICATORS[n].table for n in part.aggregate))


def bind(sel: Select, unit: str, clock, pre: list | tuple = (), z: int | None = None) -> list:
    """The select's parameter values: the scope's unit code, the clock, a prefilter's values and a zoom."""
    values = {"unit": [unit], "pre": list(pre), "z": [z],
              "clock": [clock.as_of, clock.respond_s, clock.close_s]}
    return [v for name in sel.params for v in values[name]]


def grid_values(db, scope, clock, part: Part, indicator: str) -> list[tuple[str, float | None]]:
    """(grid code, value) of one of a part's per-grid indicators over the scope's grids, protected exactly as on the
    map's tiles (a map theme's classes are taken from these)."""
    if indicator not in part.aggregate:
        raise ValueError(f"{indicator!r} is not served per grid by part {part.name}")
    sel = aggregate_select(part, scope.user.unit_level, part_disclosure(part, scope), geom="geom")
    return db.query(f"SELECT q.code, q.{quote_ident(indicator)} FROM ({sel.sql()}) q ORDER BY q.code",
                    bind(sel, scope.user.unit_code, clock))
