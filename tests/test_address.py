"""Address normalisation: the variants departments write all reach one building key."""

import pytest

from brain.ingest.address import normalise_address, normalise_addresses

KEY = "明湖路12号3栋"


@pytest.mark.parametrize("raw", [
    "明湖路12号3栋2单元501室",
    "广东省广州市明湖区东湖街道明湖路１２号３幢２单元５０１房",  # full-width digits, 幢, 房, long prefix
    "明湖路 12 号 3 栋 2-501",  # spaces, dash form
    "明湖路12号3号楼2单元501",  # 号楼, bare room
    "东湖社区明湖路12号三座二单元501室",  # Chinese numerals, 座, community prefix
    "明湖区明湖路012号03栋2单元501室",  # leading zeros
    "明湖路12号3栋2单元501号房",
])
def test_variants_reach_one_key(raw):
    a = normalise_address(raw)
    assert a.key == KEY
    assert (a.unit, a.room) == ("2", "501")


def test_building_without_unit_and_room():
    a = normalise_address("明湖路十二号三栋")
    assert (a.key, a.unit, a.room) == (KEY, None, None)


def test_compound_without_building_number():
    assert normalise_address("明湖路12号").key == "明湖路12号"


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_missing(raw):
    assert normalise_address(raw) == (None, None, None, None)


def test_unparseable_keeps_the_normal_form_but_has_no_key():
    a = normalise_address("明湖花园旁边小卖部")
    assert a.norm == "明湖花园旁边小卖部" and a.key is None


def test_vectorised_equals_one_by_one():
    values = ["明湖路12号3栋2单元501室", None, "明湖路 12 号 3 栋 2-501", "东风路5号1幢", "", "明湖路12号3栋2单元501室"]
    table = normalise_addresses(values).to_pylist()
    assert [tuple(r.values()) for r in table] == [tuple(normalise_address(v)) for v in values]
