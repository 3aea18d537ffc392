"""Ingest of the dirty small sample: reconciliation, planted dirt quarantined, placement, idempotence, flow-back."""

import json
import shutil

import pandas as pd

from conftest import run_cli

ENTITY_TABLES = ["buildings", "people", "organisations", "events", "party_members", "devices"]


def test_every_source_reconciles(ingested):
    _, report = ingested
    assert len(report["sources"]) == 16
    for s in report["sources"]:
        assert s["read"] > 0, s["name"]
        assert s["read"] == s["loaded"] + s["quarantined"], s["name"]
        assert s["reconciles"] is True


def assert_planted_dirt_quarantined(sample_dir, report):
    """The report quarantines exactly the dirt the generator planted, with the right reasons."""
    planted = json.loads((sample_dir / "planted.json").read_text(encoding="utf-8"))["planted"]
    assert sum(len(v) for v in planted.values()) > 20
    for s in report["sources"]:
        want = planted.get(s["name"], {})
        assert s["reasons"] == {k: v for k, v in want.items() if not k.startswith("repaired:")}, s["name"]
        assert s["repaired"] == want.get("repaired:geometry", 0), s["name"]


def test_planted_dirt_is_quarantined_with_its_reason(ingested, sample_dir):
    assert_planted_dirt_quarantined(sample_dir, ingested[1])


def test_planted_dirt_is_quarantined_at_medium_scale(tmp_path, dbs):
    run_cli("sample", "--scale", "medium", "--out", tmp_path / "m")
    run_cli("ingest", tmp_path / "m" / "manifest.yaml", "--db", dbs.empty("medium"),
            "--report-json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert sum(s["loaded"] for s in report["sources"] if s["entity"] == "people") > 90_000
    assert all(s["read"] == s["loaded"] + s["quarantined"] for s in report["sources"])
    assert_planted_dirt_quarantined(tmp_path / "m", report)


def test_quarantine_keeps_source_raw_record_and_reason(ingested, db_of):
    url, report = ingested
    db = db_of(url)
    by_source = dict(db.query("SELECT source, count(*) FROM quarantine GROUP BY 1"))
    assert by_source == {s["name"]: s["quarantined"] for s in report["sources"] if s["quarantined"]}
    rows = db.frame("SELECT source, row_no, reason, detail, raw FROM quarantine")
    assert rows["reason"].notna().all() and rows["detail"].notna().all()
    for raw in rows["raw"]:
        assert isinstance(json.loads(raw), dict)
    dup = rows[(rows.source == "events") & (rows.reason == "duplicate-id")].iloc[0]
    assert json.loads(dup["raw"])["事件编号"] in dup["detail"]
    gone = rows[(rows.source == "buildings") & (rows.reason == "geometry-missing")].iloc[0]
    assert json.loads(gone["raw"])["geometry"] is None


def test_loaded_rows_are_placed_at_all_four_levels(ingested, db_of):
    db = db_of(ingested[0])
    for table in [*ENTITY_TABLES, "device_readings"]:
        n, unplaced = db.query(f"""SELECT count(*), count(*) FILTER (WHERE grid_code IS NULL OR community_code IS NULL
                                   OR street_code IS NULL OR district_code IS NULL) FROM {table}""")[0]
        assert n > 0 and unplaced == 0, table
    for table in [*ENTITY_TABLES, "device_readings"]:
        bad = db.query(f"""SELECT count(*) FROM {table} t JOIN admin_units g ON g.code = t.grid_code
            WHERE g.level <> 'grid' OR g.community_code <> t.community_code OR g.street_code <> t.street_code
               OR g.district_code <> t.district_code OR t.geom IS NULL OR t.geom_3857 IS NULL""")[0][0]
        assert bad == 0, table
    # Points placed by coordinates lie inside their grid.
    for table in ("events", "organisations", "devices"):
        outside = db.query(f"""SELECT count(*) FROM {table} t JOIN admin_units g ON g.code = t.grid_code
                               WHERE NOT ST_Intersects(g.geom, t.geom)""")[0][0]
        assert outside == 0, table


def test_admin_tree_is_consistent(ingested, db_of):
    db = db_of(ingested[0])
    levels = dict(db.query("SELECT level, count(*) FROM admin_units GROUP BY 1"))
    assert levels == {"district": 1, "street": 2, "community": 4, "grid": 16}
    orphans = db.query("""SELECT count(*) FROM admin_units c LEFT JOIN admin_units p ON p.code = c.parent_code
                          WHERE c.level <> 'district' AND p.code IS NULL""")[0][0]
    assert orphans == 0
    # The grids tile their community exactly (the planted spike was repaired, not kept).
    gap = db.query("""SELECT max(abs(c.area_m2 - s.a)) FROM admin_units c JOIN
                      (SELECT community_code, sum(area_m2) a FROM admin_units WHERE level = 'grid' GROUP BY 1) s
                      ON s.community_code = c.code WHERE c.level = 'community'""")[0][0]
    assert gap < 1.0


def test_people_are_matched_to_buildings_and_keep_unit_and_room(ingested, db_of):
    db = db_of(ingested[0])
    n, no_building, no_room = db.query("""SELECT count(*), count(*) FILTER (WHERE building_id IS NULL),
                                         count(*) FILTER (WHERE room IS NULL) FROM people""")[0]
    assert n > 3000 and no_building == 0 and no_room == 0
    mismatched = db.query("""SELECT count(*) FROM people p JOIN buildings b ON b.id = p.building_id
                             WHERE p.grid_code <> b.grid_code""")[0][0]
    assert mismatched == 0
    kinds = dict(db.query("SELECT residence, count(*) FROM people GROUP BY 1"))
    assert set(kinds) == {"registered", "floating"}
    groups = {g for (v,) in db.query("SELECT special_groups FROM people WHERE special_groups IS NOT NULL")
              for g in v.split(";")}
    assert {"elderly_alone", "disabled", "low_income"} <= groups


def test_addresses_match_in_stages_with_no_false_match(ingested, db_of, sample_dir):
    """Every loaded person is in the building the generator put them in; the planted traps (12号之一 where only
    12号 stands, 13栋 for 3栋, 明湖街 for 明湖路) and the richer forms (estates, floors, 之一) are counted."""
    url, report = ingested
    truth = pd.read_csv(sample_dir / "address_truth.csv", dtype=str).fillna("")
    got = pd.DataFrame(db_of(url).query("SELECT source_id, building_id FROM people"),
                       columns=["person_id", "building_id"])
    both = truth.merge(got, on="person_id")
    assert len(both) == len(got) > 3000
    wrong = both[both["building_id"] != "buildings:" + both["building"]]
    assert wrong.empty, wrong.head()
    people = [s for s in report["sources"] if s["entity"] == "people"]
    stages = {k: sum(s["addresses"].get(k, 0) for s in people) for k in ("exact", "parsed", "fuzzy", "unmatched")}
    assert stages["exact"] > 2000 and stages["parsed"] > 200
    assert stages["unmatched"] == sum(s["reasons"].get("address-unmatched", 0) for s in people)
    for s in people:  # every row with an address is counted in one stage
        assert sum(s["addresses"].values()) == s["read"] - s["reasons"].get("address-missing", 0)


def test_values_are_typed_and_normalised(ingested, db_of):
    db = db_of(ingested[0])
    classes = {c for (c,) in db.query("SELECT DISTINCT class FROM events")}
    assert classes == {"service", "dispute", "city", "hazard"}
    assert db.query("SELECT count(*) FROM events WHERE reported_at IS NULL")[0][0] == 0
    late = db.query("SELECT count(*) FROM events WHERE dispatched_at < reported_at")[0][0]
    assert late == 0  # mixed date formats parsed into the same instants
    kinds = dict(db.query("SELECT kind, count(*) FROM organisations GROUP BY 1"))
    assert {"enterprise", "party_org", "service_centre", "school"} <= set(kinds)
    linked = db.query("SELECT count(*) FILTER (WHERE person_id IS NOT NULL), count(*) FILTER "
                      "(WHERE organisation_id IS NOT NULL), count(*) FROM party_members")[0]
    assert linked[0] == linked[2] and linked[1] == linked[2]
    assert db.query("SELECT count(*) FROM rasters")[0][0] == 2


def _snapshot(db) -> dict:
    out = {}
    for table in ["admin_units", *ENTITY_TABLES, "device_readings"]:
        out[table] = db.query(f"SELECT count(*), md5(string_agg(row_hash, ',' ORDER BY row_hash)), max(ingest_run) FROM {table}")[0]
    out["quarantine"] = db.query("SELECT count(*), md5(string_agg(raw_hash, ',' ORDER BY raw_hash)) FROM quarantine")[0]
    out["version"] = db.query("SELECT value FROM meta WHERE key = 'data_version'")[0][0]
    return out


def test_reingest_changes_nothing_and_flow_back_updates(sample_dir, tmp_path, db_of, dbs):
    url = dbs.empty("reingest")
    run_cli("ingest", sample_dir / "manifest.yaml", "--db", url)
    db = db_of(url, read_only=False)
    before = _snapshot(db)
    db.close()

    again = run_cli("ingest", sample_dir / "manifest.yaml", "--db", url, "--report-json", tmp_path / "r2.json")
    report = json.loads((tmp_path / "r2.json").read_text(encoding="utf-8"))
    assert all(s["inserted"] == 0 and s["updated"] == 0 and s["unchanged"] == s["loaded"] for s in report["sources"])
    db = db_of(url, read_only=False)
    assert _snapshot(db) == before, again.stdout
    db.close()

    # A community returns its event file with three events closed and two new ones (数据回流).
    flow = tmp_path / "flow"
    shutil.copytree(sample_dir, flow)
    events = pd.read_csv(flow / "events.csv", dtype=str, keep_default_na=False)
    events = events.drop_duplicates("事件编号").reset_index(drop=True)
    open_rows = events.index[events["状态"].isin(["上报", "已派遣", "reported", "dispatched"])
                             & (events["lng_bd"] != "") & (events["上报时间"].str.match(r"^\d"))][:3]
    changed_ids = list(events.loc[open_rows, "事件编号"])
    events.loc[open_rows, "状态"] = "已结案"
    events.loc[open_rows, "结案时间"] = "2026-10-02 09:00:00"
    new = events.loc[open_rows[:2]].copy()
    new["事件编号"] = ["E-NEW-1", "E-NEW-2"]
    pd.concat([events, new]).to_csv(flow / "events.csv", index=False)
    run_cli("ingest", flow / "manifest.yaml", "--db", url, "--report-json", tmp_path / "r3.json")
    report = {s["name"]: s for s in json.loads((tmp_path / "r3.json").read_text(encoding="utf-8"))["sources"]}
    assert (report["events"]["inserted"], report["events"]["updated"]) == (2, 3)
    assert all(s["inserted"] == 0 and s["updated"] == 0 for n, s in report.items() if n != "events")
    db = db_of(url)
    wanted = changed_ids + ["E-NEW-1"]
    closed = db.query(f"SELECT source_id, status, closed_at FROM events WHERE source_id IN "
                      f"({', '.join('?' * len(wanted))})", wanted)
    assert len(closed) == 4 and all(s == "closed" and c is not None for _, s, c in closed)
    assert db.query("SELECT count(*) FROM events")[0][0] == before["events"][0] + 2
    assert int(db.query("SELECT value FROM meta WHERE key = 'data_version'")[0][0]) == int(before["version"]) + 1


def test_quarantine_exports_a_file_to_send_back(ingested, tmp_path):
    url, report = ingested
    out = tmp_path / "back" / "people_gbk.csv"
    run_cli("quarantine", "--db", url, "--source", "people_gbk", "--export", out)
    assert out.read_bytes().startswith("\ufeff".encode("utf-8"))  # Excel opens it with the Chinese intact
    back = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    gbk = next(s for s in report["sources"] if s["name"] == "people_gbk")
    assert len(back) == gbk["quarantined"]
    assert {"reason", "detail", "人员编号", "现住址"} <= set(back.columns)
    assert set(back["reason"]) == set(gbk["reasons"])
    shown = run_cli("quarantine", "--db", url, "--reason", "address-unmatched", "--limit", "2").stdout
    assert "address-unmatched" in shown and "no building at" in shown


def test_status_shows_what_the_map_holds_per_street(ingested, db_of):
    url, _ = ingested
    out = run_cli("status", "--db", url).stdout
    db = db_of(url)
    for street, name in db.query("SELECT code, name FROM admin_units WHERE level = 'street' ORDER BY code"):
        n = db.query("SELECT count(*) FROM people WHERE street_code = ?", [street])[0][0]
        row = next(line for line in out.splitlines() if street in line)
        assert name in row and f" {n:,} " in row, (street, n, row)
    total = next(line for line in out.splitlines() if "total" in line)
    assert f" {db.query('SELECT count(*) FROM people')[0][0]:,} " in total
