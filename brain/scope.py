"""Scope: what one request may see, and the one place that turns it into SQL (see ../shared/style.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import shapely

from brain.auth import User
from brain.backend import Backend, as_wkb, quote_ident
from brain.model import ENTITIES, LEVELS, Entity


@dataclass(frozen=True)
class Scope:
    """The user, their role, and the admin unit whose rows they may read."""

    user: User

    @property
    def key(self) -> tuple[str, str, str]:
        """What a cache must key on so that no scope ever sees another's results."""
        return (self.user.role.name, self.user.unit_level, self.user.unit_code)


def scope_sql(level: str, alias: str = "t") -> str:
    """The row scope of a unit of `level`, as SQL with one `?` for the unit's code: the one place it is written.

    One equality on a placement column: rows (and admin units) carry all four level codes since ingest, so no
    list of unit codes is ever built (DuckDB skips its R-tree on long IN lists). Cached SQL (tiles, the reader)
    uses it as it is; `scope_filter` binds it to a scope.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    return f"{quote_ident(alias)}.{quote_ident(level + '_code')} = ?"


def scope_filter(scope: Scope, alias: str = "t") -> tuple[str, list]:
    """SQL predicate (with bound parameters) keeping only rows placed inside the scope's unit."""
    return scope_sql(scope.user.unit_level, alias), [scope.user.unit_code]


def in_scope(scope: Scope, codes: dict[str, str | None]) -> bool:
    """Whether a row placed at these codes ({level: code}, as its placement columns say) lies in the scope's unit:
    `scope_sql` for one row already read."""
    return codes.get(scope.user.unit_level) == scope.user.unit_code


def visible_fields(scope: Scope, entity: Entity | str) -> list[str]:
    """The fields of `entity` the scope's role may read (personal ones only for roles allowed them)."""
    entity = ENTITIES[entity] if isinstance(entity, str) else entity
    return [f.name for f in entity.fields if scope.user.role.personal or not f.personal]


#: Tables whose rows are persons or households: individual rows only for roles with personal access.
PERSONAL = frozenset({"people", "party_members", "households", "party_links"})
#: Tables whose individual rows are sensitive though not personal (an event names an address and a dispute).
SENSITIVE = PERSONAL | {"events"}
DERIVED = frozenset({"households", "party_links"})


def allowed(scope: Scope, action: str, resource: str) -> bool:
    """Whether the scope may `action` ('read-features' | 'read-aggregates') the table `resource`.

    The one permission decision of brain: tiles, metrics, drill-down and lists all ask here.
    """
    if resource != "admin_units" and resource not in ENTITIES and resource not in DERIVED:
        return False
    if action == "read-aggregates":
        return True
    if action == "read-features":
        role = scope.user.role
        if resource in PERSONAL:
            return role.individual and role.personal
        if resource in SENSITIVE:
            return role.individual
        return True
    return False


# -- statistical disclosure control ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Disclosure:
    """How the counts of one role over rows it may not see one by one are published (the portal's floor).

    The method (README, "Statistical disclosure control"):
    1. **Minimum geography: the grid.** Every such count describes whole grids. A drawn area is snapped to the
       grids more than half inside it; a building's residents are not counted for this role at all.
    2. **Each grid cell is rounded** to the nearest multiple of `base` (base 5: 0-2 → 0, 3-7 → 5, 8-12 → 10),
       the same way every time for the same data (deterministic, so repeating a query averages nothing away).
    3. **Every larger number is a sum of rounded grid cells** (a community, a street, a snapped area, a ranking
       row), and a rate is the ratio of two such sums.

    So every number this role reads is a function of one table: the rounded grid cells. Differencing areas,
    parents minus children or overlapping areas yields sums and differences of rounded cells, never a true
    small count: a hidden 1–4 comes back as 0 or 5. Medians are not additive: for this role they are given
    for whole units with at least 2 × base rows only.
    """

    base: int

    def round(self, n: int | None) -> int:
        """One grid cell's count as published."""
        n = int(n or 0)
        return (n + self.base // 2) // self.base * self.base

    def sql(self, expr: str) -> str:
        """The same rounding in SQL, for cells counted in the database (aggregated tiles)."""
        return f"CAST(floor((({expr}) + {self.base // 2}) / {float(self.base)!r}) * {self.base} AS BIGINT)"


def disclosure(scope: Scope, table: str) -> Disclosure | None:
    """How the scope's counts over `table` are protected; None when they are exact.

    Counts are protected for roles with a floor (`Role.min_count`) over tables whose rows the role may not read
    one by one (people, households, party members, events): a count of things the role sees on the map anyway
    has nothing to hide.
    """
    floor = scope.user.role.min_count
    if not floor or allowed(scope, "read-features", table):
        return None
    return Disclosure(floor)


def snaps_areas(scope: Scope) -> bool:
    """Whether the scope's drawn areas are snapped to whole grids (roles with a floor)."""
    return bool(scope.user.role.min_count)


#: A grid belongs to a drawn area, for roles whose areas are snapped, when more than this share of it is inside.
SNAP_SHARE = 0.5


def snap_to_grids(db: Backend, scope: Scope, polygon: Any) -> tuple[str, ...]:
    """The grids in the scope more than half inside a drawn polygon (EPSG:4326), by code."""
    where, params = scope_filter(scope, "t")
    xmin, ymin, xmax, ymax = polygon.bounds
    rows = db.query(f"SELECT t.code, {as_wkb(db, 't.geom')} FROM admin_units t WHERE t.level = 'grid' AND {where} "
                    "AND ST_XMax(t.geom) >= ? AND ST_XMin(t.geom) <= ? AND ST_YMax(t.geom) >= ? "
                    "AND ST_YMin(t.geom) <= ? ORDER BY t.code", params + [xmin, xmax, ymin, ymax])
    shapely.prepare(polygon)
    out = []
    for code, raw in rows:
        grid = shapely.from_wkb(bytes(raw))
        if grid.area > 0 and (polygon.contains(grid)
                              or shapely.intersection(grid, polygon).area > SNAP_SHARE * grid.area):
            out.append(code)
    return tuple(out)
