"""The dashboards in a real headless Chromium (Debian's), served by `brain serve` on a loopback port.

Screenshots of each step are kept in test-artifacts/ (CI keeps them; one is in the README).
"""

from __future__ import annotations

import json
import shutil

import httpx
import mapbox_vector_tile
import mercantile
import pytest
import shapely
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

import brain
from conftest import ROOT

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
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


def user(served_db, role, index=0):
    return sorted((u for u in served_db[1].values() if u["role"] == role), key=lambda u: u["unit"])[index]


def open_app(chromium, server, who, size=(1920, 1080)):
    """A fresh browser context signed in through the /?token= link, with the map drawn."""
    context = chromium.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.tiles = []  # (url, status, body) of every tile the page fetched

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
    """Close a browser context without failing on tile requests still in flight."""
    context.unroute_all(behavior="ignoreErrors")
    for page in context.pages:
        page.unroute_all(behavior="ignoreErrors")
    context.close()


def wait_idle(page):
    page.wait_for_function("window.brain && window.brain.idle && window.brain.idle()", timeout=30000)


def panel_values(page) -> dict:
    return {el.get_attribute("data-indicator"): json.loads(el.get_attribute("data-value"))
            for el in page.query_selector_all("#panel [data-indicator]")}


def test_analyst_sees_tiles_and_a_drawn_rectangle_equals_post_metrics(chromium, server, served_db):
    analyst = user(served_db, "district_analyst")
    context, page = open_app(chromium, server, analyst)
    assert page.tiles and all(status == 200 for _, status, _ in page.tiles)
    assert sum(len(mapbox_vector_tile.decode(body)) for _, _, body in page.tiles if body) > 0
    page.screenshot(path=ARTIFACTS / "1-analyst-map.png")

    box = page.locator("#map").bounding_box()
    page.click(".leaflet-draw-draw-rectangle")
    x0, y0 = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 200, y0 + 150, steps=8)
    page.mouse.move(x0 + 320, y0 + 260, steps=8)
    page.mouse.up()
    page.wait_for_selector("#breadcrumb .area")
    page.wait_for_function("document.querySelector('#panel-title') && "
                           "document.querySelector('#panel-title').textContent.length > 0 && "
                           "document.querySelectorAll('#panel .resources').length > 0")
    drawn = page.evaluate("""() => { let g = null; brain.map.eachLayer(l => {
        if (l instanceof L.Rectangle) g = l.toGeoJSON().geometry; }); return g; }""")
    assert drawn and drawn["type"] == "Polygon"
    shown = panel_values(page)
    served = httpx.post(f"{server.url}/metrics", json=drawn, timeout=30,
                        headers={"Authorization": f"Bearer {analyst['token']}"}).json()["values"]
    assert shown["population"] > 0
    for name in HEADLINE:
        assert shown[name] == served[name], name
    page.screenshot(path=ARTIFACTS / "2-drawn-area.png")
    done(context)


def test_a_dragged_widget_stays_where_it_was_left(chromium, server, served_db):
    who = user(served_db, "street_staff")
    context, page = open_app(chromium, server, who, size=(1366, 768))
    page.wait_for_selector("#w3 .whead")
    page.locator("#w3").scroll_into_view_if_needed()
    w1 = page.locator("#w1").bounding_box()
    before = page.locator("#w3").bounding_box()
    assert before["y"] > w1["y"], "the default page starts with w3 under w1"
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
    page.screenshot(path=ARTIFACTS / "3-my-page-dragged.png")
    done(context)

    context, page = open_app(chromium, server, who, size=(1366, 768))  # a new session: signed in again
    page.wait_for_selector("#w3 .whead")
    page.locator("#w3").scroll_into_view_if_needed()
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
    page.evaluate("() => { brain.map.setZoom(brain.map.getZoom() - 1); }")  # look beyond the edge
    wait_idle(page)
    page.wait_for_timeout(500)
    wait_idle(page)
    page.screenshot(path=ARTIFACTS / "4-community-view.png")
    checked = 0
    for url, status, body in page.tiles:
        assert status == 200
        z, x, y = (int(v) for v in url.split("/tiles/")[1].split(".mvt")[0].split("/")[1:])
        b = mercantile.xy_bounds(x, y, z)
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
    page.evaluate(f"() => brain.map.setView([{lat}, {lon}], 18, {{animate: false}})")
    page.wait_for_timeout(300)
    wait_idle(page)
    pt = page.evaluate(f"() => brain.map.latLngToContainerPoint([{lat}, {lon}])")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + pt["x"], box["y"] + pt["y"])
    page.wait_for_selector(f"[data-building='{bid}']", timeout=15000)
    panel = page.inner_text("#building")
    if personal:
        headers = page.eval_on_selector_all(".residents th", "els => els.map(e => e.textContent)")
        assert {"name", "id_number", "phone"} <= set(headers)
    else:
        assert not page.query_selector(".residents")
        assert "id_number" not in panel
    page.screenshot(path=ARTIFACTS / f"5-building-{role}.png")
    done(context)


def test_sign_in_by_name_and_password_and_out_again(chromium, server, served_db):
    staff = next(u for u in served_db[1].values() if u.get("password"))
    name = next(n for n, u in served_db[1].items() if u is staff)
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(f"{server.url}/?token=not-a-token")
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


def test_english_labels_and_unit_drill_down(chromium, server, served_db):
    analyst = user(served_db, "district_analyst")
    context, page = open_app(chromium, server, analyst)
    page.click("#lang-en")
    page.wait_for_selector("[data-indicator=population]")
    assert "Layers" in page.inner_text(".left") and "图层" not in page.inner_text(".left")
    assert "population" in page.inner_text("#panel") and "人口" not in page.inner_text("#panel")
    zoom = page.evaluate("brain.map.getZoom()")
    first = page.locator(".unit-list .unit").first
    label = first.inner_text()
    first.click()
    page.wait_for_function("document.querySelector('#panel-title').textContent.includes('街道') || "
                           "document.querySelector('#panel-title').textContent.includes('street')")
    page.wait_for_function(f"brain.map.getZoom() > {zoom}")
    assert label.split()[-1] in page.inner_text("#breadcrumb")
    page.screenshot(path=ARTIFACTS / "6-english-street.png")
    done(context)


def test_widgets_are_added_and_removed_and_search_stays_in_the_community(chromium, server, served_db):
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
    page.wait_for_function("document.querySelector('#search-results').textContent.length > 0")
    assert theirs not in page.inner_text("#search-results")
    page.fill("#search", mine)
    page.press("#search", "Enter")
    page.wait_for_function(f"document.querySelector('#search-results').textContent.includes({json.dumps(mine)})")
    page.click("button[id*='\"type\":\"add\"'][id*='alarms']")
    page.wait_for_selector("[data-widget=alarms]")
    page.click("#w1 .rm")
    page.wait_for_function("!document.querySelector('#w1')")
    page.wait_for_timeout(500)
    done(context)
    context, page = open_app(chromium, server, staff)  # signed in again: the page is as left
    page.wait_for_selector("[data-widget=alarms]")
    assert not page.query_selector("#w1")
    done(context)


def test_a_widget_dragged_from_the_palette_lands_where_dropped_and_stays(chromium, server, served_db):
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
