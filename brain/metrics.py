"""Indicators (指标): one registry of named metrics, each an SQL aggregate over one table.

Units, drawn polygons, rankings, aggregated tiles and the dashboards' widgets all read this registry, and
every query they run goes through `brain.scope.scope_filter` — so a number is computed one way everywhere.

Aggregates refer to the row as `t` and to a one-row `clock` relation as `c` (c.as_of, c.respond_s,
c.close_s): the clock and limits are bound parameters, never formatted into the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shapely

from brain.backend import Backend, quote_ident
from brain.errors import BadRequest, Forbidden, NotFound
from brain.model import LEVELS, VOCABS
from brain.scope import Scope, allowed, scope_filter


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
    base: str | None = None  # for ratios and durations: the count they are computed over (portal suppression)


def _count(where: str | None = None) -> str:
    return f"count(*) FILTER (WHERE {where})" if where else "count(*)"


def _ratio(num: str, den: str) -> str:
    return f"CASE WHEN count(*) FILTER (WHERE {den}) = 0 THEN NULL ELSE " \
           f"CAST(count(*) FILTER (WHERE {num}) AS DOUBLE PRECISION) / count(*) FILTER (WHERE {den}) END"


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
    add(Indicator("resolution_rate", "events", _ratio(DONE, "true"), "办结率 resolution rate", "events",
                  "ratio", base="events"))
    add(Indicator("median_respond_minutes", "events", _median_seconds("t.reported_at", "t.dispatched_at", 60),
                  "响应时长中位数(分) median minutes to respond", "events", "minutes", base="events"))
    add(Indicator("median_close_hours", "events", _median_seconds("t.reported_at", DONE_AT, 3600),
                  "办结时长中位数(时) median hours to close", "events", "hours", base="events"))
    add(Indicator("respond_on_time_rate", "events",
                  _ratio("extract(epoch FROM (t.dispatched_at - t.reported_at)) <= c.respond_s",
                         "t.dispatched_at IS NOT NULL"),
                  "按时响应率 responded on time", "events", "ratio", base="events"))
    add(Indicator("close_on_time_rate", "events",
                  _ratio(f"extract(epoch FROM ({DONE_AT} - t.reported_at)) <= c.close_s", f"{DONE_AT} IS NOT NULL"),
                  "按时办结率 closed on time", "events", "ratio", base="events"))
    add(Indicator("overdue_respond", "events", _count(OVERDUE_RESPOND), "超时未响应 overdue to respond", "events"))
    add(Indicator("overdue_close", "events", _count(OVERDUE_CLOSE), "超时未办结 overdue to close", "events"))
    # party 党建
    add(Indicator("party_members", "party_members", _count(), "党员 party members", "party"))
    add(Indicator("households_linked", "households", _count("t.linked"), "党员联系户 households linked",
                  "party"))
    add(Indicator("party_link_share", "households", _ratio("t.linked", "true"),
                  "联系户覆盖率 share of households linked", "party", "ratio", base="households"))
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
    """Where indicators are computed: a unit (by code) or a drawn polygon (shapely, EPSG:4326)."""

    unit: str | None = None
    level: str | None = None
    polygon: Any = None

    def sql(self, alias: str = "t") -> tuple[str, list]:
        """Predicate keeping the rows of the area: its unit's code, or a point inside the polygon (bbox first)."""
        a = quote_ident(alias)
        if self.unit is not None:
            return f"{a}.{quote_ident(self.level + '_code')} = ?", [self.unit]
        if self.polygon is None:
            return "true", []
        xmin, ymin, xmax, ymax = self.polygon.bounds
        return (f"{a}.lon BETWEEN ? AND ? AND {a}.lat BETWEEN ? AND ? "
                f"AND ST_Intersects(ST_GeomFromWKB(?), ST_Point({a}.lon, {a}.lat))",
                [xmin, xmax, ymin, ymax, shapely.to_wkb(self.polygon)])


def unit_of(db: Backend, scope: Scope, code: str) -> tuple[str, str, str]:
    """(code, name, level) of a unit the scope may read; NotFound / Forbidden otherwise."""
    rows = db.query("SELECT code, name, level, " + ", ".join(f"{lv}_code" for lv in LEVELS)
                    + " FROM admin_units WHERE code = ?", [code])
    if not rows:
        raise NotFound(f"no admin unit {code!r}")
    row = rows[0]
    codes = dict(zip(LEVELS, row[3:]))
    if codes.get(scope.user.unit_level) != scope.user.unit_code:
        raise Forbidden(f"unit {code} lies outside your scope ({scope.user.unit_level} {scope.user.unit_code})")
    return row[0], row[1], row[2]


def _suppress(scope: Scope, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Blank small counts (and ratios over small bases) for roles with a minimum count (portal)."""
    floor = scope.user.role.min_count
    if not floor:
        return values, []
    out, hidden = dict(values), []
    for name, v in values.items():
        ind = INDICATORS[name]
        n = values.get(ind.base) if ind.base else v
        if n is not None and 0 < n < floor:
            out[name] = None
            hidden.append(name)
    return out, hidden


def _table_query(table: str, names: list[str], scope: Scope, area: Area, clock: Clock,
                 group_by: str | None = None) -> tuple[str, list]:
    exprs = ", ".join(f"{INDICATORS[n].expr} AS {quote_ident(n)}" for n in names)
    clock_sql, clock_params = clock.sql()
    scope_sql, scope_params = scope_filter(scope, "t")
    area_sql, area_params = area.sql("t")
    where = [scope_sql, area_sql]
    params = clock_params + scope_params + area_params
    head = f"t.{quote_ident(group_by)}, " if group_by else ""
    tail = " GROUP BY 1" if group_by else ""
    return (f"SELECT {head}{exprs} FROM {quote_ident(table)} t, {clock_sql} WHERE "
            + " AND ".join(where) + tail, params)


def _readable(scope: Scope, table: str) -> bool:
    return allowed(scope, "read-aggregates", RESOURCE_OF.get(table, table))


def indicators(db: Backend, scope: Scope, area: Area, clock: Clock,
               names: list[str] | None = None) -> dict[str, Any]:
    """The indicators of an area inside the scope: {values, labels, suppressed, as_of, origin}."""
    names = names or list(INDICATORS)
    unknown = [n for n in names if n not in INDICATORS]
    if unknown:
        raise NotFound(f"unknown indicator(s) {', '.join(unknown)}: see GET /indicators")
    values: dict[str, Any] = {}
    for table in TABLES:
        wanted = [n for n in names if INDICATORS[n].table == table]
        if not wanted or not _readable(scope, table):
            continue
        sql, params = _table_query(table, wanted, scope, area, clock)
        row = db.query(sql, params)[0]
        values.update({n: _plain(v) for n, v in zip(wanted, row)})
    values, hidden = _suppress(scope, values)
    origin = _breakdown(db, scope, area, "people", "origin", 10) if "population" in names else []
    if scope.user.role.min_count:
        origin = [o for o in origin if o["count"] >= scope.user.role.min_count]
    return {"as_of": clock.as_of.isoformat(), "values": values, "suppressed": hidden, "origin": origin}


def _breakdown(db: Backend, scope: Scope, area: Area, table: str, column: str, top: int) -> list[dict]:
    scope_sql, scope_params = scope_filter(scope, "t")
    area_sql, area_params = area.sql("t")
    where, params = [scope_sql, area_sql], scope_params + area_params
    col = f"t.{quote_ident(column)}"
    rows = db.query(f"SELECT coalesce({col}, '?') AS k, count(*) AS n FROM {quote_ident(table)} t WHERE "
                    + " AND ".join(where) + f" GROUP BY 1 ORDER BY n DESC, k LIMIT {int(top)}", params)
    return [{"key": k, "count": int(n)} for k, n in rows]


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
    area = unit_area(db, scope, code)
    names = [metric] + ([ind.base] if ind.base and ind.base != metric else [])
    sql, params = _table_query(ind.table, names, scope, area, clock, group_by=f"{child_level}_code")
    got = {r[0]: r[1:] for r in db.query(sql, params)}
    children = db.query("SELECT code, name FROM admin_units WHERE parent_code = ? AND level = ? ORDER BY code",
                        [ucode, child_level])
    rows = []
    for ccode, cname in children:
        vals = dict(zip(names, got.get(ccode, [None] * len(names))))
        if ind.kind == "count":
            vals = {k: v or 0 for k, v in vals.items()}
        vals, _ = _suppress(scope, {k: _plain(v) for k, v in vals.items()})
        rows.append({"code": ccode, "name": cname, "value": vals[metric]})
    rows.sort(key=lambda r: (r["value"] is None, -(r["value"] or 0), r["code"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return {"unit": ucode, "name": name, "level": child_level, "metric": metric, "label": ind.label,
            "as_of": clock.as_of.isoformat(), "ranking": rows}


def resources(db: Backend, scope: Scope, area: Area, page: int, size: int) -> dict[str, Any]:
    """Organisations and devices inside an area and the scope, paged (service centres first)."""
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
