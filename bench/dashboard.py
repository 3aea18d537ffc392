"""Dashboard benchmark on the medium sample: `make bench-dashboard` (or `python bench/dashboard.py`).

In Debian's headless Chromium, from navigation to (a) the first complete map paint — every visible layer has
loaded the tiles of the first view — and (b) the indicator panel filled, for a district analyst and a
community worker; each measured over several fresh browser contexts (no HTTP cache carried over).
Target: ≤ 2 s each. The medium sample is generated and ingested once into bench/.cache/medium/.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from playwright.sync_api import sync_playwright  # noqa: E402

from brain.auth import add_user  # noqa: E402
from brain.backend import connect  # noqa: E402
from tiles import Server, prepare  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    path = prepare(args.cache, args.scale)
    db = connect(f"duckdb:///{path}")
    db.execute("DELETE FROM users WHERE name LIKE 'benchdash-%'") if db.query(
        "SELECT 1 FROM information_schema.tables WHERE table_name = 'users'") else None
    district = db.query("SELECT code FROM admin_units WHERE level = 'district'")[0][0]
    community = db.query("SELECT community_code FROM people GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0][0]
    users = {"district analyst": add_user(db, "benchdash-district", "district_analyst", district),
             "community worker": add_user(db, "benchdash-community", "community_staff", community)}
    db.close()

    srv = Server(path)
    results = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            for who, token in users.items():
                # sign in once per run through the link, then time a fresh navigation of the signed-in page
                paint, panel, tiles = [], [], []
                for _ in range(args.runs + 1):
                    context = browser.new_context(viewport={"width": 1920, "height": 1080})
                    page = context.new_page()
                    page.goto(f"{srv.url}/?token={token}")
                    page.wait_for_selector("[data-indicator=population]", timeout=60000)
                    t0 = time.perf_counter()
                    page.goto(srv.url + "/")
                    page.wait_for_function("window.brain && window.brain.idle && window.brain.idle()",
                                           timeout=60000, polling=20)
                    t_paint = time.perf_counter() - t0
                    page.wait_for_selector("#panel [data-indicator=population]", timeout=60000)
                    t_panel = time.perf_counter() - t0
                    n = page.evaluate("window.brain.tilesLoaded")
                    context.close()
                    paint.append(t_paint)
                    panel.append(t_panel)
                    tiles.append(n)
                results[who] = (paint[1:], panel[1:], tiles[1:])  # the first run warms the server's caches
            browser.close()
    finally:
        srv.stop()

    print()
    print(f"{'user':<18}{'map painted p50':>16}{'max':>8}{'panel filled p50':>18}{'max':>8}{'tiles':>7}")
    for who, (paint, panel, tiles) in results.items():
        print(f"{who:<18}{statistics.median(paint):>15.2f}s{max(paint):>7.2f}s{statistics.median(panel):>17.2f}s"
              f"{max(panel):>7.2f}s{statistics.median(tiles):>7.0f}")
    worst = max(max(p + q) for p, q, _ in results.values())
    print(f"\nworst of both, every run: {worst:.2f} s   target ≤ {TARGET_S} s   {'OK' if worst <= TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
