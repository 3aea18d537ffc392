"""The panels a map click opens (issue 14.4): `brain.queries.feature` reads one event, device, organisation or
person through the scope, with the role's fields — on both backends, against what the data holds."""

from __future__ import annotations

import pytest

import brain
from brain.api import as_role
from brain.errors import Forbidden, NotFound
from brain.metrics import Clock
from brain.queries import feature
from brain.scope import Scope
from conftest import AS_OF

CLOCK = Clock(__import__("datetime").datetime.fromisoformat(AS_OF), 2 * 3600, 24 * 3600)


@pytest.fixture(scope="module")
def db(ingested):
    handle = brain.connect(ingested[0], read_only=True)
    yield handle
    handle.close()


def _scope(db, role, level):
    code = db.query("SELECT code FROM admin_units WHERE level = ? ORDER BY code LIMIT 1", [level])[0][0]
    return Scope(as_role(db, role, code)), code


def test_an_event_panel_has_its_record_time_limits_and_the_roles_fields(db):
    staff, community = _scope(db, "community_staff", "community")
    eid, reported = db.query("SELECT id, reported_at FROM events WHERE community_code = ? ORDER BY id LIMIT 1",
                             [community])[0]
    out = feature(db, staff, "events", eid, CLOCK)
    assert out["record"]["id"] == eid and "reporter_phone" in out["record"]
    assert out["limits"]["respond_by"] == (reported + __import__("datetime").timedelta(hours=2)).isoformat()
    street, _ = _scope(db, "street_staff", "street")
    other = db.query("SELECT id FROM events WHERE street_code <> ? ORDER BY id LIMIT 1",
                     [street.user.unit_code])[0][0]
    with pytest.raises(NotFound):  # outside the scope reads as absent
        feature(db, street, "events", other, CLOCK)
    mine = db.query("SELECT id FROM events WHERE street_code = ? ORDER BY id LIMIT 1", [street.user.unit_code])[0][0]
    assert "reporter_phone" not in feature(db, street, "events", mine, CLOCK)["record"]


def test_a_device_panel_shows_the_latest_reading_of_each_metric(db):
    analyst, _ = _scope(db, "district_analyst", "district")
    dev = db.query("SELECT device_id FROM device_readings GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")[0][0]
    want = {m: v for m, v in db.query(
        "SELECT metric, arg_max(value, ts) FROM device_readings WHERE device_id = ? GROUP BY 1"
        if db.dialect == "duckdb" else
        "SELECT DISTINCT ON (metric) metric, value FROM device_readings WHERE device_id = ? ORDER BY metric, ts DESC",
        [dev])}
    out = feature(db, analyst, "devices", dev, CLOCK)
    assert {r["metric"]: r["value"] for r in out["readings"]} == want


def test_people_open_for_personal_roles_only(db):
    staff, community = _scope(db, "community_staff", "community")
    pid = db.query("SELECT id FROM people WHERE community_code = ? ORDER BY id LIMIT 1", [community])[0][0]
    assert feature(db, staff, "people", pid, CLOCK)["record"]["id_number"]
    street, _ = _scope(db, "street_staff", "street")
    with pytest.raises(Forbidden):
        feature(db, street, "people", pid, CLOCK)
    org = db.query("SELECT id FROM organisations WHERE street_code = ? ORDER BY id LIMIT 1",
                   [street.user.unit_code])[0][0]
    assert "phone" not in feature(db, street, "organisations", org, CLOCK)["record"]


def test_a_time_window_counts_only_the_events_reported_in_it(db):
    """Issue 14.6: the indicators follow the map's time window (events by their report; undated tables not)."""
    from dataclasses import replace
    from datetime import datetime

    from brain.metrics import indicators, unit_area

    analyst, code = _scope(db, "district_analyst", "district")
    since = datetime(2026, 9, 1)
    whole = indicators(db, analyst, unit_area(db, analyst, code), CLOCK)["values"]
    window = indicators(db, analyst, replace(unit_area(db, analyst, code), since=since), CLOCK)["values"]
    want = db.query("SELECT count(*) FROM events WHERE reported_at >= ?", [since])[0][0]
    assert window["events"] == want < whole["events"]
    assert window["population"] == whole["population"]
