"""Coordinate systems: EPSG codes through pyproj, and China's GCJ-02 / BD-09 offsets.

GCJ-02 ("Mars coordinates", used by Amap/Tencent) and BD-09 (Baidu) are obfuscations of WGS-84 with no
published inverse and no entry in the EPSG registry, so no well-kept library covers them: pyproj cannot.
The forward formulas below are the widely reproduced public ones; the inverse is solved by fixed-point
iteration, which converges to well under a centimetre (the usual one-step inverse is off by metres).
"""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from brain.errors import SourceError

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by GCJ-02
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0

#: CRS names accepted besides EPSG codes.
CHINA_CRS = ("gcj02", "bd09")


def _out_of_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    # GCJ-02 applies only inside China's rough bounding box; outside it is the identity.
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _delta(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = lon - 105.0, lat - 35.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
            + (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
            + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
            + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
            + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0)
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon, lat):
    """WGS-84 → GCJ-02 (arrays or scalars, degrees)."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    dlon, dlat = _delta(lon, lat)
    out = _out_of_china(lon, lat)
    return np.where(out, lon, lon + dlon), np.where(out, lat, lat + dlat)


def gcj02_to_wgs84(lon, lat, iterations: int = 8):
    """GCJ-02 → WGS-84 by fixed-point iteration on the forward transform (error ≪ 1 cm)."""
    glon, glat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(iterations):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        wlon, wlat = wlon - (flon - glon), wlat - (flat - glat)
    return wlon, wlat


def gcj02_to_bd09(lon, lat):
    """GCJ-02 → BD-09."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon, lat):
    """BD-09 → GCJ-02 (the published closed-form inverse)."""
    x, y = np.asarray(lon, dtype=float) - 0.0065, np.asarray(lat, dtype=float) - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_wgs84(lon, lat):
    """BD-09 → WGS-84."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def wgs84_to_bd09(lon, lat):
    """WGS-84 → BD-09."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def normalise_crs(crs: str | int | None) -> str:
    """Return 'gcj02', 'bd09' or 'EPSG:nnnn' for a manifest CRS; raise SourceError when unknown."""
    if crs is None or crs == "":
        return "EPSG:4326"
    text = str(crs).strip()
    low = text.lower().replace("-", "").replace("_", "")
    if low in CHINA_CRS:
        return low
    if text.isdigit():
        text = f"EPSG:{text}"
    try:
        parsed = CRS.from_user_input(text)
    except CRSError as exc:
        raise SourceError(f"unknown CRS {crs!r}: use an EPSG code (e.g. 4326, 4490, 4547) or gcj02 / bd09") from exc
    auth = parsed.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else parsed.to_wkt()


def to_wgs84(x, y, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Convert coordinate arrays in `crs` (as normalise_crs returns it) to WGS-84 lon/lat."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if crs == "gcj02":
        return gcj02_to_wgs84(x, y)
    if crs == "bd09":
        return bd09_to_wgs84(x, y)
    if crs in ("EPSG:4326", "OGC:CRS84"):
        return x, y
    transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return transformer.transform(x, y)
