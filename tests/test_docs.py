"""The README keeps up with the code: the two commands first, every canonical field and reason documented."""

import re
from pathlib import Path

from brain.model import ENTITIES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
PIPELINE = (Path(__file__).resolve().parent.parent / "brain" / "ingest" / "pipeline.py").read_text(encoding="utf-8")
PLACES = (Path(__file__).resolve().parent.parent / "brain" / "ingest" / "places.py").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands():
    first_block = README.split("```")[1]
    assert first_block.split()[:2] == ["make", "demo"] and "make test" in first_block


def test_every_table_and_field_is_documented():
    for entity in ENTITIES.values():
        assert f"`{entity.name}`" in README
        for field in entity.fields:
            assert f"`{field.name}`" in README, f"{entity.name}.{field.name}"


def test_every_quarantine_reason_is_documented():
    reasons = set(re.findall(r'"((?:[a-z]+-)+[a-z]+)"', PIPELINE + PLACES)) | set(
        re.findall(r"'((?:[a-z]+-)+[a-z]+)'", PIPELINE))
    reasons = {r for r in reasons if r.split("-")[-1] in {"missing", "id", "category", "invalid", "swapped", "range",
                                                          "unmatched", "district", "unknown"}}
    assert len(reasons) >= 15
    for reason in reasons:
        assert f"`{reason}`" in README, reason


def test_every_layer_endpoint_and_indicator_is_documented():
    from brain.layers.catalog import CATALOG
    from brain.metrics import INDICATORS
    from brain.service import create_app

    for layer in CATALOG.values():
        assert f"`{layer.id}`" in README, layer.id
        for part in layer.parts:
            assert f"`{part.name}`" in README, part.name
    patterns = ("group_", "org_", "industry_", "events_")
    for name in INDICATORS:
        if not name.startswith(patterns) or name == "events":
            assert f"`{name}`" in README, name
    documented = re.sub(r"\{[^}]*\}", "{}", README)
    for route in create_app().routes:
        path = re.sub(r"\{[^}]*\}", "{}", getattr(route, "path", ""))
        if path and not path.startswith(("/docs", "/redoc")):
            assert re.search(rf"[` ]{re.escape(path)}[`? ]", documented), path
