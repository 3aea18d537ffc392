"""A second delivery of another shape, generated small: not the sample's layout, language or conventions.

- one admin layer with a level column (taso), in the national projected CRS ETRS-TM35FIN (EPSG:3067);
- buildings whose address is built from two columns (katu + numero), numbers with ranges (22-24) and suffixes (14a);
- a people register in the generic address locale ('Mannerheimintie 5 A 12'), ';'-separated, day-first dates
  (27.9.1946), its own codes for gender and residence mapped with `values:`;
- events with only an item type (aihe), in the deployment's own vocabulary file, their class taken from it.

Dirt is planted and counted in `planted`, as the sample does; `truth` gives each person's building.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely
import yaml

X0, Y0, CELL = 385_000.0, 6_671_000.0, 500.0  # Helsinki, metres in EPSG:3067
STREETS = ["Mannerheimintie", "Fredrikinkatu", "Hämeentie", "Bulevardi"]
VOCAB = {
    "event_type": {
        "city.noise": {"zh": "噪音扰民", "values": ["Melu"]},  # a built-in code, one more spelling
        "city.shared_bikes": {"zh": "共享单车乱停放", "en": "Shared bikes parked badly", "values": ["Kaupunkipyörät"]},
        "hazard.icy_street": {"zh": "道路结冰", "en": "Icy street", "values": ["Liukkaus"]},
        "service.parking_permit": {"zh": "停车许可", "en": "Parking permits", "values": ["Pysäköintitunnus"]},
    },
    "channel": {"feedback_portal": {"zh": "意见反馈平台", "en": "Feedback portal", "values": ["palautejärjestelmä"]}},
}


def _units() -> gpd.GeoDataFrame:
    """1 district (kunta) → 2 streets → 4 communities → 8 grids, in a 4 × 2 lattice of cells."""
    rows = [("091", "Helsinki", "kunta", None, shapely.box(X0, Y0, X0 + 4 * CELL, Y0 + 2 * CELL))]
    for s in range(2):
        rows.append((f"091{s + 1}", f"Suurpiiri {s + 1}", "suurpiiri", "091",
                     shapely.box(X0 + 2 * s * CELL, Y0, X0 + 2 * (s + 1) * CELL, Y0 + 2 * CELL)))
        for c in range(2):
            code = f"091{s + 1}{c + 1}"
            rows.append((code, f"Osa-alue {s + 1}.{c + 1}", "osa-alue", f"091{s + 1}",
                         shapely.box(X0 + (2 * s + c) * CELL, Y0, X0 + (2 * s + c + 1) * CELL, Y0 + 2 * CELL)))
            for g in range(2):
                rows.append((f"{code}{g + 1}", f"Ruutu {s + 1}.{c + 1}.{g + 1}", "ruutu", code,
                             shapely.box(X0 + (2 * s + c) * CELL, Y0 + g * CELL, X0 + (2 * s + c + 1) * CELL,
                                         Y0 + (g + 1) * CELL)))
    df = pd.DataFrame(rows, columns=["tunnus", "nimi", "taso", "ylempi", "geometry"])
    return gpd.GeoDataFrame(df, geometry="geometry", crs="EPSG:3067")


def write(out: Path) -> dict:
    """Write the delivery into `out`; returns {planted: {source: {reason: n}}, truth: {person: building}}."""
    out.mkdir(parents=True, exist_ok=True)
    _units().to_file(out / "alueet.gpkg", layer="alueet", engine="pyogrio")
    # Buildings: one per (street, number) in each of the 8 grid cells, small squares.
    numbers = ["5", "7", "14a", "14b", "22-24", "31"]
    blds = []
    for k, (street, no) in enumerate((s, n) for s in STREETS for n in numbers):
        col, row = k % 8 // 2, k % 2
        x = X0 + col * CELL + 60 + (k // 8) * 45
        y = Y0 + row * CELL + 60 + (k % 4) * 20
        blds.append({"rakennus_id": f"R{k + 1:04d}", "katu": street, "numero": no,
                     "kayttotarkoitus": "asuinrakennus" if k % 5 else "liikerakennus",
                     "kerroksia": str(3 + k % 6), "geometry": shapely.box(x, y, x + 15, y + 12)})
    gpd.GeoDataFrame(pd.DataFrame(blds), geometry="geometry", crs="EPSG:3067").to_file(
        out / "rakennukset.gpkg", layer="rakennukset", engine="pyogrio")
    # People: the generic locale, written as registers do (case, staircase, flat, 'as.', a postcode and town).
    people, truth = [], {}
    forms = ["{s} {n} A {f}", "{S} {n} b {f}, 00100 HELSINKI", "{s} {n} as. {f}", "{s} {n}"]
    for i, b in enumerate(blds):
        for j in range(3):
            pid = f"H{i * 3 + j + 1:05d}"
            n = b["numero"].upper() if j == 1 else b["numero"]
            addr = forms[(i + j) % 4].format(s=b["katu"], S=b["katu"].upper(), n=n, f=10 + j)
            people.append({"henkilo": pid, "nimi": f"Asukas {i}-{j}", "sukupuoli": "MN"[j % 2],
                           "syntymaaika": f"{1 + (i + j) % 28}.{1 + j * 4}.{1940 + i % 60}",
                           "asumismuoto": ["vakinainen", "tilapäinen"][(i + j) % 2], "osoite": addr})
            truth[pid] = b["rakennus_id"]
    # Through the fuzzy stage: a typo in a long street name; a number inside a range building (22-24).
    people.append({"henkilo": "H90001", "nimi": "Kirjoitus Virhe", "sukupuoli": "M", "syntymaaika": "3.3.1970",
                   "asumismuoto": "vakinainen", "osoite": "Manerheimintie 7 C 3"})
    truth["H90001"] = next(b["rakennus_id"] for b in blds if (b["katu"], b["numero"]) == ("Mannerheimintie", "7"))
    people.append({"henkilo": "H90002", "nimi": "Väli Numero", "sukupuoli": "N", "syntymaaika": "27.9.1946",
                   "asumismuoto": "vakinainen", "osoite": "Fredrikinkatu 23 B 7"})
    truth["H90002"] = next(b["rakennus_id"] for b in blds if (b["katu"], b["numero"]) == ("Fredrikinkatu", "22-24"))
    # Dirt: a street that is not there; the same number on another street that has none (traps).
    people.append({"henkilo": "H99001", "nimi": "Ei Osoitetta", "sukupuoli": "M", "syntymaaika": "1.1.1980",
                   "asumismuoto": "vakinainen", "osoite": "Olematontie 3 A 1"})
    people.append({"henkilo": "H99002", "nimi": "Väärä Numero", "sukupuoli": "N", "syntymaaika": "2.2.1982",
                   "asumismuoto": "vakinainen", "osoite": "Bulevardi 15 A 2"})
    truth["H99001"] = truth["H99002"] = ""
    pd.DataFrame(people).to_csv(out / "asukkaat.csv", sep=";", index=False, encoding="utf-8")
    # Events: item type only (aihe), day-first timestamps, in EPSG:3067.
    topics = ["Melu", "Kaupunkipyörät", "Liukkaus", "Pysäköintitunnus", "Melu"]
    states = ["avoin", "käsittelyssä", "ratkaistu", "suljettu"]
    events = []
    for k in range(40):
        col, row = k % 4, k % 2
        events.append({"tapaus": f"T{k + 1:04d}", "aihe": topics[k % 5], "tila": states[k % 4],
                       "ilmoitettu": f"{1 + k % 28}.{1 + k % 12}.2026 {8 + k % 10}:{k % 60:02d}",
                       "kanava": "palautejärjestelmä" if k % 3 else "puhelin",
                       "x": f"{X0 + col * CELL + 100 + k * 3:.1f}", "y": f"{Y0 + row * CELL + 100 + k * 2:.1f}"})
    events[7]["aihe"] = "Avaruusolento"  # unknown to every vocabulary
    events[11]["ilmoitettu"] = "31.2.2026 10:00"  # no such day
    pd.DataFrame(events).to_csv(out / "palautteet.csv", index=False, encoding="utf-8")
    (out / "koodit.yaml").write_text(yaml.safe_dump(VOCAB, allow_unicode=True, sort_keys=False), encoding="utf-8")
    levels = {"district": "kunta", "street": "suurpiiri", "community": "osa-alue", "grid": "ruutu"}
    manifest = {
        "name": "Helsinki test delivery",
        "vocabularies": ["koodit.yaml"],
        "admin_units": [{"name": f"alueet_{lv}", "path": "alueet.gpkg", "layer": "alueet", "level": lv, "id": "tunnus",
                         "filter": {"taso": zh}, "columns": {"name": "nimi", "parent_code": "ylempi"}}
                        for lv, zh in levels.items()],
        "sources": [
            {"name": "rakennukset", "entity": "buildings", "path": "rakennukset.gpkg", "layer": "rakennukset",
             "id": "rakennus_id", "place": {"geometry": True},
             "columns": {"address": "{katu} {numero}", "use": "kayttotarkoitus", "floors": "kerroksia"},
             "values": {"use": {"asuinrakennus": "residential", "liikerakennus": "commercial"}}},
            {"name": "asukkaat", "entity": "people", "path": "asukkaat.csv", "delimiter": ";", "id": "henkilo",
             "columns": {"name": "nimi", "gender": "sukupuoli", "birth_date": "syntymaaika",
                         "residence": "asumismuoto", "address": "osoite"},
             "place": {"address": {"column": "osoite", "locale": "generic"}},
             "values": {"gender": {"M": "male", "N": "female"},
                        "residence": {"vakinainen": "registered", "tilapäinen": "floating"}},
             "formats": {"birth_date": ["%d.%m.%Y"]}},
            {"name": "palautteet", "entity": "events", "path": "palautteet.csv", "id": "tapaus",
             "columns": {"type": "aihe", "status": "tila", "reported_at": "ilmoitettu", "channel": "kanava"},
             "place": {"x": "x", "y": "y", "crs": 3067},
             "values": {"status": {"avoin": "reported", "käsittelyssä": "dispatched", "ratkaistu": "resolved",
                                   "suljettu": "closed"},
                        "channel": {"puhelin": "hotline_12345"}},
             "formats": {"reported_at": ["%d.%m.%Y %H:%M"]}},
        ],
    }
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    planted = {"asukkaat": {"address-unmatched": 2}, "palautteet": {"unknown-category": 1, "date-invalid": 1}}
    return {"planted": planted, "truth": truth}
