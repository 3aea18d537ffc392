"""Ingest benchmark: the large sample end to end, as a data bureau would run it.

    .venv/bin/python bench/ingest.py              # large: ~1M people, 100k buildings, 200k events
    .venv/bin/python bench/ingest.py --scale medium
    .venv/bin/python bench/ingest.py --backend postgis   # into a throwaway PostGIS cluster

Generates the sample once into bench/.cache/<scale>/ (reused afterwards), then runs `brain ingest` in a child
process on a fresh DuckDB file and prints wall time, rows per second per source and the child's peak memory.
A second, unchanged run shows the cost of an idempotent re-ingest. Targets (large, 2 cores): ≤ 60 s, ≤ 4 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str]) -> tuple[float, int]:
    """Run a child process; return (wall seconds, its peak RSS in bytes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest of any child so far (KiB on Linux)
    return wall, max(peak, before) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="large", choices=["small", "medium", "large"])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--backend", default="duckdb", choices=["duckdb", "postgis"],
                        help="postgis: into a throwaway PostgreSQL 15 cluster (tests/pgcluster.py); the peak memory "
                             "is then brain's process alone, not the server's")
    args = parser.parse_args()
    if args.backend == "postgis":
        sys.path.insert(0, str(ROOT / "tests"))
        from pgcluster import Cluster

        cluster = Cluster()
        try:
            _bench(args, cluster.database("bench_ingest"))
        finally:
            cluster.stop()
    else:
        _bench(args, None)


def _bench(args, pg_url: str | None) -> None:
    brain = [sys.executable, "-m", "brain.cli"]
    sample = args.cache / args.scale
    import hashlib

    stamp = hashlib.md5((ROOT / "brain" / "sample.py").read_bytes()).hexdigest()
    stamp_file = sample / ".generator"  # regenerate when the generator itself changed
    fresh = (sample / "planted.json").exists() and stamp_file.exists() and stamp_file.read_text() == stamp
    if not fresh:
        print(f"generating the {args.scale} sample into {sample} (once) …", flush=True)
        wall, _ = run([*brain, "sample", "--scale", args.scale, "--out", str(sample)])
        print(f"  generated in {wall:.1f} s")
        stamp_file.write_text(stamp)
    db = sample / "bench.duckdb"
    for f in (db, db.with_suffix(".duckdb.wal")):
        f.unlink(missing_ok=True)
    url = pg_url or f"duckdb:///{db}"
    report = sample / "bench-report.json"
    cmd = [*brain, "ingest", str(sample / "manifest.yaml"), "--db", url, "--report-json", str(report)]

    print(f"ingesting {sample / 'manifest.yaml'} into a fresh {'PostGIS database' if pg_url else db.name} …",
          flush=True)
    wall, peak = run(cmd)
    first = json.loads(report.read_text(encoding="utf-8"))
    rewall, _ = run(cmd)
    again = json.loads(report.read_text(encoding="utf-8"))

    rows = sum(s["read"] for s in first["sources"])
    print()
    print(f"{'source':<18}{'entity':<17}{'read':>10}{'loaded':>10}{'quarant.':>10}{'seconds':>9}{'rows/s':>11}")
    for s in first["sources"]:
        rate = s["read"] / s["seconds"] if s["seconds"] else float("nan")
        print(f"{s['name']:<18}{s['entity']:<17}{s['read']:>10,}{s['loaded']:>10,}{s['quarantined']:>10,}"
              f"{s['seconds']:>9.2f}{rate:>11,.0f}")
    print()
    people = sum(s["loaded"] for s in first["sources"] if s["entity"] == "people")
    print(f"scale {args.scale}: {rows:,} rows read, {people:,} people loaded")
    print(f"first ingest   wall {wall:6.1f} s  (in-process {first['seconds']:.1f} s)   target ≤ 60 s   "
          f"{'OK' if wall <= 60 else 'MISSED'}")
    print(f"peak memory    {peak / 2**30:6.2f} GiB                                target ≤ 4 GiB  "
          f"{'OK' if peak <= 4 * 2**30 else 'MISSED'}")
    print(f"re-ingest      wall {rewall:6.1f} s  (unchanged: "
          f"{sum(s['unchanged'] for s in again['sources']):,} rows, "
          f"{sum(s['inserted'] + s['updated'] for s in again['sources'])} written)")
    print(f"throughput     {rows / wall:,.0f} rows/s end to end")
    reconciled = all(s["read"] == s["loaded"] + s["quarantined"] for s in first["sources"])
    print(f"reconciles     {'every source: read = loaded + quarantined' if reconciled else 'NO — a bug'}")
    planted = json.loads((sample / "planted.json").read_text(encoding="utf-8"))["planted"]
    off = [s["name"] for s in first["sources"] if s["reasons"] != {
        k: v for k, v in planted.get(s["name"], {}).items() if not k.startswith("repaired:")}]
    print(f"quarantine     {'exactly the planted dirt, per source and reason' if not off else 'NOT the planted dirt in '}"
          f"{', '.join(off)}")
    _address_stages(first, sample, url)


def _address_stages(report: dict, sample: Path, url: str) -> None:
    """Rows per address-matching stage, the rate of each stage over the rows that reach it, and false matches
    against the generator's truth (address_truth.csv: each person's building, empty for the planted traps)."""
    import pandas as pd

    sources = [s for s in report["sources"] if s.get("addresses")]
    print()
    print("address matching (README#address-matching): rows per stage; rows/s over the rows that reach the stage")
    print(f"{'source':<18}{'rows':>9}{'parse/s':>11}{'exact':>9}{'/s':>11}{'parsed':>8}{'/s':>11}{'fuzzy':>7}"
          f"{'/s':>11}{'ambig.':>8}{'unmatched':>10}")
    for s in sources:
        a, sec = s["addresses"], s["address_seconds"]
        total = sum(a.values())
        reach = {"exact": total, "parsed": total - a.get("exact", 0),
                 "fuzzy": total - a.get("exact", 0) - a.get("parsed", 0)}

        def rate(n, t):
            return f"{n / t:>11,.0f}" if t > 0 else f"{'—':>11}"
        print(f"{s['name']:<18}{total:>9,}{rate(total, sec.get('parse', 0))}{a.get('exact', 0):>9,}"
              f"{rate(reach['exact'], sec.get('exact', 0))}{a.get('parsed', 0):>8,}"
              f"{rate(reach['parsed'], sec.get('parsed', 0))}{a.get('fuzzy', 0):>7,}"
              f"{rate(reach['fuzzy'], sec.get('fuzzy', 0))}{a.get('ambiguous', 0):>8,}{a.get('unmatched', 0):>10,}")
    truth = pd.read_csv(sample / "address_truth.csv", dtype=str).fillna("")
    sys.path.insert(0, str(ROOT))
    import brain

    db = brain.connect(url, read_only=True)
    try:
        got = db.frame("SELECT source_id AS person_id, building_id FROM people")
    finally:
        db.close()
    both = truth.merge(got, on="person_id")
    wrong = int((both["building_id"] != "buildings:" + both["building"]).sum())
    traps = int((truth["building"] == "").sum())
    print(f"false matches  {wrong} of {len(both):,} people loaded (the {traps:,} planted unmatchable addresses, traps "
          f"included, must all be quarantined)   target 0   {'OK' if wrong == 0 else 'MISSED'}")


if __name__ == "__main__":
    main()
