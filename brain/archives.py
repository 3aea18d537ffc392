"""Tile archives for portals with no database: exported archives served by HTTP range, each only to whom it may be
shown.

`brain export tiles` writes beside each archive a small JSON record of whose view it holds (`NAME.pmtiles.json`:
unit, role, layers, zooms). The service lists and serves the archives of its archive folder
(`BRAIN_ARCHIVE_DIR`) to a user whose scope covers that view: the archive's unit lies in the user's unit, and
the archive's role reads nothing the user's role may not (no personal fields for a role without them, no
individual rows for a role that sees counts, no finer counts than the user's floor).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from brain.auth import ROLES
from brain.backend import Backend
from brain.errors import Forbidden, NotFound
from brain.model import LEVELS
from brain.scope import Scope, in_scope

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.(pmtiles|mbtiles)$")
MEDIA = {"pmtiles": "application/vnd.pmtiles", "mbtiles": "application/vnd.sqlite3"}


def record(out: Path, scope: Scope, unit: str, layers: list[str], minzoom: int, maxzoom: int, fmt: str) -> Path:
    """Write the record of whose view an archive holds, beside it; returns its path."""
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps({
        "archive": out.name, "format": fmt, "unit": unit, "role": scope.user.role.name, "layers": layers,
        "minzoom": minzoom, "maxzoom": maxzoom, "made_by": scope.user.name,
        "made_at": datetime.now().isoformat(timespec="seconds")}, ensure_ascii=False, indent=1), encoding="utf-8")
    return side


def _read(folder: Path, name: str) -> dict | None:
    side = folder / f"{name}.json"
    path = folder / name
    if not (NAME.match(name) and path.is_file() and side.is_file()):
        return None
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("role") not in ROLES or not isinstance(info.get("unit"), str):
        return None
    return {**info, "bytes": path.stat().st_size}


def covers(db: Backend, scope: Scope, info: dict) -> bool:
    """Whether the scope may read an archive made for (info's role, info's unit)."""
    rows = db.query("SELECT " + ", ".join(f"{lv}_code" for lv in LEVELS) + " FROM admin_units WHERE code = ?",
                    [info["unit"]])
    if not rows or not in_scope(scope, dict(zip(LEVELS, rows[0]))):
        return False
    made, mine = ROLES[info["role"]], scope.user.role
    if made.personal and not mine.personal:
        return False
    if made.individual and not mine.individual:
        return False
    return not mine.min_count or (made.min_count >= mine.min_count)


def listing(db: Backend, scope: Scope, folder: Path | None) -> list[dict]:
    """The archives of the folder this scope may read."""
    if folder is None or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        info = _read(folder, path.name)
        if info is not None and covers(db, scope, info):
            out.append({k: info[k] for k in ("archive", "format", "unit", "role", "layers", "minzoom", "maxzoom",
                                             "bytes", "made_at")})
    return out


def archive(db: Backend, scope: Scope, folder: Path | None, name: str) -> tuple[Path, str]:
    """The path and media type of an archive this scope may read (NotFound / Forbidden otherwise)."""
    info = _read(folder, name) if folder is not None and folder.is_dir() else None
    if info is None:
        raise NotFound(f"no archive {name!r}: see GET /archives for the ones you may read")
    if not covers(db, scope, info):
        raise Forbidden(f"archive {name} holds a {info['role']} view of {info['unit']}, which your scope "
                        f"({scope.user.role.name} of {scope.user.unit_level} {scope.user.unit_code}) does not cover")
    return folder / name, MEDIA[info["format"]]
