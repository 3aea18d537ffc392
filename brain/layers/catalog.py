"""The layer catalog: frozen, declarative specs of every map layer, built once (see ../shared/style.md).

A layer is one or more *parts*, each one MVT layer in the tile (the `party` layer carries party organisations
and member ↔ household links). A part names its table, geometry, fields and a constant filter; whether a
request gets its features or its per-grid aggregates is decided by `brain.scope.allowed` and the zoom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brain.metrics import OVERDUE_CLOSE, OVERDUE_RESPOND
from brain.model import ENTITIES
from brain.scope import Scope, allowed, visible_fields

#: MVT property types for the model's field types (ST_AsMVT takes VARCHAR/DOUBLE/BIGINT/BOOLEAN).
MVT_TYPES = {"text": "VARCHAR", "category": "VARCHAR", "multi": "VARCHAR", "int": "BIGINT", "float": "DOUBLE PRECISION",
             "bool": "BOOLEAN", "timestamp": "VARCHAR", "date": "VARCHAR"}
#: TileJSON field types of the MVT property types.
JSON_TYPES = {"VARCHAR": "String", "BIGINT": "Number", "DOUBLE PRECISION": "Number", "BOOLEAN": "Boolean"}
#: Field types of tables outside the model (admin units and derived tables).
EXTRA_TYPES = {
    "admin_units": {"code": "text", "name": "text", "level": "text", "parent_code": "text", "area_m2": "float"},
    "households": {"household_id": "text", "building_id": "text", "members": "int", "linked": "bool"},
    "party_links": {"member_id": "text", "organisation_id": "text", "household_id": "text"},
}


@dataclass(frozen=True)
class Part:
    """One MVT layer of a tile: a table, its geometry kind, fields, and a constant filter."""

    name: str
    table: str
    geometry: str  # point | polygon | line
    fields: tuple[str, ...]
    where: str = ""  # constant SQL over alias t, written here, never from a request
    clip: bool = False  # geometries that can straddle a unit edge are clipped to the scope's unit
    aggregate: tuple[str, ...] = ()  # indicators served per grid when features are not (low zoom or role)
    id_column: str = "id"
    minzoom: int = 0  # below it the part is left out of the tile (party links are unreadable when zoomed out)
    zoom_filter: str = ""  # constant SQL over alias t with one `?` bound to the tile's zoom
    computed: tuple[tuple[str, str], ...] = ()  # (property, boolean SQL over t and the clock c), for every role
    label_point: bool = False  # each row as one point on its surface (where its name is drawn), not its shape
    pieces: str = ""  # the table the reader reads instead of `table`: its rows cut along the grids' edges (derive)

    @property
    def source(self) -> str:
        """The table the reader selects the part's rows from."""
        return self.pieces or self.table

    def field_type(self, name: str) -> str:
        """The model type of one field."""
        if self.table in ENTITIES:
            return ENTITIES[self.table].field_map[name].type
        return EXTRA_TYPES[self.table][name]

    def personal(self, name: str) -> bool:
        """Whether a field is personal (only roles with personal access read it)."""
        f = ENTITIES[self.table].field_map.get(name) if self.table in ENTITIES else None
        return bool(f and f.personal)

    def visible_fields(self, scope: Scope) -> tuple[str, ...]:
        """The fields this scope's role may read (decided by brain.scope, as everywhere else)."""
        if self.table not in ENTITIES:  # admin units and derived tables carry no personal field
            return self.fields
        readable = set(visible_fields(scope, self.table))
        return tuple(f for f in self.fields if f in readable)


@dataclass(frozen=True)
class Layer:
    """A map layer: its parts, zoom range, the zoom from which individual features are served, and style."""

    id: str
    title: str
    description: str
    parts: tuple[Part, ...]
    minzoom: int = 10
    maxzoom: int = 18
    detail_zoom: int = 0  # below it, parts with aggregates are served per grid
    style: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def mode(self, part: Part, scope: Scope, z: int) -> str | None:
        """'features', 'aggregate' or None (the part is not served to this scope at this zoom)."""
        if z < part.minzoom:
            return None
        if z >= self.detail_zoom and allowed(scope, "read-features", part.table):
            return "features"
        if part.aggregate and allowed(scope, "read-aggregates", part.table):
            return "aggregate"
        return None

    def visible(self, scope: Scope) -> bool:
        """Whether the scope gets anything from this layer at some zoom."""
        return any(self.mode(p, scope, self.maxzoom) for p in self.parts)

    def vector_layers(self, scope: Scope, minzoom: int | None = None, maxzoom: int | None = None) -> list[dict]:
        """TileJSON `vector_layers` of what this scope gets between two zooms (default: the layer's): each MVT
        layer and its fields with their types (the features' fields, and the per-grid indicators where served)."""
        lo, hi = max(self.minzoom, minzoom or 0), min(self.maxzoom, self.maxzoom if maxzoom is None else maxzoom)
        out = []
        for p in self.parts:
            modes = {self.mode(p, scope, z) for z in range(lo, hi + 1)} - {None}
            if not modes:
                continue
            fields: dict[str, str] = {}
            if "features" in modes:
                fields["id"] = "String"
                fields.update({f: JSON_TYPES[MVT_TYPES[p.field_type(f)]] for f in p.visible_fields(scope)})
                fields.update({n: "Boolean" for n, _ in p.computed})
            if "aggregate" in modes:
                fields.update({"code": "String", "name": "String"} | {a: "Number" for a in p.aggregate})
            out.append({"id": p.name, "fields": fields, "minzoom": max(lo, p.minzoom), "maxzoom": hi,
                        "description": self.description})
        return out


def _fields(entity: str, *skip: str) -> tuple[str, ...]:
    return tuple(f.name for f in ENTITIES[entity].fields if f.name not in skip)


STATUS_COLORS = {"reported": "#d62728", "dispatched": "#ff7f0e", "resolved": "#2ca02c", "closed": "#7f7f7f"}

CATALOG: dict[str, Layer] = {layer.id: layer for layer in (
    Layer("units", "行政区划 admin units", "District, streets, communities and grids with their codes.",
          (Part("units", "admin_units", "polygon", ("code", "name", "level", "parent_code", "area_m2"),
                id_column="code",
                # grids from z13 and communities from z11: 1,440 grid outlines at z10 are noise and 100 ms
                zoom_filter="CASE t.level WHEN 'grid' THEN 13 WHEN 'community' THEN 11 ELSE 0 END <= ?"),
           # the units' names, one point each, at the zooms a map labels their level (a label layer in the same
           # tile as the outlines, as OpenMapTiles' `place` points: no second source to load before the names)
           Part("unit_labels", "admin_units", "point", ("code", "name", "level"), id_column="code", label_point=True,
                zoom_filter="? BETWEEN CASE t.level WHEN 'street' THEN 10 WHEN 'community' THEN 12 "
                            "WHEN 'grid' THEN 14 ELSE 99 END AND CASE t.level WHEN 'street' THEN 13 "
                            "WHEN 'community' THEN 15 ELSE 18 END")),
          minzoom=8, maxzoom=18,
          style={"kind": "line", "color": "#3b6ea8", "by": "level",
                 "width": {"district": 3, "street": 2.5, "community": 1.5, "grid": 0.7}}),
    # the basemap, from the district's own data: water and roads (readable by every role, as any map shows them)
    Layer("water", "水系 water", "Rivers, 河涌 and lakes and river chiefs' patrol routes, cut along the grids' edges.",
          (Part("waters", "waters", "shape", ("name", "kind", "reach"), pieces="water_pieces"),),
          minzoom=10, maxzoom=18,
          style={"kind": "water", "base": True, "color": "#8cc3ec", "by": "kind",
                 "colors": {"river": "#9ccbf0", "creek": "#7fb8e6", "lake": "#9ccbf0", "canal": "#7fb8e6",
                            "patrol_route": "#d0463c"}}),
    Layer("roads", "道路 roads", "The street network by class, named, cut along the grids' edges.",
          (Part("roads", "roads", "line", ("name", "class"), pieces="road_pieces"),),
          minzoom=10, maxzoom=18,
          style={"kind": "road", "base": True, "color": "#f6c66b", "by": "class",
                 "colors": {"arterial": "#f6c66b", "secondary": "#fde3a7", "branch": "#ffffff", "lane": "#ffffff"},
                 "width": {"arterial": 6, "secondary": 4.5, "branch": 3, "lane": 2}}),
    Layer("buildings", "房屋 buildings", "Building footprints with use, floors, rented and fire facilities.",
          (Part("buildings", "buildings", "polygon", _fields("buildings", "addr_key"), clip=True,
                aggregate=("buildings", "rented_buildings")),),
          minzoom=10, maxzoom=18, detail_zoom=15,
          style={"kind": "fill", "color": "#9e9e9e", "by": "use",
                 "colors": {"residential": "#c9b79c", "commercial": "#e39d6b", "office": "#8fa8c8",
                            "industrial": "#a58fbf", "public": "#8cc08c", "mixed": "#d8c36a"}}),
    Layer("people", "人口 people", "Residents at their building; counts per grid below the detail zoom.",
          # the tile carries what a map styles and labels by; the full record is the drill-down's
          (Part("people", "people", "point", ("name", "gender", "birth_date", "residence", "household_id",
                                               "building_id", "special_groups"),
                aggregate=("population", "registered", "floating", "age_60_79", "age_80_plus", "households")),),
          minzoom=10, maxzoom=18, detail_zoom=17,
          style={"kind": "circle", "color": "#1f77b4", "by": "residence",
                 "colors": {"registered": "#1f77b4", "floating": "#ff7f0e"}, "aggregate_by": "population"}),
    Layer("organisations", "组织 organisations", "Enterprises, schools, canteens and social organisations.",
          (Part("organisations", "organisations", "point", _fields("organisations"),
                where="t.kind NOT IN ('party_org', 'service_centre')",
                aggregate=("organisations", "active_enterprises")),),
          minzoom=10, maxzoom=18, detail_zoom=14,
          style={"kind": "circle", "color": "#8c564b", "by": "kind",
                 "colors": {"enterprise": "#8c564b", "school": "#17becf", "canteen": "#bcbd22",
                            "social_org": "#e377c2"}}),
    Layer("party", "党建 party", "Party organisations, party-mass service centres, and member ↔ household links.",
          (Part("party_orgs", "organisations", "point", _fields("organisations"),
                where="t.kind IN ('party_org', 'service_centre')"),
           Part("party_links", "party_links", "line", ("organisation_id", "household_id"), clip=True,
                minzoom=15)),
          minzoom=10, maxzoom=18,
          style={"kind": "circle", "color": "#c00000", "by": "kind",
                 "colors": {"party_org": "#c00000", "service_centre": "#ff4d4d"}, "line_color": "#c00000"}),
    Layer("events", "事件 events", "Appeals and incidents by class and status; counts per grid when zoomed out.",
          (Part("events", "events", "point", ("class", "type", "status", "reported_at", "channel",
                                               "reporter_phone"),
                computed=(("overdue", f"({OVERDUE_RESPOND}) OR ({OVERDUE_CLOSE})"),),
                aggregate=("events", "open_events", "overdue_respond", "overdue_close", "resolution_rate")),),
          minzoom=10, maxzoom=18, detail_zoom=15,
          style={"kind": "circle", "color": "#d62728", "by": "status", "colors": STATUS_COLORS, "ring": "overdue",
                 "aggregate_by": "open_events"}),
    Layer("devices", "物联感知 devices", "Cameras and monitoring stations, with sensors in alarm.",
          (Part("devices", "devices", "point", _fields("devices")),),
          minzoom=10, maxzoom=18,
          style={"kind": "circle", "color": "#2ca02c", "by": "status",
                 "colors": {"normal": "#2ca02c", "alarm": "#d62728", "offline": "#7f7f7f"}}),
)}
