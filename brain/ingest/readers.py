"""Reading department files into frames of strings (values are parsed later, so raw records stay raw)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from brain.errors import SourceError
from brain.ingest.manifest import FileSpec


@dataclass
class Table:
    """What a file holds: attribute columns as Arrow text, and geometries with their CRS for geo formats."""

    frame: pa.Table
    geometry: np.ndarray | None = None
    crs: str | None = None
    #: CSV lines that do not parse into the header's columns or decode: kept (quarantined), never dropped.
    malformed: list[dict] = field(default_factory=list)
    #: Rows whose geometry GEOS cannot read (row index → why): quarantined as geometry-invalid.
    unreadable: dict[int, str] = field(default_factory=dict)

    def column(self, name: str) -> pa.Array:
        """One column as a single Arrow string array."""
        return self.frame.column(name).combine_chunks()


def _frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.table({c: pa.array(_as_text(frame[c]).tolist(), type=pa.string()) for c in frame.columns})


def _as_text(col: pd.Series) -> pd.Series:
    """A column as text: '' for missing, integral floats without '.0', dates in ISO form."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_integer_dtype(col):
        return col.astype("string").fillna("").astype(object)
    if pd.api.types.is_float_dtype(col):
        def fmt(v):
            if pd.isna(v):
                return ""
            return str(int(v)) if float(v).is_integer() else repr(float(v))
        return col.map(fmt).astype(object)
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.map(lambda v: "" if pd.isna(v) else v.isoformat(sep=" ")).astype(object)

    def cell(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT or v is pd.NA:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if hasattr(v, "isoformat"):
            return v.isoformat(sep=" ") if hasattr(v, "hour") else v.isoformat()
        return str(v)
    return col.map(cell).astype(object)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _undecodable_lines(path: Path, encoding: str) -> tuple[bytes, list[dict]]:
    """The file with lines that do not decode blanked (line numbers kept), and those lines as malformed rows.

    Raises SourceError when the encoding is plainly wrong rather than a few lines damaged: the header does not
    decode, or more than max(10, 1%) of the lines or half of them do not.
    """
    if "a\n".encode(encoding, errors="replace") != b"a\n":  # not ASCII-compatible (UTF-16): lines cannot be cut
        raise UnicodeDecodeError(encoding, b"", 0, 1, "the file does not decode")
    lines = path.read_bytes().split(b"\n")
    bad = []
    for i, line in enumerate(lines):
        try:
            line.decode(encoding)
        except UnicodeDecodeError as exc:
            bad.append({"line": i + 1, "text": line.rstrip(b"\r").decode(encoding, errors="backslashreplace"),
                        "detail": f"line {i + 1} is not {encoding}: byte {line[exc.start]:#04x} at column {exc.start + 1}"})
            lines[i] = b""
    n = len([ln for ln in lines if ln.strip()]) + len(bad)
    if not bad or bad[0]["line"] == 1 or len(bad) > max(10, n // 100) or 2 * len(bad) >= n:
        raise UnicodeDecodeError(encoding, b"", 0, 1, "the file does not decode")
    return b"\n".join(lines), bad


def _check_file(spec: FileSpec, path: Path) -> None:
    if not path.exists():
        raise SourceError(f"file {path} does not exist: fix `path` in the manifest", spec.name)


def _csv_kwargs(spec: FileSpec) -> dict:
    sep = spec.delimiter or ("\t" if spec.path.lower().endswith(".tsv") else ",")
    return dict(sep=sep, dtype=str, keep_default_na=False, encoding=spec.encoding, encoding_errors="strict")


def read_header(spec: FileSpec, path: Path) -> tuple[list[str], str | None]:
    """The column names (and for geo files the CRS) without reading the rows: the pre-flight check."""
    _check_file(spec, path)
    try:
        # the header row as written (pandas would rename a repeated name to "name.1")
        if spec.format == "csv":
            row = pd.read_csv(path, nrows=1, header=None, **_csv_kwargs(spec))
            names = ["" if pd.isna(v) else str(v) for v in (row.iloc[0] if len(row) else [])]
            return [names[0].removeprefix("\ufeff"), *names[1:]] if names else [], None
        if spec.format == "excel":
            row = pd.read_excel(path, sheet_name=spec.layer or 0, nrows=1, header=None, engine="calamine")
            return ["" if pd.isna(v) else str(v) for v in (row.iloc[0] if len(row) else [])], None
        import pyogrio

        info = pyogrio.read_info(path, layer=spec.layer)
        return list(info["fields"]), info["crs"]
    except UnicodeDecodeError as exc:
        raise SourceError(f"cannot decode {path.name} as {spec.encoding}: set `encoding` (e.g. gbk, utf-8-sig)",
                          spec.name) from exc
    except (ValueError, OSError, Exception) as exc:  # pyogrio/calamine raise their own error classes
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"cannot read {path.name}: {str(exc).splitlines()[0]}", spec.name) from exc


def read_table(spec: FileSpec, path: Path) -> Table:
    """Read every row of a source as text (plus geometries for geo formats)."""
    _check_file(spec, path)
    try:
        if spec.format == "csv":
            # Arrow's multi-threaded reader, every column as text; other encodings are transcoded by it.
            header, _ = read_header(spec, path)
            kw = _csv_kwargs(spec)
            malformed: list[dict] = []

            def keep_aside(row) -> str:
                malformed.append({"line": row.number, "text": row.text, "expected": row.expected_columns,
                                  "actual": row.actual_columns})
                return "skip"

            def parse(source) -> pa.Table:
                return pacsv.read_csv(
                    source,
                    read_options=pacsv.ReadOptions(encoding=spec.encoding, use_threads=True),
                    parse_options=pacsv.ParseOptions(delimiter=kw["sep"], invalid_row_handler=keep_aside),
                    convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                         strings_can_be_null=False, quoted_strings_can_be_null=False),
                )
            try:
                table = parse(path)
            except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
                if not (isinstance(exc, UnicodeDecodeError) or "UTF8" in str(exc) or "decode" in str(exc)):
                    raise
                # a few lines in another encoding (a row pasted from elsewhere) are quarantined, not the file
                data, bad = _undecodable_lines(path, spec.encoding)
                malformed.clear()
                table = parse(pa.BufferReader(data))
                malformed += bad
                malformed.sort(key=lambda m: m["line"])
            if table.num_columns and table.column_names[0].startswith("\ufeff"):  # a BOM under a utf-8 label
                table = table.rename_columns([table.column_names[0][1:], *table.column_names[1:]])
            # a name the header repeats (never a mapped one: preflight refuses those) gets " (2)", " (3)" …
            table = table.rename_columns(_unique(table.column_names))
            return Table(table, malformed=malformed)
        if spec.format == "excel":
            frame = pd.read_excel(path, sheet_name=spec.layer or 0, dtype=object, engine="calamine")
            frame.columns = [str(c) for c in frame.columns]
            return Table(_frame_to_arrow(frame))
        import pyogrio

        meta, _, geom, fields = pyogrio.raw.read(path, layer=spec.layer, encoding=None if spec.encoding == "utf-8"
                                                  else spec.encoding)
        import shapely

        frame = pd.DataFrame({name: pd.Series(values) for name, values in zip(meta["fields"], fields)})
        if geom is None:
            geoms, unreadable = np.full(len(frame), None, dtype=object), {}
        else:
            # a ring not closed (its last vertex NaN, say) fails that row, not the file
            geoms = shapely.from_wkb(geom, on_invalid="ignore")
            unreadable = {}
            for i in np.flatnonzero(shapely.is_missing(geoms) & np.array([g is not None for g in geom])):
                try:
                    shapely.from_wkb(geom[i])
                except Exception as exc:  # GEOS says why
                    unreadable[int(i)] = str(exc).splitlines()[0]
        return Table(_frame_to_arrow(frame), geoms, meta["crs"], unreadable=unreadable)
    except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
        if isinstance(exc, UnicodeDecodeError) or "UTF8" in str(exc) or "decode" in str(exc):
            raise SourceError(f"cannot decode {path.name} as {spec.encoding}: set `encoding` (e.g. gbk, utf-8-sig)",
                              spec.name) from exc
        raise SourceError(f"cannot read {path.name}: {str(exc).splitlines()[0]}", spec.name) from exc
    except SourceError:
        raise
    except Exception as exc:  # pandas, calamine and GDAL each raise their own classes
        raise SourceError(f"cannot read {path.name}: {str(exc).splitlines()[0]}", spec.name) from exc
