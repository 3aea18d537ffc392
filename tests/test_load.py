"""`brain serve` on PostGIS with several workers under 50 concurrent clients of mixed roles (issue 5).

For BRAIN_LOAD_SECONDS (default 60) every client asks, in turn, for tiles, unit indicators, drawn-area
indicators and event lists: no request may fail, no decoded feature may lie outside its client's scope, and
every request must be in the audit log afterwards. Where each feature belongs is read from the DuckDB ingest of
the same sample, not from the server under load.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import httpx
import mapbox_vector_tile
import mercantile

import brain
from brain.auth import ROLES, add_user
from conftest import Databases, Server

SECONDS = float(os.environ.get("BRAIN_LOAD_SECONDS", "60"))
CLIENTS = 50
LEVELS = ("district", "street", "community", "grid")


def test_fifty_clients_of_mixed_roles_for_a_minute(ingested_duckdb, ingested_postgis, pg_cluster):
    url = Databases("postgis", None, pg_cluster).clone(ingested_postgis[0], "load")
    duck = brain.connect(ingested_duckdb[0], read_only=True)
    try:
        units = duck.query("SELECT code, level FROM admin_units ORDER BY code")
        codes = {}
        for table in ("events", "devices", "organisations", "buildings", "people"):
            for row in duck.query(f"SELECT id, {', '.join(lv + '_code' for lv in LEVELS)} FROM {table}"):
                codes[row[0]] = dict(zip(LEVELS, row[1:]))
        for row in duck.query(f"SELECT code, {', '.join(lv + '_code' for lv in LEVELS)} FROM admin_units"):
            codes[row[0]] = dict(zip(LEVELS, row[1:]))
        lon, lat = duck.query("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM admin_units "
                              "WHERE level = 'district'")[0]
    finally:
        duck.close()
    rnd = random.Random(5)
    clients = []
    pg = brain.connect(url)
    try:
        for i in range(CLIENTS):
            role = list(ROLES.values())[i % len(ROLES)]
            unit = rnd.choice([c for c, lv in units if lv == role.level])
            clients.append({"role": role, "unit": unit, "level": role.level,
                            "token": add_user(pg, f"load-{i}", role.name, unit)})
    finally:
        pg.close()

    srv = Server(url, "--workers", "2", "--log-level", "info")
    stats = {"requests": 0, "errors": [], "features": 0, "outside": []}
    try:
        asyncio.run(_load(srv.url, clients, codes, lon, lat, stats))
    finally:
        log = srv.stop()
    print(f"\nload: {stats['requests']} requests in {SECONDS:.0f} s ({stats['requests'] / SECONDS:.0f}/s) from "
          f"{CLIENTS} clients, {len(stats['errors'])} errors, {stats['features']} features decoded, "
          f"{len(stats['outside'])} outside their scope")
    assert stats["requests"] > 500, stats["requests"]
    # what the server said that may explain failures (a worker dying, an exception), then its last lines
    said = [line for line in log.splitlines() if any(k in line for k in ("died", "rror", "Traceback", "xception",
                                                                          "Killed", "Started", "Waiting"))]
    assert not stats["errors"], (stats["errors"][:5], said[:60], log[-1500:])
    assert not stats["outside"], stats["outside"][:5]
    assert stats["features"] > 1000
    assert "died" not in log, log[-3000:]  # uvicorn's supervisor restarted no worker
    pg = brain.connect(url)
    try:
        audited = pg.query("SELECT count(*) FROM audit_log WHERE user_name LIKE 'load-%'")[0][0]
    finally:
        pg.close()
    assert audited == stats["requests"], (audited, stats["requests"])


async def _load(base, clients, codes, lon, lat, stats):
    stop = time.monotonic() + SECONDS
    # httpx keeps an idle connection 5 s by default, exactly as long as uvicorn does (timeout_keep_alive): a
    # request sent on one the server is closing at that instant gets a reset (ReadError). Browsers retry such a
    # GET; this client instead lets idle connections go well before the server would.
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        async def client(i, c):
            rnd = random.Random(i)
            h = {"Authorization": f"Bearer {c['token']}"}
            while time.monotonic() < stop:
                kind = rnd.choice(("tile", "tile", "tile", "metrics", "area", "events"))
                try:
                    if kind == "tile":
                        z = rnd.randint(13, 17)
                        t = mercantile.tile(lon + rnd.uniform(-0.015, 0.015), lat + rnd.uniform(-0.004, 0.004), z)
                        layer = rnd.choice(("units", "buildings", "people", "organisations", "party", "events",
                                            "devices"))
                        r = await http.get(f"/tiles/{layer}/{z}/{t.x}/{t.y}.mvt", headers=h)
                        if r.status_code == 200 and r.content:
                            for mvt in mapbox_vector_tile.decode(r.content).values():
                                for f in mvt["features"]:
                                    key = f["properties"].get("id") or f["properties"].get("code")
                                    stats["features"] += 1
                                    if key in codes and codes[key][c["level"]] != c["unit"]:
                                        stats["outside"].append((c["role"].name, c["unit"], layer, key))
                    elif kind == "metrics":
                        r = await http.get(f"/units/{c['unit']}/metrics", headers=h)
                    elif kind == "area":
                        x, y = lon + rnd.uniform(-0.01, 0.01), lat + rnd.uniform(-0.003, 0.003)
                        ring = [[x, y], [x + 0.004, y], [x + 0.004, y + 0.003], [x, y + 0.003], [x, y]]
                        r = await http.post("/metrics", json={"type": "Polygon", "coordinates": [ring]}, headers=h)
                    else:
                        r = await http.get("/events", params={"size": 20}, headers=h)
                    stats["requests"] += 1
                    expected = 403 if kind == "events" and not c["role"].individual else 200
                    if r.status_code != expected:
                        stats["errors"].append((c["role"].name, kind, r.status_code, r.text[:200]))
                except httpx.HTTPError as exc:
                    stats["requests"] += 1
                    stats["errors"].append((c["role"].name, kind, type(exc).__name__))

        await asyncio.gather(*(client(i, c) for i, c in enumerate(clients)))
