"""brain on PostGIS against TiPg on the same tables: `make bench-postgis` (or `python bench/postgis.py`).

1. The large sample (ingested once into bench/.cache, as bench/tiles.py does) is copied into a throwaway
   PostgreSQL 15 + PostGIS cluster (tests/pgcluster.py starts it: the same helper the test suite uses).
2. `brain serve --workers 2` (tile cache off, so every tile is built) and TiPg (PyPI `tipg`, installed once into
   bench/.cache/tipg-venv, run by uvicorn with 2 workers and TIPG_MAX_FEATURES_PER_TILE raised so it does not
   truncate) serve the same tables from the same database.
3. For each layer that both can serve as features (people z17, buildings/events z15–17, organisations z14–17,
   devices z10–17), the same tiles are asked of both: brain as a district analyst and as a community worker
   (permission filtering on; TiPg has none), TiPg with `properties=` set to the fields brain's tile carries, on
   the WGS84 `geom` column (TiPg reads the SRID from the column type; brain's `geom_3857` column is untyped, so
   TiPg would treat it as 4326 and return nothing), which the benchmark gives a GiST index, as a TiPg operator
   would.
   Printed: p50/p95 per layer and zoom (one keep-alive client, one tile at a time), then tiles per second with
   concurrent keep-alive clients cycling through every tile, brain's cache off. Target: brain (filtered) ≥ 2×
   TiPg. Last, brain as deployed, with its tile cache on, on the same runs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mercantile

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from brain.auth import add_user  # noqa: E402
from brain.backend import connect  # noqa: E402
from brain.transfer import copy_database  # noqa: E402
from pgcluster import Cluster, free_port  # noqa: E402
from tiles import pct, prepare  # noqa: E402

TIPG_VERSION = "1.6.1"
#: (layer, zooms): the layers served as single features by both servers at these zooms
LAYERS = {"people": range(17, 18), "buildings": range(15, 18), "events": range(15, 18),
          "organisations": range(14, 18), "devices": range(12, 18)}
TARGET_RATIO = 2.0


def tipg_python(cache: Path) -> Path:
    """The Python of a venv holding TiPg (created once; TiPg's dependencies stay out of brain's venv)."""
    venv = cache / "tipg-venv"
    py = venv / "bin" / "python"
    if not (py.exists() and subprocess.run([str(py), "-c", "import tipg, httptools, uvloop"], capture_output=True).returncode
            == 0):
        print(f"installing tipg {TIPG_VERSION} into {venv} (once) …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        # uvicorn[standard] as in brain's venv (httptools, uvloop): with the pure-Python h11 server a small tile
        # waits ~40 ms on Nagle and delayed ACKs, which would be measuring the wrong thing
        pip = subprocess.run([str(py), "-m", "pip", "install", "-q", f"tipg=={TIPG_VERSION}", "uvicorn[standard]"],
                             capture_output=True, text=True)
        if pip.returncode:
            raise SystemExit(f"pip could not install tipg:\n{pip.stdout}{pip.stderr}")
    return py


class Proc:
    """A server child process on a loopback port, up when `health` answers 200."""

    def __init__(self, cmd: list[str], port: int, health: str, env: dict, name: str):
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{name}.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(1200):
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited {self.proc.returncode}: see {self.log.name}")
            try:
                if httpx.get(self.url + health, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{name} did not start: see {self.log.name}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def sample_tiles(pg, unit_col: str | None, unit: str | None, per_zoom: int, seed: int) -> dict[int, list]:
    """Tiles weighted by data: random people (of the unit) pick them, so busy tiles are sampled most."""
    where = f"WHERE {unit_col} = ?" if unit_col else ""
    pts = pg.query(f"SELECT lon, lat FROM people {where} ORDER BY md5(id) LIMIT 3000", [unit] if unit else None)
    rnd = random.Random(seed)
    zooms = sorted({z for zs in LAYERS.values() for z in zs})
    out = {}
    for z in zooms:
        cand = sorted({mercantile.tile(lon, lat, z) for lon, lat in pts})
        out[z] = rnd.sample(cand, min(per_zoom, len(cand)))
    return out


def timed(port: int, requests: list[tuple[str, dict]]) -> list[tuple[float, int, bytes]]:
    """(ms, status, body) of each request in turn on one keep-alive http.client connection."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    out = []
    for path, headers in requests:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        out.append(((time.perf_counter() - t0) * 1000, r.status, body))
    conn.close()
    return out


def features(body: bytes) -> int:
    """Features in an MVT (decoded, so an empty or broken tile cannot pass for a fast one)."""
    import mapbox_vector_tile

    return sum(len(layer["features"]) for layer in mapbox_vector_tile.decode(body).values()) if body else 0


def _cycle(port: int, requests: list, seconds: float, offset: int, q) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    done = bad = 0
    k = offset
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        path, headers = requests[k % len(requests)]
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        bad += r.status != 200
        done += 1
        k += 1
    q.put((done, bad))


def throughput(port: int, requests: list, seconds: float, clients: int) -> tuple[float, int]:
    """Tiles per second answered to `clients` keep-alive clients (one process each) cycling through `requests`."""
    import multiprocessing as mp

    q = mp.Queue()
    procs = [mp.Process(target=_cycle, args=(port, requests, seconds, i * len(requests) // clients, q))
             for i in range(clients)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="large", choices=["small", "medium", "large"])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--tiles-per-zoom", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each throughput run lasts")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive client processes")
    args = parser.parse_args()

    path = prepare(args.cache, args.scale)
    py = tipg_python(args.cache)
    cluster = Cluster()
    servers = []
    try:
        url = cluster.database("bench")
        print(f"copying the {args.scale} sample into PostGIS …", flush=True)
        t0 = time.perf_counter()
        duck, pg = connect(f"duckdb:///{path}", read_only=True), connect(url)
        copied = copy_database(duck, pg)
        duck.close()
        for layer in LAYERS:  # TiPg's column gets the index brain's geom_3857 has
            pg.execute(f"CREATE INDEX IF NOT EXISTS {layer}_geom_gist ON {layer} USING GIST (geom)")
            pg.execute(f"ANALYZE {layer}")
        print(f"  {sum(copied.values()):,} rows in {time.perf_counter() - t0:.0f} s", flush=True)
        district = pg.query("SELECT code FROM admin_units WHERE level = 'district'")[0][0]
        community = pg.query("SELECT community_code FROM people GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0][0]
        users = {"analyst": (add_user(pg, "bench-analyst", "district_analyst", district),
                             sample_tiles(pg, None, None, args.tiles_per_zoom, 7)),
                 "community": (add_user(pg, "bench-community", "community_staff", community),
                               sample_tiles(pg, "community_code", community, args.tiles_per_zoom, 8))}
        pg.close()

        bport = free_port()
        brain = Proc([sys.executable, "-m", "brain.cli", "serve", "--db", url, "--port", str(bport),
                      "--workers", "2"], bport, "/health", {"BRAIN_TILE_CACHE_MB": "0"}, "brain")
        servers.append(brain)
        tport = free_port()
        tipg = Proc([str(py), "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1", "--port", str(tport),
                     "--workers", "2", "--log-level", "warning"], tport, "/collections",
                    {"DATABASE_URL": url, "TIPG_MAX_FEATURES_PER_TILE": "10000000", "TIPG_DB_SCHEMAS": '["public"]',
                     "TIPG_DB_EXCLUDE_TABLES": '["public.users","public.sessions","public.audit_log"]'}, "tipg")
        servers.append(tipg)

        fields = {}
        for who, (token, _) in users.items():
            for layer in httpx.get(f"{brain.url}/layers", headers={"Authorization": f"Bearer {token}"}).json():
                if layer["id"] in LAYERS:
                    fields[who, layer["id"]] = layer["parts"][0]["fields"]

        def requests_of(who: str) -> dict[tuple[str, int], tuple[list, list]]:
            token, tiles = users[who]
            out = {}
            for layer, zooms in LAYERS.items():
                props = ",".join(fields[who, layer])
                for z in zooms:
                    b = [(f"/tiles/{layer}/{z}/{t.x}/{t.y}.mvt", {"Authorization": f"Bearer {token}"})
                         for t in tiles[z]]
                    t = [(f"/collections/public.{layer}/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}"
                          f"?geom-column=geom&properties={props}", {}) for t in tiles[z]]
                    out[layer, z] = (b, t)
            return out

        print("\none tile at a time (ms): brain with permission filtering, TiPg without\n")
        print(f"{'user':<11}{'layer':<14}{'z':>3}{'tiles':>6}{'brain p50':>10}{'p95':>8}{'feat.':>7}"
              f"{'tipg p50':>10}{'p95':>8}{'feat.':>7}")
        every = {"analyst": ([], []), "community": ([], [])}
        for who in users:
            for (layer, z), (b, t) in requests_of(who).items():
                for reqs in (b, t):  # warm both (connections, plans)
                    timed(brain.port if reqs is b else tipg.port, reqs[:2])
                rb, rt = timed(brain.port, b), timed(tipg.port, t)
                bad = [r for r in rb + rt if r[1] != 200]
                if bad:
                    raise SystemExit(f"{who} {layer} z{z}: a server answered {bad[0][1]}")
                every[who][0].extend(b)
                every[who][1].extend(t)
                mb, mt = [r[0] for r in rb], [r[0] for r in rt]
                fb, ft = sum(map(features, (r[2] for r in rb))), sum(map(features, (r[2] for r in rt)))
                # the analyst sees the whole district: the counts differ only at the edges, where the two servers
                # buffer the tile differently
                if who == "analyst" and abs(fb - ft) > max(2 * len(b), 0.1 * max(fb, ft)):
                    raise SystemExit(f"{layer} z{z}: brain served {fb} features, TiPg {ft}: not the same tiles")
                print(f"{who:<11}{layer:<14}{z:>3}{len(b):>6}{statistics.median(mb):>10.1f}{pct(mb, 95):>8.1f}"
                      f"{fb / len(b):>7.0f}{statistics.median(mt):>10.1f}{pct(mt, 95):>8.1f}{ft / len(t):>7.0f}")

        print(f"\ntiles per second, {args.clients} keep-alive clients for {args.seconds:.0f} s each, "
              f"both servers with 2 workers on the same 2 cores\n")
        ratios = []
        for who, (b, t) in every.items():
            rb, bad_b = throughput(brain.port, b, args.seconds, args.clients)
            rt, bad_t = throughput(tipg.port, t, args.seconds, args.clients)
            ratio = rb / rt if rt else float("inf")
            ratios.append(ratio)
            print(f"{who:<11} brain {rb:7.1f}/s   tipg {rt:7.1f}/s   ratio {ratio:5.2f}   "
                  f"({len(b)} distinct tiles; not 200: brain {bad_b}, tipg {bad_t})")
        ok = min(ratios) >= TARGET_RATIO
        print(f"\nbrain with filtering / TiPg without, every tile built: worst ratio {min(ratios):.2f}   "
              f"target ≥ {TARGET_RATIO:.0f}   {'OK' if ok else 'MISSED'}")

        # As deployed: brain's tile cache on (keyed by scope, so filtering still holds); TiPg has none.
        brain.stop()
        servers.remove(brain)
        bport = free_port()
        cached = Proc([sys.executable, "-m", "brain.cli", "serve", "--db", url, "--port", str(bport),
                       "--workers", "2"], bport, "/health", {}, "brain-cached")
        servers.append(cached)
        print("\nas deployed: brain with its tile cache on (the same runs; the first pass builds each tile)\n")
        for who, (b, t) in every.items():
            rb, bad_b = throughput(cached.port, b, args.seconds, args.clients)
            print(f"{who:<11} brain {rb:7.1f}/s   (TiPg above; not 200: {bad_b})")
    finally:
        for s in servers:
            s.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
