"""The sample generator: deterministic, committed small sample reproducible, files as a bureau receives them."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "data" / "sample"


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_committed_sample_is_what_the_generator_writes(sample_dir):
    assert digests(sample_dir) == digests(COMMITTED), "run `make sample` and commit data/sample"


def test_small_sample_is_small():
    assert sum(p.stat().st_size for p in COMMITTED.rglob("*") if p.is_file()) < 20 * 2**20


def test_manifest_lists_every_delivered_file(sample_dir):
    manifest = yaml.safe_load((sample_dir / "manifest.yaml").read_text(encoding="utf-8"))
    listed = {e["path"] for key in ("admin_units", "sources", "rasters") for e in manifest[key]}
    delivered = {k for k in digests(sample_dir) if k not in ("manifest.yaml", "planted.json", "address_truth.csv")}
    assert listed == delivered


def test_files_are_messy_like_the_real_ones(sample_dir):
    gbk = (sample_dir / "people" / "register_gbk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        gbk.decode("utf-8")
    people = pd.read_csv(sample_dir / "people" / "register_gbk.csv", encoding="gbk", dtype=str, keep_default_na=False)
    assert "现住址" in people.columns
    addr = people["现住址"]
    assert addr.str.contains("[０-９]").any(), "full-width digits"
    for variant in ("幢", "号楼", "座", "-"):
        assert addr.str.contains(variant, regex=False).any(), variant
    excel = pd.read_excel(sample_dir / "people" / "community_register.xlsx", sheet_name="人口信息", engine="calamine")
    assert len(excel) > 100
    events = pd.read_csv(sample_dir / "events.csv", dtype=str, keep_default_na=False)
    stamps = events["上报时间"]
    assert stamps.str.contains("年").any() and stamps.str.contains("/").any() and stamps.str.match(r"^\d{14}$").any()
    assert (sample_dir / "rasters" / "rainfall_forecast.tif").exists() and (sample_dir / "rasters" / "dem.tif").exists()


def test_rasters_cover_the_district(sample_dir):
    import rasterio

    with rasterio.open(sample_dir / "rasters" / "rainfall_forecast.tif") as src:
        assert src.count == 6 and src.crs.to_epsg() == 4326
        assert src.read(1).max() > 0
