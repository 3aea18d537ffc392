"""Read-only summaries of a database for the CLI and notebooks."""

from __future__ import annotations

from brain.backend import Backend, quote_ident
from brain.model import ENTITIES


def status(db: Backend) -> dict[str, dict[str, int]]:
    """{street label: {table: rows}}, plus a 'total' row; rows not placed count under '(unplaced)'."""
    names = dict(db.query("SELECT code, name FROM admin_units WHERE level = 'street'"))
    out: dict[str, dict[str, int]] = {}
    for table in ["admin_units", *ENTITIES]:
        for street, n in db.query(f"SELECT street_code, count(*) FROM {quote_ident(table)} GROUP BY ALL"):
            label = f"{names.get(street, street)} {street}" if street else "(district level)"
            out.setdefault(label, {})[table] = n
            out.setdefault("total", {}).setdefault(table, 0)
            out["total"][table] += n
    total = out.pop("total", {})
    return {**dict(sorted(out.items())), "total": total}


def quarantine_rows(db: Backend, source: str | None, reason: str | None, limit: int):
    """(summary by source and reason, the first `limit` matching rows)."""
    where, params = [], []
    if source:
        where.append("source = ?")
        params.append(source)
    if reason:
        where.append("reason = ?")
        params.append(reason)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    summary = db.query(f"SELECT source, reason, count(*) FROM quarantine {clause} GROUP BY ALL ORDER BY ALL", params)
    rows = db.query(f"SELECT source, row_no, reason, detail, raw FROM quarantine {clause} "
                    f"ORDER BY source, row_no LIMIT ?", [*params, limit])
    return summary, rows
