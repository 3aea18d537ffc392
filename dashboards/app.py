"""The one-map command view (一张图) and, for community staff, the same app fitted to their community.

Callbacks are thin: they read the signed-in user from the session cookie, build the same Scope the HTTP
service builds, call brain's library (metrics, queries, catalog) and render. No SQL and no permission rule
lives here; the map's vector tiles come from the service's /tiles endpoint with the same session.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import dash
import dash_snap_grid as dsg
import flask
import shapely
from dash import ALL, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from brain import queries
from brain.areas import AreaLimits, parse_area
from brain.auth import SignInPolicy, create_session, end_session, sign_in
from brain.errors import BadRequest, BrainError, Forbidden, NotFound, Throttled, TooLarge, http_status
from brain.layers.catalog import CATALOG, STATUS_COLORS
from brain.layers.reader import grid_values
from brain.metrics import INDICATORS, Area, ranking, resources, unit_area
from brain.model import ENTITIES, LEVEL_LABELS, LEVELS, VOCABS
from brain.scope import Scope
from brain.vocabulary import Vocabularies, stored
from dashboards import charts
from dashboards.i18n import MAP_LOCALE, WIDGETS, bilingual, field_label, t

SESSION_COOKIE = "brain_session"
LANG_COOKIE = "brain_lang"
HEADLINE = ("population", "households", "floating", "buildings", "organisations", "events", "open_events",
            "overdue_close", "resolution_rate", "party_link_share", "cameras", "sensors_in_alarm")
DEFAULT_PAGE = {"widgets": [{"i": "w1", "type": "headline"}, {"i": "w2", "type": "age"},
                            {"i": "w3", "type": "events_time"}],
                "layout": [{"i": "w1", "x": 0, "y": 0, "w": 6, "h": 2}, {"i": "w2", "x": 6, "y": 0, "w": 6, "h": 2},
                           {"i": "w3", "x": 0, "y": 2, "w": 12, "h": 2}]}
DEFAULT_LAYERS = ["units", "water", "roads", "buildings", "events", "devices"]
MAX_WIDGETS = 40  # widgets on one saved page
EVENTS_PAGE = 25  # events per page of the events list
PRESETS = ("today", "7d", "month", "all")  # the time filter's presets; "d<N>" is the slider's last N days
VENDOR = Path(__file__).parent / "assets" / "vendor"  # MapLibre and the basemap readers, loaded by brain.js
VENDOR_FILES = ("maplibre-gl.js", "maplibre-gl.css", "pmtiles.js", "protomaps-basemaps.js")
#: Labels are drawn by MapLibre with this local font (installed by `make setup`): no glyph server.
MAP_FONT_NAME = "WenQuanYi Micro Hei"
MAP_FONT = f"'{MAP_FONT_NAME}', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"
#: A theme's classes, light to dark (ColorBrewer YlOrRd, 5 classes).
THEME_COLORS = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"]
#: Hidden outputs of the client-side map calls.
SINKS = ("conf", "layers", "view", "current", "theme", "time", "mode", "heat", "goto", "print", "dock", "png")
LEVEL_EN = {"district": "district", "street": "street", "community": "community", "grid": "grid"}


def level_label(level: str | None, lang: str) -> str:
    """An admin level's name in the page's language."""
    return (LEVEL_EN if lang == "en" else LEVEL_LABELS).get(level or "", "")


def window_start(preset: str, as_of: datetime) -> datetime | None:
    """Where a time preset's window starts (it ends at the clock's as_of); None for all of time."""
    day = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    if preset == "today":
        return day
    if preset == "7d":
        return day - timedelta(days=6)
    if preset == "month":
        return day.replace(day=1)
    if preset.startswith("d") and preset[1:].isdigit():
        return day - timedelta(days=int(preset[1:]) - 1)
    return None


def _days(preset: str | None) -> int:
    """The slider's position for a preset."""
    if preset and preset.startswith("d") and preset[1:].isdigit():
        return max(1, min(365, int(preset[1:])))
    return {"today": 1, "7d": 7, "month": 30}.get(preset or "", 365)


def _since(window: Any) -> datetime | None:
    if window is None:
        return None
    if not isinstance(window, dict):
        raise BadRequest("the time window is malformed: reload the page")
    since = window.get("since")
    if since is None:
        return None
    try:
        return datetime.fromisoformat(_text(since, "the window's start"))
    except ValueError:
        raise BadRequest("the time window's start is not a date") from None


def _when(iso: Any, lang: str) -> str:
    """A timestamp for the page: 2026年5月28日 04:31, or 28 May 2026 04:31."""
    if not iso:
        return ""
    try:
        d = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if lang == "en":
        return f"{d.day} {d:%b %Y}" + (f" {d:%H:%M}" if (d.hour, d.minute) != (0, 0) else "")
    return f"{d.year}年{d.month}月{d.day}日" + (f" {d:%H:%M}" if (d.hour, d.minute) != (0, 0) else "")


def classes(values: list[float], k: int = 5) -> tuple[list[float], list[int]]:
    """Quantile class breaks of a theme (the lower bounds of classes 2..k, distinct) and each class's count."""
    vs = sorted(values)
    if not vs:
        return [], [0]
    breaks = []
    for q in range(1, k):
        b = vs[min(len(vs) - 1, (q * len(vs)) // k)]
        if b > vs[0] and (not breaks or b > breaks[-1]):
            breaks.append(b)
    counts = [sum(1 for v in vs if (i == 0 or v >= breaks[i - 1]) and (i == len(breaks) or v < breaks[i]))
              for i in range(len(breaks) + 1)]
    return breaks, counts


def url_view(query: dict[str, list[str]], units: dict, home: str, layers: list[str], themes: dict) -> dict:
    """The view a page's address asks for, kept only where it lies in this user's scope: a unit outside it, a
    layer the role does not get or a point outside the user's unit falls back to the user's own."""
    def one(key):
        return (query.get(key) or [""])[0]

    def num(key, lo, hi):
        try:
            v = float(one(key))
        except ValueError:
            return None
        return v if lo <= v <= hi else None

    unit = one("unit") if one("unit") in units else home
    asked = [x for x in one("layers").split(",") if x in layers] if "layers" in query else None
    time = one("t")
    if time not in PRESETS and not (time[:1] == "d" and time[1:].isdigit() and 1 <= int(time[1:]) <= 365):
        time = "all"
    view: dict[str, Any] = {}
    try:
        lon, lat = (float(v) for v in one("c").split(","))
        x0, y0, x1, y1 = units[home]["bbox"]
        if x0 <= lon <= x1 and y0 <= lat <= y1:
            view["center"] = [lon, lat]
            view["zoom"] = num("z", 8, 19.5) or 14
            view["pitch"] = num("p", 0, 60) or 0
            view["bearing"] = num("b", -180, 180) or 0
    except ValueError:
        pass
    return {"unit": unit, "layers": asked if asked is not None else [x for x in layers if x in DEFAULT_LAYERS],
            "time": time, "theme": one("theme") if one("theme") in themes else None, "map": view,
            "mode": "3d" if one("mode") == "3d" else "2d", "heat": one("heat") == "1"}


# -- what the browser sends: every callback input is parsed here, so a forged one is refused with a 4xx ---------
def _current(v: Any) -> dict:
    """The unit or drawn area the page shows: {"kind": "unit", "code"} or {"kind": "area", "geometry"}."""
    if isinstance(v, dict) and v.get("kind") == "unit" and isinstance(v.get("code"), str):
        return {"kind": "unit", "code": v["code"]}
    if isinstance(v, dict) and v.get("kind") == "area" and isinstance(v.get("geometry"), dict):
        return {"kind": "area", "geometry": v["geometry"]}
    raise BadRequest("the page's current view is malformed: reload the page")


def unit_map(db, sc: Scope) -> dict:
    """The units in the user's scope by code, with their bounding boxes (read again per call: 3 ms on the medium
    sample, where sending it with every callback cost the page 96 kB each way)."""
    return {f["properties"]["code"]: {**f["properties"], "bbox": f["bbox"]}
            for f in queries.unit_tree(db, sc, geometry=False)["features"]}


def time_code(preset: Any, days: Any, by_slider: bool) -> str:
    """The time window a control asks for: a preset, or d<N> from the slider; anything else is all of time."""
    if by_slider and days is not None:
        return f"d{max(1, min(365, int(_number(days, 'the number of days'))))}"
    return preset if isinstance(preset, str) and preset in PRESETS else "all"


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf"):
        raise BadRequest(f"{what} must be a number")
    return float(v)


def _text(v: Any, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"{what} must be text")
    return v


def _page(v: Any) -> dict:
    """A page of widgets and their places, keeping only widgets of known kinds (saved pages may predate one)."""
    if not isinstance(v, dict) or not isinstance(v.get("widgets"), list) or not isinstance(v.get("layout"), list):
        raise BadRequest("the page layout is malformed: reload the page")
    widgets = [{"i": w["i"], "type": w["type"]} for w in v["widgets"] if isinstance(w, dict)
               and isinstance(w.get("i"), str) and w["i"][:1] == "w" and w["i"][1:].isdigit() and len(w["i"]) < 10
               and w.get("type") in WIDGETS]
    if len(widgets) > MAX_WIDGETS:
        raise TooLarge(f"a page holds at most {MAX_WIDGETS} widgets: remove some first")
    return {"widgets": widgets, "layout": _layout(v["layout"], {w["i"] for w in widgets})}


def _layout(items: Any, keep: set[str]) -> list[dict]:
    """Widget places from the grid: small non-negative integers, for widgets on the page only."""
    if not isinstance(items, list):
        raise BadRequest("the grid layout is malformed: reload the page")
    out = []
    for it in items:
        if not isinstance(it, dict) or it.get("i") not in keep:
            continue
        place = {k: it.get(k) for k in ("x", "y", "w", "h")}
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 1000 for n in place.values()):
            raise BadRequest("the grid layout is malformed: reload the page")
        out.append({"i": it["i"], **place})
    return out


def _fmt(name: str, v: Any) -> str:
    if v is None:
        return "—"
    kind = INDICATORS[name].kind if name in INDICATORS else "count"
    if kind == "ratio":
        return f"{v * 100:.1f}%"
    if kind in ("minutes", "hours"):
        return f"{v:.1f}"
    return f"{v:,}"


@dataclass
class Start:
    """What a page opens on (create_dash's `start`)."""

    units: dict
    visible: list
    options: dict
    view: dict
    current: dict
    window: tuple  # the time store's value, the preset and slider showing it, its label
    spec: dict | None  # the theme's
    theme_legend: Any


def _digest(path: Path) -> str:
    """A file's version in its address: the start of its content's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def create_dash(service: Callable[[], Any], basemap_url: str | None = None,
                max_request_bytes: int = 4_000_000, base_policy: str = "") -> dash.Dash:
    """The Dash app, served by `brain serve` at / (its Flask server mounted in the ASGI app). `base_policy`: the
    service's Content-Security-Policy, which the pages' own extends."""
    app = dash.Dash(__name__, title="brain 一张图", suppress_callback_exceptions=True, update_title=None,
                    # MapLibre and the basemap readers are loaded by brain.js; the widgets' charts are SVG images
                    assets_path_ignore=["vendor"])
    # The page's layout and callbacks are asked for as the page is parsed, not once Dash's scripts have run: the
    # renderer's own requests then find them on their way (the server builds the layout while the scripts load).
    # MapLibre too; the vendored files are named by their content's hash, so a browser that has them loads the
    # page without asking the server again (see `fingerprinted`).
    vendor = {name: f"/assets/vendor/{name}?m={_digest(VENDOR / name)}" for name in VENDOR_FILES}
    app.index_string = app.index_string.replace("{%favicon%}", "".join(
        f'<link rel="preload" href="/{path}" as="fetch" crossorigin>' for path in ("_dash-layout", "_dash-dependencies"))
        + f'<link rel="stylesheet" href="{vendor["maplibre-gl.css"]}">'
        + f'<link rel="preload" href="{vendor["maplibre-gl.js"]}" as="script">'
        + f'<script id="brain-vendor" type="application/json">{json.dumps(vendor)}</script>'
        + "{%favicon%}")
    server = app.server

    @server.after_request
    def fingerprinted(resp: flask.Response) -> flask.Response:
        # Dash addresses brain.js and brain.css by modification time (?m=), its icon by its version (?v=), and the
        # vendored files carry their hash: an address names one content, so the browser may keep it (Flask's
        # default makes every page load ask again for each, behind the page's own layout request). Dash's own
        # bundles are kept so already.
        path, args = flask.request.path, flask.request.args
        versioned = path.startswith("/assets/") and args.get("m") or path == "/_favicon.ico" and args.get("v")
        if versioned and resp.status_code in (200, 304):
            resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return resp
    server.config["MAX_CONTENT_LENGTH"] = max_request_bytes  # Flask answers 413 past it

    @server.errorhandler(BrainError)
    def refused(exc: BrainError):
        # a callback refusing what the browser sent (or a forged request): a 4xx with the reason, never a 500
        return flask.jsonify(detail=str(exc)), http_status(exc)

    def limits() -> AreaLimits:
        return AreaLimits.from_settings(service().settings)

    def current_user():
        sid = flask.request.cookies.get(SESSION_COOKIE)
        try:
            return service().user(session=sid) if sid else None
        except BrainError:
            return None

    def scope() -> Scope:
        user = current_user()
        if user is None:
            raise PreventUpdate
        return Scope(user)

    def title(lg: str) -> str:
        # the district's own name (the data's, never the sample's); in English only when it is written in
        # Latin letters, so that an English page shows no untranslated Chinese
        rows = service().db.query("SELECT name FROM admin_units WHERE level = 'district' ORDER BY code LIMIT 1")
        name = rows[0][0] if rows and rows[0][0] else ""
        if not name or (lg == "en" and not name.isascii()):
            return t("title_plain", lg)
        return t("title", lg).format(name=name)

    def lang() -> str:
        return "en" if flask.request.cookies.get(LANG_COOKIE) == "en" else "zh"

    # -- sign-in: /?token=…, the form (token, or name and password), sign-out ------------------------------
    def _note(**fields) -> None:
        # the audit row of this request is written by the service's middleware, from the ASGI scope's state
        flask.request.environ.get("asgi.scope", {}).setdefault("state", {}).update(fields)

    def _audit(user=None, actor: str | None = None, target: str | None = None) -> None:
        # a sign-in or sign-out: who (or the name tried) and the outcome
        _note(user=user, actor=(actor or "")[:100] or None, target=target)

    def _read(target: str | None, layer: str | None = None, features: int | None = None) -> None:
        # what a callback read (the user comes from the session)
        _note(target=(target or "")[:200] or None, layer=layer, features=features)

    def _where(current: dict) -> str:
        if current["kind"] == "unit":
            return current["code"]
        try:
            return "area bbox(%.5f,%.5f,%.5f,%.5f)" % shapely.geometry.shape(current["geometry"]).bounds
        except Exception:  # a malformed area is refused later, by parse_area, with its reason
            return "area"

    def _same_origin() -> None:
        # sign-in and sign-out only from our own pages: a browser names the page a POST comes from
        origin = flask.request.headers.get("Origin") or flask.request.headers.get("Referer")
        if origin and urlsplit(origin).netloc != flask.request.host:
            _audit(target="refused: cross-site")
            raise Forbidden("sign-in and sign-out are accepted from this site's own pages only")

    def _signed_in(user, how: str) -> flask.Response:
        settings = service().settings
        _audit(user, target=f"signin ok ({how})")
        resp = flask.redirect("/", code=303)
        resp.set_cookie(SESSION_COOKIE, create_session(service().db, user), httponly=True, samesite="Lax",
                        max_age=int(settings.session_hours * 3600),
                        secure=settings.secure_cookies or flask.request.scheme == "https")
        return resp

    @server.before_request
    def token_link():
        if flask.request.path == "/" and flask.request.args.get("token"):
            try:
                user = service().user(token=flask.request.args["token"])
            except BrainError:
                _audit(target="signin failed (token link)")
                return flask.redirect("/?failed=1", code=303)
            return _signed_in(user, "token link")
        return None

    @server.route("/signin", methods=["POST"])
    def signin():
        _same_origin()
        form = flask.request.form
        if form.get("token"):
            try:
                return _signed_in(service().user(token=form["token"].strip()), "token")
            except BrainError:
                _audit(target="signin failed (token)")
                return flask.redirect("/?failed=1", code=303)
        name = form.get("name", "").strip()[:100]
        svc = service()
        try:
            user = sign_in(svc.db, name, form.get("password", ""), flask.request.remote_addr,
                           SignInPolicy.from_settings(svc.settings))
        except Throttled as exc:
            _audit(actor=name, target="signin throttled")
            return flask.redirect("/?" + urlencode({"throttled": getattr(exc, "minutes", 15)}), code=303)
        except BrainError:
            _audit(actor=name, target="signin failed (password)")
            return flask.redirect("/?failed=1", code=303)
        return _signed_in(user, "password")

    @server.route("/signout", methods=["POST"])
    def signout():
        _same_origin()
        sid = flask.request.cookies.get(SESSION_COOKIE)
        _audit(current_user(), target="signout")
        end_session(service().db, sid)
        service().forget(sid)
        resp = flask.redirect("/", code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    @server.route("/lang/<code>")
    def set_lang(code):
        # back to the page as it was (its view is in its address); only a path of this site
        nxt = flask.request.args.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
            nxt = "/"
        resp = flask.redirect(nxt)
        resp.set_cookie(LANG_COOKIE, "en" if code == "en" else "zh", samesite="Lax")
        return resp

    def signin_page(lg: str, referrer: str):
        query = parse_qs(urlsplit(referrer).query)
        wait = (query.get("throttled") or [""])[0]
        error = t("throttled", lg).format(n=int(wait)) if wait.isdigit() else \
            t("bad_signin", lg) if "failed" in query else None
        return html.Div(className="signin", children=[
            html.H1(title(lg)), html.P(t("signin_hint", lg)),
            html.P(error, className="error") if error else None,
            html.Form(method="POST", action="/signin", children=[
                html.Label([t("token", lg), dcc.Input(type="password", name="token", id="signin-token")]),
                html.Div(t("or", lg), className="or"),
                html.Label([t("name", lg), dcc.Input(type="text", name="name", id="signin-name")]),
                html.Label([t("password", lg), dcc.Input(type="password", name="password", id="signin-password")]),
                html.Button(t("signin", lg), type="submit", id="signin-submit")]),
            html.Div([html.A("中文", href="/lang/zh"), " · ", html.A("English", href="/lang/en")], className="langs"),
        ])

    # -- the page ----------------------------------------------------------------------------------------
    def themes(sc: Scope, lg: str) -> dict[str, dict]:
        """The per-grid indicators this user's map can shade by: 'layer:indicator' → its part and label."""
        out = {}
        for layer in CATALOG.values():
            for part in layer.parts:
                if part.aggregate and layer.mode(part, sc, layer.minzoom) == "aggregate":
                    for name in part.aggregate:
                        out.setdefault(f"{layer.id}:{name}", {
                            "layer": layer.id, "part": part.name, "indicator": name,
                            "label": bilingual(INDICATORS[name].label, lg), "ratio": INDICATORS[name].kind == "ratio"})
        return out

    def start(sc: Scope, lg: str, address: str) -> Start:
        """What a page opens on, from its address (a shared link's view is kept only where it lies in the user's
        scope). The page's first callbacks would answer the time window and the theme: they are answered here, so
        the page's first requests are the panel and the events list, none waiting on another (Dash holds a
        callback while the source of one of its inputs is pending)."""
        units = unit_map(service().db, sc)
        visible = [l for l in CATALOG.values() if l.visible(sc)]
        options = themes(sc, lg)
        view = url_view(parse_qs(urlsplit(address).query), units, sc.user.unit_code, [l.id for l in visible], options)
        window = time_state(view["time"], lg)
        spec, legend = theme_state(view["theme"], sc, lg)
        return Start(units, visible, options, view, {"kind": "unit", "code": view["unit"]}, window, spec, legend)

    def map_conf(sc: Scope, lg: str, st: Start, voc: Vocabularies) -> dict:
        """The map's configuration: the user's layers, labels, unit and view, and the state it opens in (it is
        drawn so from its first frame, and the stores' callbacks then find nothing to change)."""
        svc = service()
        root = st.units[sc.user.unit_code]
        x0, y0, x1, y1 = root["bbox"]
        pad = max(x1 - x0, y1 - y0) * 0.6
        return {
            "catalog": [{"id": l.id, "minzoom": l.minzoom, "maxzoom": l.maxzoom, "detail_zoom": l.detail_zoom,
                         "style": l.style, "parts": [{"name": p.name, "geometry": p.geometry,
                                                      "aggregate": list(p.aggregate), "minzoom": p.minzoom}
                                                     for p in l.parts]} for l in st.visible],
            "lang": lg, "labels": voc.labels(lg), "font": MAP_FONT, "fontName": MAP_FONT_NAME,
            "root": {"code": root["code"], "center": root["center"], "bbox": root["bbox"]},
            "bounds": [[x0 - pad, y0 - pad], [x1 + pad, y1 + pad]],
            "view": st.view["map"], "basemap": basemap_url,
            "protomaps": "/basemap.pmtiles" if svc.settings.basemap_pmtiles else None,
            "ui": {k: t(k, lg) for k in ("draw_rect", "draw_poly", "draw_clear", "to3d", "to2d", "floors")}
            | {"person": t("people", lg), "locale": MAP_LOCALE[lg]},
            "state": {"layers": st.view["layers"], "current": st.current, "theme": st.spec, "time": st.window[0],
                      "mode": st.view["mode"], "heat": st.view["heat"]},
        }

    def layout():
        lg = lang()
        user = current_user()
        if user is None:
            # the layout is fetched by the page (/_dash-layout): the page's own address is the referrer
            return signin_page(lg, flask.request.referrer or "")
        sc = Scope(user)
        db = service().db
        voc = stored(db)
        st = start(sc, lg, flask.request.referrer or "")
        units, visible, options, view, current = st.units, st.visible, st.options, st.view, st.current
        root = units[user.unit_code]
        try:  # a page saved by an earlier version keeps the widgets this one knows
            page = _page(queries.load_layout(db, user.name) or DEFAULT_PAGE)
        except BrainError:
            page = DEFAULT_PAGE
        window, preset, days, window_text = st.window
        spec, theme_legend = st.spec, st.theme_legend
        crumb_items, unit_items = crumb_state(current, units, user, lg)
        # the indicator panel comes with the page (not a callback after it): its numbers serve the widgets too
        _read(f"indicators {_where(current)}")
        panel_body, area, ind = panel_of(current, sc, lg, window, units, voc)
        return html.Div(className="app", children=[
            dcc.Store(id="conf", data=map_conf(sc, lg, st, voc)),
            dcc.Store(id="current", data=current), dcc.Store(id="home", data=view["unit"]),
            dcc.Store(id="view", data={"bbox": units[view["unit"]]["bbox"], "keep": bool(view["map"])}),
            dcc.Store(id="clicked"), dcc.Store(id="feature"), dcc.Store(id="drawn"),
            dcc.Store(id="mode", data=view["mode"]), dcc.Store(id="theme-spec", data=spec),
            dcc.Store(id="time", data=window),
            dcc.Store(id="events-page", data=1), dcc.Download(id="download"),
            dcc.Store(id="page", data=page), dcc.Store(id="moved"),
            *(html.Div(id=f"sink-{k}", hidden=True) for k in SINKS),
            html.Header([
                html.H1(title(lg)),
                html.Nav(id="breadcrumb", className="breadcrumb", children=crumb_items),
                html.Div(className="who", children=[
                    html.Span(f"{user.name} · {bilingual(user.role.label, lg)} · {root['name']}", id="who"),
                    html.Button(t("print", lg), id="print", className="linkish"),
                    html.A("中文", href="/lang/zh", id="lang-zh"), html.A("EN", href="/lang/en", id="lang-en"),
                    html.Form(method="POST", action="/signout", className="signout", children=[
                        html.Button(t("signout", lg), type="submit", id="signout")])]),
            ]),
            html.Div(className="body", children=[
                html.Aside(className="left", children=[
                    html.H3(t("layers", lg)),
                    dcc.Checklist(id="layers", value=view["layers"],
                                  options=[{"label": html.Span([html.I(className="swatch", style={
                                      "background": l.style.get("color")}), bilingual(l.title, lg)]),
                                      "value": l.id} for l in visible], className="layer-list"),
                    dcc.Checklist(id="heat", value=["on"] if view["heat"] else [],
                                  options=[{"label": t("heatmap", lg), "value": "on"}], className="layer-list"),
                    html.Div(id="legend", className="legend", children=_legend(visible, voc, lg)),
                    html.H3(t("theme", lg)),
                    dcc.Dropdown(id="theme", value=view["theme"], clearable=True, searchable=False,
                                 placeholder=t("theme_none", lg),
                                 options=[{"label": o["label"], "value": k} for k, o in options.items()]),
                    html.Div(id="theme-legend", className="legend", children=theme_legend),
                    html.H3(t("time", lg)),
                    dcc.RadioItems(id="time-preset", value=preset,
                                   options=[{"label": t(p, lg), "value": p} for p in PRESETS], inline=True,
                                   className="presets"),
                    dcc.Slider(id="time-days", min=1, max=365, step=1, value=days,
                               marks={1: "1", 30: "30", 90: "90", 180: "180", 365: "365"},
                               tooltip={"placement": "bottom"}, updatemode="mouseup"),
                    html.Div(id="time-label", className="muted", children=window_text),
                    html.H3(t("units", lg)),
                    html.Div(id="unit-list", className="unit-list", children=unit_items),
                    html.H3(t("search", lg)),
                    dcc.Input(id="search", type="search", debounce=True, placeholder=t("search_hint", lg),
                              className="search"),
                    html.Ul(id="search-results", className="resources"),
                ]),
                html.Main(className="centre", children=[
                    html.Div(id="map", className="map"),
                    html.Section(className="mypage", id="dock", children=[
                        html.Div(className="dockhead", children=[
                            html.H2(t("mypage", lg)),
                            # each widget of the palette is dragged into the grid, or added by a click
                            html.Div(className="palette", children=[html.Span(t("add_widget", lg) + ":")] + [
                                dsg.DraggableDiv(id=f"palette-{w}", children=html.Button(
                                    t(w, lg), id={"type": "add", "w": w}, className="add")) for w in WIDGETS]),
                            html.Button(t("collapse", lg), id="dock-toggle", className="linkish",
                                        **{"data-expand": t("expand", lg), "data-collapse": t("collapse", lg)})]),
                        html.Div(className="dockbody", children=[
                            # rendered with the page, so the grid mounts with its widgets and their saved places
                            dsg.Grid(id="grid", cols=12, rowHeight=120, layout=page["layout"],
                                     draggableHandle=".whead", draggableCancel=".rm,.wbtn", isDroppable=True,
                                     compactType="vertical", children=cards(page, current, sc, lg, window, (area, ind), voc))]),
                    ]),
                ]),
                html.Aside(className="right", children=[
                    dcc.Tabs(id="tabs", value="indicators", children=[
                        dcc.Tab(label=t("indicators", lg), value="indicators",
                                children=html.Div(id="panel", className="panel", children=panel_body)),
                        dcc.Tab(label=t("detail", lg), value="detail",
                                children=html.Div(id="detail", className="panel", children=t("click_feature", lg))),
                        dcc.Tab(label=t("events", lg), value="events", children=html.Div(className="panel", children=[
                            html.Div(className="filters", children=[
                                dcc.Dropdown(id="ev-status", placeholder=t("status", lg), searchable=False,
                                             options=[{"label": voc.label("event_status", c, lg), "value": c}
                                                      for c in VOCABS["event_status"]]),
                                dcc.Dropdown(id="ev-class", placeholder=t("class", lg), searchable=False,
                                             options=[{"label": voc.label("event_class", c, lg), "value": c}
                                                      for c in VOCABS["event_class"]]),
                                dcc.Checklist(id="ev-overdue", options=[{"label": t("overdue_only", lg),
                                                                         "value": "on"}], value=[])]),
                            html.Div(id="events"),
                            html.Div(className="pager", children=[
                                html.Button(t("prev", lg), id="ev-prev", className="linkish"),
                                html.Span(id="ev-pages"),
                                html.Button(t("next", lg), id="ev-next", className="linkish")])])),
                    ]),
                ]),
            ]),
        ])

    app.layout = layout

    # -- map: the MapLibre side, in assets/brain.js (thin: each store change is one library call) ----------
    for sink, call, trigger in (("conf", "configure", "conf"), ("layers", "sync", "layers"), ("view", "fit", "view"),
                                ("current", "setCurrent", "current"), ("theme", "setTheme", "theme-spec"),
                                ("time", "setTime", "time"), ("mode", "setMode", "mode"), ("heat", "setHeat", "heat")):
        app.clientside_callback(f"function (v) {{ return window.brain.{call}(v); }}",
                                Output(f"sink-{sink}", "children"), Input(trigger, "data" if trigger not in (
                                    "layers", "heat") else "value"))
    app.clientside_callback("function (n) { return window.brain.goto(dash_clientside.callback_context); }",
                            Output("sink-goto", "children"), Input({"type": "goto", "at": ALL}, "n_clicks"),
                            prevent_initial_call=True)
    app.clientside_callback("function (n) { return window.brain.widgetPng(dash_clientside.callback_context); }",
                            Output("sink-png", "children"), Input({"type": "png", "i": ALL}, "n_clicks"),
                            prevent_initial_call=True)
    # the grid sends its layout as it mounts and after every change it is given: only a move the page has not
    # kept reaches the server (it was a request, answered with nothing to do, in every page load)
    app.clientside_callback("function (layout, page) { return window.brain.gridMoved(layout, page); }",
                            Output("moved", "data"), Input("grid", "layout"), State("page", "data"),
                            prevent_initial_call=True)
    app.clientside_callback("function (n) { if (n) { window.print(); } return ''; }",
                            Output("sink-print", "children"), Input("print", "n_clicks"), prevent_initial_call=True)
    app.clientside_callback(
        """function (n, label) {
            var dock = document.getElementById('dock'), b = document.getElementById('dock-toggle');
            var shut = dock.classList.toggle('collapsed');
            b.textContent = b.getAttribute(shut ? 'data-expand' : 'data-collapse');
            if (window.brain.map) { setTimeout(function () { window.brain.map.resize(); }, 50); }
            return '';
        }""", Output("sink-dock", "children"), Input("dock-toggle", "n_clicks"), prevent_initial_call=True)

    @app.callback(Output("current", "data", allow_duplicate=True), Output("tabs", "value", allow_duplicate=True),
                  Input("drawn", "data"), State("home", "data"), prevent_initial_call=True)
    def drawn(data, home):
        shapes = data.get("shapes") if isinstance(data, dict) else None
        if not isinstance(shapes, list):
            raise BadRequest("the drawn areas are malformed: reload the page")
        if not shapes:  # cleared: back to the unit shown before
            return {"kind": "unit", "code": _text(home, "the unit")}, "indicators"
        if len(shapes) > limits().max_parts:
            raise TooLarge(f"at most {limits().max_parts} shapes at once: clear some first")
        # every shape counts: their union, with the API's limits checked on it before it is kept
        geom = parse_area({"type": "MultiPolygon", "coordinates": [
            s.get("coordinates") if isinstance(s, dict) else None for s in shapes]}, limits())
        return {"kind": "area", "geometry": shapely.geometry.mapping(geom)}, "indicators"

    @app.callback(Output("home", "data"), Input("current", "data"), prevent_initial_call=True)
    def remember_unit(current):
        current = _current(current)
        if current["kind"] != "unit":
            raise PreventUpdate
        return current["code"]

    @app.callback(Output("current", "data", allow_duplicate=True), Output("view", "data", allow_duplicate=True),
                  Input({"type": "unit", "code": ALL}, "n_clicks"), prevent_initial_call=True)
    def pick_unit(clicks):
        if not isinstance(ctx.triggered_id, dict) or not isinstance(clicks, list) or not any(clicks):
            raise PreventUpdate
        code, units = ctx.triggered_id.get("code"), unit_map(service().db, scope())
        if code not in units:
            raise NotFound(f"no unit {code!r} on this page")
        return {"kind": "unit", "code": code}, {"bbox": units[code].get("bbox")}

    @app.callback(Output("current", "data", allow_duplicate=True), Output("view", "data", allow_duplicate=True),
                  Output("feature", "data"), Output("tabs", "value"),
                  Input("clicked", "data"), prevent_initial_call=True)
    def map_click(clicked):
        if not isinstance(clicked, dict):
            raise PreventUpdate
        if clicked.get("kind") == "feature":
            table = {"party": "organisations"}.get(clicked.get("layer"), clicked.get("layer"))
            if table not in queries.FEATURE_TABLES:
                raise BadRequest(f"no panel for layer {clicked.get('layer')!r}")
            return dash.no_update, dash.no_update, {"table": table, "id": _text(clicked.get("id"), "the id")}, "detail"
        # a unit outline or a grid's shading: the deepest unit there, found in the user's scope
        lon, lat = _number(clicked.get("lon"), "lon"), _number(clicked.get("lat"), "lat")
        sc = scope()
        code = queries.at_point(service().db, sc, lon, lat)["unit"]
        units = unit_map(service().db, sc)
        if code in units:
            return {"kind": "unit", "code": code}, {"bbox": units[code].get("bbox")}, dash.no_update, "indicators"
        raise PreventUpdate

    @app.callback(Output("breadcrumb", "children"), Output("unit-list", "children"),
                  Input("current", "data"), prevent_initial_call=True)
    def crumbs(current):
        sc = scope()
        return crumb_state(_current(current), unit_map(service().db, sc), sc.user, lang())

    def crumb_state(current: dict, units: dict, user, lg: str) -> tuple[list, list]:
        """The breadcrumb from the user's unit down to the one shown, and the units one level below it."""
        code = current.get("code") if current.get("kind") == "unit" else None
        chain, c = [], code
        while c in units:
            chain.insert(0, c)
            if c == user.unit_code:
                break
            c = units[c].get("parent_code")
        items = [html.Button(f"{units[c].get('name')}", id={"type": "unit", "code": c}, className="crumb")
                 for c in chain]
        if current.get("kind") == "area":
            items.append(html.Span(t("drawn_area", lg), className="crumb area"))
        parent = code or user.unit_code
        children = sorted((u for u in units.values() if u.get("parent_code") == parent and isinstance(
            u.get("code"), str)), key=lambda u: u["code"])
        listing = [html.Button(f"{level_label(u.get('level'), lg)} {u.get('name')}",
                               id={"type": "unit", "code": u["code"]}, className="unit") for u in children]
        return items, listing

    def area_of(current, sc: Scope | None = None, window: Any = None) -> Area:
        """The unit or drawn area shown, with the time window its events are counted in."""
        current = _current(current)
        if current["kind"] == "unit":
            area = unit_area(service().db, sc or scope(), current["code"])
        else:
            area = Area(polygon=parse_area(current["geometry"], limits()))
        return replace(area, since=_since(window))

    @app.callback(Output("panel", "children"), Input("current", "data"), Input("time", "data"),
                  prevent_initial_call=True)  # the layout holds the first
    def panel(current, window):
        sc = scope()
        current = _current(current)
        _read(f"indicators {_where(current)}")
        return panel_of(current, sc, lang(), window)[0]

    def panel_of(current: dict, sc: Scope, lg: str, window: Any, units: dict | None = None,
                 voc: Vocabularies | None = None) -> tuple[Any, Area | None, dict | None]:
        """The indicator panel of a unit or drawn area, with the area and indicators it shows (or an error); the
        units in scope and the vocabulary are read here unless the caller has them."""
        svc = service()
        try:
            area = area_of(current, sc, window)
            ind = svc.indicators(sc, area)
        except BrainError as exc:
            return html.P(str(exc), className="error"), None, None
        units = units if units is not None else unit_map(svc.db, sc)
        title = (t("drawn_area", lg) if current.get("kind") == "area"
                 else f"{units.get(current['code'], {}).get('name', '')} · {level_label(area.level, lg)} "
                      f"{current['code']}")
        body = [html.H3(title, id="panel-title")]
        if "grids" in ind:  # a role whose counts describe whole grids (brain.scope.Disclosure)
            body.append(html.P(t("snapped", lg).format(n=len(ind["grids"])), className="muted", id="snapped"))
        body.append(_kpis(ind["values"], HEADLINE, lg))
        if current.get("kind") == "area":
            voc = voc if voc is not None else stored(svc.db)
            res = resources(svc.db, sc, area, 1, 100)
            body += [html.H4(f"{t('resources', lg)} ({res['total']})"),
                     html.Ul(className="resources", children=[
                         html.Li(html.Button(f"{_value(voc, r['what'], 'kind', r['kind'], lg)} · {r['name']}", className="goto",
                                             id={"type": "goto", "at": f"{r['lon']:.6f},{r['lat']:.6f}"}))
                         for r in res["items"]])]
        return html.Div(body, **{"data-as-of": ind["as_of"]}), area, ind

    @app.callback(Output("time", "data"), Output("time-preset", "value"), Output("time-days", "value"),
                  Output("time-label", "children"), Input("time-preset", "value"), Input("time-days", "value"),
                  prevent_initial_call=True)
    def time_window(preset, days):
        return time_state(time_code(preset, days, ctx.triggered_id == "time-days"), lang())

    def time_state(code: str, lg: str) -> tuple[dict, str | None, int, str]:
        """A window's store value, the preset and slider showing it, and its label."""
        since = window_start(code, service().clock().as_of)
        text = t("since", lg).format(d=_when(since.isoformat(), lg)) if since else t("all", lg)
        return ({"preset": code, "since": since.strftime("%Y-%m-%d %H:%M:%S") if since else None, "until": None},
                code if code in PRESETS else None, _days(code), text)

    @app.callback(Output("theme-spec", "data"), Output("theme-legend", "children"), Input("theme", "value"),
                  prevent_initial_call=True)
    def theme(value):
        return theme_state(_text(value, "the theme"), scope(), lang())

    def theme_state(value: str | None, sc: Scope, lg: str) -> tuple[dict | None, list]:
        """A theme's spec for the map (classes of the user's own grids) and its legend."""
        svc = service()
        options = themes(sc, lg)
        if not value:
            return None, html.P(t("theme_hint", lg), className="muted")
        if value not in options:
            raise BadRequest(f"no theme {value!r} for this user: one of {', '.join(options)}")
        spec = dict(options[value])
        layer = CATALOG[spec["layer"]]
        part = next(p for p in layer.parts if p.name == spec["part"])
        _read(f"theme {value}", layer.id)
        values = [v for _, v in grid_values(svc.db, sc, svc.clock(), part, spec["indicator"]) if v is not None]
        spec["breaks"], counts = classes(values)
        spec["colors"] = THEME_COLORS[:len(spec["breaks"]) + 1]
        fmt = (lambda v: f"{v * 100:.1f}%") if spec["ratio"] else (lambda v: f"{v:,.0f}")
        lower = [min(values) if values else 0] + spec["breaks"]
        rows = [html.Div([html.I(className="swatch", style={"background": c}),
                          f"{fmt(lo)} – {fmt(hi)}" if hi is not None else f"≥ {fmt(lo)}",
                          html.Span(f" ({n} {t('grids', lg)})", className="muted")],
                         className="key", **{"data-lower": lo})
                for c, lo, hi, n in zip(spec["colors"], lower, spec["breaks"] + [None], counts)]
        return spec, [html.B(spec["label"]), *rows, html.P(t("theme_hint", lg), className="muted")]

    @app.callback(Output("events", "children"), Output("ev-pages", "children"), Output("events-page", "data"),
                  Input("current", "data"), Input("time", "data"), Input("ev-status", "value"),
                  Input("ev-class", "value"), Input("ev-overdue", "value"), Input("ev-prev", "n_clicks"),
                  Input("ev-next", "n_clicks"), Input("tabs", "value"), State("events-page", "data"),
                  prevent_initial_call=True)
    def events_panel(current, window, status, cls, overdue, _prev, _next, tab, page):
        if tab != "events":  # read when its tab is open (opening it reads it for the unit and window shown then)
            raise PreventUpdate
        lg = lang()
        sc = scope()
        svc = service()
        current = _current(current)
        status, cls = _text(status, "the status"), _text(cls, "the class")
        page = int(_number(page or 1, "the page"))
        page = max(1, page - 1) if ctx.triggered_id == "ev-prev" else page + 1 if ctx.triggered_id == "ev-next" else 1
        _read(f"events {_where(current)}", "events")
        try:
            area = area_of(current, sc, window)
            filters = dict(status=status or None, cls=cls or None, overdue=True if overdue else None, since=area.since,
                           area=area, size=EVENTS_PAGE)
            ev = queries.events(svc.db, sc, svc.clock(), page=page, **filters)
        except BrainError as exc:
            return html.P(str(exc), className="error"), "", 1
        pages = max(1, -(-ev["total"] // EVENTS_PAGE))
        if page > pages:  # paged past the end (the filter narrowed the list)
            page = pages
            ev = queries.events(svc.db, sc, svc.clock(), page=page, **filters)
        voc = stored(svc.db)
        items = html.Ul(className="events", children=[
            html.Li(html.Button(" · ".join(x for x in (
                _when(e["reported_at"], lg), voc.label("event_class", e["class"], lg),
                voc.label("event_type", e.get("type"), lg), voc.label("event_status", e["status"], lg),
                t("overdue", lg) if e.get("overdue") else "") if x),
                className="goto" + (" late" if e.get("overdue") else ""),
                id={"type": "goto", "at": f"{e['lon']:.6f},{e['lat']:.6f}"}), **{"data-event": e["id"]})
            for e in ev["items"]])
        return items, t("page_of", lg).format(p=page, n=pages, t=f"{ev['total']:,}"), page

    @app.callback(Output("search-results", "children"), Input("search", "value"), prevent_initial_call=True)
    def search(text):
        lg = lang()
        try:
            text = _text(text, "the search")
            _read(f"search {text}")
            hits = queries.search(service().db, scope(), text, clock=service().clock())
        except BrainError as exc:
            return [html.Li(str(exc), className="error")]
        return [html.Li(html.Button(" · ".join(x for x in (t(h["kind"], lg), h["label"], h.get("detail")) if x),
                                    className="goto",
                                    id={"type": "goto", "at": f"{h['lon']:.6f},{h['lat']:.6f}"}))
                for h in hits] or ([html.Li(t("none", lg))] if text else [])

    @app.callback(Output("detail", "children"), Input("feature", "data"), prevent_initial_call=True)
    def detail(feat):
        lg = lang()
        sc = scope()
        svc = service()
        if not isinstance(feat, dict) or not isinstance(feat.get("id"), str) or not feat["id"]:
            raise BadRequest("a feature is a table and an id")
        table = feat.get("table")
        _read(feat["id"], table)
        voc = stored(svc.db)
        try:
            if table == "buildings":
                return _building(queries.building(svc.db, sc, feat["id"], svc.clock()), feat["id"], voc, lg)
            return _feature(queries.feature(svc.db, sc, table, feat["id"], svc.clock()), voc, lg)
        except BrainError as exc:
            return html.P(str(exc), className="error")

    # -- my page: indicator widgets (指标磁铁), saved per user (千人千面) -----------------------------------
    @app.callback(Output("page", "data"), Output("grid", "children", allow_duplicate=True), Output("grid", "layout"),
                  Input({"type": "add", "w": ALL}, "n_clicks"),
                  Input({"type": "rm", "i": ALL}, "n_clicks"), Input("moved", "data"),
                  Input("grid", "droppedItem"), State("page", "data"), State("current", "data"),
                  State("time", "data"), prevent_initial_call=True)
    def edit_page(adds, rms, layout, dropped, page, current, window):
        trig = ctx.triggered_id
        page, current = _page(page), _current(current)
        adds, rms = (v if isinstance(v, list) else [] for v in (adds, rms))

        def add(kind, x=0, y=100, w=6, h=2):
            if len(page["widgets"]) >= MAX_WIDGETS:
                raise TooLarge(f"a page holds at most {MAX_WIDGETS} widgets: remove some first")
            n = max([int(card["i"][1:]) for card in page["widgets"]] + [0]) + 1
            for it in page["layout"]:  # make room where it lands, as the grid does while dragging
                if it["x"] < x + w and x < it["x"] + it["w"] and it["y"] + it["h"] > y:
                    it["y"] += h
            page["widgets"].append({"i": f"w{n}", "type": kind})
            page["layout"].append({"i": f"w{n}", "x": x, "y": y, "w": w, "h": h})

        if "grid.droppedItem" in ctx.triggered_prop_ids and isinstance(dropped, dict) and \
                str(dropped.get("i", "")).removeprefix("palette-") in WIDGETS:
            at = _layout([{"i": "d", "w": 6, "h": 2, "x": dropped.get("x", 0), "y": dropped.get("y", 100)}],
                         {"d"})[0]
            add(dropped["i"].removeprefix("palette-"), at["x"], at["y"])
        elif isinstance(trig, dict) and trig.get("type") == "add" and any(a for a in adds if a):
            add(trig["w"])
        elif isinstance(trig, dict) and trig.get("type") == "rm" and any(r for r in rms if r):
            page["widgets"] = [w for w in page["widgets"] if w["i"] != trig["i"]]
            page["layout"] = [it for it in page["layout"] if it["i"] != trig["i"]]
        elif trig == "moved":
            keep = {w["i"] for w in page["widgets"]}
            items = _layout(layout or [], keep)
            if {it["i"] for it in items} != keep or items == page_layout(page):
                raise PreventUpdate  # a grid still mounting, or nothing moved: nothing to keep
            page["layout"] = items
            queries.save_layout(service().db, scope().user.name, page)
            return page, dash.no_update, dash.no_update  # the grid already shows it
        else:
            raise PreventUpdate  # buttons appearing with the cards, not clicked
        queries.save_layout(service().db, scope().user.name, page)
        # a widget added or removed: its cards and their places reach the grid together, or the grid would
        # compact the old places before the new card is there
        return page, cards(page, current, scope(), lang(), window), page["layout"]

    def cards(page, current, sc, lg, window, shown: tuple[Area | None, dict | None] = (None, None),
              voc: Vocabularies | None = None):
        """The widgets' cards; `shown`: the area and indicators already computed for the panel, and `voc` the
        vocabulary already read, if any."""
        svc = service()
        area, ind = shown
        if ind is None:
            area = area_of(current, sc, window)
            ind = svc.indicators(sc, area)
        voc = voc if voc is not None else stored(svc.db)
        places = {it["i"]: it for it in page["layout"]}
        out = []
        for w in page["widgets"]:
            try:
                body = _widget(w["type"], ind, sc, svc, area, current, lg, voc)
            except BrainError as exc:
                body = html.P(str(exc), className="error")
            place = places.get(w["i"], {"x": 0, "y": 100, "w": 6, "h": 2})
            out.append(html.Div(id=w["i"], className="widget", children=[
                html.Div(className="whead", children=[
                    html.Span(t(w["type"], lg)),
                    html.Span([html.Button("CSV", id={"type": "csv", "i": w["i"]}, className="wbtn",
                                           title=t("csv", lg)),
                               html.Button("PNG", id={"type": "png", "i": w["i"]}, className="wbtn",
                                           title=t("png", lg), **{"data-name": t(w["type"], lg)}),
                               html.Button("×", id={"type": "rm", "i": w["i"]}, className="rm",
                                           title=t("remove", lg))])]),
                html.Div(body, className="wbody")],
                **{"data-widget": w["type"], "data-grid": {k: place[k] for k in ("x", "y", "w", "h")}}))
        return out

    @app.callback(Output("grid", "children"), Input("current", "data"), Input("time", "data"), State("page", "data"),
                  prevent_initial_call=True)
    def widgets(current, window, page):
        current = _current(current)
        _read(f"widgets {_where(current)}")
        return cards(_page(page), current, scope(), lang(), window)

    @app.callback(Output("download", "data"), Input({"type": "csv", "i": ALL}, "n_clicks"), State("page", "data"),
                  State("current", "data"), State("time", "data"), prevent_initial_call=True)
    def export_widget(clicks, page, current, window):
        trig = ctx.triggered_id
        if not isinstance(trig, dict) or not isinstance(clicks, list) or not any(c for c in clicks if c):
            raise PreventUpdate  # buttons appearing with the cards, not clicked
        page, current = _page(page), _current(current)
        kind = next((w["type"] for w in page["widgets"] if w["i"] == trig.get("i")), None)
        if kind is None:
            raise NotFound(f"no widget {trig.get('i')!r} on this page")
        lg, sc, svc = lang(), scope(), service()
        area = area_of(current, sc, window)
        _read(f"widget csv {kind} {_where(current)}")
        rows = widget_rows(kind, svc.indicators(sc, area), sc, svc, area, current, lg, stored(svc.db))
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return {"content": "\ufeff" + buf.getvalue(), "filename": f"{t(kind, lg)}.csv", "type": "text/csv"}

    # Every page runs only the scripts brain serves and Dash's own inline ones (their hashes, taken now that every
    # clientside callback is defined): delivered text that slipped through as markup would not run.
    policy = content_security_policy(app.csp_hashes(), basemap_url, base_policy)

    @server.after_request
    def secured(resp: flask.Response) -> flask.Response:
        if resp.mimetype == "text/html":
            resp.headers["Content-Security-Policy"] = policy
        return resp

    return app


def content_security_policy(script_hashes: list[str], basemap_url: str | None = None, base_policy: str = "") -> str:
    """The pages' Content-Security-Policy: the service's own (`base_policy`, brain.service.BASE_POLICY: no framing,
    no plugins, forms to brain only) and scripts from brain and the given inline hashes only. MapLibre starts its
    worker from a blob; charts and exported pictures are data: images; React and MapLibre set styles inline; an
    online raster basemap (BRAIN_BASEMAP_URL), when configured, is fetched from its own origin."""
    basemap = ""
    if basemap_url:
        parts = urlsplit(basemap_url)
        basemap = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return "; ".join((
        "default-src 'self'", "script-src 'self' " + " ".join(script_hashes), "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'", f"img-src 'self' data: blob:{basemap}", f"connect-src 'self'{basemap}",
        "font-src 'self' data:", *([base_policy] if base_policy else [])))


def page_layout(page) -> list[dict]:
    """The places of a page's widgets, in a canonical form (for comparing and saving)."""
    return [{k: it[k] for k in ("i", "x", "y", "w", "h")} for it in page["layout"]]


def _legend(layers, voc, lg):
    rows = []
    for layer in layers:
        colors = layer.style.get("colors") or {}
        if colors:  # labelled through the vocabulary the model names for the field the layer is coloured by
            vocab = ENTITIES[layer.parts[0].table].field_map[layer.style["by"]].vocab
            keys = [html.Span([html.I(className="swatch", style={"background": c}), voc.label(vocab, k, lg)],
                              className="key") for k, c in colors.items()]
            if layer.style.get("ring"):
                keys.append(html.Span([html.I(className="swatch ring"), t("overdue", lg)], className="key"))
            rows.append(html.Div([html.B(bilingual(layer.title, lg))] + keys, className="legend-row"))
    return rows


def _kpis(values: dict, names, lg) -> html.Div:
    return html.Div(className="kpis", children=[
        html.Div(className="kpi", **{"data-indicator": n, "data-value": json.dumps(values.get(n))}, children=[
            html.Div(_fmt(n, values.get(n)), className="kv"),
            html.Div(bilingual(INDICATORS[n].label, lg) if n in INDICATORS else t(n, lg), className="kl")])
        for n in names])


def _value(voc, table: str, name: str, v: Any, lg: str) -> str:
    """A record's value for the page: coded values labelled through the vocabulary the model names for the field,
    timestamps and dates formatted, flags as yes/no."""
    if v is None or v == "":
        return "—"
    field = ENTITIES[table].field_map.get(name) if table in ENTITIES else None
    if isinstance(v, bool):
        return voc.label("yes_no", "true" if v else "false", lg)
    if field is not None and field.type == "multi":
        return ("、" if lg == "zh" else ", ").join(voc.label(field.vocab, c, lg) for c in str(v).split(";") if c)
    if field is not None and field.vocab:
        return voc.label(field.vocab, str(v), lg)
    if field is not None and field.type in ("timestamp", "date"):
        return _when(v, lg)
    return str(v)


FEATURE_TITLES = {"events": "event", "devices": "device", "organisations": "organisation", "people": "people"}


def _feature(f: dict, voc, lg: str) -> html.Div:
    """The panel of one clicked feature: its record, and an event's time limits or a device's readings."""
    table, rec = f["table"], dict(f["record"])
    rows = []
    for name, v in rec.items():
        if name in ("id", "lon", "lat", "building_id", "household_id") or (table == "events" and name.endswith("_at")):
            continue
        shown = _value(voc, table, name, v, lg)
        rows.append(html.Tr([html.Th(field_label(name, lg)), html.Td(shown)]))
    head = {"events": lambda: " · ".join(x for x in (voc.label("event_class", rec.get("class"), lg),
                                                      voc.label("event_type", rec.get("type"), lg)) if x),
            "devices": lambda: rec.get("name") or voc.label("device_kind", rec.get("kind"), lg),
            "organisations": lambda: rec.get("name") or "",
            "people": lambda: rec.get("name") or t("people", lg)}[table]()
    out = [html.Div(t(FEATURE_TITLES[table], lg), className="muted"), html.H3(head, id="detail-title"),
           html.Table(html.Tbody(rows), className="record")]
    if table == "events":
        lim = f["limits"]
        out += [html.H4(t("timeline", lg)), html.Ol(className="timeline", children=[
            html.Li([html.B(field_label(k, lg)), " ", _when(rec.get(k), lg)])
            for k in ("reported_at", "dispatched_at", "resolved_at", "closed_at") if rec.get(k)]),
            html.H4(t("limits", lg)), html.Table(className="record", children=html.Tbody([
                html.Tr([html.Th(t("respond_by", lg)), html.Td(
                    f"{_when(lim['respond_by'], lg)} · {t('overdue' if lim['overdue_respond'] else 'on_time', lg)}")]),
                html.Tr([html.Th(t("close_by", lg)), html.Td(
                    f"{_when(lim['close_by'], lg)} · {t('overdue' if lim['overdue_close'] else 'on_time', lg)}")])]))]
    if table == "devices":
        out.append(html.H4(t("readings", lg)))
        out.append(html.Table(className="record", children=html.Tbody([
            html.Tr([html.Th(r.get("metric")), html.Td(f"{r.get('value')} {r.get('unit') or ''}"
                                                       + (f" · {field_label('alarm', lg)}" if r.get("alarm") else "")),
                     html.Td(_when(r.get("ts"), lg), className="muted")]) for r in f["readings"]]
            or [html.Tr(html.Td(t("none", lg)))])))
    return html.Div(out, **{"data-feature": rec["id"], "data-table": table})


def _building(b: dict, bid: str, voc, lg: str) -> html.Div:
    """A building's panel (以房管人): its record, counts, residents grouped by household, organisations, events."""
    info = b["building"]
    facts = [t("floors_n", lg).format(n=info["floors"]) if info.get("floors") else "",
             voc.label("building_use", info.get("use"), lg) if info.get("use") else "",
             t("rented", lg) if info.get("rented") else ""]
    out = [html.Div(t("buildings", lg), className="muted"), html.H3(info.get("address") or bid, id="building-title"),
           html.P(" · ".join(x for x in facts if x)), _kpis(b["summary"], tuple(b["summary"]), lg)]
    if b["households"] is None:
        out.append(html.P(t("personal_hidden", lg), className="muted"))
    else:
        first = b["households"][0]["residents"][0] if b["households"] and b["households"][0]["residents"] else {}
        cols = [c for c in first if c not in ("id", "building_id", "household_id", "address")]
        out.append(html.H4(f"{t('residents', lg)} ({sum(len(h['residents']) for h in b['households'])})"))
        body = []
        for h in b["households"]:
            note = f"{t('household', lg)} {h['household_id'] or '—'} · {len(h['residents'])}" + (
                f" · {t('linked', lg)}" if h["linked_to_party_member"] else "")
            body.append(html.Tbody(className="household", children=[
                html.Tr(html.Th(note, colSpan=len(cols), className="hh")),
                *[html.Tr([html.Td(_value(voc, "people", c, r.get(c), lg)) for c in cols]) for r in h["residents"]]]))
        out.append(html.Div(className="table-wrap", children=html.Table(className="residents", children=[
            html.Thead(html.Tr([html.Th(field_label(c, lg), **{"data-field": c}) for c in cols])), *body])))
    out.append(html.H4(t("organisations", lg)))
    out.append(html.Ul([html.Li(f"{voc.label('org_kind', o.get('kind'), lg)} · {o.get('name')}")
                        for o in b["organisations"]] or [html.Li(t("none", lg))]))
    if b["events"] is not None:
        out.append(html.H4(t("recent_events", lg)))
        out.append(html.Ul([html.Li(f"{_when(e['reported_at'], lg)} · {voc.label('event_class', e['class'], lg)} · "
                                    f"{voc.label('event_status', e['status'], lg)}")
                            for e in b["events"]] or [html.Li(t("none", lg))]))
    return html.Div(out, **{"data-building": bid})


def widget_rows(kind, ind, sc, svc, area, current, lg, voc) -> list[dict]:
    """A widget's numbers as rows (what it draws, and what its CSV holds), in the page's language; the area
    carries the time window."""
    v = ind["values"]
    kpis = {"headline": ("population", "households", "events", "open_events", "overdue_close", "resolution_rate"),
            "resolution": ("resolution_rate", "respond_on_time_rate", "close_on_time_rate", "median_respond_minutes",
                           "median_close_hours"),
            "party": ("party_members", "org_party_org", "org_service_centre", "households_linked", "party_link_share")}
    col = (lambda k: field_label(k, lg))
    if kind in kpis or (kind == "overdue" and current.get("kind") != "unit"):
        names = kpis.get(kind, ("overdue_respond", "overdue_close"))
        return [{t("indicators", lg): bilingual(INDICATORS[n].label, lg), col("value"): v.get(n)} for n in names]
    if kind == "age":
        rows = queries.age_pyramid(svc.db, sc, area, svc.clock())
        bands = sorted({r["band"] for r in rows if r["band"] != "?"}, key=lambda b: int(b.split("–")[0]))
        n = {(r["band"], r["gender"]): r["count"] for r in rows}
        return [{t("age_band", lg): b, t("male", lg): n.get((b, "male"), 0), t("female", lg): n.get((b, "female"), 0)}
                for b in bands]
    if kind == "origin":
        return [{field_label("origin", lg): r["key"], t("count", lg): r["count"]} for r in ind["origin"]]
    if kind == "events_time":  # the area carries the time window
        return [{t("month_axis", lg): r["month"], t("status", lg): voc.label("event_status", r["status"], lg),
                 t("count", lg): r["count"]} for r in queries.events_by_month(svc.db, sc, area, svc.clock())]
    if kind == "overdue":
        ev = queries.events(svc.db, sc, svc.clock(), area=area, overdue=True, since=area.since, size=20)
        return [{col("reported_at"): _when(e["reported_at"], lg), col("class"): voc.label("event_class", e["class"], lg),
                 col("status"): voc.label("event_status", e["status"], lg)} for e in ev["items"]]
    if kind == "ranking":
        if current.get("kind") != "unit" or area.level == LEVELS[-1]:
            return []
        r = ranking(svc.db, sc, current["code"], "open_events", svc.clock())
        return [{col("name"): x["name"], bilingual(INDICATORS["open_events"].label, lg): x["value"]}
                for x in r["ranking"]]
    if kind == "alarms":
        return [{col("kind"): voc.label("device_kind", d["kind"], lg), col("name"): d["name"]}
                for d in queries.devices_in_alarm(svc.db, sc, area)]
    return []


def _widget(kind, ind, sc, svc, area, current, lg, voc):
    v = ind["values"]
    if kind == "headline":
        return _kpis(v, ("population", "households", "events", "open_events", "overdue_close", "resolution_rate"), lg)
    if kind == "resolution":
        return _kpis(v, ("resolution_rate", "respond_on_time_rate", "close_on_time_rate", "median_respond_minutes",
                         "median_close_hours"), lg)
    if kind == "party":
        return _kpis(v, ("party_members", "org_party_org", "org_service_centre", "households_linked",
                         "party_link_share"), lg)
    rows = widget_rows(kind, ind, sc, svc, area, current, lg, voc)
    none = t("none", lg)
    if kind == "age":  # a pyramid: men to the left, women to the right
        band, men, women = t("age_band", lg), t("male", lg), t("female", lg)
        bands = [r[band] for r in rows]
        return charts.pyramid(bands, (men, "#1f77b4", [r[men] for r in rows]),
                              (women, "#e377c2", [r[women] for r in rows]), empty=none)
    if kind == "origin":
        keys = list(rows[0]) if rows else ["", ""]
        return charts.bars([str(r[keys[0]]) for r in rows], [r[keys[1]] for r in rows], "#8c564b", empty=none)
    if kind == "events_time":
        month, status, count = t("month_axis", lg), t("status", lg), t("count", lg)
        months = sorted({r[month] for r in rows})
        n = {(r[month], r[status]): r[count] for r in rows}
        series = []
        for code in VOCABS["event_status"]:  # the map's colours for the statuses
            label = voc.label("event_status", code, lg)
            series.append((label, STATUS_COLORS.get(code, "#7f7f7f"), [n.get((m, label), 0) for m in months]))
        return charts.stacked(months, series, empty=none)
    if kind == "overdue" and current.get("kind") != "unit":
        return _kpis(v, ("overdue_respond", "overdue_close"), lg)
    if kind == "ranking":
        if not rows:
            return html.P("—")
        return html.Ol([html.Li(" · ".join(str(x) for x in r.values())) for r in rows])
    return html.Ul([html.Li(" · ".join(str(x) for x in r.values())) for r in rows] or [html.Li(t("none", lg))])
