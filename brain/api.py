"""The Python API for planners: read the map as a named user, through the same Scope as the service.

    import brain
    s = brain.open("duckdb:///data/brain.duckdb", user="analyst")      # or token=…, or admin=True
    s.layers()                                                        # what this user may read
    people = s.layer("people", unit="440104001001")                   # a GeoDataFrame, the user's fields only
    s.metrics("440104001")                                           # indicators of a unit (or a shapely polygon)

Every method calls the function the HTTP service calls (the one reader `brain.layers.reader` for layers,
`brain.metrics` and `brain.queries` for the rest), so a notebook reads exactly what the map would show this
user: a community worker's session never returns a neighbour's row, a portal's never an individual person.
Every read is written to the access audit like a request of the service, with the endpoint `api:<method>`.
Unscoped access exists only when asked for by name (`admin=True`), and is audited as such.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from brain import metrics as _metrics, queries as _queries
from brain.auth import ROLES, User, authenticate, user_by_name
from brain.audit import COLUMNS as AUDIT_COLUMNS
from brain.backend import Backend, as_wkb, connect, lonlat_box, quote_ident
from brain.errors import BadRequest, NotAuthenticated, NotFound
from brain.layers.catalog import CATALOG, Layer, Part
from brain.layers.reader import Select, aggregate_select, bind, feature_select, part_disclosure
from brain.metrics import Area, Clock, protect_area, unit_area
from brain.model import LEVELS
from brain.scope import Scope, scope_sql
from brain.settings import Settings

ADMIN_NAME = "(admin)"


def open(url: str | None = None, *, token: str | None = None, user: str | None = None, role: str | None = None,
         unit: str | None = None, admin: bool = False,
         as_of: datetime | None = None) -> "Session":  # noqa: A001 — brain.open, as the README names it
    """A session reading `url` as one user: by `token` (as the service is asked), by `user` name, as a `role` of a
    `unit` (what any user of that role there would read: exports for a portal are made so), or unscoped with
    `admin=True`. Names, roles and units only pick whose scope: whoever holds the database could read it all.

    `as_of`: the clock overdue is judged against (default: BRAIN_AS_OF, or now).
    """
    if sum(bool(x) for x in (token, user, role or unit, admin)) != 1:
        raise BadRequest("open as exactly one of: token=…, user=…, role=… with unit=…, or admin=True")
    settings = Settings()
    db = connect(url or settings.db)
    try:
        if role or unit:
            who = as_role(db, role, unit)
        elif admin:
            district = db.query("SELECT code FROM admin_units WHERE level = 'district' ORDER BY code LIMIT 1")
            if not district:
                raise NotFound("the database holds no district yet: ingest a delivery first")
            who = User(ADMIN_NAME, ROLES["district_analyst"], district[0][0], "district")
        elif token:
            who = authenticate(db, token)
            if who is None:
                raise NotAuthenticated("unknown or disabled token: ask for a new one (`brain users rotate NAME`)")
        else:
            who = user_by_name(db, user)
            if who is None:
                raise NotAuthenticated(f"no user {user!r}: see `brain users list`")
    except Exception:
        db.close()
        raise
    clock = Clock(as_of, settings.respond_limit_hours * 3600, settings.close_limit_hours * 3600) if as_of \
        else Clock.from_settings(settings)
    return Session(db, Scope(who), clock)


def as_role(db: Backend, role: str | None, unit: str | None) -> User:
    """A user of `role` bound to `unit` (no account needed): the scope any such user would have."""
    if not role or not unit:
        raise BadRequest("give both a role and a unit")
    if role not in ROLES:
        raise BadRequest(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    rows = db.query("SELECT level FROM admin_units WHERE code = ?", [unit])
    if not rows:
        raise NotFound(f"no admin unit {unit!r}")
    if rows[0][0] != ROLES[role].level:
        raise BadRequest(f"a {role} is bound to a {ROLES[role].level}, and {unit} is a {rows[0][0]}")
    return User(f"({role} of {unit})", ROLES[role], unit, rows[0][0])


class Session:
    """One user's view of the map (see `brain.open`)."""

    def __init__(self, db: Backend, scope: Scope, clock: Clock):
        self.db, self.scope, self.clock = db, scope, clock

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __repr__(self) -> str:
        u = self.scope.user
        return f"<brain session: {u.name}, {u.role.name} of {u.unit_level} {u.unit_code}, {self.db.url}>"

    # -- the audit ------------------------------------------------------------------------------------------------
    def _audit(self, method: str, t0: float, layer: str | None = None, target: str | None = None,
               features: int | None = None) -> None:
        u = self.scope.user
        self.db.append("audit_log", AUDIT_COLUMNS, [(
            datetime.now(), u.name, u.role.name, u.unit_code, "API", f"api:{method}", layer, target, features, 200,
            round((time.perf_counter() - t0) * 1000, 3))])

    # -- layers ---------------------------------------------------------------------------------------------------
    def layers(self) -> list[dict[str, Any]]:
        """The layers this user gets, each part with what it serves at full detail and the fields readable."""
        t0 = time.perf_counter()
        out = []
        for layer in CATALOG.values():
            if not layer.visible(self.scope):
                continue
            parts = []
            for p in layer.parts:
                mode = layer.mode(p, self.scope, layer.maxzoom)
                if mode:
                    parts.append({"part": p.name, "mode": mode, "fields": list(
                        p.visible_fields(self.scope) if mode == "features" else p.aggregate)})
            out.append({"id": layer.id, "title": layer.title, "description": layer.description, "parts": parts})
        self._audit("layers", t0, features=len(out))
        return out

    def layer(self, layer_id: str, *, unit: str | None = None, bbox: tuple[float, float, float, float] | None = None,
              where: dict[str, Any] | None = None, part: str | None = None, zoom: int | None = None):
        """One part of a layer as a GeoDataFrame (EPSG:4326): its features with the fields this user may read, or,
        for users who may not read them one by one, its indicators per grid (protected as on the map).

        `unit`: only inside this unit (it must lie in the user's scope); `bbox`: only what intersects
        (lon_min, lat_min, lon_max, lat_max); `where`: {field: value or [values]} on fields this user reads
        (`where={"status": ["reported", "dispatched"]}`; values are bound, never SQL); `part`: which part of a
        layer with several (default: the first this user gets); `zoom`: read as the map does at this zoom
        (default: the layer's most detailed).
        """
        import geopandas as gpd
        import shapely

        t0 = time.perf_counter()
        layer, p, mode = self._part(layer_id, part, zoom)
        pre, values = [], []
        if unit is not None:
            _, _, level = _metrics.unit_of(self.db, self.scope, unit)  # NotFound / Forbidden outside the scope
            pre.append(scope_sql(level, "u" if mode == "aggregate" else "t"))
            values.append(unit)
        if bbox is not None:
            try:
                xmin, ymin, xmax, ymax = (float(v) for v in bbox)
            except (TypeError, ValueError):
                raise BadRequest("bbox is (lon_min, lat_min, lon_max, lat_max)") from None
            if not (xmin < xmax and ymin < ymax):
                raise BadRequest("bbox is (lon_min, lat_min, lon_max, lat_max), each min below its max")
            alias = "u" if mode == "aggregate" else "t"
            pre.append(f"ST_Intersects({alias}.geom, {lonlat_box(self.db)})")
            values += [xmin, ymin, xmax, ymax]
        if where:
            readable = p.visible_fields(self.scope) if mode == "features" else ("code", "name")
            for name, value in where.items():
                if name not in readable:
                    raise BadRequest(f"where: {name!r} is not a field you read in {layer.id}: one of "
                                     f"{', '.join(readable)}")
                values_of = list(value) if isinstance(value, (list, tuple, set)) else [value]
                if not values_of:
                    raise BadRequest(f"where: {name} needs at least one value")
                alias = "u" if mode == "aggregate" else "t"
                pre.append(f"CAST({alias}.{quote_ident(name)} AS VARCHAR) IN ({', '.join('?' * len(values_of))})")
                values += [str(v).lower() if isinstance(v, bool) else str(v) for v in values_of]
        prefilter = " AND ".join(f"({w})" for w in pre)
        sel = self.select(layer, p, mode, zoom if zoom is not None else layer.maxzoom, prefilter)
        frame = self.db.frame(_wkb(self.db, sel), self.bind(sel, values, zoom if zoom is not None else layer.maxzoom))
        geoms = [None if g is None else shapely.from_wkb(bytes(g)) for g in frame.pop("geom")]
        gdf = gpd.GeoDataFrame(frame, geometry=geoms, crs="EPSG:4326")
        self._audit("layer", t0, layer=layer.id, target=unit or (",".join(f"{v:.5f}" for v in bbox) if bbox else None),
                    features=len(gdf))
        return gdf

    def _part(self, layer_id: str, part: str | None, zoom: int | None) -> tuple[Layer, Part, str]:
        layer = CATALOG.get(layer_id)
        if layer is None or not layer.visible(self.scope):
            raise NotFound(f"no layer {layer_id!r} for role {self.scope.user.role.name}: one of "
                           f"{', '.join(lid for lid, lay in CATALOG.items() if lay.visible(self.scope))}")
        z = layer.maxzoom if zoom is None else zoom
        if not layer.minzoom <= z <= layer.maxzoom:
            raise BadRequest(f"layer {layer_id} is drawn from zoom {layer.minzoom} to {layer.maxzoom}, not {z}")
        parts = [p for p in layer.parts if (part is None or p.name == part) and layer.mode(p, self.scope, z)]
        if not parts:
            names = [p.name for p in layer.parts if layer.mode(p, self.scope, z)]
            raise NotFound(f"layer {layer_id} has no part {part!r} for this user at zoom {z}: one of {names}")
        return layer, parts[0], layer.mode(parts[0], self.scope, z)

    def select(self, layer: Layer, part: Part, mode: str, z: int, prefilter: str = "") -> Select:
        """The reader's select of one part for this user (geometry in EPSG:4326), as exports use it."""
        if mode == "features":
            return feature_select(part, part.visible_fields(self.scope), self.scope.user.unit_level, clip=part.clip,
                                  geom="geom", prefilter=prefilter, zoom=True, materialize=False)
        return aggregate_select(part, self.scope.user.unit_level, part_disclosure(part, self.scope), geom="geom",
                                prefilter=prefilter)

    def bind(self, sel: Select, pre: list, z: int) -> list:
        """The select's parameter values for this user."""
        return bind(sel, self.scope.user.unit_code, self.clock, pre, z)

    # -- units, indicators and lists: the service's functions -------------------------------------------------------
    def units(self, level: str | None = None):
        """The admin units in scope (all levels, or one) as a GeoDataFrame."""
        import geopandas as gpd

        t0 = time.perf_counter()
        if level is not None and level not in LEVELS:
            raise BadRequest(f"unknown level {level!r}: one of {', '.join(LEVELS)}")
        tree = _queries.unit_tree(self.db, self.scope, level, True)
        gdf = gpd.GeoDataFrame.from_features(tree["features"], crs="EPSG:4326")
        self._audit("units", t0, target=level, features=len(gdf))
        return gdf

    def metrics(self, where, names: list[str] | None = None) -> dict[str, Any]:
        """Indicators of a unit (its code) or of a drawn area (a shapely polygon, EPSG:4326), as `GET
        /units/{code}/metrics` and `POST /metrics` give them (snapped and protected for roles with a floor)."""
        t0 = time.perf_counter()
        if isinstance(where, str):
            area, target = unit_area(self.db, self.scope, where), where
        else:
            from brain.areas import AreaLimits, parse_area

            area = Area(polygon=parse_area(where.__geo_interface__, AreaLimits()))
            target = "bbox(" + ",".join(f"{v:.5f}" for v in area.polygon.bounds) + ")"
        out = _metrics.indicators(self.db, self.scope, protect_area(self.db, self.scope, area), self.clock, names)
        self._audit("metrics", t0, target=target)
        return out

    def ranking(self, code: str, metric: str = "population") -> dict[str, Any]:
        """The child units of a unit ranked by one indicator (一月一排名)."""
        t0 = time.perf_counter()
        out = _metrics.ranking(self.db, self.scope, code, metric, self.clock)
        self._audit("ranking", t0, target=f"{code}:{metric}", features=len(out["ranking"]))
        return out

    def building(self, building_id: str) -> dict[str, Any]:
        """The drill-down of one building (households, residents as this role may see them, events)."""
        t0 = time.perf_counter()
        out = _queries.building(self.db, self.scope, building_id, self.clock)
        self._audit("building", t0, layer="buildings", target=building_id)
        return out

    def events(self, **filters) -> dict[str, Any]:
        """Events in scope, newest first: status, cls, unit, overdue, since, until, page, size as `GET /events`."""
        t0 = time.perf_counter()
        out = _queries.events(self.db, self.scope, self.clock, **filters)
        self._audit("events", t0, layer="events", target=filters.get("unit"), features=len(out["items"]))
        return out


def _wkb(db: Backend, sel: Select) -> str:
    """The select with its geometry as WKB (what GeoPandas reads), every other column as it is."""
    cols = ", ".join(f"{as_wkb(db, 'r.geom')} AS geom" if c == "geom" else f"r.{quote_ident(c)}" for c in sel.columns)
    return (f"WITH {', '.join(sel.ctes)} " if sel.ctes else "") + f"SELECT {cols} FROM ({sel.body}) r"
