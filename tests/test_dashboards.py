"""The dashboards in a real headless Chromium (Debian's), served by `brain serve` on a loopback port; the map is
MapLibre GL on WebGL through SwiftShader. Tests read what the browser drew: the tiles it fetched (decoded), the
features MapLibre rendered (queryRenderedFeatures), the canvas pixels and the page's visible text.

Screenshots of each step are kept in test-artifacts/ (CI keeps them; some are in the README).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import httpx
import mapbox_vector_tile
import mercantile
import pytest
import shapely
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

import brain
from conftest import ROOT

SVG = "{http://www.w3.org/2000/svg}"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
ARTIFACTS = ROOT / "test-artifacts"
HEADLINE = ("population", "households", "floating", "buildings", "organisations", "events", "open_events",
            "overdue_close", "resolution_rate", "party_link_share", "cameras", "sensors_in_alarm")


@pytest.fixture(scope="module")
def chromium():
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is missing: `make setup` installs it (apt-get install chromium)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def one_backend(backend):
    """Browser tests of the page itself run on DuckDB only (the backend is not what they test); those that compare
    what the map draws with what the backend serves run on both."""
    if backend == "postgis":
        pytest.skip("a test of the page, not of the backend: runs on DuckDB")


def user(served_db, role, index=0):
    return sorted((u for u in served_db[1].values() if u["role"] == role), key=lambda u: u["unit"])[index]


#: Each page keeps what its Content-Security-Policy refused (`done` checks that nothing was)
CSP_WATCH = ("window.brainCsp = []; document.addEventListener('securitypolicyviolation', "
             "e => window.brainCsp.push(e.violatedDirective + ' ' + e.blockedURI));")


def open_app(chromium, server, who, size=(1920, 1080)):
    """A fresh browser context signed in through the /?token= link, with the map drawn."""
    context = chromium.new_context(viewport={"width": size[0], "height": size[1]})
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    page.tiles = []  # (url, status, body) of every tile the page fetched
    page.errors = []  # what the page's scripts threw or logged as errors (a bad style layer, say)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.changed = []  # the props whose change each server callback request carried
    page.on("request", lambda r: page.changed.extend((r.post_data_json or {}).get("changedPropIds", []))
            if r.method == "POST" and "/_dash-update-component" in r.url else None)

    def through(route):  # pass each tile request on, keeping what the server answered
        try:
            resp = route.fetch()
            body = resp.body()
        except PlaywrightError:  # the page is closing while this tile was in flight
            return
        page.tiles.append((route.request.url, resp.status, body))
        route.fulfill(response=resp, body=body)

    page.route("**/tiles/**", through)
    page.goto(f"{server.url}/?token={who['token']}")
    wait_idle(page)
    page.wait_for_selector("[data-indicator=population]")
    return context, page


def done(context):
    """Close a browser context without failing on tile requests still in flight; no page of it had anything
    refused by its Content-Security-Policy (a script, worker, style or picture the app needs)."""
    refused = [v for page in context.pages if not page.is_closed()
               for v in page.evaluate("window.brainCsp || []")]
    assert not refused, refused
    context.unroute_all(behavior="ignoreErrors")
    for page in context.pages:
        page.unroute_all(behavior="ignoreErrors")
    context.close()


def until(page, predicate: str, **kw):
    """`page.wait_for_function` of an expression, given to it as a function: for a bare expression Playwright
    evaluates a string in the page, which the pages' Content-Security-Policy refuses (no 'unsafe-eval')."""
    fn = predicate if predicate.lstrip().startswith("() =>") else f"() => ({predicate})"
    return page.wait_for_function(fn, **kw)


def wait_idle(page):
    until(page, "window.brain && window.brain.idle && window.brain.idle()", timeout=30000)


def rendered(page, layers) -> list[dict]:
    """The features MapLibre drew in the view on these style layers (id, properties, geometry in lon/lat)."""
    return page.evaluate("""ls => brain.map.queryRenderedFeatures({layers: ls.filter(l => brain.map.getLayer(l))})
        .map(f => ({layer: f.layer.id, properties: f.properties, geometry: f.geometry}))""", layers)


def jump(page, lon, lat, zoom, **extra):
    page.evaluate("a => brain.map.jumpTo(a)", {"center": [lon, lat], "zoom": zoom, **extra})
    page.wait_for_timeout(200)
    wait_idle(page)


def click_at(page, lon, lat):
    pt = page.evaluate(f"() => brain.map.project([{lon}, {lat}])")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + pt["x"], box["y"] + pt["y"])


def drag_rectangle(page, x0, y0, dx, dy):
    page.click(".brain-draw-rect")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + dx / 2, y0 + dy / 2, steps=6)
    page.mouse.move(x0 + dx, y0 + dy, steps=6)
    page.mouse.up()


def panel_values(page) -> dict:
    return {el.get_attribute("data-indicator"): json.loads(el.get_attribute("data-value"))
            for el in page.query_selector_all("#panel [data-indicator]")}


def paint_of(page) -> dict:
    """What the map's canvas shows over its box's colour (the map's ground): the share of pixels (every 4th) that
    differ from the ground, and how many colours there are."""
    return page.evaluate("""() => { const c = brain.map.getCanvas(), o = document.createElement('canvas');
        o.width = c.width; o.height = c.height; const g = o.getContext('2d');
        g.fillStyle = getComputedStyle(document.getElementById('map')).backgroundColor;
        g.fillRect(0, 0, o.width, o.height); g.drawImage(c, 0, 0);
        const d = g.getImageData(0, 0, o.width, o.height).data; let n = 0; const colours = new Set();
        for (let i = 0; i < d.length; i += 16) { const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
          colours.add(k); if (Math.abs(d[i] - 0xee) + Math.abs(d[i + 1] - 0xf1) + Math.abs(d[i + 2] - 0xf4) > 24) n++; }
        return {share: n / (d.length / 16), colours: colours.size}; }""")


def test_analyst_map_paints_labels_and_drawn_areas_equal_post_metrics(chromium, server, served_db):
    analyst = user(served_db, "district_analyst")
    context, page = open_app(chromium, server, analyst)
    assert page.tiles and all(status == 200 for _, status, _ in page.tiles)
    assert sum(len(mapbox_vector_tile.decode(body)) for _, _, body in page.tiles if body) > 0
    # the canvas paints: many pixels differ from the map's ground (its box's colour, under a transparent canvas),
    # in many colours
    painted = paint_of(page)
    assert painted["share"] > 0.2 and painted["colours"] > 20, painted
    assert not page.errors, page.errors[:3]
    # the basemap from the district's own data: roads and water drawn, their names along them
    assert rendered(page, ["roads-roads-line"]) and rendered(page, ["water-waters-fill", "water-waters-line"])
    # unit names are rendered as labels (local font, no glyph server)
    labels = rendered(page, ["unit-label-street", "unit-label-community", "unit-label-grid"])
    names = {f["properties"]["name"] for f in labels}
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    assert names and names <= {n for (n,) in db.query("SELECT name FROM admin_units")}
    db.close()
    page.screenshot(path=ARTIFACTS / "1-analyst-map.png")

    box = page.locator("#map").bounding_box()
    drag_rectangle(page, box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35, 260, 200)
    page.wait_for_selector("#breadcrumb .area")
    until(page, "document.querySelectorAll('#panel .resources').length > 0")
    shapes = page.evaluate("brain.drawnShapes()")
    assert len(shapes) == 1 and shapes[0]["type"] == "Polygon"

    def served(geometry):
        return httpx.post(f"{server.url}/metrics", json=geometry, timeout=30,
                          headers={"Authorization": f"Bearer {analyst['token']}"}).json()["values"]

    shown = panel_values(page)
    assert shown["population"] > 0
    first = served(shapes[0])
    for name in HEADLINE:
        assert shown[name] == first[name], name
    # a second shape: the area is both (it used to count only the last)
    drag_rectangle(page, box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.45, 90, 60)
    until(page, "brain.drawnShapes().length === 2")
    both = served({"type": "MultiPolygon", "coordinates": [s["coordinates"] for s in page.evaluate(
        "brain.drawnShapes()")]})
    assert both["population"] > first["population"]
    until(page, f"document.querySelector('#panel [data-indicator=population]').dataset.value == "
                           f"'{both['population']}'")
    page.screenshot(path=ARTIFACTS / "2-drawn-area.png")
    # clear: back to the district, its numbers (not the deleted area's)
    page.click(".brain-draw-clear")
    until(page, "!document.querySelector('#breadcrumb .area')")
    until(page, "document.querySelector('#panel-title').textContent.includes('440199')")
    assert not page.query_selector("#panel .resources")
    done(context)


def test_a_dragged_widget_stays_where_it_was_left(chromium, server, served_db, one_backend):
    who = user(served_db, "street_staff")
    context, page = open_app(chromium, server, who, size=(1920, 1080))
    page.wait_for_selector("#w3 .whead")
    w1 = page.locator("#w1").bounding_box()
    before = page.locator("#w3").bounding_box()
    assert before["y"] > w1["y"], "the default page starts with w3 under w1"
    # the grid sends its layout as it mounts: the page keeps that, and no request carries it to the server
    page.wait_for_timeout(500)
    assert "moved.data" not in page.changed, page.changed
    head = page.locator("#w3 .whead").bounding_box()
    page.mouse.move(head["x"] + 60, head["y"] + 10)
    page.mouse.down()
    for k in range(1, 21):  # drag the full-width widget above the others, as a user would
        page.mouse.move(head["x"] + 60, head["y"] + 10 - k * (before["y"] - w1["y"] + 40) / 20)
    page.mouse.up()
    page.wait_for_timeout(1000)
    moved = page.locator("#w3").bounding_box()
    other = page.locator("#w1").bounding_box()
    assert moved["y"] < other["y"], "the drag did not move the widget"
    assert "moved.data" in page.changed, "the move was not sent to be kept"
    page.screenshot(path=ARTIFACTS / "3-my-page-dragged.png")
    done(context)

    context, page = open_app(chromium, server, who, size=(1920, 1080))  # a new session: signed in again
    page.wait_for_selector("#w3 .whead")
    page.wait_for_timeout(300)
    again = page.locator("#w3").bounding_box()
    first = page.locator("#w1").bounding_box()
    assert again["y"] < first["y"], "the widget came back at its old place"
    # the same arrangement as left: w3's offset from w1 is what it was after the drag
    assert abs((again["x"] - first["x"]) - (moved["x"] - other["x"])) <= 3
    assert abs((again["y"] - first["y"]) - (moved["y"] - other["y"])) <= 3
    done(context)


def test_community_staff_get_only_their_community(chromium, server, served_db):
    staff = user(served_db, "community_staff", 1)
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    own = shapely.from_wkb(bytes(db.query("SELECT ST_AsWKB(geom_3857) FROM admin_units WHERE code = ?",
                                          [staff["unit"]])[0][0]))
    others = [n for (n,) in db.query("SELECT name FROM admin_units WHERE level = 'community' AND code <> ?",
                                     [staff["unit"]])]
    db.close()
    context, page = open_app(chromium, server, staff)
    page.evaluate("() => { brain.map.jumpTo({zoom: brain.map.getZoom() - 1}); }")  # look beyond the edge
    wait_idle(page)
    page.wait_for_timeout(500)
    wait_idle(page)
    page.screenshot(path=ARTIFACTS / "4-community-view.png")
    # the view reaches past the community's box, and no tile beyond it is asked for: there is nothing there (roads
    # and rivers are cut along the grids' edges, test_tiles.py)
    w, s, e, n = page.evaluate("brain.map.getBounds().toArray().flat()")
    view = shapely.box(*mercantile.xy(w, s), *mercantile.xy(e, n))
    box = own.envelope
    assert not box.buffer(100).contains(view), "the view does not reach past the community"
    checked = 0
    for url, status, body in page.tiles:
        assert status == 200
        z, x, y = (int(v) for v in url.split("/tiles/")[1].split(".mvt")[0].split("/")[1:])
        b = mercantile.xy_bounds(x, y, z)
        assert shapely.box(*b).intersects(box.buffer(1)), f"{url}: a tile beyond the community's box"
        fence = own.buffer(2 * (b.right - b.left) / 4096 + 0.05)
        for layer in mapbox_vector_tile.decode(body, default_options={"y_coord_down": True}).values():
            for f in layer["features"]:
                g = shapely.geometry.shape(f["geometry"])
                sx, sy = (b.right - b.left) / 4096, (b.top - b.bottom) / 4096
                g = shapely.transform(g, lambda c: c * [sx, -sy] + [b.left, b.top])
                assert fence.contains(g), f"{url}: a feature outside community {staff['unit']}"
                checked += 1
    assert checked > 50
    text = page.inner_text("body")
    assert not [n for n in others if n in text], "another community is named on the page"
    done(context)


@pytest.mark.parametrize("role,personal", [("community_staff", True), ("street_staff", False)])
def test_clicking_a_building_opens_it_with_the_roles_fields(chromium, server, served_db, role, personal):
    staff = user(served_db, "community_staff")
    who = staff if role == "community_staff" else next(
        u for u in served_db[1].values() if u["role"] == "street_staff" and staff["unit"].startswith(u["unit"]))
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    bid, lon, lat = db.query("SELECT b.id, b.lon, b.lat FROM buildings b JOIN people p ON p.building_id = b.id "
                             "WHERE b.community_code = ? GROUP BY ALL ORDER BY count(*) DESC, b.id LIMIT 1",
                             [staff["unit"]])[0]
    db.close()
    context, page = open_app(chromium, server, who)
    page.evaluate("brain.sync(['units', 'buildings'])")  # only buildings answer the click
    jump(page, lon, lat, 18)
    click_at(page, lon, lat)
    page.wait_for_selector(f"[data-building='{bid}']", timeout=15000)
    panel = page.inner_text("#detail")
    if personal:
        headers = page.eval_on_selector_all(".residents th[data-field]", "els => els.map(e => e.dataset.field)")
        assert {"name", "id_number", "phone"} <= set(headers)
        # grouped by household: one header row per household
        assert page.query_selector_all(".residents tbody.household")
        assert "身份证号" in panel and "id_number" not in panel
    else:
        assert not page.query_selector(".residents")
        assert "id_number" not in panel
    page.screenshot(path=ARTIFACTS / f"5-building-{role}.png")
    done(context)


def test_sign_in_by_name_and_password_and_out_again(chromium, server, served_db, one_backend):
    staff = next(u for u in served_db[1].values() if u.get("password"))
    name = next(n for n, u in served_db[1].items() if u is staff)
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(f"{server.url}/?token=not-a-token")  # the sign-in page needs no map
    page.wait_for_selector("#signin-submit")
    assert page.query_selector(".error"), "a bad link must say why the sign-in failed"
    page.fill("#signin-name", name)
    page.fill("#signin-password", "wrong password")
    page.click("#signin-submit")
    page.wait_for_selector(".signin .error")
    page.fill("#signin-name", name)
    page.fill("#signin-password", staff["password"])
    page.click("#signin-submit")
    page.wait_for_selector("[data-indicator=population]")
    wait_idle(page)
    assert name in page.inner_text("#who")
    # usable at 1366×768: map and indicator panel both on screen
    for sel in ("#map", "#panel"):
        box = page.locator(sel).bounding_box()
        assert box["width"] > 250 and box["x"] + box["width"] <= 1366 + 1
    cookie = next(c for c in context.cookies() if c["name"] == "brain_session")
    tile = httpx.get(f"{server.url}/tiles/units/14/13338/7131.mvt", cookies={"brain_session": cookie["value"]})
    assert tile.status_code == 200  # the map's tiles ride on the session
    page.click("#signout")
    page.wait_for_selector("#signin-submit")
    again = httpx.get(f"{server.url}/tiles/units/14/13338/7131.mvt", cookies={"brain_session": cookie["value"]})
    assert again.status_code == 401, "a signed-out session must not fetch tiles"
    done(context)


def test_english_keeps_the_view_and_drills_down(chromium, server, served_db, one_backend):
    analyst = user(served_db, "district_analyst")
    context, page = open_app(chromium, server, analyst)
    page.evaluate("brain.sync(['units', 'buildings', 'organisations'])")
    page.click("#time-preset label:nth-child(2)")  # 7 days
    until(page, "brain.state.time && brain.state.time.preset === '7d'")
    c = page.evaluate("brain.map.getCenter()")
    jump(page, c["lng"] + 0.002, c["lat"] - 0.001, 14.5)
    before = page.evaluate("({c: brain.map.getCenter(), z: brain.map.getZoom()})")
    box = page.locator("#map").bounding_box()
    drag_rectangle(page, box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4, 200, 150)
    page.wait_for_selector("#breadcrumb .area")
    shapes = page.evaluate("brain.drawnShapes()")
    page.click("#lang-en")
    page.wait_for_selector("[data-indicator=population]")
    wait_idle(page)
    page.wait_for_selector("#breadcrumb .area")  # the drawn area is kept too
    assert page.evaluate("brain.drawnShapes()") == shapes
    until(page, "document.querySelector('#panel-title').textContent === 'Drawn area'")
    assert "Layers" in page.inner_text(".left") and "图层" not in page.inner_text(".left")
    assert "population" in page.inner_text("#panel") and "人口" not in page.inner_text("#panel")
    after = page.evaluate("({c: brain.map.getCenter(), z: brain.map.getZoom()})")
    assert abs(after["z"] - before["z"]) < 0.02
    assert abs(after["c"]["lng"] - before["c"]["lng"]) < 1e-4 and abs(after["c"]["lat"] - before["c"]["lat"]) < 1e-4
    assert page.evaluate("brain.state.layers") == ["units", "buildings", "organisations"]
    assert page.evaluate("brain.state.time.preset") == "7d"
    zoom = page.evaluate("brain.map.getZoom()")
    first = page.locator(".unit-list .unit").first
    label = first.inner_text()
    first.click()
    until(page, "document.querySelector('#panel-title').textContent.includes('street')")
    until(page, f"brain.map.getZoom() > {zoom}")
    assert label.split()[-1] in page.inner_text("#breadcrumb")
    page.screenshot(path=ARTIFACTS / "6-english-street.png")
    done(context)


def test_widgets_are_added_and_removed_and_search_stays_in_the_community(chromium, server, served_db, one_backend):
    staff = user(served_db, "community_staff", 1)
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    theirs = db.query("SELECT address FROM buildings WHERE community_code <> ? AND address NOT IN "
                      "(SELECT address FROM buildings WHERE community_code = ?) ORDER BY id LIMIT 1",
                      [staff["unit"], staff["unit"]])[0][0]
    mine = db.query("SELECT address FROM buildings WHERE community_code = ? ORDER BY id LIMIT 1",
                    [staff["unit"]])[0][0]
    db.close()
    context, page = open_app(chromium, server, staff)
    page.fill("#search", theirs)
    page.press("#search", "Enter")
    until(page, "document.querySelector('#search-results').textContent.length > 0")
    assert theirs not in page.inner_text("#search-results")
    page.fill("#search", mine)
    page.press("#search", "Enter")
    until(page, f"document.querySelector('#search-results').textContent.includes({json.dumps(mine)})")
    page.click("button[id*='\"type\":\"add\"'][id*='alarms']")
    page.wait_for_selector("[data-widget=alarms]")
    page.click("#w1 .rm")
    until(page, "!document.querySelector('#w1')")
    page.wait_for_timeout(500)
    done(context)
    context, page = open_app(chromium, server, staff)  # signed in again: the page is as left
    page.wait_for_selector("[data-widget=alarms]")
    assert not page.query_selector("#w1")
    done(context)


def test_a_widget_dragged_from_the_palette_lands_where_dropped_and_stays(chromium, server, served_db, one_backend):
    who = user(served_db, "grid_worker", 2)
    context, page = open_app(chromium, server, who)
    page.locator(".react-grid-layout").scroll_into_view_if_needed()
    page.drag_and_drop("#palette-party", ".react-grid-layout", target_position={"x": 40, "y": 20})
    page.wait_for_selector("[data-widget=party]")
    page.wait_for_timeout(500)
    done(context)
    context, page = open_app(chromium, server, who)
    page.wait_for_selector("[data-widget=party]")
    party, first = page.locator("[data-widget=party]").bounding_box(), page.locator("#w1").bounding_box()
    assert party["y"] < first["y"] and abs(party["x"] - first["x"]) < 5, \
        "the dropped widget should sit where it was dropped: top left, above the widget that was there"
    done(context)


def _grid_worker_at_their_grid(chromium, server, served_db):
    worker = user(served_db, "grid_worker", 1)
    context, page = open_app(chromium, server, worker)
    bbox = page.evaluate("brain.conf.root.bbox")
    page.evaluate("b => brain.map.fitBounds([[b[0], b[1]], [b[2], b[3]]], {padding: 30, animate: false})", bbox)
    page.wait_for_timeout(200)
    wait_idle(page)
    assert page.evaluate("brain.map.getZoom()") >= 15, "the grid should fit the view at the events' detail zoom"
    return worker, context, page


def test_a_click_on_an_event_opens_it_and_the_time_slider_shows_the_apis_count(chromium, server, served_db):
    worker, context, page = _grid_worker_at_their_grid(chromium, server, served_db)
    events = rendered(page, ["events-events-dot"])
    assert events, "the grid worker's events are drawn"
    target = events[0]
    lon, lat = target["geometry"]["coordinates"]
    click_at(page, lon, lat)
    page.wait_for_selector("#detail [data-table=events]")
    opened = page.get_attribute("#detail [data-table=events]", "data-feature")
    assert opened in {e["properties"]["id"] for e in events if abs(e["geometry"]["coordinates"][0] - lon) < 1e-4
                      and abs(e["geometry"]["coordinates"][1] - lat) < 1e-4}
    assert page.evaluate("brain.selected.type") == "Point"  # marked on the map
    detail = page.inner_text("#detail")
    assert "处置时间线" in detail and "响应时限" in detail
    page.screenshot(path=ARTIFACTS / "7-event-panel.png")

    api = f"{server.url}/events"
    auth = {"Authorization": f"Bearer {worker['token']}"}
    everything = httpx.get(api, params={"size": 1}, headers=auth).json()["total"]
    ids = {e["properties"]["id"] for e in rendered(page, ["events-events-dot"])}
    assert len(ids) == everything, "all of the grid's events are drawn before a window is chosen"
    rail = page.locator("#time-days .dash-slider-track").bounding_box()
    counts = set()
    for share in (0.03, 0.25):
        page.mouse.click(rail["x"] + rail["width"] * share, rail["y"] + rail["height"] / 2)
        until(page, "brain.state.time && brain.state.time.preset[0] === 'd' && "
                               f"Math.abs(brain.state.time.preset.slice(1) - {1 + 364 * share}) < 20")
        page.wait_for_timeout(300)
        wait_idle(page)
        since = page.evaluate("brain.state.time.since")
        want = httpx.get(api, params={"size": 1, "since": since.replace(" ", "T")}, headers=auth).json()["total"]
        got = {e["properties"]["id"] for e in rendered(page, ["events-events-dot"])}
        assert len(got) == want, (since, len(got), want)
        # the events list and the indicators follow the window too
        page.click("#tabs >> text=事件")
        until(page, f"document.querySelector('#ev-pages').textContent.includes('共 {want:,} 条')")
        page.click("#tabs >> text=指标")
        until(page, f"document.querySelector('#panel [data-indicator=events]') && "
                               f"document.querySelector('#panel [data-indicator=events]').dataset.value == '{want}'")
        page.click("#tabs >> text=详情")
        counts.add(want)
    assert len(counts) == 2 and max(counts) < everything, "the windows should select different events"
    done(context)


def test_two_and_a_half_d_raises_buildings_and_opens_a_raised_one(chromium, server, served_db, one_backend):
    staff = user(served_db, "community_staff")
    context, page = open_app(chromium, server, staff)
    page.evaluate("brain.sync(['units', 'buildings'])")
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    bid, lon, lat = db.query("SELECT id, lon, lat FROM buildings WHERE community_code = ? ORDER BY floors DESC, id "
                             "LIMIT 1", [staff["unit"]])[0]
    db.close()
    jump(page, lon, lat, 16.5)
    page.click(".brain-mode")
    until(page, "brain.map.getPitch() > 30")
    wait_idle(page)
    assert page.evaluate("brain.map.getLayoutProperty('buildings-buildings-3d', 'visibility')") == "visible"
    assert page.evaluate("brain.map.getLayoutProperty('buildings-buildings-fill', 'visibility')") == "none"
    raised = rendered(page, ["buildings-buildings-3d"])
    assert raised and all(f["properties"].get("id") for f in raised)
    assert "mode=3d" in page.url
    page.screenshot(path=ARTIFACTS / "8-two-and-a-half-d.png")
    jump(page, lon, lat, 17, pitch=page.evaluate("brain.map.getPitch()"))
    click_at(page, lon, lat)
    page.wait_for_selector(f"[data-building='{bid}']", timeout=15000)
    page.click(".brain-mode")
    until(page, "brain.map.getPitch() === 0")
    done(context)


def test_a_shared_link_reopens_the_view_and_never_shows_another_user_outside_their_unit(chromium, server,
                                                                                           served_db):
    analyst = user(served_db, "district_analyst")
    context, page = open_app(chromium, server, analyst)
    page.evaluate("brain.sync(['units', 'buildings', 'events', 'organisations'])")
    page.click("#time-preset label:nth-child(3)")  # this month
    until(page, "brain.state.time && brain.state.time.preset === 'month'")
    page.locator("#theme").click()
    page.locator(".dash-dropdown-option").first.click()
    until(page, "brain.state.theme !== null")
    theme = page.evaluate("brain.state.theme.layer + ':' + brain.state.theme.indicator")
    c = page.evaluate("brain.map.getCenter()")
    jump(page, c["lng"], c["lat"], 13.2)
    link = page.evaluate("brain.url()")
    view = page.evaluate("({c: brain.map.getCenter(), z: brain.map.getZoom()})")
    done(context)

    context, page = open_app(chromium, server, analyst)  # the same user again: the same view
    page.goto(server.url + link)
    page.wait_for_selector("[data-indicator=population]")
    wait_idle(page)
    again = page.evaluate("({c: brain.map.getCenter(), z: brain.map.getZoom()})")
    assert abs(again["z"] - view["z"]) < 0.02 and abs(again["c"]["lng"] - view["c"]["lng"]) < 1e-4
    assert page.evaluate("brain.state.layers") == ["units", "buildings", "events", "organisations"]
    assert page.evaluate("brain.state.time.preset") == "month"
    assert page.evaluate("brain.state.theme.layer + ':' + brain.state.theme.indicator") == theme
    # the theme's grids are shaded in classes, with a legend of their bounds
    assert len(page.query_selector_all("#theme-legend .key")) >= 2
    assert rendered(page, [f"{theme.split(':')[0]}-{page.evaluate('brain.state.theme.part')}-agg"])
    done(context)

    # a community worker opening the analyst's link (another street's unit in it): their own community, only
    staff = user(served_db, "community_staff", 1)
    query = parse_qs(urlsplit(link).query)
    query["unit"] = [next(u["unit"] for u in served_db[1].values() if u["level"] == "community"
                          and u["unit"] != staff["unit"])]
    foreign = "/?" + "&".join(f"{k}={v[0]}" for k, v in query.items())
    context, page = open_app(chromium, server, staff)
    page.goto(server.url + foreign)
    page.wait_for_selector("[data-indicator=population]")
    wait_idle(page)
    assert staff["unit"] in page.inner_text("#panel-title")
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    own = shapely.from_wkb(bytes(db.query("SELECT ST_AsWKB(geom) FROM admin_units WHERE code = ?",
                                          [staff["unit"]])[0][0])).buffer(2e-4)
    db.close()
    # every rendered feature, by our layer's id (the base layers share one composite source): roads and water too,
    # cut along the grids' edges
    drawn = page.evaluate("""() => brain.map.queryRenderedFeatures().filter(f => ['units', 'water', 'roads',
        'buildings', 'events', 'organisations', 'people', 'devices', 'party'].includes((f.layer.metadata || {}).brain))
        .map(f => f.geometry)""")
    assert drawn
    for g in drawn:
        assert own.contains(shapely.geometry.shape(g)), "a feature outside the community was drawn"
    done(context)


def _codes(served_db) -> set[str]:
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    codes = {c for (c,) in db.query("SELECT code FROM vocabulary")}
    db.close()
    return codes | {c.split(".")[-1] for c in codes}


def test_the_chinese_page_shows_no_code_and_fits_three_screens(chromium, server, served_db, one_backend):
    codes = _codes(served_db)
    worker, context, page = _grid_worker_at_their_grid(chromium, server, served_db)
    events = rendered(page, ["events-events-dot"])
    click_at(page, *events[0]["geometry"]["coordinates"])
    page.wait_for_selector("#detail [data-table=events]")
    texts = [page.inner_text("body")]
    page.click("#tabs >> text=事件")
    page.wait_for_selector("#events li")
    texts.append(page.inner_text("body"))
    page.hover("#map", position={"x": 5, "y": 5})
    words = {w for text in texts for w in re.findall(r"[A-Za-z_][A-Za-z_.]*", text)}
    shown = sorted(words & codes)
    assert not shown, f"codes shown as text on the Chinese page: {shown}"
    assert not page.errors, page.errors[:3]
    done(context)

    staff = user(served_db, "community_staff")
    for w, h in ((1920, 1080), (1366, 768), (768, 1024)):
        context, page = open_app(chromium, server, staff, size=(w, h))
        page.wait_for_selector("[data-widget]")
        page.screenshot(path=ARTIFACTS / f"9-one-map-{w}x{h}.png")
        assert page.evaluate("document.documentElement.scrollWidth") <= w + 1, "wider than the screen"
        if w == 1920:  # map, panel and My page on one screen, no page scroll
            assert page.evaluate("document.documentElement.scrollHeight") <= h + 1
            for sel in ("#map", "#panel", "#dock [data-widget]"):
                box = page.locator(sel).first.bounding_box()
                assert box and box["y"] + 20 < h and box["x"] + 20 < w, sel
        done(context)


def test_the_first_view_is_painted_once_complete_and_a_late_source_does_not_leave_it_empty(chromium, server,
                                                                                            served_db, one_backend):
    """The map is not drawn piece by piece as its tiles come (under SwiftShader each partial frame costs a whole one,
    bench/dashboard.py): its first paint waits for every tile of the view, for at most brain.firstPaintWithin ms."""
    analyst = user(served_db, "district_analyst")

    def devices(page):  # the devices' style layers (per grid at the opening zoom)
        return page.evaluate("brain.map.getStyle().layers.filter(l => l.source === 'devices').map(l => l.id)")

    for within in (60_000, 1_500):
        context = chromium.new_context(viewport={"width": 1920, "height": 1080})
        context.add_init_script(f"window.brain = {{firstPaintWithin: {within}}};")
        page = context.new_page()
        held = []  # the devices' tiles are held back; every other source answers
        page.route("**/tiles/devices/**", lambda route: held.append(route))
        page.goto(f"{server.url}/?token={analyst['token']}")
        until(page, """window.brain && brain.map &&
            brain.map.getSource('base') && brain.map.isSourceLoaded('base') && brain.map.isSourceLoaded('mask')""",
                               timeout=30000)
        assert held and not page.evaluate("brain.map.isSourceLoaded('devices')")
        if within == 60_000:
            page.wait_for_timeout(500)
            # every other source's tiles came (each asks the map for a frame), and nothing is drawn yet
            others = page.evaluate("""(() => { const m = brain.map, z = m.getZoom();
                return Object.keys(m.getStyle().sources).filter(id => id !== 'devices' && m.getSource(id).type === 'vector'
                    && m.getStyle().layers.some(l => l.source === id && (l.layout || {}).visibility !== 'none'
                                                     && (l.minzoom || 0) <= z && z < (l.maxzoom || 24))); })()""")
            until(page, f"{others}.every(id => brain.map.isSourceLoaded(id))")
            assert {"mask", "base"} <= set(others) and page.evaluate("brain.tilesLoaded") >= len(others)
            assert paint_of(page)["share"] == 0
            for route in held:
                route.continue_()
            page.unroute("**/tiles/devices/**")
            wait_idle(page)
            assert paint_of(page)["share"] > 0.2 and rendered(page, devices(page))
        else:  # the devices never answer: the map is drawn anyway once its time is up, without them
            until(page, """() => { const c = brain.map.getCanvas(), o = document.createElement('canvas');
                o.width = 64; o.height = 64; const g = o.getContext('2d'); g.drawImage(c, 0, 0, 64, 64);
                return g.getImageData(0, 0, 64, 64).data.some((v, i) => i % 4 === 3 && v > 0); }""", timeout=15000)
            assert paint_of(page)["share"] > 0.2
            assert not page.evaluate("brain.idle()") and not rendered(page, devices(page))
        done(context)


def test_the_map_draws_a_sky_only_when_its_style_has_one(chromium, server, served_db, one_backend):
    """MapLibre 5.24 draws a default sky in every frame, seen nowhere under our maxPitch (30-35 ms of SwiftShader a
    frame, bench/dashboard.py): brain.js skips it unless the style has a sky. Its shader program is made at its
    first draw, so the map's programs say whether it was drawn."""
    analyst = user(served_db, "district_analyst")
    context, page = open_app(chromium, server, analyst)
    sky = "Object.keys(brain.map.painter.cache).filter(k => k.startsWith('sky/')).length"
    assert paint_of(page)["share"] > 0.2 and page.evaluate(sky) == 0
    page.click(".brain-mode")  # 2.5D: tilted as far as the map goes
    page.evaluate("brain.map.jumpTo({pitch: brain.map.getMaxPitch()})")
    wait_idle(page)
    assert page.evaluate("brain.map.getPitch()") == 60 and page.evaluate(sky) == 0
    assert paint_of(page)["share"] > 0.2
    page.evaluate("brain.map.setSky({'sky-color': '#ff0000', 'horizon-color': '#ff0000'}); brain.map.triggerRepaint()")
    until(page, f"{sky} === 1", timeout=15000)  # a style's own sky is drawn
    done(context)


def _protomaps_archive(truth: str, path) -> None:
    """A basemap archive in the Protomaps schema (layers earth, water, roads), as a bureau would extract for its
    area with `pmtiles extract`; here cut from the sample's own water and roads, z12–15."""
    import gzip

    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    db = brain.connect(f"duckdb:///{truth}", read_only=True)
    water = [shapely.from_wkb(bytes(g)) for (g,) in db.query(
        "SELECT ST_AsWKB(geom_3857) FROM waters WHERE ST_GeometryType(geom) IN ('POLYGON', 'MULTIPOLYGON')")]
    roads = [shapely.from_wkb(bytes(g)) for (g,) in db.query("SELECT ST_AsWKB(geom_3857) FROM roads")]
    x0, y0, x1, y1 = db.query("SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM admin_units "
                              "WHERE level = 'district'")[0]
    db.close()
    tiles = []
    for z in range(12, 16):
        for t in mercantile.tiles(x0, y0, x1, y1, z):
            b = mercantile.xy_bounds(t)
            box = shapely.box(b.left, b.bottom, b.right, b.top)

            def local(g):  # tile coordinates, y up (mapbox_vector_tile's default)
                return shapely.transform(g, lambda c: (c - [b.left, b.bottom]) / (b.right - b.left) * 4096)

            layers = [{"name": "earth", "features": [{"geometry": local(box).wkt, "properties": {"kind": "earth"}}]},
                      {"name": "water", "features": [{"geometry": local(g.intersection(box)).wkt,
                                                      "properties": {"kind": "water"}}
                                                     for g in water if g.intersects(box)]},
                      {"name": "roads", "features": [{"geometry": local(g.intersection(box)).wkt,
                                                      "properties": {"kind": "minor_road"}}
                                                     for g in roads if g.intersects(box)]}]
            tiles.append((zxy_to_tileid(z, t.x, t.y), gzip.compress(mapbox_vector_tile.encode(
                [layer for layer in layers if layer["features"]]))))
    with open(path, "wb") as f:
        w = Writer(f)
        for tid, data in sorted(tiles):
            w.write_tile(tid, data)
        w.finalize({"tile_type": TileType.MVT, "tile_compression": Compression.GZIP,
                    "min_lon_e7": int(x0 * 1e7), "min_lat_e7": int(y0 * 1e7), "max_lon_e7": int(x1 * 1e7),
                    "max_lat_e7": int(y1 * 1e7), "center_zoom": 13, "center_lon_e7": int((x0 + x1) / 2 * 1e7),
                    "center_lat_e7": int((y0 + y1) / 2 * 1e7)},
                   {"vector_layers": [{"id": n, "fields": {"kind": "String"}} for n in ("earth", "water", "roads")]})


def test_a_protomaps_basemap_archive_is_served_by_range_and_drawn_under_our_layers(chromium, served_db, dbs,
                                                                                   tmp_path, one_backend):
    from conftest import Server

    archive = tmp_path / "basemap.pmtiles"
    _protomaps_archive(served_db.truth, archive)
    srv = Server(dbs.clone(served_db.pristine, "protomaps"), BRAIN_BASEMAP_PMTILES=str(archive))
    try:
        staff = user(served_db, "community_staff")
        assert httpx.get(f"{srv.url}/basemap.pmtiles").status_code == 401, "the basemap is for signed-in users"
        ranged = httpx.get(f"{srv.url}/basemap.pmtiles", headers={"Range": "bytes=0-126",
                                                                  "Authorization": f"Bearer {staff['token']}"})
        assert ranged.status_code == 206 and ranged.content[:7] == b"PMTiles"
        context, page = open_app(chromium, srv, staff)
        page.evaluate("() => brain.map.jumpTo({zoom: 14.2})")
        page.wait_for_timeout(300)
        wait_idle(page)
        drawn = page.evaluate("() => brain.map.queryRenderedFeatures().filter(f => f.source === 'protomaps')"
                              ".map(f => f.sourceLayer)")
        assert {"earth", "water", "roads"} <= set(drawn)
        reads = page.evaluate("""() => performance.getEntriesByType('resource')
            .filter(e => e.name.includes('/basemap.pmtiles')).map(e => e.responseStatus)""")
        assert reads and set(reads) == {206}, reads  # read by ranges, never the whole file
        assert not page.errors, page.errors[:3]
        page.screenshot(path=ARTIFACTS / "10-protomaps-basemap.png")
        done(context)
    finally:
        (ARTIFACTS / "protomaps-server.log").write_text(srv.stop())


def test_each_widget_exports_csv_and_png_in_the_pages_language(chromium, server, served_db, one_backend):
    analyst = user(served_db, "district_analyst")
    context, page = open_app(chromium, server, analyst)
    page.wait_for_selector("#w2 img.chart-pyramid")
    with page.expect_download() as got:
        page.click("#w1 .wbtn >> text=CSV")
    text = open(got.value.path(), encoding="utf-8").read()
    assert text.startswith("\ufeff") and got.value.suggested_filename == "核心指标.csv"
    shown = panel_values(page)
    assert f"人口,{shown['population']}" in text.replace("\r", "")
    # the age pyramid (an SVG image) prints its CSV's numbers, band by band, oldest on top, bars on one scale
    with page.expect_download() as got:
        page.click("#w2 .wbtn >> text=CSV")
    table = list(csv.reader(io.StringIO(open(got.value.path(), encoding="utf-8-sig").read())))
    assert table[0] == ["年龄段", "男", "女"] and len(table) > 3
    svg = ET.fromstring(base64.b64decode(page.get_attribute("#w2 img.chart", "src").split(",", 1)[1]))
    texts = [t.text for t in svg.iter(SVG + "text")]
    rows = list(reversed(table[1:]))
    assert texts == ["男", "女"] + [x for band, m, w in rows for x in (f"{int(m):,}", band, f"{int(w):,}")]
    widths = [float(r.get("width").rstrip("%")) for r in svg.iter(SVG + "rect")][2:]  # after the legend's keys
    counts = [int(v) for _, m, w in rows for v in (m, w)]
    assert widths == pytest.approx([34 * n / max(counts) for n in counts], abs=0.01)
    for card, name, colours in (("#w1", "核心指标.png", []), ("#w2", "年龄结构.png", ["#1f77b4", "#e377c2"])):
        with page.expect_download() as got:  # numbers drawn as text; a chart as the page draws it
            page.click(f"{card} .wbtn >> text=PNG")
        assert got.value.suggested_filename == name
        data = open(got.value.path(), "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        # decoded by the browser: the chart's bars are in the image, in their colours
        found = page.evaluate("""([b64, colours]) => new Promise(done => { const img = new Image();
            img.onload = () => { const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
              const g = c.getContext('2d'); g.drawImage(img, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data;
              done(colours.map(h => { const [r, gr, b] = [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)); let n = 0;
                for (let i = 0; i < d.length; i += 4) { if (d[i] === r && d[i + 1] === gr && d[i + 2] === b) { n++; } }
                return n; })); };
            img.src = 'data:image/png;base64,' + b64; })""", [base64.b64encode(data).decode(), colours])
        assert all(n > 200 for n in found), found
    assert not page.errors, page.errors[:3]
    # printed: the map and the panel on the page, not the layer list or My page
    page.emulate_media(media="print")
    assert page.locator("#map").is_visible() and page.locator("#panel").is_visible()
    assert not page.locator(".left").is_visible() and not page.locator("#dock").is_visible()
    page.pdf(path=ARTIFACTS / "11-printed.pdf", format="A4", landscape=True)
    done(context)


def test_the_api_docs_open_offline(chromium, server, one_backend):
    """/docs, the API's browser a web developer opens first, draws every operation from files brain serves itself:
    FastAPI's own page loads Swagger UI from a CDN, which these machines never reach (it was a blank page)."""
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    outside = []

    def offline(route):  # as on a machine with no internet: nothing but brain answers
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock", timeout=30000)
    # every path of the API is listed (Swagger UI breaks long paths with zero-width spaces)
    paths = {p.replace("\u200b", "").strip() for p in page.locator(".opblock-summary-path").all_inner_texts()}
    assert paths == set(httpx.get(f"{server.url}/openapi.json").json()["paths"])
    assert "/tiles/{layer}/{z}/{x}/{y}.mvt" in paths
    assert page.locator(".btn.authorize").count() == 1  # a token can be given for "Try it out"
    assert not outside, outside
    assert not errors, errors[:3]
    page.screenshot(path=ARTIFACTS / "12-api-docs.png")
    context.close()


def test_a_script_slipped_into_the_page_does_not_run(chromium, server, served_db, one_backend):
    """The pages' Content-Security-Policy runs only brain's scripts and Dash's inline ones: delivered text that
    slipped through as markup (an event's description, a name) would run nothing."""
    analyst = user(served_db, "district_analyst")
    policies = httpx.get(f"{server.url}/").headers.get_list("Content-Security-Policy")  # the sign-in page
    assert len(policies) == 1 and "frame-ancestors 'none'" in policies[0]  # one policy: the service's, and scripts
    script = next(d for d in policies[0].split("; ") if d.startswith("script-src "))
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script and "'sha256-" in script
    context, page = open_app(chromium, server, analyst)
    ran = page.evaluate("""() => new Promise(done => {
        const s = document.createElement('script'); s.textContent = 'window.slipped = 1;';
        document.body.appendChild(s);
        const d = document.createElement('div'); d.innerHTML = '<img src="data:," onerror="window.slipped = 2">';
        document.body.appendChild(d);
        setTimeout(() => done([window.slipped || 0, window.brainCsp.slice()]), 300); })""")
    assert ran[0] == 0, "an injected script ran"
    assert any(v.startswith("script-src") for v in ran[1]), ran[1]
    page.evaluate("window.brainCsp = []")  # refused on purpose
    done(context)


def _png(rgb: tuple[int, int, int], size: int = 256) -> bytes:
    """A plain-coloured PNG (RGB, 8 bits): one raster basemap tile."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_an_online_raster_basemap_is_let_in_by_the_pages_policy(chromium, served_db, dbs, one_backend):
    """BRAIN_BASEMAP_URL: a raster basemap from another origin (here another loopback port) is fetched and drawn
    under our layers; the pages' Content-Security-Policy lets in that origin's pictures, and no other."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from conftest import Server

    tile, asked = _png((222, 235, 247)), []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *args):
            pass

    tiles = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    threading.Thread(target=tiles.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{tiles.server_address[1]}"
    srv = Server(dbs.clone(served_db.pristine, "raster"), BRAIN_BASEMAP_URL=origin + "/{z}/{x}/{y}.png")
    try:
        policy = httpx.get(f"{srv.url}/").headers["Content-Security-Policy"]
        policy = dict(d.split(" ", 1) for d in policy.split("; "))
        assert origin in policy["img-src"] and origin in policy["connect-src"]
        assert origin not in policy["script-src"] and origin not in policy["default-src"]
        context, page = open_app(chromium, srv, user(served_db, "district_analyst"))
        assert asked and all(p.endswith(".png") for p in asked)
        assert page.evaluate("() => brain.map.isSourceLoaded('basemap')")
        assert not page.errors, page.errors[:3]
        done(context)  # nothing refused
    finally:
        srv.stop()
        tiles.shutdown()
