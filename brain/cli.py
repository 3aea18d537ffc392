"""The `brain` command line: sample data, ingest, database and report commands."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from brain.errors import BrainError

app = typer.Typer(
    help="brain — one map (一张图) of a district: people, buildings, events and organisations.\n\n"
         "Typical first run:\n\n"
         "  brain sample --scale small --out /tmp/x\n\n"
         "  brain ingest /tmp/x/manifest.yaml --db duckdb:////tmp/x/brain.duckdb --report-json /tmp/x/report.json",
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Create and inspect the database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
users_app = typer.Typer(help="Users, their roles and the unit each is bound to.", no_args_is_help=True)
app.add_typer(users_app, name="users")
export_app = typer.Typer(
    help="Exports for other portals and planners, exactly as one user sees the map: as a user (--token, --user) "
         "or as any user of a role in a unit (--role ROLE --unit CODE). Written beside the target and renamed at "
         "the end: an error or Ctrl-C leaves no file.", no_args_is_help=True)
app.add_typer(export_app, name="export")
# Piped output (make, CI, logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DB_HELP = ("Database URL: duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb, "
           "or postgresql://user@host:port/dbname (PostGIS)")


def shown(value: object) -> str:
    """Text from a file or a user, safe to print: Rich markup escaped, control and undecodable bytes as \\x.."""
    text = "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in str(value))
    return escape(text)


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {shown(exc)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def _database(url: str, read_only: bool = False):
    """Open the database for one command and close it; brain's errors become one line and exit code 2."""
    from brain.backend import connect


    try:
        backend = connect(url, read_only=read_only)
    except BrainError as exc:
        _fail(exc)
    try:
        yield backend
    except BrainError as exc:
        _fail(exc)
    finally:
        backend.close()


@app.command()
def sample(
    scale: str = typer.Option("small", help="small (4 communities, ~3k people), medium (~40 communities, ~100k "
                                            "people) or large (~1M people, 100k buildings, 200k events)"),
    out: Path = typer.Option(..., help="Directory to write the files and manifest.yaml into"),
) -> None:
    """Write a deterministic synthetic district as the messy files a data bureau receives, plus a manifest."""
    from brain.sample import SCALES, generate

    if scale not in SCALES:
        _fail(BrainError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}"))
    with console.status(f"generating the {scale} sample…") as status:
        manifest = generate(scale, out, progress=lambda step: status.update(f"{scale} sample: {step}"))
    console.print(f"wrote {out}/ — manifest: {manifest}")
    console.print(f"next: brain ingest {manifest} --db duckdb:///{out}/brain.duckdb")


@app.command()
def ingest(
    manifest: Path = typer.Argument(..., help="The manifest YAML (see README: 'The manifest')"),
    db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP),
    report_json: Optional[Path] = typer.Option(None, help="Also write the run report as JSON here"),
    allow_outside: bool = typer.Option(False, "--allow-outside",
                                       help="Let the manifest name files outside its own folder (refused otherwise)"),
) -> None:
    """Load every source of a manifest onto the canonical model; rejected rows go to `quarantine` with a reason.

    Every source reconciles: read = loaded + quarantined. A source that cannot be read at all stops the run
    before anything is written. Re-running the same manifest changes nothing; changed rows are updated.
    """
    from brain.ingest.manifest import load_manifest
    from brain.ingest.pipeline import STAGES, ingest as run_ingest

    try:
        spec = load_manifest(manifest, allow_outside=allow_outside)
    except BrainError as exc:
        _fail(exc)
    with _database(db) as backend:
        with Progress(TextColumn("{task.description:<22}"), BarColumn(), TextColumn("{task.fields[stage]:<8}"),
                      TimeElapsedColumn(), console=err, transient=False) as progress:
            tasks: dict[str, int] = {}

            def on_stage(source: str, stage: str) -> None:
                if source not in tasks:
                    for t in tasks.values():
                        progress.update(t, completed=len(STAGES), stage="done")
                    tasks[source] = progress.add_task(shown(source), total=len(STAGES), stage=stage)
                progress.update(tasks[source], completed=STAGES.index(stage), stage=stage)

            report = run_ingest(backend, spec, str(manifest), on_stage)
            for t in tasks.values():
                progress.update(t, completed=len(STAGES), stage="done")
    _print_report(report)
    if report_json:
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
        console.print(f"report written to {report_json}")


@app.command("check")
def check_cmd(
    manifest: Path = typer.Argument(..., help="The manifest YAML to check"),
    db: Optional[str] = typer.Option(None, help="The database a real run would load into (read, never written): "
                                                "references and ids resolve against it. " + DB_HELP),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="As for `brain ingest`"),
) -> None:
    """Read a whole delivery as `brain ingest` would, write nothing, and list every problem with a fix.

    For each source and field: every failing check (not only the first of each row), how many rows, examples,
    and for values outside the vocabularies a skeleton of the `values:` lines that would map them. Exit code 0
    when nothing would be quarantined, 1 when something would, 2 when the delivery cannot be read at all.
    """
    from brain.ingest.manifest import load_manifest
    from brain.ingest.pipeline import check as run_check

    try:
        spec = load_manifest(manifest, allow_outside=allow_outside)
    except BrainError as exc:
        _fail(exc)
    with Progress(TextColumn("{task.description:<22}"), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("checking")

        def on_stage(source: str, stage: str) -> None:
            bar.update(task, description=f"{shown(source)[:14]} {stage}")

        try:
            if db:
                with _database(db, read_only=True) as backend:
                    report, problems = run_check(spec, str(manifest), backend, on_stage)
            else:
                report, problems = run_check(spec, str(manifest), None, on_stage)
        except BrainError as exc:
            _fail(exc)
    for s in report.sources:  # admin units: their first failing check per row (they have few checks)
        if s.entity == "admin_units":
            problems += [{"source": s.name, "field": "unit", "check": r, "rows": n, "examples": []}
                         for r, n in s.reasons.items()]
    read = sum(s.read for s in report.sources)
    bad = sum(s.quarantined for s in report.sources)
    console.print(f"brain check {shown(manifest)}: nothing was written. {read:,} rows read in "
                  f"{len(report.sources)} sources; {bad:,} would be quarantined.")
    if not problems:
        console.print("[green]no problems[/]: every row would load")
        return
    table = Table(title="every failing check, per source and field (a row can fail several)", title_justify="left")
    for c in ("source", "field", "check", "rows", "examples"):
        table.add_column(c, overflow="fold")
    for p in problems:
        table.add_row(shown(p["source"]), shown(p["field"]), shown(p["check"]), f"{p['rows']:,}",
                      shown("; ".join(p["examples"])[:160]))
    console.print(table)
    skeleton = _skeleton(problems)
    if skeleton:
        console.print("Manifest lines that would map the values outside the vocabularies (fill each TODO with one "
                      "of the codes in its comment, or with a code of your own added in a vocabulary file — README#vocabularies; add "
                      "them under each source):", highlight=False)
        print(skeleton)
    raise typer.Exit(1)


def _skeleton(problems: list[dict]) -> str:
    """`values:` blocks for the unknown values of each source, and `formats:` hints for unreadable dates (YAML)."""
    out: list[str] = []
    by_source: dict[str, list[dict]] = {}
    for p in problems:
        if p.get("unknown") or p["check"] == "date-invalid":
            by_source.setdefault(p["source"], []).append(p)
    for source, items in by_source.items():
        out.append(f"- name: {json.dumps(source, ensure_ascii=False)}")
        coded = [p for p in items if p.get("unknown")]
        if coded:
            out.append("  values:")
            for p in coded:
                out.append(f"    {p['field']}:")
                for label, n in p["unknown"].items():
                    out.append(f"      {json.dumps(label, ensure_ascii=False)}: TODO  "
                               f"# {n} row{'s' * (n > 1)}; one of {', '.join(p['codes'])}")
        for p in items:
            if p["check"] == "date-invalid":
                out.append(f"  # {p['field']}: {p['rows']} unreadable, e.g. {'; '.join(p['examples'])[:120]}")
                out.append(f"  # formats: {{{p['field']}: [\"%d.%m.%Y %H:%M\"]}}  (strptime layouts tried first)")
    return "\n".join(out)


def _print_report(report) -> None:
    table = Table(title=f"ingest run {report.run_id} → {report.db} ({report.seconds:.1f} s)", title_justify="left")
    for col in ("source", "entity", "read", "loaded", "new", "updated", "same", "quarantined", "reasons"):
        table.add_column(col, justify="right" if col in ("read", "loaded", "new", "updated", "same", "quarantined")
                         else "left")
    for s in report.sources:
        ok = "" if s.reconciles else " ✗"
        table.add_row(shown(s.name), s.entity, f"{s.read:,}", f"{s.loaded:,}", f"{s.inserted:,}", f"{s.updated:,}",
                      f"{s.unchanged:,}", f"{s.quarantined:,}{ok}", ", ".join(f"{k} {v}" for k, v in s.reasons.items()))
    console.print(table)
    from brain.ingest.matching import STAGES as MATCHING

    matched = [s for s in report.sources if s.addresses]
    if matched:
        stages = Table(title="addresses → buildings, rows per stage (README#address-matching)", title_justify="left")
        for col in ("source", *MATCHING):
            stages.add_column(col, justify="left" if col == "source" else "right")
        for s in matched:
            stages.add_row(shown(s.name), *(f"{s.addresses.get(k, 0):,}" for k in MATCHING))
        console.print(stages)
    total_q = sum(s.quarantined for s in report.sources)
    resolved = sum(s.resolved for s in report.sources)
    skipped = sum(s.skipped for s in report.sources)
    console.print(f"every source reconciles (read = loaded + quarantined); {total_q:,} rows in quarantine — "
                  f"see `brain quarantine --db {report.db}`"
                  + (f"; {resolved:,} rows quarantined before are resolved by this run" if resolved else "")
                  + (f"; {skipped:,} rows left out by `filter`" if skipped else "")
                  + f". data version {report.data_version}.")


@db_app.command("init")
def db_init(db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP)) -> None:
    """Create the schema (idempotent)."""
    from brain.schema import init_schema

    with _database(db) as backend:
        init_schema(backend)
    console.print(f"schema ready in {db}")


@db_app.command("copy")
def db_copy(
    source: str = typer.Option(..., "--from", help="The database to copy from (" + DB_HELP + ")"),
    target: str = typer.Option(..., "--to", help="The database to replace the data of"),
) -> None:
    """Copy the canonical, ingest-record and derived tables between databases (e.g. a DuckDB file to PostGIS).

    Users, sessions, saved pages and the audit stay with their database.
    """
    from brain.transfer import copy_database

    with _database(source, read_only=source.startswith("duckdb")) as src, _database(target) as dst:
        with dst.transaction():
            counts = copy_database(src, dst, lambda t, n: err.print(f"  {t:<18} {n:>10,} rows"))
    console.print(f"copied {sum(counts.values()):,} rows in {len(counts)} tables from {source} to {target}")


@app.command()
def status(db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP)) -> None:
    """Row counts per table and per street: what the one map holds."""
    from brain.model import ENTITIES
    from brain.report import status as status_rows

    with _database(db, read_only=True) as backend:
        rows = status_rows(backend)
    table = Table(title=f"{db}", title_justify="left")
    table.add_column("street 街道")
    for name in ["admin_units", *ENTITIES]:
        table.add_column(name, justify="right")
    for street, counts in rows.items():
        table.add_row(street, *[f"{counts.get(n, 0):,}" for n in ["admin_units", *ENTITIES]])
    console.print(table)


@app.command()
def quarantine(
    db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP),
    source: Optional[str] = typer.Option(None, help="Only this source"),
    reason: Optional[str] = typer.Option(None, help="Only this reason, e.g. address-unmatched"),
    limit: int = typer.Option(20, help="How many rows to show"),
    export: Optional[Path] = typer.Option(None, help="Write the matching rows to this CSV (UTF-8 with BOM, opens in "
                                                     "Excel); with --source the raw fields become columns, so the "
                                                     "department gets its own rows back with the reason beside each"),
    all_rows: bool = typer.Option(False, "--all", help="Also rows resolved since (loaded by a later delivery, or no "
                                                       "longer delivered), with when: the history"),
) -> None:
    """Show the open quarantined rows: source, row, reason, detail and the raw record as delivered.

    A row that a later delivery loads is resolved (kept as history, shown with --all) and no longer exported.
    """
    from brain.report import quarantine_frame, quarantine_rows

    with _database(db, read_only=True) as backend:
        if export:
            frame = quarantine_frame(backend, source, reason, all_rows)
        else:
            summary, rows = quarantine_rows(backend, source, reason, limit, all_rows)
    if export:
        export.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(export, index=False, encoding="utf-8-sig")
        console.print(f"{len(frame):,} quarantined rows written to {export}")
        return
    table = Table(title=f"quarantine by source and reason ({'all, resolved included' if all_rows else 'open'})",
                  title_justify="left")
    for c in ("source", "reason", "rows"):
        table.add_column(c)
    for s, r, n in summary:
        table.add_row(shown(s), shown(r), f"{n:,}")
    console.print(table)
    for s, row_no, r, detail, raw, resolution, resolved_at in rows:
        done = f" [green](resolved: {resolution}, {resolved_at:%Y-%m-%d %H:%M})[/]" if resolution else ""
        console.print(f"[bold]{shown(s)}[/] row {row_no}: [red]{shown(r)}[/] — {shown(detail)}{done}\n"
                      f"  {shown(raw[:300])}", highlight=False)


ROLE_HELP = ("district_analyst (a district, all fields) | street_staff (a street, no personal fields) | "
             "community_staff (a community, personal fields) | grid_worker (a grid, personal fields) | "
             "portal (the district, aggregates and non-personal layers only)")


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="The user's name (unique)"),
    role: str = typer.Option(..., help=ROLE_HELP),
    unit: str = typer.Option(..., help="Code of the admin unit the user is bound to, of the role's level"),
    db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP),
) -> None:
    """Create a user and print their API token on the last line (shown once; only its hash is stored)."""
    from brain.auth import add_user

    with _database(db) as backend:
        token = add_user(backend, name, role, unit)
    console.print(f"user {shown(name)} ({shown(role)}, unit {shown(unit)}) created; the token below is shown only once:")
    print(token)


@users_app.command("list")
def users_list(db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP)) -> None:
    """List users with their role and unit (never their tokens)."""
    from brain.auth import list_users

    with _database(db) as backend:
        rows = list_users(backend)
    table = Table(title="users", title_justify="left")
    for c in ("name", "role", "unit", "created", "disabled"):
        table.add_column(c)
    for name, role, unit, created, disabled in rows:
        table.add_row(shown(name), role, shown(unit), f"{created:%Y-%m-%d %H:%M}", "yes" if disabled else "")
    console.print(table)


@users_app.command("passwd")
def users_passwd(name: str = typer.Argument(...),
                 password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                              help="At least 8 characters (prompted when not given)"),
                 db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP)) -> None:
    """Set a password, so the user can also sign in to the dashboards by name and password."""
    from brain.auth import set_password

    with _database(db) as backend:
        set_password(backend, name, password)
    console.print(f"password of {shown(name)} set")


@users_app.command("rotate")
def users_rotate(name: str = typer.Argument(...),
                 db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP)) -> None:
    """Replace a user's token (the old one stops working) and end their dashboard sessions; prints the new token."""
    from brain.auth import rotate_token

    with _database(db) as backend:
        token = rotate_token(backend, name)
    console.print(f"token of {shown(name)} replaced and their sessions ended; the new token below is shown only once:")
    print(token)


@users_app.command("remove")
def users_remove(name: str = typer.Argument(...),
                 db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP)) -> None:
    """Remove a user: their token and dashboard sessions stop working at once (re-adding the name revives none)."""
    from brain.auth import remove_user

    with _database(db) as backend:
        remove_user(backend, name)
    console.print(f"user {shown(name)} removed")


@users_app.command("demo")
def users_demo(db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP),
               base_url: str = typer.Option("http://127.0.0.1:8000", help="Where `brain serve` will listen")) -> None:
    """Create one sample user per role (demo-<role>, replacing earlier ones) and print their tokens and links."""
    from brain.auth import ROLES, add_user, list_users, remove_user

    with _database(db) as backend:
        existing = {r[0] for r in list_users(backend)}
        rows = []
        for role in ROLES.values():
            unit = backend.query("SELECT code, name FROM admin_units WHERE level = ? ORDER BY code LIMIT 1",
                                 [role.level])
            if not unit:
                _fail(f"no {role.level} in {db}: ingest the admin units first (make demo does)")
            name = f"demo-{role.name.replace('_', '-')}"
            if name in existing:
                remove_user(backend, name)
            rows.append((name, role.label, f"{unit[0][0]} {unit[0][1]}", add_user(backend, name, role.name,
                                                                                  unit[0][0])))
    table = Table(title="sample users (tokens shown once; stored hashed)", title_justify="left")
    for c in ("user", "role", "unit", "token"):
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*map(shown, row))
    console.print(table)
    console.print("Sign in to the one map (dashboards) with these links; the API takes the same tokens:")
    for name, _, _, token in rows:
        print(f"{name:<24} {base_url}/?token={token}")


def _as_user(db: str, token: str | None, user: str | None, role: str | None, unit: str | None):
    """The session an export reads through (brain.api.open), or one line and exit 2."""
    from brain.api import open as open_session

    try:
        return open_session(db, token=token, user=user, role=role, unit=unit)
    except BrainError as exc:
        _fail(exc)


def _format(fmt: str | None, out: Path, formats: dict[str, str]) -> str:
    if fmt is None:
        fmt = next((f for f, ext in formats.items() if out.suffix.lower() == ext), None)
        if fmt is None:
            _fail(f"cannot tell the format from {out.name!r}: add --format ({' | '.join(formats)})")
    if fmt not in formats:
        _fail(f"unknown format {fmt!r}: one of {', '.join(formats)}")
    return fmt


# who an export reads as (the same options for each export)
AS_TOKEN = typer.Option(None, "--token", help="Export as the user of this token (what they are served)")
AS_USER = typer.Option(None, "--user", help="Export as this user (by name)")
AS_ROLE = typer.Option(None, "--role", help="Export as any user of this role bound to --unit: district_analyst, "
                                            "street_staff, community_staff, grid_worker or portal")
AS_UNIT = typer.Option(None, "--unit", help="The unit the --role is bound to (its level must be the role's)")
EXPORT_DB = typer.Option("duckdb:///data/brain.duckdb", "--db", help=DB_HELP)


@export_app.command("data")
def export_data_cmd(
    layer: str = typer.Option(..., help="Layer id (see GET /layers): units, buildings, people, organisations, party, "
                                        "events, devices"),
    out: Path = typer.Option(..., help="The file to write (.parquet, .gpkg, .geojson or .csv)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="geoparquet | gpkg | geojson | csv (default: from --out)"),
    part: Optional[str] = typer.Option(None, help="The part of a layer with several (party: party_orgs, party_links)"),
    token: Optional[str] = AS_TOKEN, user: Optional[str] = AS_USER, role: Optional[str] = AS_ROLE,
    unit: Optional[str] = AS_UNIT, db: str = EXPORT_DB,
) -> None:
    """Write one layer as one user reads it: their features with only their role's fields, or — for a role that
    may not read the rows one by one (a portal's people) — the per-grid counts its map shows, protected alike.

    Example: brain export data --layer events --role community_staff --unit 440199001001 --out events.gpkg
    CSV carries the geometry as WKT and opens in Excel (UTF-8 with BOM); GeoParquet carries its `geo` metadata.
    """
    from brain.export import DATA_FORMATS, export_data

    fmt = _format(fmt, out, DATA_FORMATS)
    session = _as_user(db, token, user, role, unit)
    try:
        n = export_data(session, layer, fmt, out, part=part)
    except BrainError as exc:
        _fail(exc)
    finally:
        session.close()
    console.print(f"{n:,} rows of {shown(layer)} as {shown(session.scope.user.name)} → {shown(out)} ({fmt})")


@export_app.command("tiles")
def export_tiles_cmd(
    layers: str = typer.Option(..., help="Comma-separated layer ids, as `buildings,events`"),
    out: Path = typer.Option(..., help="The archive to write (.pmtiles or .mbtiles)"),
    minzoom: int = typer.Option(10, help="Lowest zoom"),
    maxzoom: int = typer.Option(16, help="Highest zoom"),
    fmt: Optional[str] = typer.Option(None, "--format", help="pmtiles | mbtiles (default: from --out)"),
    token: Optional[str] = AS_TOKEN, user: Optional[str] = AS_USER, role: Optional[str] = AS_ROLE,
    unit: Optional[str] = AS_UNIT, db: str = EXPORT_DB,
) -> None:
    """Write a tile archive of exactly what one user would be served, tile for tile (aggregated per grid below
    each layer's detail zoom, as served), over their unit only; empty tiles are skipped.

    Example: brain export tiles --layers buildings,events --role portal --unit 440199 --out portal.pmtiles
    PMTiles v3 (tiles in tile-id order, TileJSON metadata with vector_layers) or MBTiles 1.3. No tile may exceed
    500 KB: start at a higher --minzoom if one does.
    """
    from brain.export import TILE_FORMATS, export_tiles

    fmt = _format(fmt, out, {f: f".{f}" for f in TILE_FORMATS})
    session = _as_user(db, token, user, role, unit)
    names = [x.strip() for x in layers.split(",") if x.strip()]
    try:
        with Progress(TextColumn("tiles"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=not sys.stderr.isatty()) as bar:
            task = bar.add_task("tiles", total=None)
            out_ = export_tiles(session, names, minzoom, maxzoom, fmt, out,
                                progress=lambda i, n: bar.update(task, completed=i, total=n))
    except BrainError as exc:
        _fail(exc)
    finally:
        session.close()
    console.print(f"{out_['tiles']:,} tiles ({out_['bytes'] / 2**20:.1f} MB, largest {out_['largest'] / 1024:.0f} KB) of "
                  f"{', '.join(names)} as {shown(session.scope.user.name)}, z{minzoom}–{maxzoom}, in "
                  f"{out_['seconds']:.1f} s → {shown(out)}")


@app.command()
def serve(
    db: str = typer.Option("duckdb:///data/brain.duckdb", help=DB_HELP),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)"),
    port: int = typer.Option(8000, help="TCP port"),
    cache_mb: Optional[int] = typer.Option(None, help="Tile cache size in MB; 0 turns it off [BRAIN_TILE_CACHE_MB]"),
    log_level: str = typer.Option("warning", help="uvicorn log level: debug | info | warning | error"),
    workers: int = typer.Option(1, help="Worker processes (PostGIS only: a DuckDB file has one writer)"),
) -> None:
    """Serve the tiles, indicators and API of a database over HTTP (token per request; see `brain users`).

    Endpoints: /layers, /tiles/{layer}/{z}/{x}/{y}.mvt, /tiles/{layer}/tilejson.json, /units,
    /units/{code}/metrics, /units/{code}/ranking, POST /metrics, /buildings/{id}, /events, /docs.
    Every setting can also come from a BRAIN_* environment variable (see brain/settings.py).
    """
    import uvicorn

    from brain.corked import CorkedHttpToolsProtocol
    from brain.service import create_app
    from brain.settings import Settings

    if db.startswith("duckdb:///") and db != "duckdb:///:memory:":
        path = Path(db[len("duckdb:///"):])
        if not path.exists():
            _fail(f"no database at {path}: ingest into it first (`make demo`, or `brain ingest MANIFEST --db {db}`)")
    overrides = {"db": db} | ({"tile_cache_mb": cache_mb} if cache_mb is not None else {})
    if workers > 1 and not db.startswith(("postgresql://", "postgres://")):
        _fail("--workers above 1 needs a PostGIS database: a DuckDB file is written by one process")
    settings = Settings(**overrides)
    try:
        app_ = create_app(settings)
    except BrainError as exc:
        _fail(exc)
    console.print(f"brain serving {db} on http://{host}:{port}  (API docs: http://{host}:{port}/docs)"
                  + (f" with {workers} workers" if workers > 1 else ""))
    # uvicorn's httptools protocol, sending each response's headers and body in one write (brain/corked.py)
    server = {"host": host, "port": port, "log_level": log_level, "access_log": False, "http": CorkedHttpToolsProtocol}
    if workers > 1:
        # each worker process builds its own app from the same settings, passed down as BRAIN_* variables
        os.environ.update({f"BRAIN_{k.upper()}": str(v) for k, v in overrides.items()})
        uvicorn.run("brain.service:app_from_env", factory=True, workers=workers, **server)
    else:
        uvicorn.run(app_, **server)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
