"""Scope: what one request may see, and the one place that turns it into SQL (see ../shared/style.md)."""

from __future__ import annotations

from dataclasses import dataclass

from brain.auth import User
from brain.backend import quote_ident
from brain.model import ENTITIES, Entity


@dataclass(frozen=True)
class Scope:
    """The user, their role, and the admin unit whose rows they may read."""

    user: User

    @property
    def level_column(self) -> str:
        """The placement column that the scope filters on (e.g. community_code)."""
        return f"{self.user.unit_level}_code"

    @property
    def key(self) -> tuple[str, str, str]:
        """What a cache must key on so that no scope ever sees another's results."""
        return (self.user.role.name, self.user.unit_level, self.user.unit_code)


def scope_filter(scope: Scope, alias: str = "t") -> tuple[str, list]:
    """SQL predicate (with bound parameters) keeping only rows placed inside the scope's unit.

    One equality on a placement column: rows carry all four level codes since ingest, so no list of unit
    codes is ever built (DuckDB skips its R-tree on long IN lists).
    """
    return f"{quote_ident(alias)}.{quote_ident(scope.level_column)} = ?", [scope.user.unit_code]


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
