"""The Python API for planners (issue 13.6): `brain.open` reads through the same Scope and the same reader as the
tiles — the features a user's tiles decode to, the fields their role reads, nothing of another unit, audited."""

from __future__ import annotations

import mercantile
import pytest
import shapely

import brain
from brain.errors import Forbidden, NotAuthenticated, NotFound
from conftest import AS_OF
from test_tiles import decode, fetch

AS_OF_DT = __import__("datetime").datetime.fromisoformat(AS_OF)


@pytest.fixture(scope="module")
def api_url(served_db, dbs):
    """A clone of the served database (same users and tokens) that no server holds."""
    return dbs.clone(served_db.pristine, "api")


def _user(served_db, role, k=0):
    return sorted((u for u in served_db.users.values() if u["role"] == role), key=lambda u: u["unit"])[k]


def _tile_ids(server, user, layer, bounds, z):
    """Every feature id (and its properties) the user's tiles at zoom z over the bounds decode to."""
    out = {}
    for t in mercantile.tiles(*bounds, z):
        for _, _, props in decode(fetch(server, user, layer, t.z, t.x, t.y).content, t.z, t.x, t.y):
            out[props.get("id") or props.get("code")] = props
    return out


@pytest.mark.parametrize("role, layer", [("community_staff", "events"), ("street_staff", "events"),
                                         ("community_staff", "organisations")])
def test_a_layer_reads_what_the_users_tiles_decode_to(server, served_db, api_url, role, layer):
    user = _user(served_db, role)
    with brain.open(api_url, token=user["token"], as_of=AS_OF_DT) as s:
        gdf = s.layer(layer)
        bounds = s.units().total_bounds
    assert len(gdf) > 5
    tiles = _tile_ids(server, user, layer, bounds, 15)
    assert set(gdf["id"]) == set(tiles)
    row = gdf.iloc[0]
    props = tiles[row["id"]]
    assert set(props) <= set(gdf.columns)  # (a tile leaves out NULL properties)
    for k, v in props.items():
        assert row[k] == v, (k, row[k], v)


def test_a_role_reads_only_its_fields_and_never_another_unit(served_db, api_url):
    street = _user(served_db, "street_staff")
    other = next(u for u in served_db.users.values() if u["role"] == "community_staff"
                 and not u["unit"].startswith(street["unit"]))
    with brain.open(api_url, token=street["token"], as_of=AS_OF_DT) as s:
        events = s.layer("events")
        assert "reporter_phone" not in events.columns and "status" in events.columns  # personal: not this role's
        with pytest.raises(Forbidden, match="outside your scope"):
            s.layer("events", unit=other["unit"])
        with pytest.raises(NotFound, match="no layer 'nope'"):
            s.layer("nope")
        people = s.layer("people")  # individual people are not this role's: counts per grid, as its map shows
        assert "id" not in people.columns and "birth_date" not in people.columns and people["population"].sum() > 0
        assert events["id"].str.len().gt(0).all()
    db = brain.connect(f"duckdb:///{served_db.truth}", read_only=True)
    placed = dict(db.query("SELECT id, street_code FROM events"))
    db.close()
    assert {placed[i] for i in events["id"]} == {street["unit"]}


def test_a_unit_and_a_bbox_narrow_the_read_inside_the_scope(served_db, api_url):
    analyst = _user(served_db, "district_analyst")
    with brain.open(api_url, token=analyst["token"], as_of=AS_OF_DT) as s:
        allb = s.layer("buildings")
        community = s.units("community").iloc[0]
        mine = s.layer("buildings", unit=community["code"])
        assert 0 < len(mine) < len(allb)
        assert all(community.geometry.buffer(1e-6).contains(g) for g in mine.geometry)  # clipped to the unit
        x0, y0, x1, y1 = community.geometry.bounds
        box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
        part = s.layer("buildings", bbox=box)
        assert 0 < len(part) < len(allb) and all(g.intersects(shapely.box(*box)) for g in part.geometry)


def test_where_filters_on_readable_fields_with_bound_values(served_db, api_url):
    staff = _user(served_db, "community_staff")
    street = _user(served_db, "street_staff")
    with brain.open(api_url, token=staff["token"], as_of=AS_OF_DT) as s:
        every = s.layer("events")
        some = s.layer("events", where={"status": ["reported", "dispatched"]})
        assert 0 < len(some) < len(every) and set(some["status"]) <= {"reported", "dispatched"}
        assert set(some["id"]) == set(every[every["status"].isin(["reported", "dispatched"])]["id"])
        with pytest.raises(brain.BrainError, match="'overdue' is not a field you read"):  # computed, not stored
            s.layer("events", where={"overdue": True})
        assert s.layer("events", where={"status": "x' OR '1'='1"}).empty  # a value, never SQL
    with brain.open(api_url, token=street["token"], as_of=AS_OF_DT) as s:
        with pytest.raises(brain.BrainError, match="'reporter_phone' is not a field you read"):
            s.layer("events", where={"reporter_phone": "13800000000"})


def test_a_portal_reads_protected_grid_counts_not_people(served_db, api_url):
    portal = _user(served_db, "portal")
    with brain.open(api_url, token=portal["token"], as_of=AS_OF_DT) as s:
        people = s.layer("people")
        assert "id" not in people.columns and "birth_date" not in people.columns
        assert {"code", "population", "households"} <= set(people.columns)
        assert (people["population"] % 5 == 0).all() and people["population"].sum() > 0
        m = s.metrics(people.iloc[0]["code"][:-3])  # the grid's community, as GET /units/{code}/metrics
        assert m["values"]["population"] % 5 == 0


def test_reads_are_audited_and_unscoped_reads_only_by_name(served_db, api_url):
    staff = _user(served_db, "community_staff")
    with pytest.raises(NotAuthenticated, match="unknown or disabled token"):
        brain.open(api_url, token="not-a-token")
    with pytest.raises(Exception, match="exactly one of"):
        brain.open(api_url)
    with brain.open(api_url, user=next(n for n, u in served_db.users.items() if u is staff), as_of=AS_OF_DT) as s:
        s.layer("devices")
        s.events(size=5)
    with brain.open(api_url, admin=True, as_of=AS_OF_DT) as s:
        everything = s.layer("people")
        assert "name" in everything.columns and len(everything) > 3000  # the whole district, personal fields
    db = brain.connect(api_url, read_only=True)
    rows = db.query("SELECT user_name, endpoint, layer, features FROM audit_log WHERE method = 'API' ORDER BY ts")
    db.close()
    assert ("(admin)", "api:layer", "people", len(everything)) in rows
    assert any(r[1] == "api:layer" and r[2] == "devices" for r in rows)
    assert any(r[1] == "api:events" for r in rows)
