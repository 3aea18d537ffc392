"""Copy a whole brain database from one backend to another (DuckDB file → PostGIS server, or back)."""

from __future__ import annotations

from typing import Callable

from brain.backend import Backend, quote_ident
from brain.model import ENTITIES
from brain.schema import entity_columns, init_schema

ADMIN = ("code", "name", "level", "parent_code", "grid_code", "community_code", "street_code", "district_code",
         "source", "row_hash", "ingest_run", "area_m2", "geom", "geom_3857")
GEOM_SRID = {"geom": 4326, "geom_3857": 3857}
DERIVED = {
    "households": ("id", "household_id", "building_id", "members", "linked", "grid_code", "community_code",
                   "street_code", "district_code", "lon", "lat", "geom", "geom_3857"),
    "party_links": ("id", "member_id", "organisation_id", "household_id", "grid_code", "community_code",
                    "street_code", "district_code", "geom", "geom_3857"),
}


def _select(columns, src_dialect: str) -> str:
    return ", ".join(f"ST_AsWKB({quote_ident(c)}) AS {quote_ident(c)}" if c in GEOM_SRID else quote_ident(c)
                     for c in columns)


def _insert_exprs(columns) -> str:
    return ", ".join(f"ST_SetSRID(ST_GeomFromWKB({quote_ident(c)}), {GEOM_SRID[c]}) AS {quote_ident(c)}"
                     if c in GEOM_SRID else quote_ident(c) for c in columns)


def copy_database(src: Backend, dst: Backend, on_table: Callable[[str, int], None] | None = None) -> dict:
    """Replace dst's canonical and derived tables with src's; return rows copied per table."""
    init_schema(dst)
    tables = {"admin_units": ADMIN} | {e.name: tuple(c for c, _ in entity_columns(e)) for e in ENTITIES.values()}
    counts = {}
    for table, cols in {**tables, **DERIVED}.items():
        df = src.frame(f"SELECT {_select(cols, src.dialect)} FROM {quote_ident(table)}")
        if table in DERIVED:
            dst.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
        else:
            dst.execute(f"DELETE FROM {quote_ident(table)}")
        dst.register("copy_src", df)
        try:
            body = f"SELECT {_insert_exprs(cols)} FROM copy_src"
            if table in DERIVED:
                dst.execute(f"CREATE TABLE {quote_ident(table)} AS {body}")
            else:
                dst.execute(f"INSERT INTO {quote_ident(table)} ({', '.join(map(quote_ident, cols))}) {body}")
        finally:
            dst.unregister("copy_src")
        counts[table] = len(df)
        if on_table:
            on_table(table, len(df))
    if dst.dialect == "postgis":
        for table in ("admin_units", *(e.name for e in ENTITIES.values() if e.placed), *DERIVED):
            dst.execute(f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_gist')} ON {quote_ident(table)} "
                        "USING GIST (geom_3857)")
            dst.execute(f"ANALYZE {quote_ident(table)}")
    for key in ("data_version", "derived_version"):
        v = src.query("SELECT value FROM meta WHERE key = ?", [key])
        if v:
            dst.execute("DELETE FROM meta WHERE key = ?", [key])
            dst.execute("INSERT INTO meta VALUES (?, ?)", [key, v[0][0]])
    return counts
