"""Location preparation in Python (vectorised): coordinates to WGS-84, geometry repair, addresses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from brain.coords import to_wgs84

POLYGONAL = ("Polygon", "MultiPolygon")
LINEAR = ("LineString", "MultiLineString")
#: The geometry types each entity geometry kind accepts (a shape is a line or a polygon).
KINDS = {"point": ("Point",), "polygon": POLYGONAL, "line": LINEAR, "shape": POLYGONAL + LINEAR}
MIN_AREA_M2 = 1.0  # no real footprint or admin unit is smaller


def is_geographic(crs: str) -> bool:
    """Whether coordinates in `crs` are longitude/latitude degrees."""
    return crs in ("gcj02", "bd09") or CRS.from_user_input(crs).is_geographic


def prepare_xy(xs: pd.Series, ys: pd.Series, crs: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, reason, detail) for x/y text columns in `crs`; reason is None where the point is usable."""
    x = pd.to_numeric(xs.str.strip(), errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(ys.str.strip(), errors="coerce").to_numpy(dtype=float)
    blank = (xs.str.strip() == "").to_numpy() | (ys.str.strip() == "").to_numpy()
    reason = np.full(len(x), None, dtype=object)
    detail = np.full(len(x), None, dtype=object)
    reason[blank] = "coordinates-missing"
    bad = ~blank & (np.isnan(x) | np.isnan(y))
    reason[bad] = "coordinates-invalid"
    ok = ~blank & ~bad
    if is_geographic(crs):
        in_range = (np.abs(x) <= 180) & (np.abs(y) <= 90)
        swapped = ok & ~in_range & (np.abs(x) <= 90) & (np.abs(y) <= 180)
        reason[swapped] = "coordinates-swapped"
        reason[ok & ~in_range & ~swapped] = "coordinates-out-of-range"
        ok &= in_range
    lon = np.full(len(x), np.nan)
    lat = np.full(len(x), np.nan)
    if ok.any():
        lon[ok], lat[ok] = to_wgs84(x[ok], y[ok], crs)
        lost = ok & ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
        reason[lost] = "coordinates-out-of-range"
    flagged = reason != None  # noqa: E711 - numpy object comparison
    detail[flagged] = [f"x={a!r} y={b!r} ({crs})" for a, b in zip(xs[flagged], ys[flagged])]
    return lon, lat, reason, detail


def prepare_geometry(geoms: np.ndarray, crs: str, kind: str):
    """(geometry WGS-84, reason, detail, repaired) for geometries of `kind` point|polygon|line|shape in `crs`
    (a shape is a line or a polygon)."""
    n = len(geoms)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    reason[missing] = "geometry-missing"
    detail[missing] = "no geometry"
    present = ~missing
    out = np.array(geoms, dtype=object)
    if crs in ("gcj02", "bd09") or crs not in ("EPSG:4326", "OGC:CRS84"):
        def fn(coords):
            lon, lat = to_wgs84(coords[:, 0], coords[:, 1], crs)
            return np.column_stack([lon, lat])
        out[present] = shapely.transform(out[present], fn)
    invalid = present & ~shapely.is_valid(out)
    repaired = np.zeros(n, dtype=bool)
    if invalid.any():
        why = shapely.is_valid_reason(out[invalid])
        fixed = shapely.make_valid(out[invalid])
        if kind == "point":
            fixed = np.array([g if g.geom_type == "Point" else None for g in fixed], dtype=object)
        else:
            fixed = np.array([_of_kinds(g, KINDS[kind]) for g in fixed], dtype=object)
        lost = shapely.is_missing(fixed) | shapely.is_empty(fixed)
        idx = np.flatnonzero(invalid)
        reason[idx[lost]] = "geometry-invalid"
        detail[idx[lost]] = [f"cannot repair: {w}" for w in why[lost]]
        out[idx] = fixed
        repaired[idx[~lost]] = True
    if kind == "polygon":
        # Slivers (a ring folded onto a line, up to floating-point noise) are valid but hold no area.
        live = np.flatnonzero(present & (reason == None))  # noqa: E711
        lat = shapely.get_y(shapely.centroid(out[live]))
        m2 = shapely.area(out[live]) * (111_320.0 ** 2) * np.cos(np.radians(np.nan_to_num(lat)))
        tiny = live[~(m2 >= MIN_AREA_M2)]
        reason[tiny] = "geometry-invalid"
        detail[tiny] = [f"degenerate polygon: area < {MIN_AREA_M2} m²"] * len(tiny)
    wrong = present & (reason == None)  # noqa: E711
    types = shapely.get_type_id(out[wrong])
    want = [shapely.GeometryType[name.upper()] for name in KINDS[kind]]
    bad_type = np.flatnonzero(wrong)[~np.isin(types, want)]
    reason[bad_type] = "geometry-invalid"
    detail[bad_type] = [f"expected a {kind}, got {g.geom_type}" for g in out[bad_type]]
    return out, reason, detail, repaired


def _of_kinds(geom, kinds: tuple[str, ...]):
    """The parts of a repaired geometry of the wanted kinds: make_valid can return collections (a polygon with
    lines), and a self-crossing line comes back as a multi-line."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in kinds:
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in kinds]
    return shapely.union_all(parts) if parts else None
