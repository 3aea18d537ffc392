"""Record queries behind the service and the dashboards: the unit tree, building drill-down, event lists.

Each takes a Scope and goes through `scope_filter` and `allowed`: what a role may not read is never selected.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from rapidfuzz import fuzz

from brain.backend import Backend, lonlat_point, quote_ident
from brain.errors import BadRequest, Forbidden, NotFound
from brain.ingest.address import normalise_address, normalise_addresses
from brain.metrics import AGE_BANDS, OVERDUE_CLOSE, OVERDUE_RESPOND, Clock, grouped_counts, unit_of
from brain.model import ENTITIES, LEVELS, VOCABS
from brain.scope import Scope, allowed, disclosure, in_scope, scope_filter, visible_fields


def _json(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def _rows(db: Backend, sql: str, params: list) -> list[dict[str, Any]]:
    df = db.frame(sql, params)
    return [{k: _json(None if _isna(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _isna(v: Any) -> bool:
    try:
        return v != v or v is None  # NaN, NaT and None
    except (TypeError, ValueError):
        return False


def _cols(names: list[str], entity: str | None = None) -> str:
    # dates leave as 'YYYY-MM-DD' text: through a DataFrame they would come back as midnight timestamps
    fields = ENTITIES[entity].field_map if entity else {}
    return ", ".join(f"CAST(t.{quote_ident(n)} AS VARCHAR) AS {quote_ident(n)}"
                     if n in fields and fields[n].type == "date" else f"t.{quote_ident(n)}" for n in names)


def unit_tree(db: Backend, scope: Scope, level: str | None = None, geometry: bool = True) -> dict[str, Any]:
    """The admin units inside the scope as a GeoJSON FeatureCollection (geometries simplified to ~1 m)."""
    if level is not None and level not in LEVELS:
        raise BadRequest(f"unknown level {level!r}: one of {', '.join(LEVELS)}")
    where, params = scope_filter(scope, "t")
    if level:
        where += " AND t.level = ?"
        params.append(level)
    geom = "ST_AsGeoJSON(ST_SimplifyPreserveTopology(t.geom, 0.00001))" if geometry else "NULL"
    rows = db.query(f"SELECT t.code, t.name, t.level, t.parent_code, t.area_m2, {geom}, "
                    f"ST_X(ST_Centroid(t.geom)), ST_Y(ST_Centroid(t.geom)), "
                    f"ST_XMin(t.geom), ST_YMin(t.geom), ST_XMax(t.geom), ST_YMax(t.geom) "
                    f"FROM admin_units t WHERE {where} ORDER BY t.code", params)
    feats = []
    for code, name, lvl, parent, area, gj, cx, cy, *bbox in rows:
        feats.append({"type": "Feature", "id": code, "geometry": json.loads(gj) if gj else None,
                      "bbox": [round(b, 6) for b in bbox],
                      "properties": {"code": code, "name": name, "level": lvl, "parent_code": parent,
                                     "area_m2": round(area or 0, 1), "center": [round(cx, 6), round(cy, 6)],
                                     "in_scope_root": code == scope.user.unit_code}})
    return {"type": "FeatureCollection", "features": feats}


def building(db: Backend, scope: Scope, building_id: str, clock: Clock, events_limit: int = 10) -> dict[str, Any]:
    """The drill-down of one building (以房管人): households, residents, flags, organisations, recent events."""
    level_cols = [f"{lv}_code" for lv in LEVELS]
    fields = visible_fields(scope, "buildings")
    rows = _rows(db, f"SELECT t.id, {_cols(fields + level_cols)}, t.lon, t.lat FROM buildings t WHERE t.id = ?",
                 [building_id])
    if not rows:
        raise NotFound(f"no building {building_id!r}")
    b = rows[0]
    if not in_scope(scope, {lv: b[f"{lv}_code"] for lv in LEVELS}):
        raise Forbidden(f"building {building_id} lies outside your scope "
                        f"({scope.user.unit_level} {scope.user.unit_code})")
    where, params = scope_filter(scope, "t")
    out: dict[str, Any] = {"building": b}

    counts = db.query("SELECT count(*), count(DISTINCT t.household_id), "
                      + ", ".join("count(*) FILTER (WHERE strpos(coalesce(t.special_groups, ''), ?) > 0)"
                                  for _ in VOCABS["special_group"])
                      + f" FROM people t WHERE t.building_id = ? AND {where}",
                      list(VOCABS["special_group"]) + [building_id] + params)[0]
    flags = {"rented": b.get("rented"), "fire_facilities": b.get("fire_facilities"),
             "special_groups": dict(zip(VOCABS["special_group"], map(int, counts[2:])))}
    summary = {"residents": int(counts[0]), "households": int(counts[1])}
    members = db.query(f"SELECT count(*) FROM party_members t WHERE t.building_id = ? AND {where}",
                       [building_id] + params)[0][0]
    summary["party_members"] = int(members)
    if disclosure(scope, "people"):  # the smallest area this role's counts of people describe is a grid
        summary = dict.fromkeys(summary)
        flags["special_groups"] = dict.fromkeys(flags["special_groups"])
    out["summary"], out["flags"] = summary, flags

    if allowed(scope, "read-features", "people"):
        pf = visible_fields(scope, "people")
        people = _rows(db, f"SELECT t.id, {_cols(pf, 'people')} FROM people t WHERE t.building_id = ? AND {where} "
                           f"ORDER BY t.household_id, t.id", [building_id] + params)
        linked = {h for (h,) in db.query("SELECT t.household_id FROM households t WHERE t.building_id = ? "
                                         f"AND t.linked AND {where}", [building_id] + params)}
        households: dict[str, dict] = {}
        for p in people:
            h = households.setdefault(p.get("household_id") or "?", {
                "household_id": p.get("household_id"), "linked_to_party_member": p.get("household_id") in linked,
                "residents": []})
            h["residents"].append(p)
        out["households"] = list(households.values())
    else:
        out["households"] = None  # this role reads counts, not residents

    org_fields = visible_fields(scope, "organisations")
    out["organisations"] = _rows(
        db, f"SELECT t.id, {_cols(org_fields)}, t.lon, t.lat FROM organisations t, "
            f"(SELECT geom_3857 AS g FROM buildings WHERE id = ?) b "
            f"WHERE ST_DWithin(t.geom_3857, b.g, 30) AND {where} ORDER BY t.kind, t.id", [building_id] + params)
    if allowed(scope, "read-features", "events"):
        ef = visible_fields(scope, "events")
        out["events"] = _rows(
            db, f"SELECT t.id, {_cols(ef)}, t.lon, t.lat FROM events t, "
                f"(SELECT geom_3857 AS g FROM buildings WHERE id = ?) b "
                f"WHERE ST_DWithin(t.geom_3857, b.g, 50) AND {where} ORDER BY t.reported_at DESC, t.id LIMIT ?",
            [building_id] + params + [events_limit])
    else:
        out["events"] = None
    return out


def events(db: Backend, scope: Scope, clock: Clock, *, status: str | None = None, cls: str | None = None,
           unit: str | None = None, overdue: bool | None = None, since: datetime | None = None,
           until: datetime | None = None, page: int = 1, size: int = 50, area=None) -> dict[str, Any]:
    """Events inside the scope, newest first, filtered and paged; `area` (a metrics.Area) narrows them to a unit,
    a drawn polygon or whole grids."""
    if not allowed(scope, "read-features", "events"):
        raise Forbidden(f"role {scope.user.role.name} reads event counts, not single events: use /metrics")
    for value, vocab, what in ((status, "event_status", "status"), (cls, "event_class", "class")):
        if value is not None and value not in VOCABS[vocab]:
            raise BadRequest(f"unknown {what} {value!r}: one of {', '.join(VOCABS[vocab])}")
    where, params = scope_filter(scope, "t")
    conds = [where]
    if unit:
        _, _, level = unit_of(db, scope, unit)
        conds.append(f"t.{quote_ident(level + '_code')} = ?")
        params.append(unit)
    if area is not None:
        area_sql, area_params = area.sql("t")
        conds.append(area_sql)
        params += area_params
    for sql, value in (("t.status = ?", status), ("t.class = ?", cls), ("t.reported_at >= ?", since),
                       ("t.reported_at < ?", until)):
        if value is not None:
            conds.append(sql)
            params.append(value)
    overdue_sql = f"(({OVERDUE_RESPOND}) OR ({OVERDUE_CLOSE}))"
    if overdue is not None:
        conds.append(overdue_sql if overdue else f"NOT {overdue_sql}")
    clock_sql, clock_params = clock.sql()
    body = f"FROM events t, {clock_sql} WHERE " + " AND ".join(conds)
    allp = clock_params + params
    total = db.query(f"SELECT count(*) {body}", allp)[0][0]
    ef = visible_fields(scope, "events")
    items = _rows(db, f"SELECT t.id, {_cols(ef)}, {overdue_sql} AS overdue, t.lon, t.lat, t.grid_code, "
                      f"t.community_code {body} ORDER BY t.reported_at DESC, t.id LIMIT ? OFFSET ?",
                  allp + [size, (page - 1) * size])
    return {"total": int(total), "page": page, "size": size, "as_of": clock.as_of.isoformat(), "items": items}


#: The tables a map feature may be opened from, and what each adds to its record.
FEATURE_TABLES = ("events", "devices", "organisations", "people", "buildings")


def feature(db: Backend, scope: Scope, table: str, feature_id: str, clock: Clock) -> dict[str, Any]:
    """One feature clicked on the map, with the fields this role reads: an event with its time limits, a device
    with its latest readings, an organisation or a person (roles with personal access only)."""
    if table not in FEATURE_TABLES:
        raise BadRequest(f"no feature panel for {table!r}: one of {', '.join(FEATURE_TABLES)}")
    if not allowed(scope, "read-features", table):
        raise Forbidden(f"role {scope.user.role.name} reads counts of {table}, not single records")
    fields = visible_fields(scope, table)
    where, params = scope_filter(scope, "t")
    rows = _rows(db, f"SELECT t.id, {_cols(fields, table)}, t.lon, t.lat, t.grid_code FROM {quote_ident(table)} t "
                     f"WHERE t.id = ? AND {where}", [feature_id] + params)
    if not rows:  # outside the scope and absent alike: nothing says which
        raise NotFound(f"no {table} record {feature_id!r} in your scope")
    out: dict[str, Any] = {"table": table, "record": rows[0]}
    if table == "events":
        clock_sql, clock_params = clock.sql()
        reported, late_respond, late_close = db.query(
            f"SELECT t.reported_at, ({OVERDUE_RESPOND}), ({OVERDUE_CLOSE}) FROM events t, {clock_sql} WHERE t.id = ?",
            clock_params + [feature_id])[0]
        out["limits"] = {"respond_by": _json(reported + timedelta(seconds=clock.respond_s)),
                         "close_by": _json(reported + timedelta(seconds=clock.close_s)),
                         "overdue_respond": bool(late_respond), "overdue_close": bool(late_close)}
    if table == "devices":
        rf = [f for f in ("metric", "value", "unit", "alarm", "ts") if f in visible_fields(scope, "device_readings")]
        out["readings"] = _rows(db, f"SELECT {_cols(rf)} FROM (SELECT t.*, row_number() OVER (PARTITION BY t.metric "
                                    f"ORDER BY t.ts DESC) AS k FROM device_readings t WHERE t.device_id = ? "
                                    f"AND {where}) t WHERE k = 1 ORDER BY t.metric", [feature_id] + params)
    return out


def save_layout(db: Backend, user_name: str, layout: dict) -> None:
    """Keep a user's dashboard page (widgets and their places) for their next sign-in (千人千面)."""
    db.execute("INSERT INTO user_layouts VALUES (?, ?, ?) ON CONFLICT (user_name) DO UPDATE SET "
               "layout = excluded.layout, updated_at = excluded.updated_at",
               [user_name, json.dumps(layout, ensure_ascii=False), datetime.now()])


def load_layout(db: Backend, user_name: str) -> dict | None:
    """The dashboard page a user saved, or None."""
    rows = db.query("SELECT layout FROM user_layouts WHERE user_name = ?", [user_name])
    return json.loads(rows[0][0]) if rows else None


def events_by_month(db: Backend, scope: Scope, area, clock: Clock) -> list[dict[str, Any]]:
    """Events of an area per month of report and status (for the events-over-time widget)."""
    rows = grouped_counts(db, scope, "events", area, clock,
                          ["CAST(date_trunc('month', t.reported_at) AS DATE)", "t.status"])
    return [{"month": f"{m:%Y-%m}", "status": s, "count": n} for m, s, n in sorted(rows, key=lambda r: (
        r[0] is None, r[0] or date.min, r[1] or "")) if m is not None]


def devices_in_alarm(db: Backend, scope: Scope, area, limit: int = 50) -> list[dict[str, Any]]:
    """Sensors in alarm inside an area and the scope."""
    where, params = scope_filter(scope, "t")
    area_sql, area_params = area.sql("t")
    conds, params = [where, area_sql, "t.status = 'alarm'"], params + area_params
    return _rows(db, "SELECT t.id, t.name, t.kind, t.lon, t.lat FROM devices t WHERE " + " AND ".join(conds)
                 + " ORDER BY t.id LIMIT ?", params + [limit])


def at_point(db: Backend, scope: Scope, lon: float, lat: float) -> dict[str, Any]:
    """What lies at a clicked point inside the scope: the building there (if any) and the deepest unit."""
    where, params = scope_filter(scope, "t")
    pt = lonlat_point(db, "?", "?")
    b = db.query(f"SELECT t.id FROM buildings t WHERE t.lon BETWEEN ? AND ? AND t.lat BETWEEN ? AND ? "
                 f"AND ST_Contains(t.geom, {pt}) AND {where} ORDER BY t.id LIMIT 1",
                 [lon - 0.01, lon + 0.01, lat - 0.01, lat + 0.01, lon, lat] + params)
    u = db.query(f"SELECT t.code FROM admin_units t WHERE ST_Contains(t.geom, {pt}) AND {where} "
                 f"ORDER BY CASE t.level WHEN 'grid' THEN 0 WHEN 'community' THEN 1 WHEN 'street' THEN 2 ELSE 3 END "
                 f"LIMIT 1", [lon, lat] + params)
    return {"building": b[0][0] if b else None, "unit": u[0][0] if u else None}


SEARCHED = (("buildings", "address"), ("organisations", "name"), ("people", "name"))


def search(db: Backend, scope: Scope, text: str, limit: int = 20, clock: Clock | None = None) -> list[dict[str, Any]]:
    """Buildings by address, organisations by name and (for roles with personal access) people by name, in scope,
    best first.

    Addresses are parsed as ingest parses them (`解放路５号`, `解放路五号`, `解放路5号1幢` all find 解放路5号…;
    `翠湖花园3栋` the building of that estate; `Mannerheimintie 5` in the generic locale) and every hit gets a score
    (0–100): 100 for the same building key, else the `rapidfuzz` ratio of the normalised query and address (or
    name). A number is whole: 5号 never finds 51号. A person comes with their address and age band, so that
    namesakes can be told apart.
    """
    text = (text or "").strip()
    if not text:
        return []
    if len(text) > 100:
        raise BadRequest("search for at most 100 characters")
    zh = any("\u3400" <= c <= "\u9fff" for c in text)
    parsed = normalise_addresses([text], "zh" if zh else "generic").to_pylist()[0]
    norm, key = parsed["norm"] or text, parsed["key"]
    estate = (parsed["estate_key"] or "").split("|")[0] or None
    out: list[dict[str, Any]] = []
    for table, column in SEARCHED:
        if not allowed(scope, "read-features", table):
            continue
        where, params = scope_filter(scope, "t")
        col = f"t.{quote_ident(column)}"
        # strpos, not LIKE: the user's text is matched literally, % and _ included
        hit, extra, args = f"strpos(lower({col}), lower(?)) > 0", "", [text]
        if table == "buildings":
            hit = f"({hit} OR t.addr_key = ? OR strpos(t.addr_key, ?) = 1 OR strpos(t.name, ?) > 0)"
            args = [text, key or norm, norm, estate or text]
            extra = ", t.addr_key, t.name"
        elif table == "people":
            extra = ", t.address, CAST(t.birth_date AS VARCHAR) AS birth_date"
        # a first cut in SQL (the shortest labels first), scored and ranked below
        rows = _rows(db, f"SELECT t.id, {col} AS label, t.lon, t.lat, t.grid_code{extra} FROM {quote_ident(table)} t "
                         f"WHERE {hit} AND {where} ORDER BY length({col}), t.id LIMIT ?",
                     args + params + [max(limit * 5, 100)])
        for r in rows:
            if table == "buildings":
                addr_key, name = r.pop("addr_key"), r.pop("name")
                mine = normalise_address(r["label"], "zh" if zh else "generic").norm or r["label"]
                r["score"] = 100.0 if key and addr_key == key else round(max(
                    fuzz.ratio(norm, mine), fuzz.ratio(text, name) if name else 0.0), 1)
            else:
                r["score"] = round(fuzz.ratio(text.lower(), (r["label"] or "").lower()), 1)
            if table == "people":
                r["detail"] = " · ".join(x for x in (r.pop("address"), _age_band(r.pop("birth_date"), clock)) if x)
            out.append({"kind": table, **r})
    out.sort(key=lambda h: (-h["score"], len(h["label"] or ""), h["id"]))
    return out[:limit]


def _age_band(birth: str | None, clock: Clock | None) -> str | None:
    """The registry's age band of a birth date ('35–59'), never the date itself."""
    if not birth:
        return None
    today = (clock.as_of if clock else datetime.now()).date()
    born = date.fromisoformat(birth[:10])
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    for lo, hi in AGE_BANDS:
        if age >= lo and (hi is None or age < hi):
            return f"{lo}–{hi - 1}" if hi else f"{lo}+"
    return None


def age_pyramid(db: Backend, scope: Scope, area, clock: Clock) -> list[dict[str, Any]]:
    """People of an area by age band (the indicator registry's bands) and gender, for the age pyramid."""
    cases = " ".join(
        f"WHEN t.birth_date <= c.as_of - INTERVAL '{lo} years'"
        + (f" AND t.birth_date > c.as_of - INTERVAL '{hi} years'" if hi else "")
        + f" THEN '{lo}–{hi - 1 if hi else ''}'" for lo, hi in AGE_BANDS)
    rows = grouped_counts(db, scope, "people", area, clock, [f"CASE {cases} ELSE '?' END", "coalesce(t.gender, '?')"])
    return [{"band": b, "gender": g, "count": n} for b, g, n in rows]
