"""Street addresses: normalise the variants departments write, and parse them into the parts a building is found by.

Two parsers, chosen per source (`address: {column: …, locale: zh | generic}`):

- **zh** — '广东省广州市越秀区东风街道解放路１２号３幢二单元５０１房' → key '解放路12号3栋', unit '2', room '501'.
  Beyond road + 号: estates and building names ('翠湖花园3栋2单元501', 'XX小区B座1203'), villages and lanes
  ('石牌村东二巷12号', 坊/里/弄), '12号之一' and '附3号' (their own buildings, never 12号's), road segments
  ('天河大道中'), floors ('5楼', '负一层'), Latin letters in any case.
- **generic** — any script, case-folded: street, house number (with ranges '22-24' and suffixes '14a'), then
  staircase and flat, split off as unit and room: 'Mannerheimintie 5 A 12' → key 'mannerheimintie 5', unit 'A',
  room '12'.

The common forms are normalised with Arrow's RE2 kernels over the distinct values (a register repeats each
address per household member): a million addresses take about a second, where a Python loop of `re.sub` took
twenty. Only values those kernels cannot parse go through the richer parser in Python.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

LOCALES = ("zh", "generic")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# Chinese numerals that count something (a number, a building, a floor): before a marker, or after 之/附/负
_CN_NUMBER = r"(?:(之|附|负)([零〇一二两三四五六七八九十]+)|([零〇一二两三四五六七八九十]+)(栋|幢|座|单元|号|室|层|楼))"
# Admin names before the road (province … community). A village (村) is not stripped: it is the road of its lanes.
# An estate (小区) is not a district (区) either.
_ADMIN_PREFIX = r"^\p{Han}{0,8}?(?:\p{Han}省|自治区|\p{Han}市|[^小\P{Han}]区|\p{Han}县|街道|\p{Han}镇|\p{Han}乡|社区|村委会|居委会)"
_STEPS = (  # (pattern, replacement), applied in order after the prefix is stripped
    (r"号(\d+)(?:幢|座|号楼|栋)", r"号\1栋"),  # 3幢 / 3座 / 3号楼 → 3栋
    (r"栋(\d+)-(\d+)(?:室|房|号房)?$", r"栋\1单元\2室"),  # 3栋2-501 → 3栋2单元501室
    (r"(\d+)(?:室|房|号房|户)$", r"\1室"),  # 501房 → 501室
    (r"单元(\d+)$", r"单元\1室"),  # 2单元501 → 2单元501室
)
# The common form, parsed by the Arrow kernels: road + number + (building) + (unit) + (room).
_PARSE = r"^(?P<road>[\p{Han}A-Za-z]+?)(?P<no>\d+)号(?:(?P<bldg>\d+)栋)?(?:(?P<unit>\d+)单元)?(?:(?P<room>\d+)室)?$"

_ROAD_END = "路|大街|街|大道|道|巷|弄|里|坊|胡同|村|线"
_ZH = re.compile(
    rf"^(?:(?P<road>[^\d]+?(?:{_ROAD_END})(?:[东南西北中]{{1,2}}(?:段|路)?)?)"
    r"(?P<fu>附)?(?P<no>\d+(?:-\d+)?)号(?:之(?P<zhi>\d+?))?)?"
    r"(?P<estate>[^\d]*?)"
    r"(?:(?P<bldg>\d+[A-Z]?|[A-Z]\d*)(?:栋|幢|座|号楼))?"
    r"(?:(?P<unit>\d+)单元)?"
    r"(?:(?P<floor>负?\d+|B\d+)(?:层|楼|F))?"
    r"(?:(?P<room>\d+[A-Z]?|[A-Z]\d+)(?:室|房|号房|户|号)?)?$")
_GENERIC = re.compile(
    r"^(?P<road>[^\d]*[^\W\d][^\d]*?)\s*(?P<no>\d+(?:\s*-\s*\d+)?)(?P<suffix>[^\W\d_](?![^\W\d_]))?"
    r"(?:\s+(?P<unit>[^\W\d_])(?![^\W\d_]))?"
    r"(?:\s*(?:as\.?|apt\.?|flat|lgh\.?|#)?\s*(?P<room>\d+[^\W\d_]?))?$")

_HAN = re.compile(r"[\u3400-\u9fff]")
_PARTS = ("norm", "key", "unit", "room", "estate_key", "road", "no", "bldg", "floor", "simple")


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


def _cn_sub(m: re.Match) -> str:
    if m.group(1):
        return f"{m.group(1)}{_cn_to_int(m.group(2))}"
    return f"{_cn_to_int(m.group(3))}{m.group(4)}"


def _cn_numbers(values: pa.Array) -> pa.Array:
    """Chinese numerals that count (before 栋/单元/号/室/层/楼, after 之/附/负) → digits; only the few values that
    have them go through Python."""
    has = pc.fill_null(pc.match_substring_regex(values, _CN_NUMBER), False)
    if not pc.any(has).as_py():
        return values
    pattern = re.compile(_CN_NUMBER)
    fixed = [pattern.sub(_cn_sub, v) if h else v for v, h in zip(values.to_pylist(), has.to_pylist())]
    return pa.array(fixed, type=pa.string())


def _strip_zeros(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(values, r"^0+(\d)", r"\1")


def _zh_key(road, fu, no, zhi, bldg) -> str:
    return f"{road}{'附' if fu else ''}{no}号{f'之{zhi}' if zhi else ''}{f'{bldg}栋' if bldg else ''}"


def _rich_zh(text: str) -> dict | None:
    """The richer Chinese parse of one normal form, or None."""
    m = _ZH.match(text.upper())
    if m is None or not _HAN.search(text):  # no Chinese at all: the generic parser's, never an 'estate'
        return None
    g = {k: (v or None) for k, v in m.groupdict().items()}
    for k in ("no", "zhi", "bldg", "unit", "room"):
        if g[k] and g[k][0] == "0":  # leading zeros: 012号 is 12号
            g[k] = g[k].lstrip("0") or "0"
            if not g[k][0].isdigit():
                g[k] = "0" + g[k]
    estate = g["estate"]
    if g["road"] is None and not estate:
        return None
    if g["floor"]:
        g["floor"] = g["floor"].replace("负", "-").replace("B", "-")
    key = _zh_key(g["road"], g["fu"], g["no"], g["zhi"], g["bldg"]) if g["road"] else None
    estate_key = f"{estate}|{g['bldg'] or ''}" if estate else None
    no = f"{'附' if g['fu'] else ''}{g['no']}" + (f"之{g['zhi']}" if g["zhi"] else "") if g["road"] else None
    return {"key": key, "unit": g["unit"], "room": g["room"], "estate_key": estate_key, "road": g["road"],
            "no": no, "bldg": g["bldg"], "floor": g["floor"]}


def _generic(raw: str) -> dict | None:
    """The locale-neutral parse of one raw address, or None: case-folded, up to the first comma."""
    text = unicodedata.normalize("NFKC", raw).casefold().split(",")[0]
    text = re.sub(r"[‐‑‒–—−]", "-", text)
    text = re.sub(r"\s+", " ", text).strip()
    m = _GENERIC.match(text)
    if m is None:
        return None
    road = re.sub(r"[\s.]+$", "", m.group("road")).strip()
    no = re.sub(r"\s+", "", m.group("no")) + (m.group("suffix") or "")
    unit = m.group("unit").upper() if m.group("unit") else None
    return {"norm": text, "key": f"{road} {no}", "unit": unit, "room": m.group("room"), "estate_key": None,
            "road": road, "no": no, "bldg": None, "floor": None, "simple": False}


def _normalise_zh(values: pa.Array) -> pa.Table:
    text = pc.utf8_normalize(values, "NFKC")  # full-width digits, letters, '－' and spaces → ASCII
    text = pc.replace_substring_regex(text, r"[—–]", "-")
    text = pc.replace_substring_regex(text, r"[\s,，、.。·]+", "")
    text = _cn_numbers(text)
    for _ in range(6):  # province, city, district, street, community prefixes (never down to nothing)
        stripped = pc.replace_substring_regex(text, _ADMIN_PREFIX, "")
        text = pc.if_else(pc.equal(stripped, ""), text, stripped)
    for pattern, repl in _STEPS:
        text = pc.replace_substring_regex(text, pattern, repl)
    parts = pc.extract_regex(text, _PARSE)
    road, no, bldg, unit, room = (parts.field(i) for i in range(5))
    # '解放路附3号' is number 附3 of 解放路: left to the richer parser (RE2 has no look-behind to say so here)
    ok = pc.and_(pc.fill_null(pc.match_substring_regex(text, _PARSE), False),
                 pc.invert(pc.fill_null(pc.ends_with(road, "附"), False)))
    no, bldg, unit, room = (_strip_zeros(a) for a in (no, bldg, unit, room))
    has_bldg = pc.not_equal(bldg, "")
    key = pc.binary_join_element_wise(road, no, "号", pc.if_else(has_bldg, pc.binary_join_element_wise(bldg, "栋", ""), ""),
                                      "")
    blank = pc.equal(text, "")
    null = pa.scalar(None, pa.string())

    def keep(arr, cond):
        return pc.if_else(pc.and_(ok, cond), arr, null)

    out = pa.table({
        "norm": pc.if_else(blank, null, text), "key": keep(key, pa.scalar(True)),
        "unit": keep(unit, pc.not_equal(unit, "")), "room": keep(room, pc.not_equal(room, "")),
        "estate_key": pa.nulls(len(text), pa.string()), "road": keep(road, pa.scalar(True)),
        "no": keep(no, pa.scalar(True)), "bldg": keep(bldg, has_bldg),
        "floor": pa.nulls(len(text), pa.string()), "simple": pc.fill_null(ok, False)})
    rest = pc.indices_nonzero(pc.and_(pc.invert(out.column("simple")), pc.invert(pc.fill_null(blank, True))))
    if len(rest) == 0:
        return out
    # Only the values the kernels could not parse go through Python; the rest stay columnar.
    rows = out.take(rest).to_pylist()
    for row in rows:
        parsed = _rich_zh(row["norm"])
        if parsed:
            row.update(parsed)
    keep = pc.indices_nonzero(pc.invert(pc.is_in(pa.array(np.arange(len(out))), value_set=rest)))
    both = pa.concat_tables([out.take(keep), pa.Table.from_pylist(rows, schema=out.schema)])
    return both.take(np.argsort(np.concatenate([keep.to_numpy(), rest.to_numpy()]), kind="stable"))


def _normalise_generic(values: pa.Array) -> pa.Table:
    rows = []
    for raw in values.to_pylist():
        parsed = _generic(raw) if raw and raw.strip() else None
        if parsed is None:
            norm = unicodedata.normalize("NFKC", raw).casefold().strip() if raw and raw.strip() else None
            parsed = {p: None for p in _PARTS} | {"norm": norm or None, "simple": False}
        rows.append(parsed)
    schema = pa.schema([(p, pa.bool_() if p == "simple" else pa.string()) for p in _PARTS])
    return pa.Table.from_pylist(rows, schema=schema)


def parse_distinct(values, locale: str = "zh") -> tuple[pa.Table, pa.Array]:
    """Parse the distinct values of many addresses: (one row per distinct value, each value's row index).

    The rows have norm, key (the building key), unit, room, estate_key ('翠湖花园|3' for addresses written by
    estate), road, no, bldg, floor and simple (the common form, parsed without the richer parser).
    """
    if locale not in LOCALES:
        raise ValueError(f"unknown address locale {locale!r}: one of {', '.join(LOCALES)}")
    if isinstance(values, pd.Series):
        values = values.astype(object).where(values.notna(), None).tolist()
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(pc.cast(arr, pa.string()))
    distinct = (_normalise_zh if locale == "zh" else _normalise_generic)(enc.dictionary)
    return distinct, enc.indices


def normalise_addresses(values, locale: str = "zh") -> pa.Table:
    """Normalise many addresses (a list, Series or Arrow array) with one locale's parser: parse_distinct's
    columns, one row per value (null where the value is)."""
    distinct, indices = parse_distinct(values, locale)
    return distinct.take(indices)


def normalise_address(raw: str | None, locale: str = "zh") -> Address:
    """Normalise one address and split off the building key, unit and room (None where absent)."""
    row = normalise_addresses([None if raw is None else str(raw)], locale).to_pylist()[0]
    return Address(row["norm"], row["key"], row["unit"], row["room"])
