"""Address → building, in stages: exact key, the richer parse, then a fuzzy stage; precision before recall.

A wrong match puts a person in another household, and so in front of another community's staff, so every
stage refuses rather than guesses:

1. **exact** — the common form ('解放路12号3栋2单元501室') parsed by the fast kernels, its building key found.
2. **parsed** — the richer parser's building key (estates, villages and lanes, 之/附, segments, floors, letters,
   or the generic locale), or the estate key ('翠湖花园|3') of a building's address or name.
3. **fuzzy** — only among buildings with the *same* house number (a range '22-24' holds 22, 23 and 24; '12之1' is
   not 12) and the same building number ('3栋' is never '13栋'): their road names (or estate names) are scored
   with `rapidfuzz.fuzz.ratio`; the best is taken when it scores at least `FUZZY_SCORE` and no other candidate
   comes within `FUZZY_MARGIN` of it.
4. **ambiguous** — a key two buildings share, or two fuzzy candidates within the margin: quarantined as
   `address-ambiguous`, with the candidates in the detail, never a pick.
5. **unmatched** — none of the above (or an address neither parser could read).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

import numpy as np
import pandas as pd
import pyarrow as pa
from rapidfuzz import fuzz, process

from brain.ingest.address import normalise_addresses, parse_distinct

#: The lowest rapidfuzz ratio (0–100) of two road names taken as one road written differently. One character
#: off in a three-character Chinese road scores 67 (解放路 vs 解放街: refused); a typo in a long name scores
#: above 90 (Mannerheimintie vs Manerheimintie: 97).
FUZZY_SCORE = 90.0
#: Two candidates whose scores are this close are ambiguous.
FUZZY_MARGIN = 5.0
STAGES = ("exact", "parsed", "fuzzy", "ambiguous", "unmatched")
_MAX_RANGE = 40  # a building numbered '22-24' holds each number of the range, up to this span


def building_keys(addresses) -> pa.Table:
    """Parse buildings' own addresses: the Chinese parser, and the generic one where that finds nothing."""
    zh = normalise_addresses(addresses)
    missing = np.flatnonzero(zh.column("key").is_null().to_numpy(zero_copy_only=False)
                             & zh.column("estate_key").is_null().to_numpy(zero_copy_only=False))
    if len(missing) == 0:
        return zh
    generic = normalise_addresses(pa.array(np.asarray(addresses, dtype=object)[missing] if not isinstance(
        addresses, (pa.Array, pa.ChunkedArray)) else addresses.take(missing)), "generic")
    rows = zh.to_pylist()
    for i, g in zip(missing, generic.to_pylist()):
        if g["key"]:
            rows[i] = g
    return pa.Table.from_pylist(rows, schema=zh.schema)


def _numbers(no: str | None) -> list[str]:
    """The house numbers a building's number stands for: itself, and each number of a range."""
    if not no:
        return []
    m = re.fullmatch(r"(\d+)-(\d+)", no)
    if m and 0 < int(m[2]) - int(m[1]) <= _MAX_RANGE:
        return [no, *(str(n) for n in range(int(m[1]), int(m[2]) + 1))]
    return [no]


class BuildingIndex:
    """Every building's keys, from its address and its name, for one matching pass."""

    def __init__(self, buildings: pd.DataFrame):
        self.keys: dict[str, list[str]] = defaultdict(list)
        self.estates: dict[str, list[str]] = defaultdict(list)
        self.by_number: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (no, bldg) → (road, id)
        self.by_bldg: dict[str, list[tuple[str, str]]] = defaultdict(list)  # bldg → (estate, id)
        self.address_of = dict(zip(buildings["id"], buildings["address"]))
        self.unique: dict[str, str] = {}  # key → the one building that has it (keys two share are not here)
        ids = buildings["id"].tolist()
        parsed = building_keys(buildings["address"].astype(object).where(buildings["address"].notna(), None).tolist())
        named = normalise_addresses(buildings["name"].astype(object).where(buildings["name"].notna(), None).tolist())
        for bid, p, n in zip(ids, parsed.to_pylist(), named.to_pylist()):
            if p["key"]:
                self.keys[p["key"]].append(bid)
                for no in _numbers(p["no"]):
                    self.by_number[(no, p["bldg"] or "")].append((p["road"], bid))
            for ek in dict.fromkeys(k for k in (p["estate_key"], n["estate_key"]) if k):
                self.estates[ek].append(bid)
                estate, _, bldg = ek.partition("|")
                self.by_bldg[bldg].append((estate, bid))
        self.unique = {k: ids[0] for k, ids in self.keys.items() if len(ids) == 1}

    @classmethod
    def load(cls, db) -> "BuildingIndex":
        """The index of every building in the database."""
        frame = db.frame("SELECT id, address, name FROM buildings ORDER BY id")
        return cls(frame)

    def describe(self, ids: list[str]) -> str:
        shown = ", ".join(f"{i} ({self.address_of.get(i) or '?'})" for i in ids[:5])
        return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def match_addresses(index: BuildingIndex, values, locale: str = "zh") -> tuple[pa.Table, dict[str, float]]:
    """Parse addresses and match them to buildings, stage by stage; each distinct address is matched once.

    Returns a table with one row per value (the parse's columns, and building_id, stage, score, detail: stage
    None where there is no address) and the seconds each step took.
    """
    t = time.perf_counter()
    distinct, indices = parse_distinct(values, locale)
    seconds = {"parse": time.perf_counter() - t, "exact": 0.0, "parsed": 0.0, "fuzzy": 0.0}
    n = len(distinct)
    out = {"building_id": [None] * n, "stage": [None] * n, "score": [None] * n, "detail": [None] * n}

    def take(i, ids, stage, score=100.0):
        if len(ids) == 1:
            out["building_id"][i], out["stage"][i], out["score"][i] = ids[0], stage, score
        else:
            out["stage"][i] = "ambiguous"
            out["detail"][i] = f"{len(ids)} buildings fit: {index.describe(ids)}"

    # 1: the common form's key, vectorised (most of a register); the rest row by row
    t = time.perf_counter()
    keys = pd.Series(distinct.column("key").to_numpy(zero_copy_only=False), dtype=object)
    found = keys.map(index.unique).to_numpy()
    exact = distinct.column("simple").to_numpy(zero_copy_only=False).astype(bool) & pd.notna(found)
    for i in np.flatnonzero(exact):
        out["building_id"][i], out["stage"][i], out["score"][i] = found[i], "exact", 100.0
    present = distinct.column("norm").is_valid().to_numpy(zero_copy_only=False)
    rest = np.flatnonzero(present & ~exact)
    rows = dict(zip(rest.tolist(), distinct.take(pa.array(rest, pa.int64())).to_pylist()))
    seconds["exact"] = time.perf_counter() - t
    t, later = time.perf_counter(), []
    for i, r in rows.items():  # 2: the richer parse's key (or a common key two buildings share), then the estate's
        key, ek = r["key"], r["estate_key"]
        if key is not None and key in index.keys:
            take(i, index.keys[key], "exact" if r["simple"] else "parsed")
        elif ek is not None and ek in index.estates:
            take(i, index.estates[ek], "parsed")
        else:
            later.append(i)
    seconds["parsed"] = time.perf_counter() - t
    t = time.perf_counter()
    for i in later:  # 3: fuzzy names among the buildings of the same numbers
        r, block = rows[i], []
        if r["road"] and r["no"]:
            name, block = r["road"], index.by_number.get((r["no"], r["bldg"] or ""), [])
        elif r["estate_key"]:
            name, bldg = r["estate_key"].split("|")
            block = index.by_bldg.get(bldg, [])
        best: dict[str, float] = {}
        if block:
            hits = process.extract(name, [c for c, _ in block], scorer=fuzz.ratio, score_cutoff=FUZZY_SCORE,
                                   limit=None)
            for _, score, j in hits:  # one building may be listed under several of its numbers
                best[block[j][1]] = max(score, best.get(block[j][1], 0.0))
        if best:
            top = max(best.values())
            take(i, sorted(b for b, s in best.items() if s >= top - FUZZY_MARGIN), "fuzzy", round(top, 1))
        else:
            out["stage"][i] = "unmatched"
    seconds["fuzzy"] = time.perf_counter() - t
    matched = pa.table({"building_id": pa.array(out["building_id"], pa.string()),
                        "stage": pa.array(out["stage"], pa.string()),
                        "score": pa.array(out["score"], pa.float64()),
                        "detail": pa.array(out["detail"], pa.string())})
    both = pa.Table.from_arrays(distinct.columns + matched.columns, names=distinct.column_names + matched.column_names)
    return both.take(indices), seconds
