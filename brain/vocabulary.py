"""Vocabularies: the built-in codes (brain.model.VOCABS) and a deployment's own, from vocabulary files.

A deployment extends codes and labels with a YAML file its manifest names (`vocabularies: [codes.yaml]`):

    event_type:                      # item types, two levels: <class>.<item>, under the four classes
      city.noise:      {zh: 噪音扰民, en: Noise nuisance, values: [噪声扰民, 噪音投诉]}
      city.shared_bikes: {zh: 共享单车乱停放, en: Shared bikes parked badly}
    industry:                        # GB/T 4754 sections, say
      C13: {zh: 农副食品加工业, en: Agri-food processing, values: ["13"]}
    channel:
      mayor_mailbox: {zh: 区长信箱, en: Mayor's mailbox}

`zh` is the label shown on Chinese pages, `en` on English ones (the code when absent); `values` are more
spellings that ingest maps to the code (matched case-insensitively, as `zh`, `en` and the code are).
Ingest stores the terms in the database (table `vocabulary`), so the map labels codes that no built-in knows.

A file may not contradict the built-in codes: the four event classes stay the top level, a built-in code keeps
its Chinese label, and a spelling maps to one code only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from brain.errors import ManifestError
from brain.model import VOCABS

#: English labels of built-in codes where the code alone does not read well (otherwise: the code, spaced).
BUILTIN_EN = {
    ("event_class", "service"): "Service requests", ("event_class", "dispute"): "Disputes",
    ("event_class", "city"): "City management", ("event_class", "hazard"): "Safety hazards",
    ("channel", "hotline_12345"): "12345 hotline", ("industry", "it"): "IT services",
    ("event_type", "service.licensing"): "Licences and permits", ("event_type", "service.social_security"):
        "Social security enquiries", ("event_type", "service.elderly_care"): "Elderly care",
    ("event_type", "service.employment"): "Employment help", ("event_type", "dispute.neighbours"): "Neighbour disputes",
    ("event_type", "dispute.property_management"): "Property management disputes",
    ("event_type", "dispute.labour"): "Labour disputes", ("event_type", "dispute.family"): "Family disputes",
    ("event_type", "city.street_vending"): "Street vending", ("event_type", "city.dumping"): "Dumping",
    ("event_type", "city.illegal_building"): "Illegal building", ("event_type", "city.road_damage"): "Road damage",
    ("event_type", "city.waste_collection"): "Waste collection", ("event_type", "city.noise"): "Noise nuisance",
    ("event_type", "hazard.fire_lane"): "Blocked fire lane", ("event_type", "hazard.gas"): "Gas hazard",
    ("event_type", "hazard.falling_objects"): "Falling objects", ("event_type", "hazard.waterlogging"): "Waterlogging",
    ("event_type", "hazard.ebike_charging"): "E-bike charging indoors",
}
TOP_LEVEL = {"event_type": "event_class"}  # two-level vocabularies: item codes are '<parent code>.<item>'
_CODE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?$")


@dataclass(frozen=True)
class Term:
    """One code of one vocabulary, with its labels and the spellings mapped to it."""

    vocab: str
    code: str
    zh: str
    en: str
    values: tuple[str, ...] = ()
    origin: str = "built-in"

    @property
    def parent(self) -> str | None:
        """The top-level code of a two-level term ('city' for 'city.noise')."""
        return self.code.split(".", 1)[0] if self.vocab in TOP_LEVEL else None


def _builtin_terms() -> list[Term]:
    return [Term(vocab, code, labels[0], BUILTIN_EN.get((vocab, code), code.replace("_", " ").replace(".", ": ")),
                 tuple(labels[1:]))
            for vocab, codes in VOCABS.items() for code, labels in codes.items()]


class Vocabularies:
    """Every vocabulary's terms: the built-in ones, extended by a deployment's."""

    def __init__(self, terms: list[Term]):
        self.terms: dict[tuple[str, str], Term] = {(t.vocab, t.code): t for t in terms}

    def codes(self, vocab: str) -> list[str]:
        """The codes of one vocabulary, built-in first."""
        return [c for (v, c) in self.terms if v == vocab]

    def labels(self, lang: str) -> dict[str, dict[str, str]]:
        """Every code's label in 'zh' or 'en', per vocabulary (what a map labels its features with)."""
        out: dict[str, dict[str, str]] = {}
        for (vocab, code), term in self.terms.items():
            out.setdefault(vocab, {})[code] = term.en if lang == "en" else term.zh
        return out

    def label(self, vocab: str, code: str | None, lang: str) -> str:
        """A code's label in 'zh' or 'en' (the code itself when no vocabulary knows it)."""
        term = self.terms.get((vocab, code or ""))
        if term is None:
            return code or ""
        return term.en if lang == "en" else term.zh

    def lookup_rows(self) -> list[tuple[str, str, str]]:
        """(vocab, lower-cased spelling, code) rows, for the table ingest joins delivered values on."""
        rows: dict[tuple[str, str], str] = {}
        for t in self.terms.values():  # codes, Chinese labels and spellings are unique (see `extended`)
            for spelling in (t.code, t.zh, *t.values):
                rows.setdefault((t.vocab, spelling.lower()), t.code)
        for t in self.terms.values():  # then English labels, where they mean nothing else
            rows.setdefault((t.vocab, t.en.lower()), t.code)
        return [(v, s, c) for (v, s), c in rows.items()]

    def extended(self, terms: list[Term]) -> "Vocabularies":
        """These terms added; a term that contradicts one already here raises ManifestError naming it."""
        merged = dict(self.terms)
        spelled = {(v, s.lower()): t for t in merged.values() for v in [t.vocab]
                   for s in (t.code, t.zh, *t.values)}
        for t in terms:
            where = f"{t.origin}: {t.vocab}.{t.code}"
            if t.vocab == "event_class":
                raise ManifestError(f"{where}: the four event classes ({', '.join(VOCABS['event_class'])}) are the top "
                                    "level and cannot be extended: add item types under event_type as <class>.<item>")
            if t.vocab not in VOCABS:
                raise ManifestError(f"{where}: unknown vocabulary {t.vocab!r}: one of {', '.join(VOCABS)}")
            if not _CODE.match(t.code) or ("." in t.code) != (t.vocab in TOP_LEVEL):
                form = "<class>.<item>, as city.noise" if t.vocab in TOP_LEVEL else "letters, digits and _"
                raise ManifestError(f"{where}: write the code as {form}")
            if t.parent is not None and t.parent not in VOCABS[TOP_LEVEL[t.vocab]]:
                raise ManifestError(f"{where}: {t.parent!r} is not an event class: one of "
                                    f"{', '.join(VOCABS[TOP_LEVEL[t.vocab]])}")
            old = merged.get((t.vocab, t.code))
            if old is not None and old.origin == "built-in" and t.zh != old.zh:
                raise ManifestError(f"{where}: the built-in code is labelled {old.zh!r}, not {t.zh!r}: choose another "
                                    "code, or list the spelling under `values:` of the built-in code")
            for s in (t.code, t.zh, *t.values):
                other = spelled.get((t.vocab, s.lower()))
                if other is not None and other.code != t.code:
                    raise ManifestError(f"{where}: {s!r} already means {other.code} ({other.origin}): a spelling "
                                        "maps to one code only; remove it from one of them")
                spelled[(t.vocab, s.lower())] = t
            en = t.en or (old.en if old is not None else t.code.replace("_", " ").replace(".", ": "))
            values = tuple(dict.fromkeys((*old.values, *t.values))) if old is not None else t.values
            merged[(t.vocab, t.code)] = Term(t.vocab, t.code, t.zh, en, values, t.origin)
        return Vocabularies(list(merged.values()))


BUILTIN = Vocabularies(_builtin_terms())


def load_file(path: Path, shown: str | None = None) -> list[Term]:
    """The terms of one vocabulary file; ManifestError (naming the entry and the fix) when it is malformed."""
    shown = shown or str(path)
    if not path.exists():
        raise ManifestError(f"vocabulary file {shown} does not exist: fix `vocabularies:` in the manifest")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"{shown} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{shown}: a vocabulary file maps vocabulary → code → {{zh, en, values}}")
    terms = []
    for vocab, codes in data.items():
        if not isinstance(codes, dict):
            raise ManifestError(f"{shown}: {vocab}: list its codes as code: {{zh: …, en: …}}")
        for code, spec in codes.items():
            where = f"{shown}: {vocab}.{code}"
            if isinstance(spec, str):
                spec = {"zh": spec}
            if not isinstance(spec, dict) or not isinstance(spec.get("zh"), str) or not spec["zh"].strip():
                raise ManifestError(f"{where}: give at least its Chinese label, as {code}: {{zh: 噪音扰民, en: Noise}}")
            unknown = set(spec) - {"zh", "en", "values"}
            if unknown:
                raise ManifestError(f"{where}: unknown key(s) {sorted(unknown)}: a term takes zh, en and values")
            values = spec.get("values") or []
            if isinstance(values, str) or not isinstance(values, list):
                values = [values]
            code = str(code)
            terms.append(Term(str(vocab), code, spec["zh"].strip(), str(spec.get("en") or "").strip(),
                              tuple(str(v).strip() for v in values if str(v).strip()), shown))
    return terms


def store(db, vocab: Vocabularies) -> None:
    """Write the terms that are not built in (upserted: a code once stored stays, its labels follow the file)."""
    for t in vocab.terms.values():
        if t.origin == "built-in" and BUILTIN.terms.get((t.vocab, t.code)) == t:
            continue
        db.execute("DELETE FROM vocabulary WHERE vocab = ? AND code = ?", [t.vocab, t.code])
        db.execute("INSERT INTO vocabulary VALUES (?, ?, ?, ?, ?, ?)",
                   [t.vocab, t.code, t.zh, t.en, "\n".join(t.values), t.origin])


def stored(db) -> Vocabularies:
    """The built-in terms and those a deployment's ingests stored."""
    if not db.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'vocabulary'"):
        return BUILTIN  # a database no ingest has written yet
    rows = db.query("SELECT vocab, code, zh, en, spellings, origin FROM vocabulary ORDER BY vocab, code")
    terms = dict(BUILTIN.terms)
    for vocab, code, zh, en, spellings, origin in rows:
        terms[(vocab, code)] = Term(vocab, code, zh, en, tuple(s for s in (spellings or "").split("\n") if s), origin)
    return Vocabularies(list(terms.values()))
