"""Indicators (指标): one registry of named metrics, each an SQL aggregate over one table.

Units, drawn polygons, rankings, aggregated tiles and the dashboards' widgets all read this registry, and
every query they run goes through `brain.scope.scope_filter` — so a number is computed one way everywhere.

Aggregates refer to the row as `t` and to a one-row `clock` relation as `c` (c.as_of, c.respond_s,
c.close_s): the clock and limits are bound parameters, never formatted into the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import shapely

from brain.backend import Backend, quote_ident
from brain.errors import BadRequest, Forbidden, NotFound
from brain.model import LEVELS, VOCABS
from brain.scope import (Disclosure, Scope, allowed, disclosure, in_scope, scope_filter, snap_to_grids,
                         snaps_areas)


def sql_literal(value: str) -> str:
    """A string constant of brain's own model (a vocabulary code) as SQL; never used for request values."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Indicator:
    """One named metric: the table it aggregates, its SQL aggregate, and how to show it."""

    name: str
    table: str
    expr: str
    label: str
    group: str
    kind: str = "count"  # count | ratio | minutes | hours
    base: str | None = None  # for ratios and durations: the count they are computed over
    ratio: tuple[str, str] | None = None  # a ratio's (numerator, denominator) conditions, counted apart when protected


def _count(where: str | None = None) -> str:
    return f"count(*) FILTER (WHERE {where})" if where else "count(*)"


def _ratio_sql(num: str, den: str) -> str:
    return f"CASE WHEN count(*) FILTER (WHERE {den}) = 0 THEN NULL ELSE " \
           f"CAST(count(*) FILTER (WHERE {num}) AS DOUBLE PRECISION) / count(*) FILTER (WHERE {den}) END"


def _ratio(name: str, table: str, num: str, den: str, label: str, group: str, base: str) -> Indicator:
    return Indicator(name, table, _ratio_sql(num, den), label, group, "ratio", base=base, ratio=(num, den))


def _median_seconds(start: str, end: str, divisor: int) -> str:
    return f"percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ({end} - {start}))) / {divisor}"


OPEN = "t.status IN ('reported', 'dispatched')"
DONE = "t.status IN ('resolved', 'closed')"
DONE_AT = "coalesce(t.resolved_at, t.closed_at)"
OVERDUE_RESPOND = "t.status = 'reported' AND t.dispatched_at IS NULL AND extract(epoch FROM (c.as_of - t.reported_at)) > c.respond_s"
OVERDUE_CLOSE = f"{OPEN} AND extract(epoch FROM (c.as_of - t.reported_at)) > c.close_s"
AGE_BANDS = ((0, 15), (15, 35), (35, 60), (60, 80), (80, None))


def _age(lo: int, hi: int | None) -> str:
    cond = f"t.birth_date <= c.as_of - INTERVAL '{lo} years'" if lo else "t.birth_date <= c.as_of"
    if hi is not None:
        cond += f" AND t.birth_date > c.as_of - INTERVAL '{hi} years'"
    return cond


def _build() -> dict[str, Indicator]:
    i: list[Indicator] = []
    add = i.append
    # population 人口
    add(Indicator("population", "people", _count(), "人口 population", "population"))
    add(Indicator("registered", "people", _count("t.residence = 'registered'"), "户籍 registered", "population"))
    add(Indicator("floating", "people", _count("t.residence = 'floating'"), "流动 floating", "population"))
    for lo, hi in AGE_BANDS:
        name = f"age_{lo}_{hi - 1}" if hi else f"age_{lo}_plus"
        add(Indicator(name, "people", _count(_age(lo, hi)), f"{lo}–{hi - 1 if hi else ''}岁 age {lo}"
                      + (f"–{hi - 1}" if hi else "+"), "age"))
    add(Indicator("age_unknown", "people", _count("t.birth_date IS NULL"), "年龄不详 age unknown", "age"))
    for code in VOCABS["special_group"]:
        label = VOCABS["special_group"][code][0]
        add(Indicator(f"group_{code}", "people", _count(f"strpos(coalesce(t.special_groups, ''), "
                                                        f"{sql_literal(code)}) > 0"),
                      f"{label} {code.replace('_', ' ')}", "special_groups"))
    add(Indicator("households", "households", _count(), "户数 households", "population"))
    # buildings 房屋
    add(Indicator("buildings", "buildings", _count(), "房屋 buildings", "buildings"))
    add(Indicator("rented_buildings", "buildings", _count("t.rented"), "出租房屋 rented", "buildings"))
    add(Indicator("buildings_without_fire_facilities", "buildings", _count("NOT t.fire_facilities"),
                  "无消防设施 no fire facilities", "buildings"))
    # organisations 组织
    add(Indicator("organisations", "organisations", _count(), "组织 organisations", "organisations"))
    for code, labels in VOCABS["org_kind"].items():
        add(Indicator(f"org_{code}", "organisations", _count(f"t.kind = {sql_literal(code)}"),
                      f"{labels[0]} {code.replace('_', ' ')}", "organisations"))
    add(Indicator("active_enterprises", "organisations", _count("t.kind = 'enterprise' AND t.active"),
                  "在营企业 active enterprises", "organisations"))
    for code, labels in VOCABS["industry"].items():
        add(Indicator(f"industry_{code}", "organisations",
                      _count(f"t.kind = 'enterprise' AND t.industry = {sql_literal(code)}"),
                      f"{labels[0]} {code}", "industry"))
    # events 事件
    add(Indicator("events", "events", _count(), "事件 events", "events"))
    for code, labels in VOCABS["event_class"].items():
        add(Indicator(f"events_{code}", "events", _count(f"t.class = {sql_literal(code)}"),
                      f"{labels[0]} {code}", "event_class"))
    for code, labels in VOCABS["event_status"].items():
        add(Indicator(f"events_{code}", "events", _count(f"t.status = {sql_literal(code)}"),
                      f"{labels[0]} {code}", "event_status"))
    add(Indicator("open_events", "events", _count(OPEN), "未办结 open", "events"))
    add(_ratio("resolution_rate", "events", DONE, "true", "办结率 resolution rate", "events", "events"))
    add(Indicator("median_respond_minutes", "events", _median_seconds("t.reported_at", "t.dispatched_at", 60),
                  "响应时长中位数(分) median minutes to respond", "events", "minutes", base="events"))
    add(Indicator("median_close_hours", "events", _median_seconds("t.reported_at", DONE_AT, 3600),
                  "办结时长中位数(时) median hours to close", "events", "hours", base="events"))
    add(_ratio("respond_on_time_rate", "events", "extract(epoch FROM (t.dispatched_at - t.reported_at)) <= c.respond_s",
               "t.dispatched_at IS NOT NULL", "按时响应率 responded on time", "events", "events"))
    add(_ratio("close_on_time_rate", "events", f"extract(epoch FROM ({DONE_AT} - t.reported_at)) <= c.close_s",
               f"{DONE_AT} IS NOT NULL", "按时办结率 closed on time", "events", "events"))
    add(Indicator("overdue_respond", "events", _count(OVERDUE_RESPOND), "超时未响应 overdue to respond", "events"))
    add(Indicator("overdue_close", "events", _count(OVERDUE_CLOSE), "超时未办结 overdue to close", "events"))
    # party 党建
    add(Indicator("party_members", "party_members", _count(), "党员 party members", "party"))
    add(Indicator("households_linked", "households", _count("t.linked"), "党员联系户 households linked",
                  "party"))
    add(_ratio("party_link_share", "households", "t.linked", "true", "联系户覆盖率 share of households linked", "party",
               "households"))
    # devices 物联感知
    add(Indicator("cameras", "devices", _count("t.kind = 'camera'"), "视频监控 cameras", "devices"))
    add(Indicator("sensors", "devices", _count("t.kind <> 'camera'"), "监测站 sensors", "devices"))
    add(Indicator("sensors_in_alarm", "devices", _count("t.kind <> 'camera' AND t.status = 'alarm'"),
                  "告警监测站 sensors in alarm", "devices"))
    add(Indicator("devices_offline", "devices", _count("t.status = 'offline'"), "离线设备 offline", "devices"))
    return {x.name: x for x in i}


INDICATORS: dict[str, Indicator] = _build()
#: The tables indicators read; households is derived at ingest (brain.layers.derive).
TABLES = tuple(dict.fromkeys(x.table for x in INDICATORS.values()))
#: Resources listed with a drawn area's indicators (地图圈选: service centres, organisations, cameras).
RESOURCES = (("organisations", "kind"), ("devices", "kind"))
#: Whose counts are about people: the tables the `read-aggregates` permission is checked on.
RESOURCE_OF = {"households": "people"}


@dataclass(frozen=True)
class Clock:
    """The time and limits overdue is judged against (bound as parameters of the `clock` relation)."""

    as_of: datetime
    respond_s: float
    close_s: float

    @classmethod
    def from_settings(cls, settings) -> "Clock":
        """The clock of a request: the configured as_of, or now."""
        return cls(settings.as_of or datetime.now().replace(microsecond=0),
                   settings.respond_limit_hours * 3600, settings.close_limit_hours * 3600)

    def sql(self) -> tuple[str, list]:
        """The one-row relation `c` that indicators read the clock from."""
        return "(SELECT CAST(? AS TIMESTAMP) AS as_of, CAST(? AS DOUBLE PRECISION) AS respond_s, " \
               "CAST(? AS DOUBLE PRECISION) AS close_s) AS c", [self.as_of, self.respond_s, self.close_s]


@dataclass(frozen=True)
class Area:
    """Where indicators are computed: a unit (by code), a drawn polygon (shapely, EPSG:4326), or whole grids."""

    unit: str | None = None
    level: str | None = None
    polygon: Any = None
    grids: tuple[str, ...] | None = None  # a drawn area snapped to whole grids (roles with a floor)
    since: datetime | None = None  # a time window: events reported from then on (other tables are not dated)

    def sql(self, alias: str = "t") -> tuple[str, list]:
        """Predicate keeping the rows of the area: its unit's code, its grids, or a point inside the polygon."""
        a = quote_ident(alias)
        if self.unit is not None:
            return f"{a}.{quote_ident(self.level + '_code')} = ?", [self.unit]
        if self.grids is not None:
            if not self.grids:
                return "false", []
            return f"{a}.grid_code IN ({', '.join('?' * len(self.grids))})", list(self.grids)
        if self.polygon is None:
            return "true", []
        xmin, ymin, xmax, ymax = self.polygon.bounds
        return (f"{a}.lon BETWEEN ? AND ? AND {a}.lat BETWEEN ? AND ? "
                f"AND ST_Intersects(ST_GeomFromWKB(?), ST_Point({a}.lon, {a}.lat))",
                [xmin, xmax, ymin, ymax, shapely.to_wkb(self.polygon)])


def protect_area(db: Backend, scope: Scope, area: Area) -> Area:
    """The area as the scope may read it: a drawn polygon snapped to whole grids for roles with a floor."""
    if area.polygon is not None and area.grids is None and snaps_areas(scope):
        return replace(area, grids=snap_to_grids(db, scope, area.polygon))
    return area


def unit_of(db: Backend, scope: Scope, code: str) -> tuple[str, str, str]:
    """(code, name, level) of a unit the scope may read; NotFound / Forbidden otherwise."""
    rows = db.query("SELECT code, name, level, " + ", ".join(f"{lv}_code" for lv in LEVELS)
                    + " FROM admin_units WHERE code = ?", [code])
    if not rows:
        raise NotFound(f"no admin unit {code!r}")
    row = rows[0]
    if not in_scope(scope, dict(zip(LEVELS, row[3:]))):
        raise Forbidden(f"unit {code} lies outside your scope ({scope.user.unit_level} {scope.user.unit_code})")
    return row[0], row[1], row[2]


def _table_query(table: str, exprs: list[tuple[str, str]], scope: Scope, area: Area, clock: Clock,
                 group_by: tuple[str, ...] = ()) -> tuple[str, list]:
    """SELECT [group columns,] (expr AS name)… of one table in the scope and area, with the clock `c`."""
    cols = ", ".join(f"{e} AS {quote_ident(n)}" for n, e in exprs)
    clock_sql, clock_params = clock.sql()
    scope_sql, scope_params = scope_filter(scope, "t")
    area_sql, area_params = area.sql("t")
    if area.since is not None and table == "events":  # the time window counts events by their report
        area_sql, area_params = f"{area_sql} AND t.reported_at >= ?", area_params + [area.since]
    head = "".join(f"{g}, " for g in group_by)
    tail = " GROUP BY " + ", ".join(str(i + 1) for i in range(len(group_by))) if group_by else ""
    return (f"SELECT {head}{cols} FROM {quote_ident(table)} t, {clock_sql} WHERE {scope_sql} AND {area_sql}{tail}",
            clock_params + scope_params + area_params)


def _readable(scope: Scope, table: str) -> bool:
    return allowed(scope, "read-aggregates", RESOURCE_OF.get(table, table))


def _exact(db: Backend, scope: Scope, table: str, names: list[str], area: Area, clock: Clock,
           key: str | None = None) -> dict[Any, dict[str, Any]]:
    """Indicators of one table as they are, per value of `key` (None: one total)."""
    sql, params = _table_query(table, [(n, INDICATORS[n].expr) for n in names], scope, area, clock,
                               (f"t.{quote_ident(key)}",) if key else ())
    rows = db.query(sql, params)
    if key is None:
        return {None: {n: _plain(v) for n, v in zip(names, rows[0])}}
    return {r[0]: {n: _plain(v) for n, v in zip(names, r[1:])} for r in rows}


def _protected(db: Backend, scope: Scope, dis: Disclosure, table: str, names: list[str], area: Area, clock: Clock,
               key: str | None = None) -> dict[Any, dict[str, Any]]:
    """Indicators of one table under the scope's Disclosure, per value of `key` (None: one total).

    Counts are sums of rounded grid cells, rates ratios of such sums; medians only for whole units (the area
    is a unit, or `key` is a level's code) of at least 2 × base rows, and None elsewhere.
    """
    exprs = [("_rows", "count(*)")]
    for n in names:
        ind = INDICATORS[n]
        if ind.kind == "count":
            exprs.append((n, ind.expr))
        elif ind.ratio:
            exprs += [(n + "_num", f"count(*) FILTER (WHERE {ind.ratio[0]})"),
                      (n + "_den", f"count(*) FILTER (WHERE {ind.ratio[1]})")]
    group = ((f"t.{quote_ident(key)}",) if key else ()) + ("t.grid_code",)
    sql, params = _table_query(table, exprs, scope, area, clock, group)
    sums: dict[Any, dict[str, int]] = {}
    for row in db.query(sql, params):
        k, cells = (row[0] if key else None), row[len(group):]
        acc = sums.setdefault(k, dict.fromkeys((n for n, _ in exprs), 0))
        for (n, _), v in zip(exprs, cells):
            acc[n] += dis.round(v)
    if key is None and not sums:
        sums[None] = dict.fromkeys((n for n, _ in exprs), 0)
    whole = key is not None or area.unit is not None
    medians = [n for n in names if INDICATORS[n].kind in ("minutes", "hours")]
    exact = _exact(db, scope, table, medians, area, clock, key) if medians and whole else {}
    out: dict[Any, dict[str, Any]] = {}
    for k, acc in sums.items():
        vals: dict[str, Any] = {}
        for n in names:
            ind = INDICATORS[n]
            if ind.kind == "count":
                vals[n] = acc[n]
            elif ind.ratio:
                vals[n] = round(acc[n + "_num"] / acc[n + "_den"], 4) if acc[n + "_den"] else None
            else:
                vals[n] = exact.get(k, {}).get(n) if acc["_rows"] >= 2 * dis.base else None
        out[k] = vals
    return out


def _values(db: Backend, scope: Scope, table: str, names: list[str], area: Area, clock: Clock,
            key: str | None = None) -> dict[Any, dict[str, Any]]:
    dis = disclosure(scope, table)
    if dis is None:
        return _exact(db, scope, table, names, area, clock, key)
    return _protected(db, scope, dis, table, names, area, clock, key)


def indicators(db: Backend, scope: Scope, area: Area, clock: Clock,
               names: list[str] | None = None) -> dict[str, Any]:
    """The indicators of an area inside the scope: {values, suppressed, as_of, origin[, grids, disclosure]}.

    For roles with a floor, a drawn area is snapped to whole grids (listed in `grids`) and counts over rows the
    role may not see are protected as `brain.scope.Disclosure` says; `suppressed` names what is withheld.
    """
    names = names or list(INDICATORS)
    unknown = [n for n in names if n not in INDICATORS]
    if unknown:
        raise NotFound(f"unknown indicator(s) {', '.join(unknown)}: see GET /indicators")
    area = protect_area(db, scope, area)
    values: dict[str, Any] = {}
    protected: list[str] = []
    for table in TABLES:
        wanted = [n for n in names if INDICATORS[n].table == table]
        if not wanted or not _readable(scope, table):
            continue
        values.update(_values(db, scope, table, wanted, area, clock)[None])
        if disclosure(scope, table):
            protected += wanted
    origin = []
    if "population" in names:
        counts = grouped_counts(db, scope, "people", area, clock, ["coalesce(t.origin, '?')"])
        origin = [{"key": k, "count": n} for k, n in sorted(counts, key=lambda r: (-r[1], r[0]))[:10]]
    out = {"as_of": clock.as_of.isoformat(), "values": values,
           "suppressed": [n for n in protected if values.get(n) is None and INDICATORS[n].kind != "count"],
           "origin": origin}
    if area.grids is not None:
        out["grids"] = list(area.grids)
    dis = disclosure(scope, "people")
    if dis and protected:
        out["disclosure"] = {"method": "grid cells rounded", "base": dis.base, "protected": protected}
    return out


def grouped_counts(db: Backend, scope: Scope, table: str, area: Area, clock: Clock,
                   keys: list[str]) -> list[tuple]:
    """Rows of `table` in the scope and area counted per value of `keys` (SQL over `t` and the clock `c`).

    Under the scope's Disclosure each (keys, grid) cell is rounded before the cells are summed, and keys whose
    sum is 0 are left out. Returns (*key values, count) tuples.
    """
    area = protect_area(db, scope, area)
    dis = disclosure(scope, table)
    group = tuple(keys) + (("t.grid_code",) if dis else ())
    sql, params = _table_query(table, [("n", "count(*)")], scope, area, clock, group)
    if dis is None:
        return [(*r[:-1], int(r[-1])) for r in db.query(sql, params)]
    sums: dict[tuple, int] = {}
    for r in db.query(sql, params):
        k = tuple(r[:len(keys)])
        sums[k] = sums.get(k, 0) + dis.round(r[-1])
    return [(*k, n) for k, n in sums.items() if n]


def _plain(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float):
        return round(v, 4)
    return int(v) if hasattr(v, "__int__") and not isinstance(v, bool) else v


def unit_area(db: Backend, scope: Scope, code: str) -> Area:
    """The Area of a unit the scope may read (raises Forbidden / NotFound)."""
    _, _, level = unit_of(db, scope, code)
    return Area(unit=code, level=level)


def ranking(db: Backend, scope: Scope, code: str, metric: str, clock: Clock) -> dict[str, Any]:
    """The child units of `code` ranked by one indicator, highest first (一月一排名)."""
    if metric not in INDICATORS:
        raise NotFound(f"unknown indicator {metric!r}: see GET /indicators")
    ucode, name, level = unit_of(db, scope, code)
    if level == LEVELS[-1]:
        raise BadRequest(f"{code} is a grid, the lowest level: it has no child units to rank")
    child_level = LEVELS[LEVELS.index(level) + 1]
    ind = INDICATORS[metric]
    if not _readable(scope, ind.table):
        raise Forbidden(f"your role may not read {ind.table}")
    got = _values(db, scope, ind.table, [metric], unit_area(db, scope, code), clock, key=f"{child_level}_code")
    children = db.query("SELECT code, name FROM admin_units WHERE parent_code = ? AND level = ? ORDER BY code",
                        [ucode, child_level])
    rows = []
    for ccode, cname in children:
        value = got.get(ccode, {}).get(metric)
        rows.append({"code": ccode, "name": cname, "value": value or 0 if ind.kind == "count" else value})
    rows.sort(key=lambda r: (r["value"] is None, -(r["value"] or 0), r["code"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return {"unit": ucode, "name": name, "level": child_level, "metric": metric, "label": ind.label,
            "as_of": clock.as_of.isoformat(), "ranking": rows}


def resources(db: Backend, scope: Scope, area: Area, page: int, size: int) -> dict[str, Any]:
    """Organisations and devices inside an area and the scope, paged (service centres first)."""
    area = protect_area(db, scope, area)
    parts, params = [], []
    for table, kind_col in RESOURCES:
        if not allowed(scope, "read-features", table):
            continue
        scope_sql, scope_params = scope_filter(scope, "t")
        area_sql, area_params = area.sql("t")
        parts.append(f"SELECT t.id, t.name, {sql_literal(table)} AS what, "
                     f"t.{quote_ident(kind_col)} AS kind, t.lon, t.lat, t.grid_code FROM {quote_ident(table)} t "
                     f"WHERE {scope_sql} AND {area_sql}")
        params += scope_params + area_params
    if not parts:
        return {"total": 0, "page": page, "size": size, "items": []}
    union = " UNION ALL ".join(parts)
    order = ("CASE kind WHEN 'service_centre' THEN 0 WHEN 'party_org' THEN 1 WHEN 'camera' THEN 3 ELSE 2 END, "
             "kind, id")
    total = db.query(f"SELECT count(*) FROM ({union}) r", params)[0][0]
    rows = db.query(f"SELECT * FROM ({union}) r ORDER BY {order} LIMIT ? OFFSET ?",
                    params + [size, (page - 1) * size])
    cols = ("id", "name", "what", "kind", "lon", "lat", "grid_code")
    return {"total": int(total), "page": page, "size": size, "items": [dict(zip(cols, r)) for r in rows]}
