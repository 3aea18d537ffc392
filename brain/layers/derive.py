"""Tables derived from the canonical ones after every ingest that changed data, and the spatial indexes.

- `households`: one row per household id of the register, at its first member's building, with the number of
  members and whether a party member is linked to it (党员联系户).
- `party_links`: one row per member ↔ household link, a line from the member's point to the household's.

- `road_pieces`, `water_pieces`: each road and each river, 河涌 or lake cut along the grids' edges, one piece per
  grid it crosses, placed in that grid (id `<record id>@<grid code>`). A road is placed in one grid by one point
  (brain.ingest), but a delivered segment or river can cross several grids: the map reads the pieces, so each grid,
  community and street sees what runs through it, and no piece lies outside its unit.

All are rebuilt whole: they are small next to the register and a rebuild cannot drift from it.
"""

from __future__ import annotations

from brain.backend import Backend, quote_ident
from brain.model import ENTITIES, PLACEMENT

PLACE = ", ".join(PLACEMENT)

HOUSEHOLDS = f"""
CREATE TABLE households AS
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
CREATE TABLE party_links AS
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

#: The canonical tables of lines and shapes cut along the grids' edges, and the tables of their pieces.
PIECES = {"roads": "road_pieces", "waters": "water_pieces"}

#: Pieces shorter than this (m), or smaller (m²) for shapes, are left out: where a river delivered already cut at
#: a grid's edge meets the next grid, their intersection is a sliver of rounding along the edge (in the medium
#: sample: 0.014 m² over 71 m, a fifth of a millimetre wide).
SLIVER = 1.0


def pieces_sql(table: str) -> str:
    """The pieces of one table, one per grid each row crosses (portable: DuckDB and PostGIS). Each is cut in both
    spatial references from the stored geometries; a piece is kept only where it has the row's own dimension (a
    line touching a grid at a point, or a river sharing an edge with it, gives no piece there)."""
    names = [quote_ident(f.name) for f in ENTITIES[table].fields]
    kind = "CASE ST_Dimension(r.geom) WHEN 1 THEN 2 ELSE 3 END"  # ST_CollectionExtract: 2 lines, 3 polygons
    size = "CASE p.dim WHEN 1 THEN ST_Length(p.geom_3857) ELSE ST_Area(p.geom_3857) END"
    return f"""CREATE TABLE {quote_ident(PIECES[table])} AS
SELECT p.id, {", ".join(f"p.{n}" for n in names)}, {", ".join(f"p.{c}" for c in PLACEMENT)},
       ST_X(ST_PointOnSurface(p.geom)) AS lon, ST_Y(ST_PointOnSurface(p.geom)) AS lat, p.geom, p.geom_3857
FROM (
    SELECT r.id || '@' || g.code AS id, {", ".join(f"r.{n}" for n in names)}, {", ".join(f"g.{c}" for c in PLACEMENT)},
           ST_Dimension(r.geom) AS dim,
           ST_CollectionExtract(ST_Intersection(r.geom, g.geom), {kind}) AS geom,
           ST_CollectionExtract(ST_Intersection(r.geom_3857, g.geom_3857), {kind}) AS geom_3857
    FROM {quote_ident(table)} r JOIN admin_units g ON g.level = 'grid' AND ST_Intersects(r.geom, g.geom)
) p
WHERE NOT ST_IsEmpty(p.geom) AND NOT ST_IsEmpty(p.geom_3857) AND {size} > {SLIVER}"""


def _rebuild(db: Backend, table: str, sql: str) -> None:
    db.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
    db.execute(sql)


def cut(db: Backend) -> None:
    """(Re)build the pieces of roads and water, on either backend."""
    for table, pieces in PIECES.items():
        _rebuild(db, pieces, pieces_sql(table))


#: The tables this module derives (a copy between backends carries them).
DERIVED = ("households", "party_links", *PIECES.values())

#: Tables with a geom_3857 column that tiles read through the tile envelope (an R-tree each).
INDEXED = ("admin_units", *(e.name for e in ENTITIES.values() if e.placed), *DERIVED)


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
    """Rebuild the derived tables and the spatial indexes, and record the data version they reflect. Ingest runs
    it in DuckDB (a server database receives the tables with the rest); `brain serve` runs it on either backend
    when a table is missing (a database made by an earlier version of brain)."""
    drop_indexes(db)
    _rebuild(db, "households", HOUSEHOLDS)
    _rebuild(db, "party_links", PARTY_LINKS)
    cut(db)
    ensure_indexes(db)  # every spatial index, on either backend (all were dropped above or with their tables)
    db.execute("INSERT INTO meta VALUES ('derived_version', (SELECT value FROM meta WHERE key = 'data_version')) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


def is_fresh(db: Backend) -> bool:
    """Whether every derived table is there and reflects the current data version (a database made by an earlier
    version of brain may lack a table this one derives)."""
    have = {n for (n,) in db.query("SELECT table_name FROM information_schema.tables")}
    if not set(DERIVED) <= have:
        return False
    rows = db.query("SELECT (SELECT value FROM meta WHERE key = 'derived_version') = "
                    "(SELECT value FROM meta WHERE key = 'data_version')")
    return bool(rows and rows[0][0])
