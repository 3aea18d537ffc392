"""DDL of the canonical database, derived from brain.model."""

from __future__ import annotations

from brain.backend import Backend, quote_ident
from brain.errors import BackendError
from brain.model import ENTITIES, PLACEMENT, PROVENANCE, Entity

SCHEMA_VERSION = "4"  # 2: readings carry their device's point; 3: audit_log, derived tables; 4: PostgreSQL-safe names

ADMIN_UNITS = """
CREATE TABLE IF NOT EXISTS admin_units (
    code VARCHAR NOT NULL,
    name VARCHAR,
    level VARCHAR NOT NULL,
    parent_code VARCHAR,
    grid_code VARCHAR,
    community_code VARCHAR,
    street_code VARCHAR,
    district_code VARCHAR,
    source VARCHAR,
    row_hash VARCHAR,
    ingest_run VARCHAR,
    area_m2 DOUBLE PRECISION,
    geom GEOMETRY,
    geom_3857 GEOMETRY
)"""

SUPPORT = [
    # a deployment's own vocabulary terms (brain.vocabulary; the built-in ones are code, never rows)
    """CREATE TABLE IF NOT EXISTS vocabulary (vocab VARCHAR NOT NULL, code VARCHAR NOT NULL, zh VARCHAR NOT NULL,
        en VARCHAR NOT NULL, spellings VARCHAR, origin VARCHAR, PRIMARY KEY (vocab, code))""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        source VARCHAR NOT NULL,
        entity VARCHAR NOT NULL,
        row_no BIGINT,
        source_id VARCHAR,
        reason VARCHAR NOT NULL,
        detail VARCHAR,
        raw VARCHAR,
        raw_hash VARCHAR NOT NULL,
        first_run VARCHAR,
        last_run VARCHAR,
        resolved_run VARCHAR,
        resolved_at TIMESTAMP,
        resolution VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS ingest_runs (
        run_id VARCHAR NOT NULL,
        manifest VARCHAR,
        source VARCHAR NOT NULL,
        entity VARCHAR NOT NULL,
        path VARCHAR,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        "read" BIGINT,
        loaded BIGINT,
        inserted BIGINT,
        updated BIGINT,
        unchanged BIGINT,
        quarantined BIGINT,
        reasons VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS rasters (
        name VARCHAR NOT NULL,
        kind VARCHAR,
        path VARCHAR,
        crs VARCHAR,
        width INTEGER,
        height INTEGER,
        bands INTEGER,
        west DOUBLE PRECISION, south DOUBLE PRECISION, east DOUBLE PRECISION, north DOUBLE PRECISION,
        ingest_run VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        ts TIMESTAMP NOT NULL,
        user_name VARCHAR,
        role VARCHAR,
        unit_code VARCHAR,
        method VARCHAR,
        endpoint VARCHAR,
        layer VARCHAR,
        target VARCHAR,
        features BIGINT,
        status INTEGER,
        ms DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS user_layouts (
        user_name VARCHAR PRIMARY KEY,
        layout VARCHAR NOT NULL,
        updated_at TIMESTAMP
    )""",
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
]


def entity_columns(entity: Entity) -> list[tuple[str, str]]:
    """(name, SQL type) of an entity table's columns, in order."""
    cols = [(name, typ) for name, typ, _ in PROVENANCE]
    cols += [(f.name, f.sql_type) for f in entity.fields]
    cols += [(c, "VARCHAR") for c in PLACEMENT]
    if entity.placed:
        cols += [("lon", "DOUBLE PRECISION"), ("lat", "DOUBLE PRECISION"), ("geom", "GEOMETRY"), ("geom_3857", "GEOMETRY")]
    return cols


def entity_ddl(entity: Entity) -> str:
    """CREATE TABLE statement of one entity."""
    body = ",\n    ".join(f"{quote_ident(n)} {t}" for n, t in entity_columns(entity))
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(entity.name)} (\n    {body}\n)"


def init_schema(db: Backend) -> None:
    """Create every table that does not exist yet (idempotent); refuse a database of another schema version."""
    db.execute(SUPPORT[-1])
    found = db.query("SELECT value FROM meta WHERE key = 'schema_version'")
    if found and found[0][0] != SCHEMA_VERSION:
        raise BackendError(f"{db.url} holds schema version {found[0][0]}, this brain writes version {SCHEMA_VERSION}: "
                           f"ingest into a new database file (or delete this one and ingest again)")
    db.execute(ADMIN_UNITS)
    for entity in ENTITIES.values():
        db.execute(entity_ddl(entity))
    for ddl in SUPPORT:
        db.execute(ddl)
    # columns added since schema version 4 was first written (a database from then gains them)
    for col, typ in (("resolved_run", "VARCHAR"), ("resolved_at", "TIMESTAMP"), ("resolution", "VARCHAR")):
        db.execute(f"ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS {col} {typ}")
    db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING", [SCHEMA_VERSION])
    db.execute("INSERT INTO meta VALUES ('data_version', '0') ON CONFLICT (key) DO NOTHING")


def data_version(db: Backend) -> int:
    """The counter that every ingest run which changed data increments (tile caches key on it)."""
    rows = db.query("SELECT value FROM meta WHERE key = 'data_version'")
    return int(rows[0][0]) if rows else 0


def bump_data_version(db: Backend) -> int:
    """Increment and return the data version."""
    db.execute("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR) WHERE key = 'data_version'")
    return data_version(db)
