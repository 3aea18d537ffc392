"""The ingest manifest: which files to read and how each maps onto the canonical model (YAML)."""

from __future__ import annotations

import string
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from brain.errors import ManifestError
from brain.model import ENTITIES, LEVELS
from brain.vocabulary import BUILTIN, Vocabularies, load_file

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "excel", ".xls": "excel", ".xlsm": "excel",
           ".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".shp": "shapefile", ".zip": "shapefile"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class Place(_Spec):
    """How a source's rows get a location: its geometry, x/y columns with a CRS, or an address column."""

    geometry: bool = False
    x: str | None = None
    y: str | None = None
    crs: str | None = Field(None, description="EPSG code (4326, 4490, 4547…) or gcj02 / bd09")
    address: str | None = None
    #: which address parser reads the column: zh (Chinese registers) or generic (street, number, staircase, flat)
    locale: Literal["zh", "generic"] = "zh"

    @model_validator(mode="before")
    @classmethod
    def _address_spec(cls, data):
        """`address: {column: 地址, locale: generic}` is the long form of `address: 地址` (locale zh)."""
        if isinstance(data, dict) and isinstance(data.get("address"), dict):
            spec = dict(data["address"])
            unknown = set(spec) - {"column", "locale"}
            if unknown or "column" not in spec:
                raise ValueError("address takes a column name, or {column: …, locale: zh | generic}"
                                 + (f", not {sorted(unknown)}" if unknown else ""))
            data = {**data, "address": spec["column"], **({"locale": spec["locale"]} if "locale" in spec else {})}
        return data

    @model_validator(mode="after")
    def _one_way(self):
        ways = [self.geometry, bool(self.x or self.y), bool(self.address)]
        if sum(ways) != 1:
            raise ValueError("place needs exactly one of: geometry: true | x + y (+ crs) | address")
        if (self.x is None) != (self.y is None):
            raise ValueError("place needs both x and y")
        return self


class FileSpec(_Spec):
    """Where a source's file is and how to open it."""

    name: str
    path: str
    format: Literal["csv", "excel", "geojson", "gpkg", "shapefile"] | None = None
    layer: str | None = None
    encoding: str = "utf-8"
    delimiter: str | None = None
    #: keep only rows whose column holds one of the values (one admin layer with a level column, say)
    filter: dict[str, str | list[str]] = {}

    @model_validator(mode="after")
    def _infer_format(self):
        if self.format is None:
            fmt = FORMATS.get(Path(self.path).suffix.lower())
            if fmt is None:
                raise ValueError(f"cannot infer the format of {self.path!r}: add format: csv|excel|geojson|gpkg|shapefile")
            self.format = fmt
        return self

    @property
    def filters(self) -> dict[str, list[str]]:
        """The row filter as column → accepted values."""
        return {c: [v] if isinstance(v, str) else list(v) for c, v in self.filter.items()}

    @property
    def is_geo(self) -> bool:
        """Whether the file carries geometries (read through pyogrio)."""
        return self.format in ("geojson", "gpkg", "shapefile")


class AdminSource(FileSpec):
    """A file of admin units of one level."""

    level: Literal["district", "street", "community", "grid"]
    id: str = "code"
    columns: dict[str, str] = {}
    crs: str | None = None

    @field_validator("columns")
    @classmethod
    def _known(cls, v):
        bad = set(v) - {"name", "parent_code"}
        if bad:
            raise ValueError(f"admin unit columns can map only name and parent_code, not {sorted(bad)}")
        return v


def template_columns(mapping: str) -> list[str]:
    """The file columns a mapping reads: itself, or the {names} of a template such as "{street} {number}"."""
    if "{" not in mapping:
        return [mapping]
    return [name for _, name, _, _ in string.Formatter().parse(mapping) if name is not None]


def _check_template(mapping: str) -> None:
    if "{" not in mapping and "}" not in mapping:
        return
    try:
        parts = list(string.Formatter().parse(mapping))
    except ValueError as exc:
        raise ValueError(f"template {mapping!r}: {exc} (write columns as {{name}}, and {{{{ for a brace)") from None
    names = [name for _, name, spec, conv in parts if name is not None]
    if not names or any(not n or spec or conv for _, n, spec, conv in parts if n is not None):
        raise ValueError(f"template {mapping!r}: name each column in braces, as in \"{{street}} {{number}}\"")


def _check_format(fmt: str) -> None:
    sample = datetime(2026, 9, 27, 14, 22, 5)
    try:
        ok = "%" in fmt and datetime.strptime(sample.strftime(fmt), fmt) is not None
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"date format {fmt!r} does not read back what it writes: use strptime codes, "
                         "as in '%d.%m.%Y %H:%M'")


class Source(FileSpec):
    """A file of one entity."""

    entity: str
    id: str | list[str]
    columns: dict[str, str] = {}
    constants: dict[str, str] = {}
    place: Place | None = None
    #: per field, delivered value → canonical code (for category, yes/no and multi fields)
    values: dict[str, dict[str, str]] = {}
    #: per date or timestamp field, strptime formats tried in order before the built-in layouts
    formats: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo):
        vocab = (info.context or {}).get("vocab", BUILTIN)
        entity = ENTITIES.get(self.entity)
        if entity is None:
            raise ValueError(f"unknown entity {self.entity!r}: one of {', '.join(ENTITIES)}")
        unknown = (set(self.columns) | set(self.constants)) - set(entity.field_map)
        if unknown:
            raise ValueError(f"{self.entity} has no field {sorted(unknown)}; fields: {', '.join(entity.field_map)}")
        if entity.placed_via and self.place is not None:
            raise ValueError(f"{self.entity} rows are placed at their {entity.placed_via} row; remove place")
        if entity.placed and not entity.placed_via and self.place is None:
            raise ValueError(f"{self.entity} rows must be placed: add place: (geometry | x/y/crs | address)")
        if self.place and self.place.geometry and not self.is_geo:
            raise ValueError(f"place: geometry needs a geometry file, not {self.format}")
        for mapping in [*self.columns.values(), *([self.place.address] if self.place and self.place.address else [])]:
            _check_template(mapping)
        for fname, mapping in self.values.items():
            f = entity.field_map.get(fname)
            if f is None or not f.vocab:
                coded = [x.name for x in entity.fields if x.vocab]
                raise ValueError(f"values: {fname!r} is not a coded field of {self.entity}; coded: {', '.join(coded)}")
            codes = vocab.codes(f.vocab)
            bad = sorted({code for code in mapping.values() if code not in codes})
            if bad:
                shown = ", ".join(codes[:40]) + (f" … ({len(codes)} codes)" if len(codes) > 40 else "")
                raise ValueError(f"values.{fname}: unknown code(s) {bad}; {fname} takes {shown}, or a code added "
                                 f"in a vocabulary file (README#vocabularies)")
        for fname, fmts in self.formats.items():
            f = entity.field_map.get(fname)
            if f is None or f.type not in ("date", "timestamp"):
                dated = [x.name for x in entity.fields if x.type in ("date", "timestamp")]
                raise ValueError(f"formats: {fname!r} is not a date field of {self.entity}; dates: {', '.join(dated)}")
            for fmt in fmts:
                _check_format(fmt)
        return self

    @property
    def templates(self) -> list[str]:
        """The templated mappings (columns built from several file columns), each once."""
        maps = [*self.columns.values(), *([self.place.address] if self.place and self.place.address else [])]
        return list(dict.fromkeys(m for m in maps if "{" in m))

    @property
    def id_columns(self) -> list[str]:
        """The id column(s); several are joined with '|' into one id."""
        return [self.id] if isinstance(self.id, str) else list(self.id)


class RasterSource(_Spec):
    """A raster (rainfall forecast, DEM) registered for later analysis."""

    name: str
    path: str
    kind: str = "raster"


class Manifest(_Spec):
    """A whole delivery: admin units, entity sources and rasters, paths relative to the manifest."""

    name: str = "manifest"
    #: deployment vocabulary files (README#vocabularies), extending the built-in codes and labels
    vocabularies: list[str] = []
    admin_units: list[AdminSource] = []
    sources: list[Source] = []
    rasters: list[RasterSource] = []
    base_dir: Path = Path(".")
    allow_outside: bool = False  # set by `brain ingest --allow-outside`, never by the manifest file itself
    _vocab: Vocabularies = PrivateAttr(default=BUILTIN)

    @property
    def vocab(self) -> Vocabularies:
        """The built-in vocabularies, extended by the manifest's vocabulary files."""
        return self._vocab

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in [*self.admin_units, *self.sources, *self.rasters]]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique; repeated: {dup}")
        return self

    def resolve(self, path: str) -> Path:
        """A manifest-relative path made absolute; it must lie in the manifest's folder (or below it).

        A delivery is one folder: a manifest naming /etc/os-release, or ../../ somewhere, would load files
        nobody delivered (their lines would be kept in quarantine). `--allow-outside` lifts the rule.
        """
        p = Path(path)
        p = p if p.is_absolute() else self.base_dir / p
        if not self.allow_outside:
            base, real = self.base_dir.resolve(), p.resolve()
            if real != base and base not in real.parents:
                raise ManifestError(f"path {path!r} lies outside the manifest's folder {base}: move the file into "
                                    "the delivery's folder, or pass --allow-outside to `brain ingest`")
        return p

    def ordered_sources(self) -> list[Source]:
        """Sources in load order: what others are matched against (buildings, organisations, devices) first."""
        rank = {"buildings": 0, "organisations": 1, "devices": 1, "people": 2, "events": 2, "party_members": 3,
                "device_readings": 3}
        return sorted(self.sources, key=lambda s: rank.get(s.entity, 2))

    def ordered_admin(self) -> list[AdminSource]:
        """Admin sources from district down to grid (parents before children)."""
        return sorted(self.admin_units, key=lambda s: LEVELS.index(s.level))


def load_manifest(path: str | Path, allow_outside: bool = False) -> Manifest:
    """Parse and validate a manifest file; raise ManifestError with the offending entry on failure.

    Every path must lie in the manifest's folder unless `allow_outside` (see Manifest.resolve).
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest is a mapping with admin_units, sources and rasters")
    data = {k: v for k, v in data.items() if k not in ("base_dir", "allow_outside")}  # not the file's to set
    vocab = _vocabularies(path, data, allow_outside)
    try:
        manifest = Manifest.model_validate({**data, "base_dir": path.resolve().parent, "allow_outside": allow_outside},
                                           context={"vocab": vocab})
        manifest._vocab = vocab
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        entry = _entry_name(data, first["loc"])
        raise ManifestError(f"{path}: {where}{f' ({entry})' if entry else ''}: {first['msg']}") from exc
    for spec in [*manifest.admin_units, *manifest.sources, *manifest.rasters]:
        try:
            manifest.resolve(spec.path)
        except ManifestError as exc:
            raise ManifestError(f"{path}: source {spec.name!r}: {exc}") from None
    return manifest


def _vocabularies(path: Path, data: dict, allow_outside: bool) -> Vocabularies:
    """The built-in vocabularies extended by the files the manifest lists (each checked against them)."""
    files = data.get("vocabularies") or []
    if isinstance(files, str):
        files = [files]
        data["vocabularies"] = files
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ManifestError(f"{path}: vocabularies: list the vocabulary files, as vocabularies: [codes.yaml]")
    where = Manifest(base_dir=path.resolve().parent, allow_outside=allow_outside)
    vocab = BUILTIN
    for f in files:
        try:
            vocab = vocab.extended(load_file(where.resolve(f), f))
        except ManifestError as exc:
            raise ManifestError(f"{path}: vocabularies: {exc}") from None
    return vocab


def _entry_name(data: dict, loc: tuple) -> str | None:
    try:
        return data[loc[0]][loc[1]].get("name")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
