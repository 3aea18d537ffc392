"""Sources that cannot be read stop the run with a one-line error, a non-zero exit and nothing half-written."""

import shutil

import pytest
import yaml

from conftest import run_cli


@pytest.fixture
def delivery(sample_dir, tmp_path, ingested_copy):
    """A copy of the sample and a database (of the backend under test) that already holds one ingest of it."""
    d = tmp_path / "delivery"
    shutil.copytree(sample_dir, d)
    return d, ingested_copy("delivery")


def _edit(d, fn):
    path = d / "manifest.yaml"
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(manifest)
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")


def _source(manifest, name):
    return next(s for s in manifest["sources"] if s["name"] == name)


def _state(url):
    import brain

    db = brain.connect(url, read_only=True)
    try:
        tables = ["admin_units", "buildings", "people", "organisations", "events", "party_members", "devices",
                  "device_readings", "quarantine", "ingest_runs", "meta"]
        if db.dialect == "postgis":
            return {t: db.query(f"SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} x")[0]
                    for t in tables}
        return {t: db.query(f"SELECT count(*), sum(hash(COLUMNS(*)::VARCHAR)) FROM {t}")[0] for t in tables}
    finally:
        db.close()


def _fails(d, url, *needles):
    before = _state(url)
    proc = run_cli("ingest", d / "manifest.yaml", "--db", url, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # Progress bars may stand above it; the error itself is the one last line.
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and proc.stderr.strip().endswith(lines[0]), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert _state(url) == before, "a failed run must leave the database as it was"
    return lines[0]


def test_missing_file(delivery):
    d, url = delivery
    (d / "events.csv").unlink()
    _fails(d, url, "source 'events'", "does not exist", "path")


@pytest.mark.parametrize("source,edit,needles", [
    ("enterprises", lambda s: s["columns"].update(industry="所属行业"), ["所属行业", "not in the file"]),
    ("events", lambda s: s["place"].update(x="lon_bd"), ["lon_bd", "not in the file"]),
    ("devices", lambda s: s["place"].update(crs="EPSG:99999"), ["unknown CRS", "EPSG"]),
    ("people_gbk", lambda s: s.update(encoding="utf-8"), ["encoding", "gbk"]),
], ids=["missing-mapped-column", "missing-coordinate-column", "unknown-crs", "wrong-encoding"])
def test_unreadable_source(delivery, source, edit, needles):
    d, url = delivery
    _edit(d, lambda m: edit(_source(m, source)))
    _fails(d, url, f"source '{source}'", *needles)


def test_file_that_breaks_only_after_its_header_rolls_back_the_whole_run(delivery):
    # The header reads fine, so pre-flight passes; the run fails half-way, after earlier sources were loaded.
    d, url = delivery
    # the last 5,000 lines in another encoding: too many to be a few damaged rows (those are quarantined)
    rows = "\n".join(f"D{i:06d},ok" for i in range(200_000))
    bad = "\n".join(f"坏{i},行" for i in range(5_000))
    (d / "device_readings.csv").write_bytes(b"device_code,note\n" + rows.encode() + b"\n" + bad.encode("gbk") + b"\n")
    _edit(d, lambda m: _source(m, "device_readings").update(
        id="device_code", columns={"device_ref": "device_code", "metric": "note"}))
    _fails(d, url, "source 'device_readings'", "encoding")


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_geometry_file_without_crs_needs_one_declared(delivery):
    import geopandas as gpd

    d, url = delivery
    shp = d / "shp" / "buildings.shp"
    shp.parent.mkdir()
    gdf = gpd.read_file(d / "buildings.geojson", engine="pyogrio").head(20).set_crs(None, allow_override=True)
    gdf.to_file(shp, engine="pyogrio", encoding="utf-8")
    assert not shp.with_suffix(".prj").exists()
    _edit(d, lambda m: _source(m, "buildings").update(path="shp/buildings.shp"))
    _fails(d, url, "source 'buildings'", "no CRS", "place.crs")


@pytest.mark.parametrize("edit,needle", [
    (lambda m: _source(m, "events").update(entity="incidents"), "unknown entity 'incidents'"),
    (lambda m: _source(m, "events").update(colums={}), "colums"),
    (lambda m: _source(m, "events")["columns"].update(severity="级别"), "severity"),
    (lambda m: _source(m, "events").pop("place"), "must be placed"),
    (lambda m: _source(m, "events").update(place={"geometry": True}), "needs a geometry file"),
    (lambda m: m["sources"].append(dict(_source(m, "events"))), "unique"),
])
def test_malformed_manifest(delivery, edit, needle):
    d, url = delivery
    _edit(d, edit)
    _fails(d, url, "manifest.yaml", needle)


def test_manifest_that_does_not_exist(tmp_path, dbs):
    proc = run_cli("ingest", tmp_path / "nope.yaml", "--db", dbs.empty("nope"), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_unknown_database_url(sample_dir):
    proc = run_cli("ingest", sample_dir / "manifest.yaml", "--db", "mysql://x", check=False)
    assert proc.returncode == 2 and "duckdb:///" in proc.stderr


def test_malformed_csv_lines_are_quarantined_not_dropped(delivery):
    d, url = delivery
    lines = (d / "events.csv").read_text(encoding="utf-8").splitlines()
    lines.insert(5, lines[5] + ",多出来的一列")  # one column too many
    lines.insert(9, "E99999999,城市管理")  # far too few
    (d / "events.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report_path = d / "r.json"
    run_cli("ingest", d / "manifest.yaml", "--db", url, "--report-json", report_path)
    import json

    events = next(s for s in json.loads(report_path.read_text(encoding="utf-8"))["sources"] if s["name"] == "events")
    assert events["reasons"]["row-malformed"] == 2
    assert events["read"] == len(lines) - 1 == events["loaded"] + events["quarantined"]
    import brain

    db = brain.connect(url, read_only=True)
    try:
        raws = [json.loads(r)["line"] for (r,) in db.query(
            "SELECT raw FROM quarantine WHERE source = 'events' AND reason = 'row-malformed' ORDER BY raw")]
    finally:
        db.close()
    assert sorted(raws) == sorted([lines[5], lines[9]])


def test_database_of_another_schema_version_is_refused(delivery):
    d, url = delivery
    import brain

    db = brain.connect(url, read_only=False)
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    _fails(d, url, "schema version 1", "new database file")


# -- issue 11: no traceback on any input, row-level damage quarantined, the manifest's folder --------------------
def _rename_in_header(path, old: str, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace(old, new)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_mapped_column_repeated_in_the_header_is_named(delivery):
    d, url = delivery
    _rename_in_header(d / "enterprises.csv", "行业", "企业名称")
    _edit(d, lambda m: _source(m, "enterprises")["columns"].update(industry="企业名称"))
    _fails(d, url, "source 'enterprises'", "['企业名称']", "more than once")


def test_an_unmapped_column_repeated_in_the_header_loads(delivery):
    d, url = delivery
    _rename_in_header(d / "enterprises.csv", "联系人,联系电话", "联系人,联系人")
    _edit(d, lambda m: [_source(m, "enterprises")["columns"].pop(k) for k in ("contact", "phone")])
    proc = run_cli("ingest", d / "manifest.yaml", "--db", url, check=False)
    assert proc.returncode == 0, proc.stderr


def test_markup_and_control_bytes_in_names_are_printed_escaped(delivery):
    d, url = delivery
    _edit(d, lambda m: _source(m, "enterprises")["columns"].update(industry="行业[/]\x1b[31m红"))
    line = _fails(d, url, "source 'enterprises'", "行业[/]\\x1b[31m红", "not in the file")
    assert "\x1b" not in line


def test_a_line_in_another_encoding_is_quarantined_not_the_file(delivery):
    import json

    import brain

    d, url = delivery
    path = d / "enterprises.csv"
    raw = path.read_bytes().split(b"\n")
    raw[5] = raw[5].replace("明湖".encode(), "明湖".encode("gbk"))
    path.write_bytes(b"\n".join(raw))
    report = d / "r.json"
    run_cli("ingest", d / "manifest.yaml", "--db", url, "--report-json", report)
    ent = next(s for s in json.loads(report.read_text(encoding="utf-8"))["sources"] if s["name"] == "enterprises")
    assert ent["reasons"]["row-malformed"] == 1 and ent["read"] == ent["loaded"] + ent["quarantined"]
    db = brain.connect(url, read_only=True)
    try:
        row_no, detail = db.query("SELECT row_no, detail FROM quarantine WHERE source = 'enterprises' "
                                  "AND reason = 'row-malformed'")[0]
    finally:
        db.close()
    assert row_no == 6 and "not utf-8" in detail


def test_a_ring_with_a_nan_closing_vertex_is_quarantined_not_the_file(delivery):
    import json

    import brain

    d, url = delivery
    doc = json.loads((d / "buildings.geojson").read_text(encoding="utf-8"))
    ring = doc["features"][1]["geometry"]["coordinates"][0]
    ring[-1] = [float("nan"), float("nan")]
    bid = doc["features"][1]["properties"]["bldg_id"]
    (d / "buildings.geojson").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")  # NaN, as GDAL reads
    run_cli("ingest", d / "manifest.yaml", "--db", url)
    db = brain.connect(url, read_only=True)
    try:
        rows = db.query("SELECT reason, detail FROM quarantine WHERE source = 'buildings' AND source_id = ?", [bid])
    finally:
        db.close()
    assert rows and rows[0][0] == "geometry-invalid" and "unreadable" in rows[0][1], rows


def test_manifest_paths_stay_in_the_manifests_folder(delivery, tmp_path):
    d, url = delivery
    outside = tmp_path / "elsewhere.csv"
    outside.write_bytes((d / "enterprises.csv").read_bytes())
    _edit(d, lambda m: _source(m, "enterprises").update(path=str(outside)))
    _fails(d, url, "enterprises", "outside the manifest's folder", "--allow-outside")
    _edit(d, lambda m: _source(m, "enterprises").update(path="../" + outside.name))
    _fails(d, url, "outside the manifest's folder")
    assert run_cli("ingest", d / "manifest.yaml", "--db", url, "--allow-outside", check=False).returncode == 0


# -- issue 12.4: quarantine is current ----------------------------------------------------------------------------
def test_quarantine_rows_fixed_by_a_later_delivery_are_resolved_and_not_exported(delivery):
    import csv
    import json

    import brain

    d, url = delivery
    path = d / "enterprises.csv"
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines()
    broken = lines[3].split(",")
    fixed_id, gone_id = broken[0], lines[4].split(",")[0]
    lines[3] = ",".join([broken[0], broken[1], "外星企业", *broken[3:]])  # an unknown kind: quarantined
    lines[4] = ",".join([gone_id, *lines[4].split(",")[1:2], "外星企业", *lines[4].split(",")[3:]])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_cli("ingest", d / "manifest.yaml", "--db", url)

    def open_rows():
        db = brain.connect(url, read_only=True)
        try:
            return {r[0]: r[1:] for r in db.query(
                "SELECT source_id, reason, resolution FROM quarantine WHERE source = 'enterprises' "
                "AND source_id IN (?, ?) ORDER BY source_id", [fixed_id, gone_id])}
        finally:
            db.close()

    assert {k: v[0] for k, v in open_rows().items()} == {fixed_id: "unknown-category", gone_id: "unknown-category"}
    # the department fixes one row and drops the other
    lines[3] = original.splitlines()[3]
    del lines[4]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = d / "r.json"
    run_cli("ingest", d / "manifest.yaml", "--db", url, "--report-json", report)
    ent = next(s for s in json.loads(report.read_text(encoding="utf-8"))["sources"] if s["name"] == "enterprises")
    assert ent["resolved"] == 2 and ent["read"] == ent["loaded"] + ent["quarantined"]
    assert open_rows() == {fixed_id: ("unknown-category", "loaded"), gone_id: ("unknown-category", "gone")}
    listed = run_cli("quarantine", "--db", url, "--source", "enterprises", "--limit", "1000").stdout
    history = run_cli("quarantine", "--db", url, "--source", "enterprises", "--all", "--limit", "1000").stdout
    assert "外星企业" not in listed and "外星企业" in history and "resolved: loaded" in history
    out = d / "open.csv"
    run_cli("quarantine", "--db", url, "--source", "enterprises", "--export", out)
    with out.open(encoding="utf-8-sig") as f:
        exported = {r["source_id"] for r in csv.DictReader(f)}
    assert exported and fixed_id not in exported and gone_id not in exported
    # broken again: the same row is open again, not a second copy
    path.write_text(original.replace(original.splitlines()[3], ",".join([broken[0], broken[1], "外星企业",
                                                                           *broken[3:]])), encoding="utf-8")
    run_cli("ingest", d / "manifest.yaml", "--db", url)
    db = brain.connect(url, read_only=True)
    try:
        again = db.query("SELECT count(*), count(*) FILTER (WHERE resolved_run IS NULL) FROM quarantine "
                         "WHERE source = 'enterprises' AND source_id = ?", [fixed_id])[0]
    finally:
        db.close()
    assert again == (1, 1)


# -- issue 12.1 (part): a source's own value map, date layouts and templates ---------------------------------------
def test_a_source_maps_its_own_values_date_layouts_and_templates(delivery):
    import csv
    from datetime import datetime

    import brain

    d, url = delivery
    path = d / "events.csv"
    rows = list(csv.reader(path.open(encoding="utf-8")))
    head = rows[0]
    when, cls = head.index("上报时间"), head.index("大类")
    rewritten = 0
    for r in rows[1:]:
        try:
            t = datetime.fromisoformat(r[when].replace("/", "-"))
        except ValueError:
            continue  # other layouts stay as they were: the built-in ones still read them
        r[when] = f"{t.day}.{t.month}.{t.year} {t.hour:02d}:{t.minute:02d}"  # day first, no padding
        rewritten += 1
        if r[cls] == "城市管理":
            r[cls] = "市容环境"  # this department's own word for the class
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    assert rewritten > 300

    def own(s):
        s.update(formats={"reported_at": ["%d.%m.%Y %H:%M"]}, values={"class": {"市容环境": "city"}})
        s["columns"]["description"] = "{大类}/{小类}: {描述}"
    _edit(d, lambda m: own(_source(m, "events")))
    before = brain.connect(url, read_only=True)
    want = before.query("SELECT id, class, reported_at FROM events ORDER BY id")
    before.close()
    run_cli("ingest", d / "manifest.yaml", "--db", url)
    db = brain.connect(url, read_only=True)
    try:
        got = db.query("SELECT id, class, reported_at FROM events ORDER BY id")
        desc = db.query("SELECT description FROM events WHERE description IS NOT NULL LIMIT 1")[0][0]
        bad = db.query("SELECT count(*) FROM quarantine WHERE source = 'events' AND resolved_run IS NULL "
                       "AND reason IN ('date-invalid', 'unknown-category')")[0][0]
    finally:
        db.close()
    assert got == want  # the same events, classes and times as the delivery in the built-in layouts
    assert desc.count("/") == 1 and ": " in desc
    assert bad == 4  # the planted dirt only (2 dates, 2 classes), no more


@pytest.mark.parametrize("edit,needle", [
    (lambda s: s.update(values={"class": {"市容环境": "city_beauty"}}), "unknown code(s) ['city_beauty']"),
    (lambda s: s.update(values={"description": {"x": "y"}}), "not a coded field"),
    (lambda s: s.update(formats={"reported_at": ["dd.mm.yyyy"]}), "does not read back"),
    (lambda s: s.update(formats={"class": ["%Y"]}), "not a date field"),
    (lambda s: s["columns"].update(description="{大类"), "template"),
], ids=["unknown-code", "uncoded-field", "bad-format", "format-of-non-date", "broken-template"])
def test_a_bad_value_map_format_or_template_is_named(delivery, edit, needle):
    d, url = delivery
    _edit(d, lambda m: edit(_source(m, "events")))
    _fails(d, url, "manifest.yaml", "events", needle)


def test_a_template_naming_a_missing_column_is_named(delivery):
    d, url = delivery
    _edit(d, lambda m: _source(m, "events")["columns"].update(description="{大类} {门牌号}"))
    _fails(d, url, "source 'events'", "门牌号", "not in the file")


def _one_admin_layer(d):
    """The sample's four admin layers as one layer with a level column (级别), as bureaus often deliver them."""
    import geopandas as gpd
    import pandas as pd

    parts = [gpd.read_file(d / "admin_units.gpkg", layer=lvl, engine="pyogrio").assign(级别=zh)
             for lvl, zh in (("district", "区"), ("street", "街道"), ("community", "社区"), ("grid", "网格"))]
    pd.concat(parts, ignore_index=True).to_file(d / "units_all.gpkg", layer="all", engine="pyogrio")
    return ("区", "街道", "社区", "网格")


def test_one_admin_layer_with_a_level_column_loads_through_filters_and_not_without(delivery):
    import json

    import brain

    d, url = delivery
    levels = _one_admin_layer(d)
    _edit(d, lambda m: [s.update(path="units_all.gpkg", layer="all") for s in m["admin_units"]])
    _fails(d, url, "source 'units_district'", "not of level district", "filter")  # never a silent load
    db = brain.connect(url, read_only=True)
    want = db.query("SELECT code, name, level, parent_code, row_hash FROM admin_units ORDER BY code")
    db.close()
    _edit(d, lambda m: [s.update(filter={"级别": zh}) for s, zh in zip(m["admin_units"], levels)])
    report = d / "r.json"
    run_cli("ingest", d / "manifest.yaml", "--db", url, "--report-json", report)
    units = [s for s in json.loads(report.read_text(encoding="utf-8"))["sources"] if s["entity"] == "admin_units"]
    assert [s["skipped"] for s in units] == [25, 24, 22, 7]  # 26 rows in the layer, 1 + 2 + 4 + 19 kept
    assert all(s["inserted"] == s["updated"] == 0 for s in units), "the same units: nothing new, nothing changed"
    db = brain.connect(url, read_only=True)
    got = db.query("SELECT code, name, level, parent_code, row_hash FROM admin_units ORDER BY code")
    db.close()
    assert got == want


# -- issue 12.2: brain check ------------------------------------------------------------------------------------------
def test_brain_check_lists_every_problem_writes_nothing_and_its_skeleton_applies(delivery):
    import brain

    d, url = delivery
    path = d / "events.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = lines[7].split(",")
    cells[1], cells[4] = "外星事件", "明年某天"  # one row failing two checks: class and reported_at
    lines[7] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = _state(url)
    proc = run_cli("check", d / "manifest.yaml", "--db", url, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "nothing was written" in proc.stdout and "Traceback" not in proc.stderr
    assert _state(url) == before
    out = proc.stdout
    for needle in ("duplicate-id", "date-invalid", "address-unmatched", "reference-unknown", "外星事件", "明年某天"):
        assert needle in out, needle
    skeleton = yaml.safe_load(out.split("add them under each source):", 1)[1])
    events = next(s for s in skeleton if s["name"] == "events")
    assert events["values"]["class"] == {"其它类": "TODO", "外星事件": "TODO"}
    # ingest names both failing checks in the row's detail (its reason is the first)
    run_cli("ingest", d / "manifest.yaml", "--db", url)
    db = brain.connect(url, read_only=True)
    try:
        reason, detail = db.query("SELECT reason, detail FROM quarantine WHERE source = 'events' AND source_id = ? "
                                  "AND resolved_run IS NULL", [cells[0]])[0]
    finally:
        db.close()
    assert reason == "unknown-category" and detail == "class=外星事件; reported_at=明年某天"
    # the skeleton applied with codes filled in: the same check no longer finds those values
    _edit(d, lambda m: _source(m, "events").update(values={"class": {k: "service" for k in events["values"]["class"]}}))
    again = run_cli("check", d / "manifest.yaml", "--db", url, check=False).stdout
    assert "外星事件" not in again and "其它类" not in again and "明年某天" in again
