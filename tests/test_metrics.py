"""Indicators served over HTTP equal the same numbers computed independently with GeoPandas.

The independent side places every row by its own spatial join of points with the grid polygons (not the
placement codes ingest wrote) and computes each indicator in pandas, from the definitions in the issue.
"""

from __future__ import annotations

from datetime import datetime

import geopandas as gpd
import httpx
import pandas as pd
import pytest
import shapely

import brain
from brain.model import LEVELS, VOCABS
from conftest import AS_OF

ASOF = pd.Timestamp(AS_OF)
RESPOND, CLOSE = pd.Timedelta(hours=2), pd.Timedelta(hours=24)


@pytest.fixture(scope="module")
def frames(served_db):
    """Every table as a GeoDataFrame, each row placed by a spatial join of its point with the grids."""
    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    units = db.frame("SELECT code, level, grid_code, community_code, street_code, district_code, "
                     "ST_AsWKB(geom) AS wkb FROM admin_units")
    grids = gpd.GeoDataFrame(units[units.level == "grid"][["code", "community_code", "street_code",
                                                            "district_code"]].rename(columns={"code": "grid_code"}),
                             geometry=shapely.from_wkb(units[units.level == "grid"].wkb.map(bytes)), crs=4326)
    out = {}
    for table in ("people", "buildings", "organisations", "events", "party_members", "devices"):
        df = db.frame(f"SELECT * EXCLUDE (geom, geom_3857, grid_code, community_code, street_code, district_code) "
                      f"FROM {table}")
        pts = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df.lon, df.lat), crs=4326)
        placed = gpd.sjoin(pts, grids, predicate="intersects", how="left").drop_duplicates("id")
        assert placed.grid_code.notna().all(), f"{table}: a row outside every grid"
        out[table] = placed
    db.close()
    p = out["people"]
    p = p[p.household_id.notna() & (p.household_id != "")]
    households = p.sort_values("id").drop_duplicates("household_id")
    linked = {h.strip() for v in out["party_members"].linked_households.dropna() for h in v.split(";") if h.strip()}
    out["households"] = households.assign(linked=households.household_id.isin(linked))
    out["_units"] = units
    return out


def expected(f: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The indicators of rows already cut to an area, computed in pandas."""
    p, b, o, e, m, d, h = (f[t] for t in ("people", "buildings", "organisations", "events", "party_members",
                                           "devices", "households"))
    v: dict[str, float] = {"population": len(p), "registered": int((p.residence == "registered").sum()),
                           "floating": int((p.residence == "floating").sum())}
    bd = pd.to_datetime(p.birth_date)
    for lo, hi in ((0, 15), (15, 35), (35, 60), (60, 80), (80, None)):
        ok = bd <= ASOF - pd.DateOffset(years=lo)
        if hi:
            ok &= bd > ASOF - pd.DateOffset(years=hi)
        v[f"age_{lo}_{hi - 1}" if hi else f"age_{lo}_plus"] = int(ok.sum())
    for code in VOCABS["special_group"]:
        v[f"group_{code}"] = int(p.special_groups.fillna("").str.contains(code).sum())
    v["households"], v["households_linked"] = len(h), int(h.linked.sum())
    v["party_link_share"] = h.linked.mean() if len(h) else None
    v["buildings"], v["rented_buildings"] = len(b), int((b.rented == True).sum())  # noqa: E712 (NULL ≠ False)
    v["buildings_without_fire_facilities"] = int((b.fire_facilities == False).sum())  # noqa: E712
    v["organisations"] = len(o)
    for code in VOCABS["org_kind"]:
        v[f"org_{code}"] = int((o.kind == code).sum())
    v["active_enterprises"] = int(((o.kind == "enterprise") & (o.active == True)).sum())  # noqa: E712
    v["events"] = len(e)
    for code in VOCABS["event_class"]:
        v[f"events_{code}"] = int((e["class"] == code).sum())
    for code in VOCABS["event_status"]:
        v[f"events_{code}"] = int((e.status == code).sum())
    open_ = e.status.isin(["reported", "dispatched"])
    v["open_events"] = int(open_.sum())
    v["resolution_rate"] = e.status.isin(["resolved", "closed"]).mean() if len(e) else None
    rep, dis = pd.to_datetime(e.reported_at), pd.to_datetime(e.dispatched_at)
    done = pd.to_datetime(e.resolved_at).fillna(pd.to_datetime(e.closed_at))
    v["median_respond_minutes"] = ((dis - rep).dt.total_seconds() / 60).median() if dis.notna().any() else None
    v["median_close_hours"] = ((done - rep).dt.total_seconds() / 3600).median() if done.notna().any() else None
    v["respond_on_time_rate"] = ((dis - rep)[dis.notna()] <= RESPOND).mean() if dis.notna().any() else None
    v["close_on_time_rate"] = ((done - rep)[done.notna()] <= CLOSE).mean() if done.notna().any() else None
    v["overdue_respond"] = int(((e.status == "reported") & dis.isna() & (ASOF - rep > RESPOND)).sum())
    v["overdue_close"] = int((open_ & (ASOF - rep > CLOSE)).sum())
    v["party_members"] = len(m)
    v["cameras"] = int((d.kind == "camera").sum())
    v["sensors"] = int((d.kind != "camera").sum())
    v["sensors_in_alarm"] = int(((d.kind != "camera") & (d.status == "alarm")).sum())
    v["devices_offline"] = int((d.status == "offline").sum())
    return v


def assert_same(got: dict, want: dict, where: str) -> None:
    for name, w in want.items():
        g = got[name]
        if w is None or (isinstance(w, float) and w != w):
            assert g is None, f"{where} {name}: served {g}, expected none"
        elif isinstance(w, float):
            assert g == pytest.approx(w, abs=1e-3), f"{where} {name}: served {g}, expected {w}"
        else:
            assert g == w, f"{where} {name}: served {g}, expected {w}"


def cut(frames, mask_of) -> dict[str, pd.DataFrame]:
    return {t: df[mask_of(df)] for t, df in frames.items() if not t.startswith("_")}


def get(server, path, user, **kw):
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {user['token']}"}, timeout=30, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_unit_indicators_equal_geopandas(server, served_db, frames):
    users = served_db[1]
    analyst = next(u for u in users.values() if u["role"] == "district_analyst")
    units = frames["_units"]
    for code, level in zip(units.code, units.level):
        want = expected(cut(frames, lambda df: df[f"{level}_code"] == code))
        got = get(server, f"/units/{code}/metrics", analyst)
        assert got["as_of"] == datetime.fromisoformat(AS_OF).isoformat()
        assert_same(got["values"], want, code)
        own = next((u for u in users.values() if u["unit"] == code and u["role"] != "portal"), None)
        if own:  # the unit's own staff see the same numbers for their unit
            assert get(server, f"/units/{code}/metrics", own)["values"] == got["values"]
    assert expected(cut(frames, lambda df: df.district_code == "440199"))["population"] > 1000


# -- statistical disclosure control (brain.scope.Disclosure): what a role with a floor may learn ---------------
PROTECTED = {"people", "households", "party_members", "events"}  # tables the portal may not read row by row


def r5(n) -> int:
    return (int(n) + 2) // 5 * 5


def ratio_parts(f: dict[str, pd.DataFrame]) -> dict[str, tuple[int, int]]:
    """(numerator, denominator) counts of each rate, from rows cut to an area."""
    e, h = f["events"], f["households"]
    rep, dis = pd.to_datetime(e.reported_at), pd.to_datetime(e.dispatched_at)
    done = pd.to_datetime(e.resolved_at).fillna(pd.to_datetime(e.closed_at))
    return {"resolution_rate": (int(e.status.isin(["resolved", "closed"]).sum()), len(e)),
            "respond_on_time_rate": (int(((dis - rep) <= RESPOND).sum()), int(dis.notna().sum())),
            "close_on_time_rate": (int(((done - rep) <= CLOSE).sum()), int(done.notna().sum())),
            "party_link_share": (int(h.linked.sum()), len(h))}


@pytest.fixture(scope="module")
def grid_cells(frames):
    """The true indicators and rate parts of every grid."""
    units = frames["_units"]
    out = {}
    for g in units[units.level == "grid"].code:
        f = cut(frames, lambda df: df.grid_code == g)
        out[g] = (expected(f), ratio_parts(f))
    return out


def published(cells: dict, grids, whole_unit_truth: dict | None = None) -> dict:
    """What the portal must be served for these grids: rounded cells summed, rates of the sums."""
    from brain.metrics import INDICATORS

    out = {}
    known = next(iter(cells.values()))[0]  # what `expected` computes
    for name, ind in INDICATORS.items():
        if ind.table not in PROTECTED or name not in known:
            continue
        if ind.kind == "count":
            out[name] = sum(r5(cells[g][0][name]) for g in grids)
        elif ind.ratio:
            num = sum(r5(cells[g][1][name][0]) for g in grids)
            den = sum(r5(cells[g][1][name][1]) for g in grids)
            out[name] = num / den if den else None
        else:  # medians: whole units of at least 10 rows (after rounding) only
            rows = sum(r5(cells[g][0]["events"]) for g in grids)
            out[name] = whole_unit_truth[name] if whole_unit_truth and rows >= 10 else None
    return out


def post_area(server, user, geom) -> dict:
    r = httpx.post(server.url + "/metrics", json=shapely.geometry.mapping(geom),
                   headers={"Authorization": f"Bearer {user['token']}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_portal_numbers_are_sums_of_rounded_grid_cells(server, served_db, frames, grid_cells):
    """Every unit's protected counts are the rounded grid cells summed; what the portal sees row by row is exact."""
    portal = next(u for u in served_db[1].values() if u["role"] == "portal")
    units = frames["_units"]
    grids_of = {code: list(units[(units.level == "grid") & (units[f"{level}_code"] == code)].code)
                for code, level in zip(units.code, units.level)}
    small = 0
    for code, level in zip(units.code, units.level):
        truth = expected(cut(frames, lambda df: df[f"{level}_code"] == code))
        got = get(server, f"/units/{code}/metrics", portal)
        want = published(grid_cells, grids_of[code], truth)
        assert_same(got["values"], {**{k: v for k, v in truth.items() if k not in want}, **want}, code)
        assert got["disclosure"]["base"] == 5
        small += sum(1 for k in want if isinstance(truth[k], int) and 0 < truth[k] < 5)
    assert small > 20  # the sample has small cells to protect, so this test can fail


def _attacks(server, user, frames, grid_cells) -> list[tuple[str, str, int, int]]:
    """The differencing attacks of issue 11, played as `user`: (attack, target, recovered, true) per try."""
    units = frames["_units"]
    grids = units[units.level == "grid"]
    geo = {c: shapely.from_wkb(bytes(w)) for c, w in zip(grids.code, grids.wkb)}
    out = []
    # 1. a box around a building, and the same box minus a tiny disc at the building
    p = frames["people"]
    for group in ("disabled", "elderly_alone", "low_income"):
        has = p[p.special_groups.fillna("").str.contains(group)]
        for bid, n in has.groupby("building_id").size().items():
            if not 0 < n < 5 or len(out) >= 6 * 3:
                continue
            b = frames["buildings"][frames["buildings"].id == bid].iloc[0]
            # a box large enough that its count is not blanked (what the attack needed against blanking)
            comm = units[units.code == b.community_code].iloc[0]
            box = shapely.from_wkb(bytes(comm.wkb)).envelope.buffer(0.0005, join_style="mitre")
            disc = shapely.Point(b.lon, b.lat).buffer(0.00003)
            a, c = (post_area(server, user, g)["values"][f"group_{group}"] for g in (box, box.difference(disc)))
            if a is not None and c is not None:
                out.append(("box minus disc", f"{bid} {group}", a - c, int(n)))
            break
    # 2. a community's total minus its other grids
    for comm in units[units.level == "community"].code:
        parent = get(server, f"/units/{comm}/metrics", user)["values"]
        kids = {g: get(server, f"/units/{g}/metrics", user)["values"] for g in grids[grids.community_code == comm].code}
        for g in kids:
            for name in ("population", "group_disabled", "group_elderly_alone", "overdue_close", "party_members"):
                true = grid_cells[g][0][name]
                others = [v[name] for k, v in kids.items() if k != g]
                if 0 < true < 5 and parent[name] is not None and None not in others:
                    out.append(("parent minus children", f"{g} {name}", parent[name] - sum(others), true))
    # 3. overlapping areas: |A| + |B| - |A ∪ B| is the count of A ∩ B
    codes = sorted(grids.code)
    for g1, g2 in zip(codes, codes[1:]):
        a, b = geo[g1].buffer(0.00001), geo[g2].buffer(0.00001)
        va, vb, vab = (post_area(server, user, x)["values"] for x in (a, b, shapely.union_all([a, b])))
        for name in ("group_disabled", "group_elderly_alone", "overdue_respond"):
            inter = cut(frames, lambda df: df.within(a) & df.within(b))
            true = expected(inter)[name]
            if None not in (va[name], vb[name], vab[name]):
                out.append(("overlapping areas", f"{g1}∩{g2} {name}", va[name] + vb[name] - vab[name], true))
    return out


def test_differencing_attacks_recover_nothing_from_the_portal(server, served_db, frames, grid_cells):
    users = served_db[1]
    analyst = next(u for u in users.values() if u["role"] == "district_analyst")
    portal = next(u for u in users.values() if u["role"] == "portal")
    # against a role without a floor the attacks work, so that this test can fail
    worked = [a for a in _attacks(server, analyst, frames, grid_cells) if a[2] == a[3]]
    assert {a[0] for a in worked} == {"box minus disc", "parent minus children", "overlapping areas"}
    tries = _attacks(server, portal, frames, grid_cells)
    small = [a for a in tries if 0 < a[3] < 5]
    recovered = [a for a in small if a[2] == a[3]]
    assert not recovered, f"hidden small counts recovered: {recovered[:5]}"
    assert len(small) >= 5 and {a[0] for a in small} == {"box minus disc", "parent minus children"}
    assert all(a[2] % 5 == 0 for a in tries), "every difference of published counts is a multiple of the base"


RECTS = [(113.300, 23.080, 113.320, 23.090), (113.31, 23.081, 113.325, 23.086), (113.305, 23.0835, 113.33, 23.088)]


@pytest.mark.parametrize("rect", RECTS)
def test_drawn_polygon_indicators_equal_geopandas_and_are_clipped_to_scope(server, served_db, frames, rect):
    poly = shapely.box(*rect)
    users = served_db[1]
    analyst = next(u for u in users.values() if u["role"] == "district_analyst")
    staff = sorted((u for u in users.values() if u["role"] == "community_staff"), key=lambda u: u["unit"])
    for user in [analyst, *staff]:
        level = user["level"]
        r = httpx.post(server.url + "/metrics", json=shapely.geometry.mapping(poly), params={"size": 500},
                       headers={"Authorization": f"Bearer {user['token']}"}, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()
        want = expected(cut(frames, lambda df: df.within(poly) & (df[f"{level}_code"] == user["unit"])))
        assert_same(got["values"], want, f"{user['unit']} {rect}")
        res = got["resources"]
        o, d = (cut(frames, lambda df: df.within(poly) & (df[f"{level}_code"] == user["unit"]))[t]
                for t in ("organisations", "devices"))
        assert res["total"] == len(o) + len(d)
        assert {i["id"] for i in res["items"]} == set(o.id) | set(d.id)
        kinds = [i["kind"] for i in res["items"]]
        assert kinds[:kinds.count("service_centre")] == ["service_centre"] * kinds.count("service_centre")


def test_ranking_equals_the_children_metrics(server, served_db, frames):
    analyst = next(u for u in served_db[1].values() if u["role"] == "district_analyst")
    for metric in ("population", "open_events", "resolution_rate"):
        r = get(server, "/units/440199/ranking", analyst, params={"metric": metric})
        for row in r["ranking"]:
            want = expected(cut(frames, lambda df: df.street_code == row["code"]))[metric]
            assert row["value"] == pytest.approx(want, abs=1e-3)
    assert LEVELS[1] == r["level"]


def test_age_pyramid_adds_up_to_the_age_bands(served_db, frames):
    """The dashboards' pyramid splits the registry's age bands by gender without losing anyone."""
    from brain.auth import ROLES, User
    from brain.metrics import Area, Clock
    from brain.queries import age_pyramid
    from brain.scope import Scope
    from brain.settings import Settings

    db = brain.connect(f"duckdb:///{served_db[2]}", read_only=True)
    code = sorted(frames["_units"][frames["_units"].level == "community"].code)[0]
    scope = Scope(User("t", ROLES["district_analyst"], "440199", "district"))
    rows = age_pyramid(db, scope, Area(unit=code, level="community"),
                       Clock.from_settings(Settings(as_of=datetime.fromisoformat(AS_OF))))
    db.close()
    want = expected(cut(frames, lambda df: df.community_code == code))
    for lo, hi in ((0, 15), (15, 35), (35, 60), (60, 80), (80, None)):
        band = f"{lo}–{hi - 1 if hi else ''}"
        name = f"age_{lo}_{hi - 1}" if hi else f"age_{lo}_plus"
        assert sum(r["count"] for r in rows if r["band"] == band) == want[name], band
    assert {r["gender"] for r in rows} <= {"male", "female", "?"}


def test_the_dashboards_indicator_cache_keeps_scopes_apart_and_follows_the_data(served_db, dbs):
    """`Service.indicators` (the dashboards' cache, and GET /units/{code}/metrics'): each scope gets what `brain.metrics.indicators` computes for it,
    whichever asked first; a caller's change to its answer stays its own; a change of data is seen at once."""
    from brain.auth import authenticate
    from brain.metrics import Clock, indicators, unit_area
    from brain.schema import bump_data_version
    from brain.scope import Scope
    from brain.service import Service
    from brain.settings import Settings

    url = dbs.clone(served_db.pristine, "indicator_cache")
    db = brain.connect(url)
    try:
        settings = Settings(db=url, as_of=datetime.fromisoformat(AS_OF))
        svc = Service(db, settings)
        code = db.query("SELECT code FROM admin_units WHERE level = 'community' ORDER BY code LIMIT 1")[0][0]
        # a district analyst and a portal (counts protected) ask for the same community
        tokens = {u["role"]: u["token"] for u in served_db.users.values() if u["role"] in ("district_analyst", "portal")}
        scopes = {role: Scope(authenticate(db, token)) for role, token in tokens.items()}

        def fresh(role):
            return indicators(db, scopes[role], unit_area(db, scopes[role], code), Clock.from_settings(settings))

        def cached(role):
            return svc.indicators(scopes[role], unit_area(db, scopes[role], code))

        want = {role: fresh(role) for role in scopes}
        assert want["district_analyst"]["values"] != want["portal"]["values"]  # so that a mix-up would show
        for order in (("district_analyst", "portal"), ("portal", "district_analyst")):
            for role in order:
                assert cached(role) == want[role], role
        mine = cached("portal")
        mine["values"]["population"] = -1
        assert cached("portal") == want["portal"]
        # the community's events removed and the data version bumped, as an ingest does
        db.execute("DELETE FROM events WHERE community_code = ?", [code])
        bump_data_version(db)
        after = cached("district_analyst")
        assert after == fresh("district_analyst")
        assert after["values"]["events"] == 0 < want["district_analyst"]["values"]["events"]
    finally:
        db.close()
