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
