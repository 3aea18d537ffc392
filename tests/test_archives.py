"""Archives for portals with no database (issue 13.4): GET /archives lists and serves exported archives by HTTP
range, each only to users whose scope covers it; the example page under docs/ shows one from a static server."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, Server, run_cli


def _user(served_db, role, k=0):
    return sorted((u for u in served_db.users.values() if u["role"] == role), key=lambda u: u["unit"])[k]


@pytest.fixture(scope="module")
def archived(served_db, dbs, tmp_path_factory):
    """Three archives exported into a folder, then that folder served: a portal's and an analyst's of the district,
    a community worker's of their community."""
    folder = tmp_path_factory.mktemp("archives")
    url = dbs.clone(served_db.pristine, "archives")
    portal, analyst, staff = (_user(served_db, r) for r in ("portal", "district_analyst", "community_staff"))
    made = {"portal.pmtiles": ["--role", "portal", "--unit", portal["unit"]],
            "analyst.pmtiles": ["--token", analyst["token"]],
            "staff.mbtiles": ["--token", staff["token"]]}
    for name, who in made.items():
        run_cli("export", "tiles", "--layers", "events,buildings", "--minzoom", "13", "--maxzoom", "15", *who,
                "--out", folder / name, "--db", url)
    (folder / "stray.pmtiles").write_bytes(b"PMTiles no record")  # no record of whose view: never served
    srv = Server(url, BRAIN_ARCHIVE_DIR=str(folder))
    yield srv, folder
    srv.stop()


def get(srv, path, user, **kw):
    return httpx.get(srv.url + path, headers={"Authorization": f"Bearer {user['token']}", **kw.pop("headers", {})},
                     timeout=30, **kw)


def test_each_user_lists_the_archives_their_scope_covers(archived, served_db):
    srv, _ = archived
    names = {role: {a["archive"] for a in get(srv, "/archives", _user(served_db, role)).json()}
             for role in ("portal", "district_analyst", "community_staff", "street_staff")}
    assert names["district_analyst"] == {"portal.pmtiles", "analyst.pmtiles", "staff.mbtiles"}
    assert names["portal"] == {"portal.pmtiles"}  # an analyst's archive holds individual rows
    assert names["community_staff"] == {"staff.mbtiles"}  # the district's are wider than their scope
    assert names["street_staff"] == set()  # the one community archive holds personal fields
    other = _user(served_db, "community_staff", 1)
    assert get(srv, "/archives", other).json() == []


def test_an_archive_is_read_by_range_and_refused_outside_the_scope(archived, served_db):
    srv, folder = archived
    portal = _user(served_db, "portal")
    size = (folder / "portal.pmtiles").stat().st_size
    head = get(srv, "/archives/portal.pmtiles", portal, headers={"Range": "bytes=0-126"})
    assert head.status_code == 206 and head.content[:7] == b"PMTiles" and len(head.content) == 127
    assert head.headers["content-range"] == f"bytes 0-126/{size}"
    tail = get(srv, "/archives/portal.pmtiles", portal, headers={"Range": f"bytes={size - 10}-"})
    assert tail.status_code == 206 and tail.content == (folder / "portal.pmtiles").read_bytes()[-10:]
    whole = httpx.head(srv.url + "/archives/portal.pmtiles", headers={"Authorization": f"Bearer {portal['token']}"})
    assert whole.status_code == 200 and int(whole.headers["content-length"]) == size and whole.content == b""
    assert get(srv, "/archives/portal.pmtiles", portal, headers={"Range": f"bytes={size + 5}-"}).status_code == 416
    refused = get(srv, "/archives/analyst.pmtiles", portal)
    assert refused.status_code == 403 and "does not cover" in refused.json()["detail"]
    other = _user(served_db, "community_staff", 1)
    assert get(srv, "/archives/staff.mbtiles", other).status_code == 403
    for name in ("nope.pmtiles", "stray.pmtiles", "..%2Farchives.json", "staff.mbtiles.json"):
        r = get(srv, f"/archives/{name}", portal)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/json"), name
    assert httpx.get(srv.url + "/archives/portal.pmtiles").status_code == 401


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server answering single byte ranges, as any web server or CDN does (http.server does not)."""

    def send_head(self):
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not m or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        lo, hi = int(m[1]), min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {lo}-{hi}/{len(data)}")
        self.send_header("Content-Length", str(hi - lo + 1))
        self.end_headers()
        import io

        return io.BytesIO(data[lo:hi + 1])

    def log_message(self, *args):
        pass


def test_the_example_page_shows_an_archive_from_a_static_server_offline(archived, backend, tmp_path):
    if backend == "postgis":
        pytest.skip("the page reads a file: the backend is not what it tests (runs on DuckDB)")
    from playwright.sync_api import sync_playwright

    _, folder = archived
    site = tmp_path / "site"
    shutil.copytree(ROOT / "docs" / "archive", site)
    shutil.copy(folder / "portal.pmtiles", site / "portal.pmtiles")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            lambda *a: _RangeHandler(*a, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    outside = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
                       if not route.request.url.startswith(base) else route.continue_())
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/index.html?archive=portal.pmtiles")
            page.wait_for_function("window.brainArchiveMap && window.brainArchiveMap.loaded() "
                                   "&& window.brainArchiveMap.areTilesLoaded()", timeout=60_000)
            drawn = page.evaluate("""() => window.brainArchiveMap.queryRenderedFeatures()
                                     .map(f => [f.sourceLayer, Object.keys(f.properties)])""")
            legend = page.inner_text("#legend")
            os.makedirs(ROOT / "test-artifacts", exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "archive-viewer.png"))
            browser.close()
    finally:
        httpd.shutdown()
    assert not errors, errors
    assert not outside, outside  # nothing fetched from anywhere but the static server
    assert drawn and {layer for layer, _ in drawn} <= {"events", "buildings"}
    assert all("id" not in props for layer, props in drawn if layer == "events")  # a portal's events: per grid
    assert "events" in legend and "zoom 13–15" in legend
