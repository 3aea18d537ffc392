"""Drawn areas sent by clients (the API's POST /metrics, the dashboards' drawing tool): parsed, limited, repaired.

One parser for every entry point, so the limits are the same everywhere. Limits are checked before and after
repair, and repair runs in a child process with a time and memory budget: repairing a self-intersecting
polygon can cost time and memory far beyond its size (a 20,000-vertex star has ~10^8 self-intersections), and
GEOS cannot be interrupted in a thread. Valid polygons, the common case, never leave the calling thread.
"""

from __future__ import annotations

import json
import os
import resource
import select
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import shape

from brain.errors import BadRequest, TooLarge


#: Areas with more vertices than this are checked for validity in the repair process, not in the request's thread.
INLINE_VERTICES = 1_000


@dataclass(frozen=True)
class AreaLimits:
    """What one drawn area may cost: bytes, vertices and parts (before and after repair), and the repair budget."""

    max_bytes: int = 1_000_000
    max_vertices: int = 20_000
    max_parts: int = 500
    repair_seconds: float = 2.0
    repair_memory_mb: int = 512

    @classmethod
    def from_settings(cls, settings) -> "AreaLimits":
        """The limits configured for the service (BRAIN_MAX_BODY_BYTES, BRAIN_MAX_VERTICES, …)."""
        return cls(settings.max_body_bytes, settings.max_vertices, settings.max_parts, settings.repair_seconds,
                   settings.repair_memory_mb)


def parse_area(body: bytes | str | dict, limits: AreaLimits) -> Any:
    """A valid shapely (Multi)Polygon from GeoJSON (a Polygon, a MultiPolygon or a Feature of one, EPSG:4326).

    Raises BadRequest (malformed, empty, not lon/lat) or TooLarge (over a limit, or not repairable in budget).
    """
    if isinstance(body, (bytes, str)):
        if len(body) > limits.max_bytes:
            raise TooLarge(f"request body of {len(body):,} bytes: the limit is {limits.max_bytes:,}")
        try:
            doc = json.loads(body)
        except RecursionError:
            raise BadRequest("the body is nested too deeply to be GeoJSON") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from None
    else:
        doc = body
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = doc.get("geometry")
    if not isinstance(doc, dict) or doc.get("type") not in ("Polygon", "MultiPolygon"):
        raise BadRequest("send a GeoJSON Polygon or MultiPolygon (or a Feature holding one), lon/lat in EPSG:4326")
    _check_counts(doc, limits)  # before any geometry is built: shape() of 5,000 parts holds the GIL ~0.1 s
    try:
        geom = shape(doc)
    except RecursionError:
        raise BadRequest("the coordinates are nested too deeply") from None
    except Exception as exc:  # shapely raises a zoo of types for malformed coordinates
        raise BadRequest(f"malformed {doc.get('type')} coordinates: {exc}") from None
    _check_size(geom, limits, "")
    n = shapely.get_num_coordinates(geom)
    if geom.is_empty or n < 4:
        raise BadRequest("the polygon is empty: it needs at least three distinct corners")
    xmin, ymin, xmax, ymax = geom.bounds
    if not all(v == v and abs(v) != float("inf") for v in geom.bounds) \
            or xmin < -180 or xmax > 180 or ymin < -90 or ymax > 90:
        raise BadRequest("coordinates must be lon/lat degrees (EPSG:4326): lon in [-180, 180], lat in [-90, 90]")
    # GEOS's validity check holds the GIL (135 ms for 20,000 vertices): large areas are checked in the repair
    # process, so that the service's other requests are not held up meanwhile
    if n > INLINE_VERTICES or not geom.is_valid:
        geom = repair(geom, limits)
        _check_size(geom, limits, " once repaired")
    if geom.is_empty or geom.area == 0:
        raise BadRequest("the polygon has no area")
    return geom


def _check_counts(doc: dict, limits: AreaLimits) -> None:
    """Parts and vertices counted on the parsed JSON (the shapes of the lists are checked by shape() later)."""
    coords = doc.get("coordinates")
    if not isinstance(coords, list):
        raise BadRequest(f"malformed {doc['type']} coordinates: a list of rings is needed")
    polys = [coords] if doc["type"] == "Polygon" else coords
    if len(polys) > limits.max_parts:
        raise TooLarge(f"the area has {len(polys):,} parts: the limit is {limits.max_parts:,}; draw fewer shapes")
    n = sum(len(ring) for poly in polys if isinstance(poly, list) for ring in poly if isinstance(ring, list))
    if n > limits.max_vertices:
        raise TooLarge(f"the polygon has {n:,} vertices: the limit is {limits.max_vertices:,}; simplify it")


def _check_size(geom: Any, limits: AreaLimits, when: str) -> None:
    n = shapely.get_num_coordinates(geom)
    if n > limits.max_vertices:
        raise TooLarge(f"the polygon has {n:,} vertices{when}: the limit is {limits.max_vertices:,}; simplify it")
    parts = len(getattr(geom, "geoms", [geom]))
    if parts > limits.max_parts:
        raise TooLarge(f"the area has {parts:,} parts{when}: the limit is {limits.max_parts:,}; draw fewer shapes")


class _Repairer:
    """One child process (`python -m brain.areas`) that repairs polygons, killed and restarted when over budget.

    A process and not a thread: GEOS cannot be interrupted, and its memory is capped with RLIMIT_DATA there.
    Started on the first large or invalid polygon, then kept; one at a time per service process.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._memory_mb = AreaLimits.repair_memory_mb

    def _start(self, memory_mb: int) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "brain.areas", str(memory_mb)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        if not _ready(proc.stdout, 30) or proc.stdout.read(1) != b"R":
            proc.kill()
            raise TooLarge("polygon repair is not available: send a valid polygon (no crossing edges)")
        return proc

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        self.warm(self._memory_mb)  # the next area should not wait for a Python to start

    def warm(self, memory_mb: int) -> None:
        """Start the repair process in the background (at service start, and after one was killed)."""
        self._memory_mb = memory_mb

        def start() -> None:
            with self._lock:
                if self._proc is None or self._proc.poll() is not None:
                    try:
                        self._proc = self._start(memory_mb)
                    except TooLarge:  # not startable now: the next area tries again, and says so
                        self._proc = None
        threading.Thread(target=start, name="area-repair-start", daemon=True).start()

    def repair(self, wkb: bytes, limits: AreaLimits) -> tuple[bytes, bytes]:
        """(b"V", b"") valid as it is, (b"O", repaired WKB) or (b"E", GEOS's message); TooLarge over budget."""
        if not self._lock.acquire(timeout=limits.repair_seconds):
            raise TooLarge("the service is repairing another polygon: send a valid polygon, or try again shortly")
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start(limits.repair_memory_mb)
            proc = self._proc
            try:
                proc.stdin.write(struct.pack(">I", len(wkb)) + wkb)
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._stop()
                raise TooLarge("polygon repair failed: send a valid polygon (no crossing edges)") from None
            if not _ready(proc.stdout, limits.repair_seconds):
                self._stop()
                raise TooLarge(f"the polygon crosses itself too often to repair within {limits.repair_seconds:g} s: "
                               "draw it without crossing edges, or with fewer vertices")
            head = proc.stdout.read(5)
            if len(head) < 5:  # the child died: over its memory budget
                self._stop()
                raise TooLarge("the polygon needs more memory to repair than a request may use: draw it without "
                               "crossing edges, or with fewer vertices")
            return head[:1], proc.stdout.read(struct.unpack(">I", head[1:])[0])
        finally:
            self._lock.release()


def _ready(stream, seconds: float) -> bool:
    return bool(select.select([stream], [], [], seconds)[0])


_REPAIRER = _Repairer()


def warm(limits: AreaLimits) -> None:
    """Start this process's repair process in the background, so that the first large area does not wait."""
    _REPAIRER.warm(limits.repair_memory_mb)


def repair(geom: Any, limits: AreaLimits) -> Any:
    """The area if valid, else make_valid keeping the polygonal parts: in the repair process, within budget."""
    status, out = _REPAIRER.repair(shapely.to_wkb(geom), limits)
    if status == b"V":
        return geom
    if status == b"E" and b"bad_alloc" in out:  # GEOS ran out of the memory budget
        raise TooLarge("the polygon needs more memory to repair than a request may use: draw it without "
                       "crossing edges, or with fewer vertices")
    if status != b"O":
        raise BadRequest(f"the polygon cannot be repaired: {out.decode(errors='replace')}")
    return shapely.from_wkb(out)


def _repaired(wkb: bytes) -> tuple[bytes, bytes]:
    geom = shapely.from_wkb(wkb)
    if geom.is_valid:
        return b"V", b""
    geom = shapely.make_valid(geom)
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")]
    return b"O", shapely.to_wkb(shapely.union_all(polys) if polys else shapely.Polygon())


def _serve(memory_mb: int) -> None:
    """The repair process: length-prefixed WKB in on stdin, b'O'/b'E' + length + WKB or message out on stdout."""
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"R")
    stdout.flush()
    while len(head := stdin.read(4)) == 4:
        wkb = stdin.read(struct.unpack(">I", head)[0])
        try:
            status, out = _repaired(wkb)
        except MemoryError:
            os._exit(3)  # the parent reads the closed pipe as "over the memory budget"
        except Exception as exc:  # GEOS's own errors: a clean refusal for the client
            status, out = b"E", f"{type(exc).__name__}: {exc}".encode()
        stdout.write(status + struct.pack(">I", len(out)) + out)
        stdout.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
