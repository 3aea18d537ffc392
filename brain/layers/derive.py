"""Tables derived from the canonical ones after every ingest that changed data, and the spatial indexes.

- `households`: one row per household id of the register, at its first member's building, with the number of
  members and whether a party member is linked to it (党员联系户).
- `party_links`: one row per member ↔ household link, a line from the member's point to the household's.

Both are rebuilt whole: they are small next to the register and a rebuild cannot drift from it.
"""

from __future__ import annotations

from brain.backend import Backend, quote_ident
from brain.model import ENTITIES, PLACEMENT

PLACE = ", ".join(PLACEMENT)

HOUSEHOLDS = f"""
CREATE OR REPLACE TABLE households AS
WITH linked AS (
    SELECT DISTINCT trim(h) AS household_id
    FROM (SELECT unnest(string_to_array(linked_households, ';')) AS h FROM party_members) x
    WHERE trim(h) <> ''
)
SELECT p.household_id AS id, p.household_id, p.building_id, p.members,
       p.household_id IN (SELECT household_id FROM linked) AS linked,
       {", ".join("p." + c for c in PLACEMENT)}, p.lon, p.lat, p.geom, p.geom_3857
FROM (
    SELECT DISTINCT ON (household_id) household_id, building_id,
           count(*) OVER (PARTITION BY household_id) AS members, {PLACE}, lon, lat, geom, geom_3857
    FROM people WHERE household_id IS NOT NULL AND household_id <> ''
    ORDER BY household_id, id
) p
"""

PARTY_LINKS = f"""
CREATE OR REPLACE TABLE party_links AS
SELECT m.id || '>' || h.household_id AS id, m.id AS member_id, m.organisation_id, h.household_id,
       {", ".join("m." + c for c in PLACEMENT)},
       ST_MakeLine(m.geom, h.geom) AS geom,
       ST_MakeLine(m.geom_3857, h.geom_3857) AS geom_3857
FROM (SELECT id, organisation_id, {PLACE}, geom, geom_3857,
             trim(unnest(string_to_array(linked_households, ';'))) AS household_id
      FROM party_members WHERE geom IS NOT NULL) m
JOIN households h ON h.household_id = m.household_id
WHERE NOT ST_Equals(m.geom, h.geom)
"""

#: Tables with a geom_3857 column that tiles read through the tile envelope (an R-tree each).
INDEXED = ("admin_units", *(e.name for e in ENTITIES.values() if e.placed), "households", "party_links")


def drop_indexes(db: Backend) -> None:
    """Drop the R-trees before rows are updated: DuckDB 1.5 aborts the process deleting rows under an R-tree."""
    for table in INDEXED:
        db.execute(f"DROP INDEX IF EXISTS {quote_ident(table + '_rtree')}")


def create_indexes(db: Backend) -> None:
    """(Re)build the R-tree of every tiled table (bulk-built once, faster than maintained row by row)."""
    drop_indexes(db)
    for table in INDEXED:
        db.execute(f"CREATE INDEX {quote_ident(table + '_rtree')} ON {quote_ident(table)} USING RTREE (geom_3857)")


def ensure_indexes(db: Backend) -> None:
    """Build the R-trees that are missing (after a failed ingest run, or on a database from elsewhere)."""
    if db.dialect == "postgis":
        for table in INDEXED:
            db.execute(f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_gist')} ON {quote_ident(table)} "
                       "USING GIST (geom_3857)")
        return
    have = {n for (n,) in db.query("SELECT index_name FROM duckdb_indexes()")}
    for table in INDEXED:
        if table + "_rtree" not in have:
            db.execute(f"CREATE INDEX {quote_ident(table + '_rtree')} ON {quote_ident(table)} "
                       "USING RTREE (geom_3857)")


def refresh(db: Backend) -> None:
    """Rebuild the derived tables and the spatial indexes, and record the data version they reflect."""
    drop_indexes(db)
    db.execute(HOUSEHOLDS)
    db.execute(PARTY_LINKS)
    create_indexes(db)
    db.execute("INSERT INTO meta VALUES ('derived_version', (SELECT value FROM meta WHERE key = 'data_version')) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


def is_fresh(db: Backend) -> bool:
    """Whether the derived tables reflect the current data version."""
    rows = db.query("SELECT (SELECT value FROM meta WHERE key = 'derived_version') = "
                    "(SELECT value FROM meta WHERE key = 'data_version')")
    return bool(rows and rows[0][0])
