"""Read-only summaries of a database for the CLI and notebooks."""

from __future__ import annotations

from brain.backend import Backend, quote_ident
from brain.model import ENTITIES


def status(db: Backend) -> dict[str, dict[str, int]]:
    """{street label: {table: rows}}, plus a 'total' row; rows not placed count under '(unplaced)'."""
    names = dict(db.query("SELECT code, name FROM admin_units WHERE level = 'street'"))
    out: dict[str, dict[str, int]] = {}
    for table in ["admin_units", *ENTITIES]:
        for street, n in db.query(f"SELECT street_code, count(*) FROM {quote_ident(table)} GROUP BY 1"):
            label = f"{names.get(street, street)} {street}" if street else "(district level)"
            out.setdefault(label, {})[table] = n
            out.setdefault("total", {}).setdefault(table, 0)
            out["total"][table] += n
    total = out.pop("total", {})
    return {**dict(sorted(out.items())), "total": total}


def quarantine_rows(db: Backend, source: str | None, reason: str | None, limit: int, history: bool = False):
    """(summary by source and reason, the first `limit` matching rows): open rows, or with `history` all."""
    clause, params = _quarantine_where(source, reason, history)
    summary = db.query(f"SELECT source, reason, count(*) FROM quarantine {clause} GROUP BY 1, 2 ORDER BY 1, 2", params)
    rows = db.query(f"SELECT source, row_no, reason, detail, raw, resolution, resolved_at FROM quarantine {clause} "
                    f"ORDER BY source, row_no LIMIT ?", [*params, limit])
    return summary, rows


def quarantine_frame(db: Backend, source: str | None = None, reason: str | None = None, history: bool = False):
    """Open quarantined rows (with `history`, resolved ones too) as a DataFrame; with one source, its raw fields
    become columns (a file to send back: only what is still wrong)."""
    import json

    import pandas as pd

    clause, params = _quarantine_where(source, reason, history)
    extra = ", resolution, CAST(resolved_at AS VARCHAR) AS resolved_at" if history else ""
    frame = db.frame(f"SELECT source, row_no, source_id, reason, detail{extra}, raw FROM quarantine {clause} "
                     f"ORDER BY source, row_no", params)
    if source and not frame.empty:
        raw = pd.DataFrame([json.loads(r) for r in frame["raw"]])
        frame = pd.concat([frame.drop(columns="raw").reset_index(drop=True), raw], axis=1)
    return frame


def _quarantine_where(source: str | None, reason: str | None, history: bool = False) -> tuple[str, list]:
    where, params = ([] if history else ["resolved_run IS NULL"]), []
    for col, value in (("source", source), ("reason", reason)):
        if value:
            where.append(f"{col} = ?")
            params.append(value)
    return (f"WHERE {' AND '.join(where)}" if where else ""), params
