"""The HTTP service over a real socket: status codes, masking in JSON, the audit log, and a schemathesis run."""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import brain
from brain.model import ENTITIES
from conftest import Server

PERSONAL = {e.name: {f.name for f in e.fields if f.personal} for e in ENTITIES.values()}


def user_of(served_db, role, index=0):
    users = sorted((n, u) for n, u in served_db[1].items() if u["role"] == role)
    return users[index][1]


def get(srv, path, user=None, **params):
    headers = {"Authorization": f"Bearer {user['token']}"} if user else {}
    return httpx.get(srv.url + path, headers=headers, params=params or None, timeout=30)


def assert_masked(drill: dict) -> None:
    """A building drill-down without a personal field of any entity it lists."""
    assert drill["households"] is None
    for key, entity in (("organisations", "organisations"), ("events", "events")):
        for row in drill[key] or []:
            assert not PERSONAL[entity] & set(row), (entity, PERSONAL[entity] & set(row))


def test_tokens_by_header_or_query_and_401_otherwise(server, served_db):
    analyst = user_of(served_db, "district_analyst")
    assert get(server, "/layers", analyst).status_code == 200
    assert httpx.get(server.url + "/layers", params={"token": analyst["token"]}).status_code == 200
    for r in (get(server, "/layers"), httpx.get(server.url + "/layers", params={"token": "nope"}),
              httpx.get(server.url + "/tiles/units/10/1/1.mvt", headers={"Authorization": "Bearer nope"}),
              httpx.get(server.url + "/layers", params={"token": "a\x00b"})):
        assert r.status_code == 401 and "token" in r.json()["detail"]


def test_layers_list_what_each_role_may_see(server, served_db):
    got = {role: {l["id"]: l for l in get(server, "/layers", user_of(served_db, role)).json()}
           for role in ("district_analyst", "street_staff", "portal")}
    assert set(got["district_analyst"]) == {"units", "water", "roads", "buildings", "people", "organisations",
                                            "party", "events", "devices"}
    assert {"units", "water", "roads"} <= set(got["portal"])  # the basemap is every role's
    people = got["district_analyst"]["people"]["parts"][0]
    assert people["features_from_zoom"] == 17 and "name" in people["fields"]
    assert got["street_staff"]["people"]["parts"][0]["features_from_zoom"] is None  # counts only
    assert not PERSONAL["organisations"] & set(got["portal"]["organisations"]["parts"][0]["fields"])
    assert not PERSONAL["events"] & set(got["street_staff"]["events"]["parts"][0]["fields"])
    assert [p["name"] for p in got["portal"]["party"]["parts"]] == ["party_orgs"]


@pytest.mark.parametrize("path,code", [
    ("/tiles/nope/12/1/1.mvt", 404), ("/tiles/units/23/0/0.mvt", 400), ("/tiles/units/3/8/0.mvt", 400),
    ("/tiles/units/3/-1/0.mvt", 400), ("/tiles/units/x/1/1.mvt", 422), ("/tiles/nope/tilejson.json", 404),
    ("/units/000000/metrics", 404), ("/units/440199/ranking?metric=nope", 404), ("/buildings/nope", 404),
    ("/events?status=lost", 400), ("/units?level=planet", 400), ("/events?size=100000", 422),
    ("/search?q=a%00b", 400), ("/buildings/a%00b", 400), ("/events?unit=%00", 400),
])
def test_bad_requests_get_a_4xx_with_a_message(server, served_db, path, code):
    r = get(server, path, user_of(served_db, "district_analyst"))
    assert r.status_code == code and r.json()["detail"]


def test_outside_the_scope_is_403(server, served_db):
    staff = user_of(served_db, "community_staff", 0)
    other = user_of(served_db, "community_staff", 1)
    assert get(server, f"/units/{staff['unit']}/metrics", staff).status_code == 200
    for path in (f"/units/{other['unit']}/metrics", "/units/440199/metrics", f"/units/{other['unit']}/ranking",
                 f"/events?unit={other['unit']}"):
        r = get(server, path, staff)
        assert r.status_code == 403 and "scope" in r.json()["detail"], path
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    outside = db.query("SELECT id FROM buildings WHERE community_code = ? LIMIT 1", [other["unit"]])[0][0]
    db.close()
    assert get(server, f"/buildings/{outside}", staff).status_code == 403
    assert get(server, "/events", user_of(served_db, "portal")).status_code == 403


def test_malformed_and_enormous_geojson_are_refused(server, served_db):
    h = {"Authorization": f"Bearer {user_of(served_db, 'district_analyst')['token']}"}
    ring = [[113.30, 23.08], [113.32, 23.08], [113.32, 23.09], [113.30, 23.09], [113.30, 23.08]]
    cases = [(b"not json", 400), (b'{"type": "Point", "coordinates": [1, 2]}', 400),
             (b'{"type": "Polygon", "coordinates": [[[1, 2]]]}', 400),
             (b'{"type": "Polygon", "coordinates": "x"}', 400),
             (json.dumps({"type": "Polygon", "coordinates": [[[500, 2], [501, 2], [501, 3], [500, 2]]]}).encode(), 400),
             (json.dumps({"type": "Polygon", "coordinates": [[[1, 1], [2, 2], [3, 3], [1, 1]]]}).encode(), 400),
             (b" " * 2_000_000, 413)]
    big = [[113.3 + 0.02 * i / 30000, 23.08 + (i % 2) * 0.01] for i in range(30000)] + [[113.3, 23.08]]
    cases.append((json.dumps({"type": "Polygon", "coordinates": [big]}).encode(), 413))
    for body, code in cases:
        r = httpx.post(server.url + "/metrics", content=body, headers=h, timeout=30)
        assert r.status_code == code, (body[:60], r.text)
        assert r.json()["detail"]
    ok = httpx.post(server.url + "/metrics", json={"type": "Feature", "properties": {},
                                                   "geometry": {"type": "Polygon", "coordinates": [ring]}}, headers=h)
    assert ok.status_code == 200 and ok.json()["values"]["population"] > 0
    bowtie = [[113.30, 23.08], [113.32, 23.09], [113.32, 23.08], [113.30, 23.09], [113.30, 23.08]]
    assert httpx.post(server.url + "/metrics", json={"type": "Polygon", "coordinates": [bowtie]},
                      headers=h).status_code == 200  # self-intersecting: repaired, not refused


def test_building_drilldown_masks_fields_by_role(server, served_db):
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    staff = user_of(served_db, "community_staff")
    bid = db.query("SELECT building_id FROM people WHERE community_code = ? GROUP BY 1 ORDER BY count(*) DESC "
                   "LIMIT 1", [staff["unit"]])[0][0]
    n = db.query("SELECT count(*) FROM people WHERE building_id = ?", [bid])[0][0]
    street = next(u for u in served_db[1].values() if u["role"] == "street_staff"
                  and staff["unit"].startswith(u["unit"]))
    db.close()
    full = get(server, f"/buildings/{bid}", staff).json()
    residents = [p for h in full["households"] for p in h["residents"]]
    assert len(residents) == n == full["summary"]["residents"]
    assert {"name", "id_number", "phone"} <= set(residents[0])
    assert all(r["birth_date"] is None or len(r["birth_date"]) == 10 for r in residents)  # a date, not a time
    masked = get(server, f"/buildings/{bid}", street).json()
    assert masked["summary"]["residents"] == n and masked["events"] is not None
    assert_masked(masked)
    portal = get(server, f"/buildings/{bid}", user_of(served_db, "portal")).json()
    assert_masked(portal)
    assert portal["events"] is None
    assert all(v is None or v == 0 or v >= 5 for v in portal["flags"]["special_groups"].values())


def test_events_filters_and_paging(server, served_db):
    analyst = user_of(served_db, "district_analyst")
    street = user_of(served_db, "street_staff")
    every = get(server, "/events", analyst, size=500, page=1).json()
    total = every["total"]
    pages = [get(server, "/events", analyst, size=100, page=p).json()["items"] for p in range(1, total // 100 + 2)]
    ids = [e["id"] for page in pages for e in page]
    assert len(ids) == len(set(ids)) == total
    overdue = get(server, "/events", analyst, overdue="true", size=500).json()
    assert overdue["total"] and all(e["overdue"] and e["status"] in ("reported", "dispatched")
                                    for e in overdue["items"])
    closed = get(server, "/events", street, status="closed", **{"class": "city"}, size=500).json()
    assert closed["items"] and all(e["status"] == "closed" and e["class"] == "city" for e in closed["items"])
    assert all("reporter_phone" not in e for e in closed["items"])
    assert all(e["community_code"].startswith(street["unit"]) for e in closed["items"])
    since = get(server, "/events", analyst, since="2026-09-01T00:00:00", size=500).json()
    assert all(e["reported_at"] >= "2026-09-01" for e in since["items"])


def test_ranking_orders_children(server, served_db):
    analyst = user_of(served_db, "district_analyst")
    r = get(server, "/units/440199/ranking", analyst, metric="open_events").json()
    values = [x["value"] for x in r["ranking"]]
    assert r["level"] == "street" and values == sorted(values, reverse=True) and sum(values) > 0
    assert [x["rank"] for x in r["ranking"]] == list(range(1, len(values) + 1))
    grid = next(u for u in served_db[1].values() if u["role"] == "grid_worker")
    assert get(server, f"/units/{grid['unit']}/ranking", analyst).status_code == 400


def test_every_request_is_audited(served_db, dbs):
    url = dbs.clone(served_db.pristine, "audit")
    srv = Server(url)
    staff = user_of(served_db, "community_staff")
    try:
        calls = [get(srv, "/layers", staff), get(srv, "/tiles/events/15/26736/14287.mvt", staff),
                 get(srv, f"/units/{staff['unit']}/metrics", staff), get(srv, "/units/440199/metrics", staff),
                 get(srv, "/layers"), get(srv, "/tiles/nope/1/1/1.mvt", staff)]
        # the dashboards: sign in by link, then a tile on the session cookie, as the map fetches it
        signin = httpx.get(f"{srv.url}/?token={staff['token']}")
        cookie = {"brain_session": signin.cookies["brain_session"]}
        calls += [signin, httpx.get(f"{srv.url}/tiles/units/15/26736/14287.mvt", cookies=cookie)]
        calls.append(get(srv, "/buildings/a%00b", staff))  # refused, and still audited (PostgreSQL holds no NUL)
    finally:
        srv.stop()
    db = brain.connect(url, read_only=True)
    rows = db.query("SELECT user_name, endpoint, layer, target, status, features FROM audit_log "
                    "WHERE endpoint <> '/health' ORDER BY ts")
    db.close()
    assert [r[4] for r in rows] == [c.status_code for c in calls] == [200, 200, 200, 403, 401, 404, 303, 200, 400]
    name = next(n for n, u in served_db[1].items() if u is staff)
    assert [r[0] for r in rows] == [name] * 4 + [None, name, name, name, name]  # the sign-in names its user
    assert rows[3][3] == "440199" and rows[5][3] == "nope/1/1/1"  # refusals name what was asked for
    assert rows[6][3] == "signin ok (token link)"
    assert rows[-1][1] == "/buildings/a\\0b"
    assert rows[1][1:4] == ("/tiles/events/15/26736/14287.mvt", "events", "15/26736/14287")
    assert rows[0][5] == len(calls[0].json())


def test_no_request_the_schema_allows_gets_a_5xx(server, served_db):
    """Schemathesis generates requests for every operation of /openapi.json; none may answer 5xx."""
    from hypothesis import given

    api = schemathesis.openapi.from_url(server.url + "/openapi.json")
    tokens = [user_of(served_db, r)["token"] for r in ("district_analyst", "community_staff", "portal")]
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    calls = []
    for op in operations:
        for token in tokens:
            @given(case=op.as_strategy())
            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case):
                response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
                calls.append(response.status_code)
                assert response.status_code < 500, \
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"

            run()
    assert len(calls) > 100 and any(c == 200 for c in calls)


def test_search_finds_only_inside_the_scope_and_matches_literally(server, served_db):
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    staff = user_of(served_db, "community_staff", 0)
    other = user_of(served_db, "community_staff", 1)
    mine = db.query("SELECT address FROM buildings WHERE community_code = ? ORDER BY id LIMIT 1", [staff["unit"]])[0][0]
    theirs = db.query("SELECT address FROM buildings WHERE community_code = ? AND address NOT IN "
                      "(SELECT address FROM buildings WHERE community_code = ?) ORDER BY id LIMIT 1",
                      [other["unit"], staff["unit"]])[0][0]
    person = db.query("SELECT name FROM people WHERE community_code = ? ORDER BY id LIMIT 1", [staff["unit"]])[0][0]
    db.close()
    hits = get(server, "/search", staff, q=mine).json()
    assert any(h["kind"] == "buildings" and h["label"] == mine for h in hits)
    assert all(h["grid_code"].startswith(staff["unit"]) for h in hits)
    assert not [h for h in get(server, "/search", staff, q=theirs).json() if h["label"] == theirs]
    assert any(h["kind"] == "people" for h in get(server, "/search", staff, q=person).json())
    street = next(u for u in served_db[1].values() if u["role"] == "street_staff"
                  and staff["unit"].startswith(u["unit"]))
    assert not [h for h in get(server, "/search", street, q=person).json() if h["kind"] == "people"]
    assert get(server, "/search", staff, q="%").json() == [] or all(
        "%" in h["label"] for h in get(server, "/search", staff, q="%").json())
    assert get(server, "/search", staff, q="x" * 101).status_code == 422


def test_search_normalises_addresses_as_ingest_does_and_tells_namesakes_apart(server, served_db):
    """Issue 12.5: full-width digits, Chinese numerals and 幢 find the building; people come with address and age."""
    import re

    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    analyst = user_of(served_db, "district_analyst")
    keys = dict(db.query("SELECT id, addr_key FROM buildings"))
    key = sorted(k for k in keys.values() if k and re.fullmatch(r".+?\d号\d+栋", k))[0]
    road, number, block = re.fullmatch(r"(.+?)(\d+)号(\d+)栋", key).groups()
    cn = "零一二三四五六七八九"
    chinese = "".join(cn[int(c)] for c in number)
    wide = number.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    person = db.query("SELECT name, address FROM people WHERE birth_date IS NOT NULL AND address IS NOT NULL "
                      "ORDER BY id LIMIT 1")[0]
    db.close()
    for q in (f"{road}{wide}号{block}幢", f"{road}{chinese}号{block}栋", f"{road}{number}号{block}号楼"):
        hits = [h for h in get(server, "/search", analyst, q=q).json() if h["kind"] == "buildings"]
        assert hits and keys[hits[0]["id"]] == key, (q, hits[:2])  # the same building key ranks first
    # a number is whole: 5号 finds 5号's buildings, never 51号's
    text = f"{road}{number}号"
    hits = [h for h in get(server, "/search", analyst, q=text).json() if h["kind"] == "buildings"]
    assert hits and all(keys[h["id"]].startswith(text) or text in h["label"] for h in hits)
    # ranked by score, best first; the estate form finds the estate's building
    ranked = get(server, "/search", analyst, q=f"{road}{number}号{block}栋").json()
    assert ranked[0]["score"] == 100 and [h["score"] for h in ranked] == sorted((h["score"] for h in ranked),
                                                                                  reverse=True)
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    bid, name = db.query("SELECT id, name FROM buildings WHERE name <> '' ORDER BY id LIMIT 1")[0]
    db.close()
    estate = re.fullmatch(r"(.+?)(\d+)栋", name)
    hits = get(server, "/search", analyst, q=f"{estate[1]}{estate[2]}栋2单元301").json()
    assert hits and hits[0]["id"] == bid, (name, hits[:2])
    people = [h for h in get(server, "/search", analyst, q=person[0]).json() if h["kind"] == "people"]
    assert people and all(re.search(r"\d+(–\d+|\+)$", h["detail"]) for h in people)
    assert any(h["detail"].startswith(person[1]) for h in people)
