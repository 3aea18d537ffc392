"""Users and scopes: tokens stored hashed, and the scope filter keeps exactly the rows inside a user's unit.

This is the permission core the tile service will call; it is checked here on the real ingested sample,
against geometry (independent of the placement codes the filter uses), for random users.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brain
from brain.backend import lonlat_point
from brain.auth import ROLES, add_user, authenticate
from brain.model import ENTITIES
from brain.scope import Scope, allowed, scope_filter, visible_fields
from conftest import run_cli

LOCATED = ["buildings", "people", "organisations", "events", "party_members", "devices"]


@pytest.fixture(scope="module")
def db(ingested_copy):
    backend = brain.connect(ingested_copy("auth"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def units(db):
    return {level: [c for (c,) in db.query("SELECT code FROM admin_units WHERE level = ? ORDER BY code", [level])]
            for level in ("district", "street", "community", "grid")}


def test_cli_prints_the_token_last_and_stores_only_its_hash(ingested_copy):
    url = ingested_copy("users")
    out = run_cli("users", "add", "wang", "--role", "community_staff", "--unit", "440199001001", "--db", url)
    token = out.stdout.strip().splitlines()[-1]
    assert len(token) >= 40
    db = brain.connect(url)
    try:
        stored = db.query("SELECT * FROM users")
        assert token not in repr(stored)
        user = authenticate(db, token)
        assert (user.name, user.role.name, user.unit_code, user.unit_level) == (
            "wang", "community_staff", "440199001001", "community")
        assert authenticate(db, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert authenticate(db, "") is None and authenticate(db, None) is None
    finally:
        db.close()
    listed = run_cli("users", "list", "--db", url).stdout
    assert "wang" in listed and token not in listed
    run_cli("users", "remove", "wang", "--db", url)
    db = brain.connect(url)
    try:
        assert authenticate(db, token) is None
    finally:
        db.close()


@pytest.mark.parametrize("args,needle", [
    (["--role", "mayor", "--unit", "440199"], "unknown role"),
    (["--role", "community_staff", "--unit", "440199001"], "is a street"),
    (["--role", "grid_worker", "--unit", "999"], "no admin unit"),
])
def test_bad_users_are_refused(ingested_copy, args, needle):
    proc = run_cli("users", "add", "x", *args, "--db", ingested_copy("bad_users"), check=False)
    assert proc.returncode == 2 and needle in proc.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_scope_filter_keeps_exactly_the_rows_inside_the_unit(db, units, data):
    role = data.draw(st.sampled_from(sorted(ROLES)))
    level = ROLES[role].level
    unit = data.draw(st.sampled_from(units[level]))
    name = f"u{data.draw(st.integers(0, 10**9))}"
    token = add_user(db, name, role, unit)
    try:
        _check_scope_filter(db, Scope(authenticate(db, token)), role, unit)
    finally:
        db.execute("DELETE FROM users WHERE name = ?", [name])


def _check_scope_filter(db, scope, role, unit):
    where, params = scope_filter(scope)
    pt = lonlat_point(db, "t.lon", "t.lat")
    for table in LOCATED:
        inside = db.query(f"SELECT count(*) FROM {table} t WHERE {where}", params)[0][0]
        # Independent of the codes: the row's point lies in the unit's polygon (edges count for the lowest code).
        leaks = db.query(f"""SELECT count(*) FROM {table} t, admin_units u WHERE u.code = ? AND {where}
                             AND NOT ST_Intersects(u.geom, {pt})""", [unit, *params])[0][0]
        missed = db.query(f"""SELECT count(*) FROM {table} t, admin_units u WHERE u.code = ? AND NOT ({where})
                              AND ST_Contains(u.geom, {pt})
                              AND NOT ST_Touches(u.geom, {pt})""", [unit, *params])[0][0]
        assert leaks == 0 and missed == 0, (role, unit, table, inside)


def test_scope_units_partition_the_district(db, units):
    for level in ("street", "community", "grid"):
        for table in LOCATED:
            total = db.query(f"SELECT count(*) FROM {table}")[0][0]
            parts = 0
            for code in units[level]:
                token = add_user(db, f"p-{level}-{code}", {"street": "street_staff", "community": "community_staff",
                                                           "grid": "grid_worker"}[level], code)
                where, params = scope_filter(Scope(authenticate(db, token)))
                parts += db.query(f"SELECT count(*) FROM {table} t WHERE {where}", params)[0][0]
            db.execute("DELETE FROM users WHERE name LIKE ?", [f"p-{level}-%"])
            assert parts == total, (level, table)


def test_personal_fields_only_for_roles_allowed_them(db, units):
    personal = {f.name for e in ENTITIES.values() for f in e.fields if f.personal}
    assert {"name", "id_number", "phone", "room"} <= personal
    for role in ROLES.values():
        token = add_user(db, f"f-{role.name}", role.name, units[role.level][0])
        scope = Scope(authenticate(db, token))
        for entity in ENTITIES.values():
            own_personal = {f.name for f in entity.fields if f.personal}
            expected = set(entity.field_map) - (set() if role.personal else own_personal)
            assert set(visible_fields(scope, entity)) == expected, (role.name, entity.name)
        assert ("id_number" in visible_fields(scope, "people")) == (role.name in (
            "district_analyst", "community_staff", "grid_worker"))
        assert "residence" in visible_fields(scope, "people")
        assert allowed(scope, "read-aggregates", "people")
        assert allowed(scope, "read-features", "people") == (role.individual and role.personal)
        assert allowed(scope, "read-features", "events") == role.individual
        assert not allowed(scope, "read-features", "no_such_table")
        assert not allowed(scope, "delete", "events")
        db.execute("DELETE FROM users WHERE name = ?", [f"f-{role.name}"])
