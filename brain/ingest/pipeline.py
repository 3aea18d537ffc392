"""One ingest run: read → map → fix coordinates → place in units → quarantine → upsert → report.

Python prepares what needs Python (file formats, CRS maths, address parsing, geometry repair) vectorised;
typing, vocabularies, the spatial join that places rows and the upsert run as SQL in the database.
The whole run is one transaction: a source that cannot be read stops it and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import contextlib
import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Callable

import re
import string

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from brain.backend import Backend, quote_ident as q
from brain.coords import normalise_crs
from brain.errors import SourceError
from brain.ingest.matching import BuildingIndex, building_keys, match_addresses
from brain.ingest.manifest import AdminSource, Manifest, Source, template_columns
from brain.ingest.places import prepare_geometry, prepare_xy
from brain.ingest.readers import Table, read_header, read_table
from brain.model import ENTITIES, LEVELS, PLACEMENT, Entity
from brain.vocabulary import TOP_LEVEL, Vocabularies, store, stored
from brain.layers import derive
from brain.schema import bump_data_version, data_version, entity_columns, init_schema

#: Date and time layouts seen in department files, tried in order after ISO 8601.
DATE_FORMATS = ["%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y年%m月%d日 %H时%M分%S秒",
                "%Y年%m月%d日 %H时%M分", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日", "%Y%m%d%H%M%S", "%Y%m%d", "%Y/%m/%d",
                "%Y.%m.%d %H:%M", "%Y.%m.%d"]

#: References resolved against tables loaded earlier: (field, table, matched column, our column, required).
LINKS: dict[str, list[tuple[str, str, str, str, bool]]] = {
    "party_members": [("person_id", "people", "id_number", "id_number", False),
                      ("organisation_id", "organisations", "source_id", "organisation_ref", False)],
    "device_readings": [("device_id", "devices", "source_id", "device_ref", True)],
}

STAGES = ("read", "prepare", "place", "load")

ProgressFn = Callable[[str, str], None]


@dataclass
class SourceReport:
    """What one source did in one run; read = loaded + quarantined always holds."""

    name: str
    entity: str
    path: str
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    repaired: int = 0
    resolved: int = 0  # rows quarantined by earlier runs that this run loaded, or that are no longer delivered
    skipped: int = 0  # rows the source's `filter` left out (not read: read = loaded + quarantined still holds)
    #: rows placed by address, per matching stage (exact, parsed, fuzzy, ambiguous, unmatched)
    addresses: dict[str, int] = field(default_factory=dict)
    address_seconds: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        """Whether every row read is either loaded or quarantined."""
        return self.read == self.loaded + self.quarantined


@dataclass
class RunReport:
    """The report of a whole run."""

    run_id: str
    manifest: str
    db: str
    started_at: str
    seconds: float = 0.0
    data_version: int = 0
    sources: list[SourceReport] = field(default_factory=list)

    def to_json(self) -> dict:
        """The --report-json document."""
        out = asdict(self)
        for s, rep in zip(out["sources"], self.sources):
            s["reconciles"] = rep.reconciles
        return out


class Ingest:
    """Runs a manifest into a backend."""

    def __init__(self, db: Backend, manifest: Manifest, manifest_path: str = "", progress: ProgressFn | None = None,
                 check: bool = False):
        self.db = db
        self.manifest = manifest
        self.manifest_path = manifest_path
        self.progress = progress or (lambda source, stage: None)
        self.run_id = datetime.now().strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        self.check = check  # `brain check`: also count every failing check per source and field
        self._buildings: BuildingIndex | None = None  # the address matcher's index of the buildings loaded
        self._terms: list[tuple[str, str, str]] = []  # (vocab, lower-cased spelling, code) of every known term
        self.problems: list[dict] = []

    # -- pre-flight ---------------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Check every source can be read (file, layer, columns, CRS) before anything is written."""
        for spec in self.manifest.admin_units:
            cols, file_crs = read_header(spec, self.manifest.resolve(spec.path))
            self._need(spec.name, cols, [spec.id, *spec.columns.values(), *spec.filter])
            self._crs(spec.name, spec.crs, file_crs)
        for spec in self.manifest.sources:
            cols, file_crs = read_header(spec, self.manifest.resolve(spec.path))
            need = [*spec.id_columns, *(c for m in spec.columns.values() for c in template_columns(m)), *spec.filter]
            if spec.place:
                need += [c for m in (spec.place.x, spec.place.y, spec.place.address) if m
                         for c in template_columns(m)]
                if spec.place.x or spec.place.geometry:
                    self._crs(spec.name, spec.place.crs, file_crs if spec.place.geometry else "EPSG:4326")
            self._need(spec.name, cols, need)
        for raster in self.manifest.rasters:
            if not self.manifest.resolve(raster.path).exists():
                raise SourceError(f"file {self.manifest.resolve(raster.path)} does not exist: fix `path`", raster.name)

    @staticmethod
    def _need(name: str, have: list[str], need: list[str]) -> None:
        twice = [c for c in dict.fromkeys(need) if have.count(c) > 1]
        if twice:
            raise SourceError(f"column(s) {twice} appear more than once in the header, so which one is meant is "
                              "unclear: rename the copies in the file, or map another column", name)
        missing = [c for c in dict.fromkeys(need) if c not in have]
        if missing:
            raise SourceError(f"column(s) {missing} not in the file, which has {have[:12]}"
                              f"{'…' if len(have) > 12 else ''}: fix `columns`/`id`/`place` in the manifest", name)

    @staticmethod
    def _crs(name: str, declared, file_crs) -> str:
        if declared is None and file_crs is None:
            raise SourceError("the file has no CRS: declare one in the manifest (`crs:`, or `place.crs:` for an entity source): an EPSG code, gcj02 or bd09", name)
        try:
            return normalise_crs(declared if declared is not None else file_crs)
        except SourceError as exc:
            raise SourceError(str(exc), name) from None

    # -- the run ------------------------------------------------------------------------------------------
    def run(self) -> RunReport:
        """Pre-flight, then load every source in one transaction; return the report."""
        t0 = time.perf_counter()
        report = RunReport(self.run_id, self.manifest_path, self.db.url, datetime.now().isoformat(timespec="seconds"))
        self.preflight()
        init_schema(self.db)
        # Committed on its own: DuckDB 1.5 aborts when rows under an R-tree dropped in the same transaction
        # are deleted. A failed run leaves the tables without R-trees; the next run or `brain serve` rebuilds them.
        derive.drop_indexes(self.db)
        with self.db.transaction():
            # the deployment's vocabulary files are stored with the data; values may use any stored term
            store(self.db, self.manifest.vocab)
            self._terms = _lookup(self.manifest.vocab, stored(self.db))
            with _registered(self.db, vocab_src=pd.DataFrame(self._terms, columns=["vocab", "label", "code"])):
                self.db.execute("CREATE OR REPLACE TEMP TABLE vocab AS SELECT * FROM vocab_src")
            for spec in self.manifest.ordered_admin():
                report.sources.append(self._timed(spec, self._admin))
            for spec in self.manifest.ordered_sources():
                report.sources.append(self._timed(spec, self._entity))
            for raster in self.manifest.rasters:
                self._raster(raster)
            self._record(report)
            changed = any(s.inserted or s.updated for s in report.sources)
            report.data_version = bump_data_version(self.db) if changed else data_version(self.db)
            if changed or not derive.is_fresh(self.db):
                derive.refresh(self.db)
            else:
                derive.create_indexes(self.db)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _timed(self, spec, fn) -> SourceReport:
        t = time.perf_counter()
        rep = fn(spec)
        rep.seconds = round(time.perf_counter() - t, 3)
        if not rep.reconciles:  # a bug of ours, never of the data: refuse to commit a lossy run
            raise AssertionError(f"{spec.name}: read {rep.read} ≠ loaded {rep.loaded} + quarantined {rep.quarantined}")
        return rep

    # -- entity sources -----------------------------------------------------------------------------------
    def _entity(self, spec: Source) -> SourceReport:
        entity = ENTITIES[spec.entity]
        path = self.manifest.resolve(spec.path)
        self.progress(spec.name, "read")
        table, skipped = _filtered(read_table(spec, path), spec)
        table.frame = _with_templates(table.frame, spec.templates)
        n = table.frame.num_rows
        rep = SourceReport(spec.name, spec.entity, str(path), read=n, skipped=skipped)
        self.progress(spec.name, "prepare")
        extra: dict[str, object] = {"row_no": np.arange(1, n + 1, dtype=np.int64)}
        repaired = np.zeros(n, dtype=bool)
        place = spec.place
        if place and place.geometry:
            crs = self._crs(spec.name, place.crs, table.crs)
            geoms, reason, detail, repaired = prepare_geometry(table.geometry, crs, entity.geometry)
            for i, why in table.unreadable.items():  # GEOS could not read it at all (a ring not closed, NaN)
                reason[i], detail[i] = "geometry-invalid", f"unreadable geometry: {why}"
            extra["geom_wkb"] = pa.array(shapely.to_wkb(geoms), type=pa.binary())
            extra["place_reason"], extra["place_detail"] = reason, detail
        elif place and place.x:
            crs = self._crs(spec.name, place.crs, "EPSG:4326")
            xs, ys = (pd.Series(table.column(c).to_numpy(zero_copy_only=False)) for c in (place.x, place.y))
            lon, lat, reason, detail = prepare_xy(xs, ys, crs)
            extra["lon"], extra["lat"] = lon, lat
            extra["place_reason"], extra["place_detail"] = reason, detail
        elif place and place.address:
            if self._buildings is None:
                self._buildings = BuildingIndex.load(self.db)
            addr, rep.address_seconds = match_addresses(
                self._buildings, pc.utf8_trim_whitespace(table.column(place.address)), place.locale)
            rep.address_seconds = {k: round(v, 3) for k, v in rep.address_seconds.items()}
            stage = addr.column("stage")
            rep.addresses = {k: int(v) for k, v in
                             pd.Series(stage.to_numpy(zero_copy_only=False)).value_counts().items()}
            extra["addr_key"], extra["match_building"] = addr.column("key"), addr.column("building_id")
            blank = pc.is_null(addr.column("norm"))
            ambiguous = pc.fill_null(pc.equal(stage, "ambiguous"), False)
            extra["place_reason"] = pc.if_else(blank, "address-missing",
                                               pc.if_else(ambiguous, "address-ambiguous", pa.scalar(None, pa.string())))
            extra["place_detail"] = pc.if_else(blank, f"{place.address} is empty", addr.column("detail"))
            for fname, part in (("unit_no", "unit"), ("room", "room")):
                if fname in entity.field_map and fname not in spec.columns:
                    extra[fname] = addr.column(part)
        if spec.entity == "buildings" and "address" in spec.columns:
            extra["addr_key"] = building_keys(pc.utf8_trim_whitespace(table.column(spec.columns["address"]))).column("key")
        for f in entity.fields:
            if f.type == "multi" and f.name in spec.columns:
                extra[f.name], extra[f"{f.name}__bad"] = _multi(table.column(spec.columns[f.name]), f.vocab, self._terms,
                                                                spec.values.get(f.name))
        self.progress(spec.name, "place")
        sql, params = self._stage_sql(spec, entity, extra)
        # the source's own value map, beside the built-in vocabularies (lower-cased, as those are matched)
        values = pd.DataFrame([(f, str(label).lower(), code) for f, m in spec.values.items()
                               for label, code in m.items()], columns=["field", "label", "code"])
        with _registered(self.db, raw_src=table.frame, extra_src=pa.table({k: _arrow(v) for k, v in extra.items()}),
                         values_src=values):
            self.db.execute(f"CREATE OR REPLACE TEMP TABLE stage AS {sql}", params)
        self._place(spec, entity)
        self._judge(spec, entity)
        self.progress(spec.name, "load")
        self._quarantine(spec, table, rep)
        cols = entity_columns(entity)
        hashed = [c for c, _ in cols if c not in ("id", "source", "source_id", "row_hash", "ingest_run", "geom_3857")]
        select = []
        for c, t in cols:
            if c == "row_hash":
                select.append("CAST(hash(" + ", ".join(_hashable(x) for x in hashed) + ") AS VARCHAR)")
            elif c == "id":
                select.append("source || ':' || source_id")
            elif c == "geom_3857":
                select.append("ST_Transform(geom, 'EPSG:4326', 'EPSG:3857', always_xy := true)")
            else:
                select.append(f"CAST({q(c)} AS {t})")
        self.db.execute("CREATE OR REPLACE TEMP TABLE incoming AS SELECT "
                        + ", ".join(f"{e} AS {q(c)}" for e, (c, _) in zip(select, cols))
                        + " FROM judged WHERE reason IS NULL")
        rep.inserted, rep.updated, rep.unchanged = self._upsert(entity.name, "id")
        if spec.entity == "buildings":
            self._buildings = None  # the address matcher's index is built again from the new buildings
        rep.loaded = rep.inserted + rep.updated + rep.unchanged
        rep.resolved = self._resolve(spec)
        if repaired.any():
            with _registered(self.db, repaired_src=pa.table({"row_no": np.flatnonzero(repaired) + 1})):
                rep.repaired = int(self.db.query("SELECT count(*) FROM judged JOIN repaired_src USING (row_no) "
                                                 "WHERE reason IS NULL")[0][0])
        self._drop("judged", "incoming", "changes")
        return rep

    def _drop(self, *tables: str) -> None:
        for t in tables:
            self.db.execute(f"DROP TABLE IF EXISTS {q(t)}")

    def _stage_sql(self, spec: Source, entity: Entity, extra: dict) -> tuple[str, list]:
        """SQL typing the canonical fields of raw_src ⨝ extra_src; raw text kept beside each parsed value."""
        params: list = []
        ids = [f"trim(r.{q(c)})" for c in spec.id_columns]
        inner = ["x.row_no",
                 f"CASE WHEN {' OR '.join(f'{i} = {chr(39) * 2}' for i in ids)} THEN NULL "
                 f"ELSE concat_ws('|', {', '.join(ids)}) END AS source_id"]
        for f in entity.fields:
            if f.name in extra:
                inner.append(f"CAST(x.{q(f.name)} AS VARCHAR) AS {q(f.name)}")
                if f.type == "multi":
                    inner.append(f"CAST(x.{q(f.name + '__bad')} AS VARCHAR) AS {q(f.name + '__bad')}")
            elif f.name in spec.columns:
                inner.append(f"NULLIF(trim(r.{q(spec.columns[f.name])}), '') AS {q(f.name)}")
            elif f.name in spec.constants:
                inner.append(f"CAST(? AS VARCHAR) AS {q(f.name)}")
                params.append(spec.constants[f.name])
            else:
                inner.append(f"CAST(NULL AS VARCHAR) AS {q(f.name)}")
        for name in ("lon", "lat", "addr_key", "match_building", "place_reason", "place_detail"):
            if name in extra and name not in entity.field_map:  # all-None columns arrive untyped: cast
                inner.append(f"CAST(x.{name} AS {'DOUBLE' if name in ('lon', 'lat') else 'VARCHAR'}) AS {name}")
        if "geom_wkb" in extra:
            inner.append("ST_GeomFromWKB(x.geom_wkb) AS geom")
        outer = ["t.row_no", "t.source_id", "CAST(? AS VARCHAR) AS source", "CAST(? AS VARCHAR) AS ingest_run"]
        params += [spec.name, self.run_id]
        joins, codes = [], {}
        for i, f in enumerate(entity.fields):
            if f.type in ("category", "bool"):
                raw = f"t.{q(f.name)}"
                joins.append(f"LEFT JOIN vocab v{i} ON v{i}.vocab = '{f.vocab}' AND v{i}.label = lower({raw})")
                codes[f.name] = f"v{i}.code"
                if f.name in spec.values:  # the source's own map first
                    joins.append(f"LEFT JOIN values_src s{i} ON s{i}.field = '{f.name}' AND s{i}.label = lower({raw})")
                    codes[f.name] = f"coalesce(s{i}.code, v{i}.code)"
        for child, parent in _two_level(entity):  # an event's class, when not delivered, is its item type's
            codes[parent.name] = (f"CASE WHEN t.{q(parent.name)} IS NULL THEN split_part({codes[child.name]}, '.', 1) "
                                  f"ELSE {codes[parent.name]} END")
        for i, f in enumerate(entity.fields):
            raw = f"t.{q(f.name)}"
            if f.type in ("category", "bool"):
                code = codes[f.name]
                expr = code if f.type == "category" else f"CAST({code} AS BOOLEAN)"
            elif f.type == "int":
                expr = f"COALESCE(TRY_CAST({raw} AS BIGINT), CAST(round(TRY_CAST({raw} AS DOUBLE)) AS BIGINT))"
            elif f.type == "float":
                expr = f"TRY_CAST({raw} AS DOUBLE)"
            elif f.type in ("timestamp", "date"):
                expr = f"COALESCE(TRY_CAST({raw} AS TIMESTAMP), try_strptime({raw}, {_sql_list(DATE_FORMATS)}))"
                if f.name in spec.formats:  # the source's own layouts first (day-first dates would be ambiguous)
                    expr = f"COALESCE(try_strptime({raw}, CAST(? AS VARCHAR[])), {expr})"
                    params.append(list(spec.formats[f.name]))
                if f.type == "date":
                    expr = f"CAST({expr} AS DATE)"
            else:
                expr = raw
            outer += [f"{expr} AS {q(f.name)}", f"{raw} AS {q(f.name + '__raw')}"]
            if f.type == "multi":
                outer.append(f"t.{q(f.name + '__bad')}" if f.name in extra else
                             f"CAST(NULL AS VARCHAR) AS {q(f.name + '__bad')}")
        outer += [f"t.{name}" for name in ("lon", "lat", "addr_key", "match_building", "place_reason", "place_detail",
                                           "geom")
                  if (name in extra and name not in entity.field_map) or (name == "geom" and "geom_wkb" in extra)]
        sql = (f"WITH t AS (SELECT {', '.join(inner)} FROM raw_src r POSITIONAL JOIN extra_src x) "
               f"SELECT {', '.join(outer)} FROM t {' '.join(joins)}")
        return sql, params

    def _place(self, spec: Source, entity: Entity) -> None:
        """Add building / grid → district codes and geometry to `stage`, as table `placed`."""
        codes = ", ".join(f"g.{c}" for c in PLACEMENT)
        place = spec.place
        if place is None:  # placed through a reference (device readings → their device)
            field_, table, match, ours, _ = LINKS[spec.entity][0]
            self.db.execute(f"""CREATE OR REPLACE TEMP TABLE placed AS
                SELECT s.* EXCLUDE ({q(field_)}), r.id AS {q(field_)}, {', '.join(f'r.{c}' for c in PLACEMENT)},
                       r.lon, r.lat, r.geom
                FROM stage s LEFT JOIN {_first_by(table, match)} r ON r.{q(match)} = s.{q(ours)}""")
            return
        if place.address:
            # Rows take their building's codes and point; entities that record the building keep its id.
            keep = "s.* EXCLUDE (building_id), b.id AS building_id" if "building_id" in entity.field_map else "s.*"
            self.db.execute(f"""CREATE OR REPLACE TEMP TABLE placed AS
                SELECT {keep}, {', '.join(f'b.{c}' for c in PLACEMENT)}, b.lon, b.lat, ST_Point(b.lon, b.lat) AS geom
                FROM stage s LEFT JOIN buildings b ON b.id = s.match_building""")
        else:
            if place.geometry:
                point = "geom" if entity.geometry == "point" else "ST_PointOnSurface(geom)"
                self.db.execute(f"""CREATE OR REPLACE TEMP TABLE stage AS
                    SELECT s.*, ST_X({point}) AS lon, ST_Y({point}) AS lat FROM stage s""")
            else:
                self.db.execute("""CREATE OR REPLACE TEMP TABLE stage AS
                    SELECT s.*, CASE WHEN s.place_reason IS NULL THEN ST_Point(s.lon, s.lat) END AS geom FROM stage s""")
            # One spatial join against the grids; a point on a shared edge goes to the lowest code.
            self.db.execute("""CREATE OR REPLACE TEMP TABLE grid_of AS
                SELECT s.row_no, min(u.code) AS grid FROM stage s
                JOIN (SELECT code, geom FROM admin_units WHERE level = 'grid') u
                  ON ST_Intersects(u.geom, ST_Point(s.lon, s.lat))
                WHERE s.place_reason IS NULL GROUP BY s.row_no""")
            self.db.execute(f"""CREATE OR REPLACE TEMP TABLE placed AS
                SELECT s.*, {codes} FROM stage s LEFT JOIN grid_of USING (row_no)
                LEFT JOIN admin_units g ON g.level = 'grid' AND g.code = grid_of.grid""")
        for field_, table, match, ours, _ in LINKS.get(spec.entity, []):
            self.db.execute(f"""CREATE OR REPLACE TEMP TABLE placed AS
                SELECT p.* EXCLUDE ({q(field_)}), r.id AS {q(field_)} FROM placed p
                LEFT JOIN {_first_by(table, match)} r ON r.{q(match)} = p.{q(ours)}""")

    def _judge(self, spec: Source, entity: Entity) -> None:
        """Give every row of `placed` its quarantine reason (NULL = loads) and a detail naming every failing check.

        The reason is the first failing check; no check repeats an earlier one's cause (a row without
        coordinates is not also "outside the district"), so that each problem is counted once.
        """
        checks: list[tuple[str, str, str, str]] = [
            ("source_id IS NULL", "id-missing", "'id column(s) empty'", "id"),
            ("source_id IS NOT NULL AND dup_rank > 1", "duplicate-id",
             "'id ' || source_id || ' already on row ' || CAST(first_row AS VARCHAR)", "id"),
        ]
        address_field = spec.place and spec.place.address and next((f for f, c in spec.columns.items() if c == spec.place.address), None)
        for f in entity.fields:
            raw = q(f.name + "__raw")
            if f.required and f.name != address_field and f.name not in ("device_ref",):
                # a class is not missing where an item type is delivered (an unknown one is its own problem)
                also = "".join(f" AND {q(c.name + '__raw')} IS NULL" for c, p in _two_level(entity) if p is f)
                checks.append((f"{raw} IS NULL{also}", "required-missing", f"'{f.name} is empty'", f.name))
            if f.type in ("category", "bool"):
                checks.append((f"{raw} IS NOT NULL AND {q(f.name)} IS NULL", "unknown-category",
                               f"'{f.name}=' || {raw}", f.name))
            elif f.type == "multi":
                checks.append((f"{q(f.name + '__bad')} IS NOT NULL", "unknown-category",
                               f"'{f.name}=' || {q(f.name + '__bad')}", f.name))
            elif f.type in ("int", "float"):
                checks.append((f"{raw} IS NOT NULL AND {q(f.name)} IS NULL", "value-invalid",
                               f"'{f.name}=' || {raw}", f.name))
            elif f.type in ("timestamp", "date"):
                checks.append((f"{raw} IS NOT NULL AND {q(f.name)} IS NULL", "date-invalid",
                               f"'{f.name}=' || {raw}", f.name))
        for child, parent in _two_level(entity):
            c, p = q(child.name), q(parent.name)
            checks.append((f"{c} IS NOT NULL AND {p} IS NOT NULL AND split_part({c}, '.', 1) <> {p}", "class-mismatch",
                           f"'{child.name}=' || {q(child.name + '__raw')} || ' is under ' || split_part({c}, '.', 1) "
                           f"|| ', not ' || {p}", child.name))
        if spec.place is None:
            field_, _, _, ours, _ = LINKS[spec.entity][0]
            checks.append((f"{q(field_)} IS NULL", "reference-unknown",
                           f"'no {ours}=' || coalesce({q(ours)}, '')", ours))
        else:
            checks.append(("place_reason IS NOT NULL", "place_reason", "place_detail", "place"))
            if spec.place.address:
                checks.append(("place_reason IS NULL AND grid_code IS NULL", "address-unmatched",
                               "'no building at ' || coalesce(addr_key, '(unparsed address)')", "place"))
            else:
                checks.append(("place_reason IS NULL AND grid_code IS NULL", "outside-district",
                               "'outside every grid at ' || round(lon, 6) || ',' || round(lat, 6)", "place"))
        reason = "CASE " + " ".join(f"WHEN {c} THEN {r if r == 'place_reason' else repr(r)}"
                                    for c, r, _, _ in checks) + " END"
        detail = "NULLIF(concat_ws('; ', " + ", ".join(f"CASE WHEN {c} THEN {d} END" for c, _, d, _ in checks) + "), '')"
        self.db.execute(f"""CREATE OR REPLACE TEMP TABLE judged AS SELECT *, {reason} AS reason, {detail} AS detail
            FROM (SELECT *, row_number() OVER (PARTITION BY source_id ORDER BY row_no) AS dup_rank,
                         min(row_no) OVER (PARTITION BY source_id) AS first_row FROM placed)""")
        self._drop("stage", "placed", "grid_of")
        if self.check:
            self._count_problems(spec, entity, checks)

    def _count_problems(self, spec: Source, entity: Entity, checks: list[tuple[str, str, str, str]]) -> None:
        """`brain check`: every failing check of the source's rows, per field, with examples and unknown values."""
        for cond, reason, detail, fname in checks:
            if reason == "place_reason":
                rows = self.db.query(f"SELECT place_reason, count(*), list(place_detail ORDER BY row_no)[1:3] "
                                     f"FROM judged WHERE {cond} GROUP BY 1 ORDER BY 1")
            else:
                rows = [(reason, *r) for r in self.db.query(
                    f"SELECT count(*), list({detail} ORDER BY row_no)[1:3] FROM judged WHERE {cond}") if r[0]]
            for why, n, examples in rows:
                problem = {"source": spec.name, "field": fname, "check": why, "rows": int(n),
                           "examples": [e for e in examples if e is not None]}
                f = entity.field_map.get(fname)
                if why == "unknown-category" and f is not None:
                    column = q(fname + "__bad") if f.type == "multi" else q(fname + "__raw")
                    counts: dict[str, int] = {}
                    for value, k in self.db.query(f"SELECT {column}, count(*) FROM judged WHERE {cond} GROUP BY 1"):
                        for label in (re.split(r";", value) if f.type == "multi" else [value]):
                            counts[label] = counts.get(label, 0) + int(k)
                    problem["unknown"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:50])
                    problem["codes"] = self.manifest.vocab.codes(f.vocab)
                self.problems.append(problem)

    # -- shared steps -------------------------------------------------------------------------------------
    def _quarantine(self, spec, table, rep: SourceReport) -> None:
        """Keep every rejected row with its source, raw record and reason (upserted: re-runs add nothing)."""
        bad = self.db.frame("SELECT row_no, source_id, reason, detail FROM judged WHERE reason IS NOT NULL ORDER BY row_no")
        idx = bad["row_no"].to_numpy() - 1
        records = table.frame.take(idx).to_pylist()
        if table.geometry is not None:
            wkt = shapely.to_wkt(np.asarray(table.geometry, dtype=object)[idx], rounding_precision=7)
            for r, g in zip(records, wkt):
                r["geometry"] = None if g is None else g[:20000]
        if table.malformed:  # lines the CSV parser could not split into the header's columns
            rep.read += len(table.malformed)
            bad = pd.concat([bad, pd.DataFrame({
                "row_no": [m["line"] for m in table.malformed], "source_id": None, "reason": "row-malformed",
                "detail": [m.get("detail") or f"expected {m['expected']} columns, got {m['actual']}"
                           for m in table.malformed]})],
                ignore_index=True)
            records += [{"line": m["text"]} for m in table.malformed]
        rep.quarantined = len(bad)
        rep.reasons = {k: int(v) for k, v in bad["reason"].value_counts().sort_index().items()}
        if bad.empty:
            return
        bad["raw"] = [json.dumps(r, ensure_ascii=False) for r in records]
        bad["raw_hash"] = [hashlib.sha1(f"{r}|{why}".encode()).hexdigest() for r, why in zip(bad["raw"], bad["reason"])]
        bad["source"], bad["entity"], bad["run"] = spec.name, getattr(spec, "entity", "admin_units"), self.run_id
        with _registered(self.db, q_src=bad):
            # a row delivered again as it was stays one row (and is open again if it had been resolved)
            self.db.execute("""UPDATE quarantine SET last_run = q.run, row_no = q.row_no, detail = q.detail,
                               resolved_run = NULL, resolved_at = NULL, resolution = NULL
                               FROM q_src q WHERE quarantine.source = q.source AND quarantine.raw_hash = q.raw_hash""")
            self.db.execute("""INSERT INTO quarantine (source, entity, row_no, source_id, reason, detail, raw,
                               raw_hash, first_run, last_run) SELECT source, entity, row_no, source_id, reason,
                               detail, raw, raw_hash, run, run FROM q_src q WHERE NOT EXISTS (SELECT 1 FROM
                               quarantine x WHERE x.source = q.source AND x.raw_hash = q.raw_hash)""")

    def _resolve(self, spec) -> int:
        """Mark resolved the open quarantine rows of this source that this run did not quarantine again.

        `loaded` when this run loaded a row of the same id (the department fixed it), else `gone` (no longer
        delivered, or quarantined now for another reason: that row is the open one). Kept as history. Runs while
        the source's `judged` rows are still there.
        """
        where = "source = ? AND resolved_run IS NULL AND last_run <> ?"
        n = int(self.db.query(f"SELECT count(*) FROM quarantine WHERE {where}", [spec.name, self.run_id])[0][0])
        if n:
            self.db.execute(f"""UPDATE quarantine SET resolved_run = ?, resolved_at = ?, resolution = CASE WHEN
                EXISTS (SELECT 1 FROM judged j WHERE j.reason IS NULL AND j.source_id = quarantine.source_id)
                THEN 'loaded' ELSE 'gone' END WHERE {where}""", [self.run_id, datetime.now(), spec.name, self.run_id])
        return n

    def _fits_level(self, spec: AdminSource, parent_level: str | None) -> None:
        """Refuse a source whose rows are not all of its declared level (never load them as that level).

        A row misfits when its parent is a unit of the same source (a grid is never a grid's parent), or a unit
        already loaded at another level than the one above. One layer holding every level, listed once per
        level without a `filter`, is the usual cause.
        """
        rows = self.db.query(
            """SELECT j.code, j.name, j.parent_code, CASE WHEN j.parent_code IN (SELECT code FROM judged)
                      THEN ? ELSE u.level END FROM judged j LEFT JOIN admin_units u ON u.code = j.parent_code
               WHERE j.parent_code IS NOT NULL AND (j.parent_code IN (SELECT code FROM judged WHERE code IS NOT NULL)
                     OR (u.code IS NOT NULL AND (CAST(? AS VARCHAR) IS NULL OR u.level <> ?)))
               ORDER BY j.row_no""", [spec.level, parent_level, parent_level])
        if rows:
            code, name, parent, level = rows[0]
            raise SourceError(f"{len(rows)} of its rows are not of level {spec.level}: e.g. {code} ({name}) lies in "
                              f"{parent}, a {level}. Give each level its own source: `filter: {{COLUMN: VALUE}}` "
                              "keeps the rows of one level of a shared layer", spec.name)

    def _upsert(self, table: str, key: str) -> tuple[int, int, int]:
        """Merge temp table `incoming` into `table` by `key`: (inserted, updated, unchanged)."""
        t, k = q(table), q(key)
        self.db.execute(f"""CREATE OR REPLACE TEMP TABLE changes AS SELECT i.{k} AS key,
            CASE WHEN t.{k} IS NULL THEN 'insert' WHEN t.row_hash IS DISTINCT FROM i.row_hash THEN 'update'
                 ELSE 'same' END AS action
            FROM incoming i LEFT JOIN {t} t ON t.{k} = i.{k}""")
        counts = dict(self.db.query("SELECT action, count(*) FROM changes GROUP BY action"))
        if counts.get("update"):
            self.db.execute(f"DELETE FROM {t} WHERE {k} IN (SELECT key FROM changes WHERE action = 'update')")
        if counts.get("update") or counts.get("insert"):
            self.db.execute(f"INSERT INTO {t} SELECT i.* FROM incoming i JOIN changes c ON c.key = i.{k} "
                            f"WHERE c.action <> 'same'")
        return counts.get("insert", 0), counts.get("update", 0), counts.get("same", 0)

    # -- admin units --------------------------------------------------------------------------------------
    def _admin(self, spec: AdminSource) -> SourceReport:
        path = self.manifest.resolve(spec.path)
        self.progress(spec.name, "read")
        table, skipped = _filtered(read_table(spec, path), spec)
        n = table.frame.num_rows
        rep = SourceReport(spec.name, "admin_units", str(path), read=n, skipped=skipped)
        self.progress(spec.name, "prepare")
        crs = self._crs(spec.name, spec.crs, table.crs)
        geoms, reason, detail, repaired = prepare_geometry(table.geometry, crs, "polygon")
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        area = [abs(geod.geometry_area_perimeter(g)[0]) if g is not None and r is None else None
                for g, r in zip(geoms, reason)]
        extra = pa.table({"row_no": np.arange(1, n + 1, dtype=np.int64),
                          "geom_wkb": pa.array(shapely.to_wkb(geoms), type=pa.binary()),
                          "area_m2": pa.array(area, type=pa.float64()), "place_reason": _arrow(reason),
                          "place_detail": _arrow(detail)})
        level = LEVELS.index(spec.level)
        parent_level = LEVELS[level - 1] if level else None

        def col(key):
            return f"NULLIF(trim(r.{q(spec.columns[key])}), '')" if key in spec.columns else "CAST(NULL AS VARCHAR)"

        own = [f"w.code AS {c}" if c == f"{spec.level}_code" else
               (f"p.{c}" if LEVELS.index(c[:-5]) < level else f"CAST(NULL AS VARCHAR) AS {c}") for c in PLACEMENT]
        self.progress(spec.name, "place")
        with _registered(self.db, raw_src=table.frame, extra_src=extra):
            self.db.execute(f"""CREATE OR REPLACE TEMP TABLE judged AS SELECT *,
                CASE WHEN code IS NULL THEN 'id-missing' WHEN dup_rank > 1 THEN 'duplicate-id'
                     WHEN place_reason IS NOT NULL THEN place_reason
                     WHEN {'parent_ok IS NULL' if parent_level else 'FALSE'} THEN 'parent-unknown' END AS reason,
                CASE WHEN code IS NULL THEN 'code empty'
                     WHEN dup_rank > 1 THEN 'code ' || code || ' already on row ' || CAST(first_row AS VARCHAR)
                     WHEN place_reason IS NOT NULL THEN place_detail
                     ELSE 'no {parent_level} ' || coalesce(parent_code, '(empty)') END AS detail
                FROM (SELECT w.*, w.code AS source_id, {', '.join(own)}, p.code AS parent_ok,
                        row_number() OVER (PARTITION BY w.code ORDER BY w.row_no) AS dup_rank,
                        min(w.row_no) OVER (PARTITION BY w.code) AS first_row
                      FROM (SELECT x.row_no, NULLIF(trim(r.{q(spec.id)}), '') AS code, {col('name')} AS name,
                                   {col('parent_code')} AS parent_code, ST_GeomFromWKB(x.geom_wkb) AS geom,
                                   x.area_m2, CAST(x.place_reason AS VARCHAR) AS place_reason,
                                   CAST(x.place_detail AS VARCHAR) AS place_detail, ? AS source, ? AS level,
                                   ? AS run
                            FROM raw_src r POSITIONAL JOIN extra_src x) w
                      LEFT JOIN admin_units p ON p.level = ? AND p.code = w.parent_code)""",
                            [spec.name, spec.level, self.run_id, parent_level])
        self._fits_level(spec, parent_level)
        self.progress(spec.name, "load")
        self._quarantine(spec, table, rep)
        self.db.execute(f"""CREATE OR REPLACE TEMP TABLE incoming AS SELECT code, name, level, parent_code,
            {', '.join(PLACEMENT)}, source,
            CAST(hash(code, name, level, parent_code, ST_AsWKB(geom)) AS VARCHAR) AS row_hash, run AS ingest_run,
            area_m2, geom, ST_Transform(geom, 'EPSG:4326', 'EPSG:3857', always_xy := true) AS geom_3857
            FROM judged WHERE reason IS NULL""")
        rep.inserted, rep.updated, rep.unchanged = self._upsert("admin_units", "code")
        rep.loaded = rep.inserted + rep.updated + rep.unchanged
        rep.resolved = self._resolve(spec)
        rep.repaired = int(sum(1 for r, fixed in zip(reason, repaired) if fixed and r is None))
        self._drop("judged", "incoming", "changes")
        return rep

    # -- rasters and bookkeeping --------------------------------------------------------------------------
    def _raster(self, spec) -> None:
        """Register a raster's extent and bands (the pixels stay in the file)."""
        import rasterio

        path = self.manifest.resolve(spec.path)
        with rasterio.open(path) as src:
            b = src.bounds
            row = [spec.name, spec.kind, str(path), src.crs.to_string() if src.crs else None, src.width, src.height,
                   src.count, b.left, b.bottom, b.right, b.top, self.run_id]
        self.db.execute("DELETE FROM rasters WHERE name = ?", [spec.name])
        self.db.execute("INSERT INTO rasters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def _record(self, report: RunReport) -> None:
        now = datetime.now()
        for s in report.sources:
            self.db.execute("INSERT INTO ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [report.run_id, report.manifest, s.name, s.entity, s.path, report.started_at, now, s.read,
                             s.loaded, s.inserted, s.updated, s.unchanged, s.quarantined,
                             json.dumps(s.reasons, ensure_ascii=False)])


@contextlib.contextmanager
def _registered(db: Backend, **frames):
    """Expose frames (pandas or Arrow) to SQL by name for the block, and always withdraw them after."""
    for name, frame in frames.items():
        db.register(name, frame)
    try:
        yield
    finally:
        for name in frames:
            db.unregister(name)


def _first_by(table: str, column: str) -> str:
    """A subquery with one row of `table` per non-null `column` value (the lowest id wins ties)."""
    return (f"(SELECT * FROM {q(table)} WHERE {q(column)} IS NOT NULL "
            f"QUALIFY row_number() OVER (PARTITION BY {q(column)} ORDER BY id) = 1)")


def _hashable(col: str) -> str:
    return "ST_AsWKB(geom)" if col == "geom" else q(col)


def _sql_list(values: list[str]) -> str:
    """A list literal of our own constant strings (never user input)."""
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _filtered(table: Table, spec) -> tuple[Table, int]:
    """The rows the source's `filter` keeps (trimmed values compared as text), and how many it left out."""
    if not spec.filter:
        return table, 0
    keep = None
    for column, accepted in spec.filters.items():
        values = pc.utf8_trim_whitespace(table.column(column).cast(pa.string()))
        hit = pc.fill_null(pc.is_in(values, value_set=pa.array(accepted, type=pa.string())), False)
        keep = hit if keep is None else pc.and_(keep, hit)
    idx = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
    renumber = {int(old): new for new, old in enumerate(idx)}
    out = Table(table.frame.take(pa.array(idx)), None if table.geometry is None else table.geometry[idx], table.crs,
                table.malformed, {renumber[i]: why for i, why in table.unreadable.items() if i in renumber})
    return out, table.frame.num_rows - len(idx)


def _with_templates(frame: pa.Table, templates: list[str]) -> pa.Table:
    """The frame with one more text column per template ("{street} {number}"), named by the template itself.

    Missing values count as empty; a result that is blank after trimming is empty (so a required field built from
    empty columns is `required-missing`, as one column would be).
    """
    for template in templates:
        pieces = []
        for literal, name, _, _ in string.Formatter().parse(template):
            if literal:
                pieces.append(pa.scalar(literal))
            if name is not None:
                pieces.append(frame.column(name).combine_chunks().cast(pa.string()))
        joined = pc.binary_join_element_wise(*pieces, pa.scalar(""), null_handling="replace", null_replacement="")
        frame = frame.append_column(template, pc.utf8_trim_whitespace(joined))
    return frame


def _two_level(entity: Entity) -> list[tuple]:
    """(item field, class field) pairs of two-level vocabularies (events: type under class)."""
    by_vocab = {f.vocab: f for f in entity.fields if f.vocab}
    return [(f, by_vocab[TOP_LEVEL[f.vocab]]) for f in entity.fields
            if f.vocab in TOP_LEVEL and TOP_LEVEL[f.vocab] in by_vocab]


def _lookup(own: Vocabularies, db_terms: Vocabularies) -> list[tuple[str, str, str]]:
    """Spelling → code rows: the manifest's vocabularies first, then terms other deliveries stored; one code per
    spelling (the join on them must never multiply a row)."""
    seen: dict[tuple[str, str], str] = {}
    for vocab, label, code in [*own.lookup_rows(), *db_terms.lookup_rows()]:
        seen.setdefault((vocab, label), code)
    return [(v, label, code) for (v, label), code in seen.items()]


def _multi(values: pa.Array, vocab: str, terms: list[tuple[str, str, str]],
           own: dict[str, str] | None = None) -> tuple[pa.Array, pa.Array]:
    """Split ';'/'、'-separated labels into ';'-joined codes; the unknown labels go to the second array.

    `terms`: the (vocab, spelling, code) lookup rows; `own`: the source's value map (manifest `values:`),
    tried before them.
    """
    lookup = {label: code for v, label, code in terms if v == vocab}
    lookup |= {str(label).lower(): code for label, code in (own or {}).items()}
    enc = pc.dictionary_encode(values)
    codes, bad = [], []
    for v in enc.dictionary.to_pylist():
        parts = [p.strip() for p in re.split(r"[;；、,，]", v or "") if p.strip()]
        found = [lookup.get(p.lower()) for p in parts]
        codes.append(";".join(sorted({c for c in found if c})) or None)
        bad.append(";".join(p for p, c in zip(parts, found) if c is None) or None)
    return (pa.array(codes, type=pa.string()).take(enc.indices), pa.array(bad, type=pa.string()).take(enc.indices))


def _arrow(values) -> pa.Array:
    """A column for an Arrow table: numpy object arrays of str/None become string arrays."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    arr = np.asarray(values)
    if arr.dtype == object:
        return pa.array(arr.tolist(), type=pa.string())
    return pa.array(arr)


@contextlib.contextmanager
def _scratch(source: Backend | None):
    """A DuckDB file in a temporary folder holding `source`'s current state (empty without one), removed after."""
    import tempfile

    from brain.backend import DuckDBBackend
    from brain.transfer import copy_database

    with tempfile.TemporaryDirectory(prefix="brain-stage-") as tmp:
        stage = DuckDBBackend(Path(tmp) / "stage.duckdb")
        try:
            if source is not None:
                copy_database(source, stage)
            yield stage
        finally:
            stage.close()


def check(manifest: Manifest, manifest_path: str = "", against: Backend | None = None,
          progress: ProgressFn | None = None) -> tuple[RunReport, list[dict]]:
    """Run the manifest into a scratch database and return (report, every problem): nothing is written.

    `against`: the database a real run would load into; its current state is copied into the scratch database
    first, so that references (readings → devices) and ids resolve as they would.
    """
    with _scratch(against) as stage:
        run = Ingest(stage, manifest, manifest_path, progress, check=True)
        report = run.run()
    return report, run.problems


def ingest(db: Backend, manifest: Manifest, manifest_path: str = "", progress: ProgressFn | None = None) -> RunReport:
    """Run `manifest` into `db` and return the report."""
    if db.dialect == "duckdb":
        return Ingest(db, manifest, manifest_path, progress).run()
    return _staged(db, manifest, manifest_path, progress)


def _staged(db: Backend, manifest: Manifest, manifest_path: str, progress: ProgressFn | None) -> RunReport:
    """Ingest into a server database with DuckDB as the engine: pull its current state into a scratch DuckDB
    file (so re-runs stay idempotent and flow-back updates), run the same pipeline there, and send the result
    back with COPY in one transaction."""
    from brain.transfer import copy_database

    init_schema(db)
    if progress:  # the round trip takes as long as the run itself on a large district: show it
        progress("server → stage", "read")
    with _scratch(db) as stage:
        before = data_version(stage)
        report = Ingest(stage, manifest, manifest_path, progress).run()
        # A run that changed no canonical row (the data version says so) may still have quarantined new
        # rows or replaced a raster: send those and its own record, not the whole district again.
        unchanged = ("ingest_runs", "quarantine", "rasters")
        if progress:
            progress("stage → server", "load")
        with db.transaction():
            copy_database(stage, db, tables=None if data_version(stage) != before else unchanged)
    report.db = db.url
    return report
