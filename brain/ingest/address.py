"""Chinese street addresses: normalise the variants departments write, and split them into a building key.

'广东省广州市明湖区东湖街道明湖路１２号３幢二单元５０１房' → key '明湖路12号3栋', unit '2', room '501'.
Regex work is done once per distinct address (a register repeats each address per household member).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pandas as pd

# Full-width ASCII (U+FF01–U+FF5E) and the ideographic space map to ASCII; this is what NFKC does for
# them, as one translate table (NFKC itself would also fold other characters we want to keep).
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20
_FULLWIDTH.update({ord("—"): ord("-"), ord("－"): ord("-"), ord("–"): ord("-")})

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_NUMBER = re.compile(r"([零〇一二两三四五六七八九十]+)(?=栋|幢|座|单元|号|室|层)")
_SPACES = re.compile(r"[\s,，、.。·]+")
_ADMIN_PREFIX = re.compile(r"^[\u4e00-\u9fff]{1,8}?(?:省|自治区|市|区|县|街道|镇|乡|社区|村委会|居委会|村)")
_BUILDING = re.compile(r"(?<=号)(\d+)(?:幢|座|号楼|栋)")
_UNIT_DASH = re.compile(r"(?<=栋)(\d+)-(\d+)(?:室|房|号房)?$")
_ROOM_SUFFIX = re.compile(r"(\d+)(?:室|房|号房|户)$")
_ROOM_BARE = re.compile(r"(?<=单元)(\d+)$")
_PARSE = re.compile(
    r"^(?P<road>[\u4e00-\u9fffA-Za-z]+?)(?P<no>\d+)号(?:(?P<bldg>\d+)栋)?(?:(?P<unit>\d+)单元)?(?:(?P<room>\d+)室)?$"
)


class Address(NamedTuple):
    """A normalised address: the full normal form, the building key it matches on, unit and room."""

    norm: str | None
    key: str | None
    unit: str | None
    room: str | None


def _cn_to_int(text: str) -> int:
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (_CN_DIGITS.get(ones, 0) if ones else 0)
    return int("".join(str(_CN_DIGITS[c]) for c in text))


def normalise_address(raw: str | None) -> Address:
    """Normalise one address and split off the building key, unit and room (None where absent)."""
    if raw is None or (isinstance(raw, float)) or not str(raw).strip():
        return Address(None, None, None, None)
    text = str(raw).translate(_FULLWIDTH)
    text = _SPACES.sub("", text)
    text = _CN_NUMBER.sub(lambda m: str(_cn_to_int(m.group(1))), text)
    while True:  # strip province / city / district / street / community prefixes
        stripped = _ADMIN_PREFIX.sub("", text, count=1)
        if stripped == text or not stripped:
            break
        text = stripped
    text = _BUILDING.sub(r"\1栋", text)
    text = _UNIT_DASH.sub(r"\1单元\2室", text)
    text = _ROOM_SUFFIX.sub(r"\1室", text)
    text = _ROOM_BARE.sub(r"\1室", text)
    m = _PARSE.match(text)
    if not m:
        return Address(text, None, None, None)
    key = f"{m['road']}{int(m['no'])}号" + (f"{int(m['bldg'])}栋" if m["bldg"] else "")
    unit = str(int(m["unit"])) if m["unit"] else None
    room = str(int(m["room"])) if m["room"] else None
    return Address(text, key, unit, room)


def normalise_addresses(values: pd.Series) -> pd.DataFrame:
    """Vectorised normalise_address over a Series: columns norm, key, unit, room, index kept."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = pd.DataFrame([normalise_address(u) for u in uniques], columns=list(Address._fields))
    parsed.loc[len(parsed)] = [None, None, None, None]  # the slot for missing values (code -1)
    codes = codes.copy()
    codes[codes < 0] = len(parsed) - 1
    out = parsed.iloc[codes].reset_index(drop=True)
    out.index = values.index
    return out.astype(object).where(out.notna(), None)
