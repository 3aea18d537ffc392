"""Real deliveries (issue 12): a second delivery of another shape loads with no quarantine beyond its planted
dirt; deployment vocabularies extend codes and labels, two levels for events; bad vocabulary files are refused."""

import json

import pandas as pd
import pytest
import yaml

import other_delivery
from conftest import run_cli


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    d = tmp_path_factory.mktemp("other")
    return d, other_delivery.write(d)


def _ingest(d, url, tmp_path):
    report = tmp_path / "report.json"
    proc = run_cli("ingest", d / "manifest.yaml", "--db", url, "--report-json", report)
    return json.loads(report.read_text(encoding="utf-8")), proc


def test_a_delivery_of_another_shape_loads_with_only_its_planted_dirt_quarantined(other, dbs, tmp_path, db_of):
    import brain.vocabulary as vocabulary

    d, made = other
    url = dbs.empty("other")
    report, proc = _ingest(d, url, tmp_path)
    by = {s["name"]: s for s in report["sources"]}
    assert all(s["read"] == s["loaded"] + s["quarantined"] for s in report["sources"])
    for name, s in by.items():
        assert s["reasons"] == made["planted"].get(name, {}), name
    # one admin layer, its level column filtering each entry: 1 + 2 + 4 + 8 units of 15 rows
    assert [by[f"alueet_{lv}"]["loaded"] for lv in ("district", "street", "community", "grid")] == [1, 2, 4, 8]
    db = db_of(url)
    # every person in the right building, the generic locale's staircase and flat as unit and room
    got = dict(db.query("SELECT source_id, building_id FROM people"))
    assert got and all(b == "rakennukset:" + made["truth"][p] for p, b in got.items())
    assert by["asukkaat"]["addresses"] == {"parsed": 72, "fuzzy": 2, "unmatched": 2}
    assert db.query("SELECT unit_no, room FROM people WHERE source_id = 'H00001'")[0] == ("A", "10")
    # day-first dates, the register's own codes mapped
    assert db.query("SELECT CAST(birth_date AS VARCHAR), gender FROM people WHERE source_id = 'H90002'")[0] == (
        "1946-09-27", "female")
    # item types from the deployment's vocabulary, the class taken from them; labels in both languages
    kinds = dict(db.query("SELECT type, min(class) FROM events GROUP BY 1"))
    assert kinds == {"city.noise": "city", "city.shared_bikes": "city", "hazard.icy_street": "hazard",
                     "service.parking_permit": "service"}
    assert db.query("SELECT count(*) FROM events WHERE channel = 'feedback_portal'")[0][0] > 10
    voc = vocabulary.stored(db)
    assert voc.label("event_type", "city.shared_bikes", "zh") == "共享单车乱停放"
    assert voc.label("event_type", "city.shared_bikes", "en") == "Shared bikes parked badly"
    assert voc.label("event_type", "city.noise", "en") == "Noise nuisance"  # a built-in code keeps its label
    assert voc.label("channel", "feedback_portal", "zh") == "意见反馈平台"
    assert "rows per stage" in proc.stdout
    db.close()  # DuckDB lets one process write the file: ingest again
    # again: nothing changes
    again, _ = _ingest(d, url, tmp_path)
    assert all(s["inserted"] == s["updated"] == 0 for s in again["sources"])
    assert again["data_version"] == report["data_version"]


def _vocab_fails(d, url, vocab, *needles, values=None):
    import test_bad_input

    (d / "koodit.yaml").write_text(yaml.safe_dump(vocab, allow_unicode=True), encoding="utf-8")
    manifest = yaml.safe_load((d / "manifest.yaml").read_text(encoding="utf-8"))
    if values is not None:
        manifest["sources"][2]["values"]["status"] = values
    (d / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    run_cli("db", "init", "--db", url)
    return test_bad_input._fails(d, url, *needles)


@pytest.mark.parametrize("vocab, needles", [
    ({"event_class": {"traffic": {"zh": "交通"}}}, ["event_class.traffic", "top level", "event_type"]),
    ({"colours": {"red": {"zh": "红"}}}, ["unknown vocabulary 'colours'"]),
    ({"event_type": {"noise": {"zh": "噪音"}}}, ["event_type.noise", "<class>.<item>"]),
    ({"event_type": {"traffic.jam": {"zh": "拥堵"}}}, ["'traffic' is not an event class"]),
    ({"event_type": {"city.noise": {"zh": "噪声"}}}, ["built-in code is labelled '噪音扰民'", "values:"]),
    ({"industry": {"C13": {"zh": "农副食品加工业", "values": ["制造业"]}}}, ["'制造业' already means manufacturing"]),
    ({"industry": {"C13": {"en": "Agri-food"}}}, ["industry.C13", "Chinese label"]),
    ({"industry": {"C13": {"zh": "农副食品加工业", "colour": "red"}}}, ["unknown key(s) ['colour']"]),
])
def test_a_vocabulary_file_that_contradicts_the_built_in_codes_is_refused(other, tmp_path, dbs, vocab, needles):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(other[0], d)
    url = dbs.empty("vocab")
    line = _vocab_fails(d, url, vocab, "koodit.yaml", *needles)
    assert len(line) < 400


def test_a_value_map_to_a_code_no_vocabulary_has_is_refused(other, tmp_path, dbs):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(other[0], d)
    _vocab_fails(d, dbs.empty("vocab"), other_delivery.VOCAB, "values.status", "unknown code(s) ['pending']",
                 values={"avoin": "pending"})


def test_an_item_type_under_another_class_is_quarantined_as_a_mismatch(other, tmp_path, dbs, db_of):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(other[0], d)
    events = pd.read_csv(d / "palautteet.csv", dtype=str)
    events["luokka"] = ""
    events.loc[3, "luokka"] = "矛盾纠纷"  # a dispute, with the item type Pysäköintitunnus (service.parking_permit)
    events.loc[4, "luokka"] = "城市管理"  # city, with Melu (city.noise): agrees
    events.to_csv(d / "palautteet.csv", index=False)
    manifest = yaml.safe_load((d / "manifest.yaml").read_text(encoding="utf-8"))
    manifest["sources"][2]["columns"]["class"] = "luokka"
    (d / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    url = dbs.empty("mismatch")
    report, _ = _ingest(d, url, tmp_path)
    ev = next(s for s in report["sources"] if s["name"] == "palautteet")
    assert ev["reasons"] == {"class-mismatch": 1, "date-invalid": 1, "unknown-category": 1}
    detail = db_of(url).query("SELECT detail FROM quarantine WHERE reason = 'class-mismatch'")[0][0]
    assert detail == "type=Pysäköintitunnus is under service, not dispute"
