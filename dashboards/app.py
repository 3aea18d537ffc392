"""The one-map command view (一张图) and, for community staff, the same app fitted to their community.

Callbacks are thin: they read the signed-in user from the session cookie, build the same Scope the HTTP
service builds, call brain's library (metrics, queries, catalog) and render. No SQL and no permission rule
lives here; the map's vector tiles come from the service's /tiles endpoint with the same session.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import dash
import dash_leaflet as dl
import dash_snap_grid as dsg
import flask
import plotly.graph_objects as go
import shapely
from dash import ALL, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from brain import queries
from brain.areas import AreaLimits, parse_area
from brain.auth import SignInPolicy, create_session, end_session, sign_in
from brain.errors import BadRequest, BrainError, Forbidden, NotFound, Throttled, TooLarge, http_status
from brain.layers.catalog import CATALOG
from brain.metrics import INDICATORS, Area, indicators, ranking, resources, unit_area
from brain.model import LEVEL_LABELS, LEVELS
from brain.scope import Scope
from brain.vocabulary import stored
from dashboards.i18n import WIDGETS, bilingual, t

SESSION_COOKIE = "brain_session"
LANG_COOKIE = "brain_lang"
HEADLINE = ("population", "households", "floating", "buildings", "organisations", "events", "open_events",
            "overdue_close", "resolution_rate", "party_link_share", "cameras", "sensors_in_alarm")
DEFAULT_PAGE = {"widgets": [{"i": "w1", "type": "headline"}, {"i": "w2", "type": "age"},
                            {"i": "w3", "type": "events_time"}],
                "layout": [{"i": "w1", "x": 0, "y": 0, "w": 6, "h": 2}, {"i": "w2", "x": 6, "y": 0, "w": 6, "h": 2},
                           {"i": "w3", "x": 0, "y": 2, "w": 12, "h": 2}]}
DEFAULT_LAYERS = ["units", "buildings", "events", "devices"]
MAX_WIDGETS = 40  # widgets on one saved page


# -- what the browser sends: every callback input is parsed here, so a forged one is refused with a 4xx ---------
def _current(v: Any) -> dict:
    """The unit or drawn area the page shows: {"kind": "unit", "code"} or {"kind": "area", "geometry"}."""
    if isinstance(v, dict) and v.get("kind") == "unit" and isinstance(v.get("code"), str):
        return {"kind": "unit", "code": v["code"]}
    if isinstance(v, dict) and v.get("kind") == "area" and isinstance(v.get("geometry"), dict):
        return {"kind": "area", "geometry": v["geometry"]}
    raise BadRequest("the page's current view is malformed: reload the page")


def _units(v: Any) -> dict:
    """The unit tree the page was given (display only: every read is checked against the scope again)."""
    if not isinstance(v, dict) or not all(isinstance(u, dict) for u in v.values()):
        raise BadRequest("the page's unit list is malformed: reload the page")
    return v


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


def create_dash(service: Callable[[], Any], basemap_url: str | None = None,
                max_request_bytes: int = 4_000_000) -> dash.Dash:
    """The Dash app, served by `brain serve` at / (its Flask server mounted in the ASGI app)."""
    app = dash.Dash(__name__, title="brain 一张图", suppress_callback_exceptions=True, update_title=None,
                    assets_ignore=r"vendor/.*")  # the map plugin is loaded by brain.js once Leaflet is there
    server = app.server
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
        resp = flask.redirect("/")
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
    def layout():
        lg = lang()
        user = current_user()
        if user is None:
            # the layout is fetched by the page (/_dash-layout): the page's own address is the referrer
            return signin_page(lg, flask.request.referrer or "")
        sc = Scope(user)
        db = service().db
        tree = queries.unit_tree(db, sc, geometry=False)["features"]
        root = next(f for f in tree if f["properties"]["code"] == user.unit_code)
        visible = [l for l in CATALOG.values() if l.visible(sc)]
        catalog = [{"id": l.id, "minzoom": l.minzoom, "maxzoom": l.maxzoom, "style": l.style,
                    "parts": [{"name": p.name, "aggregate": list(p.aggregate)} for p in l.parts]} for l in visible]
        try:  # a page saved by an earlier version keeps the widgets this one knows
            page = _page(queries.load_layout(db, user.name) or DEFAULT_PAGE)
        except BrainError:
            page = DEFAULT_PAGE
        cx, cy = root["properties"]["center"]
        basemap = [dl.TileLayer(url=basemap_url, id="basemap")] if basemap_url else []
        return html.Div(className="app", children=[
            dcc.Store(id="catalog", data=catalog),
            dcc.Store(id="current", data={"kind": "unit", "code": user.unit_code}),
            dcc.Store(id="view", data={"bbox": root["bbox"]}),
            dcc.Store(id="clicked"), dcc.Store(id="building-id"),
            dcc.Store(id="page", data=page),
            dcc.Store(id="units", data={f["properties"]["code"]: {**f["properties"], "bbox": f["bbox"]}
                                        for f in tree}),
            html.Div(id="sink", style={"display": "none"}),
            html.Header([
                html.H1(title(lg)),
                html.Nav(id="breadcrumb", className="breadcrumb"),
                html.Div(className="who", children=[
                    html.Span(f"{user.name} · {bilingual(user.role.label, lg)} · {root['properties']['name']}",
                              id="who"),
                    html.A("中文", href="/lang/zh", id="lang-zh"), html.A("EN", href="/lang/en", id="lang-en"),
                    html.Form(method="POST", action="/signout", className="signout", children=[
                        html.Button(t("signout", lg), type="submit", id="signout")])]),
            ]),
            html.Div(className="body", children=[
                html.Aside(className="left", children=[
                    html.H3(t("layers", lg)),
                    dcc.Checklist(id="layers", value=[l["id"] for l in catalog if l["id"] in DEFAULT_LAYERS],
                                  options=[{"label": html.Span([html.I(className="swatch", style={
                                      "background": l.style.get("color")}), bilingual(l.title, lg)]),
                                      "value": l.id} for l in visible], className="layer-list"),
                    html.Div(id="legend", className="legend", children=_legend(visible, lg)),
                    html.H3(t("units", lg)),
                    html.Div(id="unit-list", className="unit-list"),
                    html.H3(t("search", lg)),
                    dcc.Input(id="search", type="search", debounce=True, placeholder=t("search_hint", lg),
                              className="search"),
                    html.Ul(id="search-results", className="resources"),
                ]),
                html.Main(className="centre", children=[
                    dl.Map(id="map", center=[cy, cx], zoom=13, minZoom=8, maxZoom=19, preferCanvas=True,
                           style={"height": "100%", "width": "100%"}, children=[
                               *basemap,
                               dl.FeatureGroup([dl.EditControl(id="draw", draw={
                                   # showArea off: leaflet-draw's area label throws under Leaflet 1.9
                                   "rectangle": {"showArea": False}, "polygon": {"showArea": False}, "polyline": False, "circle": False,
                                   "marker": False, "circlemarker": False}, edit={"edit": False})]),
                               dl.ScaleControl(position="bottomleft")]),
                ]),
                html.Aside(className="right", children=[
                    dcc.Tabs(id="tabs", value="indicators", children=[
                        dcc.Tab(label=t("indicators", lg), value="indicators",
                                children=html.Div(id="panel", className="panel")),
                        dcc.Tab(label=t("building", lg), value="building",
                                children=html.Div(id="building", className="panel",
                                                  children=t("click_building", lg))),
                        dcc.Tab(label=t("events", lg), value="events", children=html.Div(id="events",
                                                                                            className="panel")),
                    ]),
                ]),
            ]),
            html.Section(className="mypage", children=[
                html.H2(t("mypage", lg)),
                # each widget of the palette is dragged into the grid, or added by a click
                html.Div(className="palette", children=[html.Span(t("add_widget", lg) + ":")] + [
                    dsg.DraggableDiv(id=f"palette-{w}", children=html.Button(
                        t(w, lg), id={"type": "add", "w": w}, className="add")) for w in WIDGETS]),
                # rendered with the page, so the grid mounts with its widgets and their saved places
                dsg.Grid(id="grid", cols=12, rowHeight=150, layout=page["layout"], draggableHandle=".whead",
                         draggableCancel=".rm",  # the remove button clicks, it does not drag
                         isDroppable=True,
                         compactType="vertical",
                         children=cards(page, {"kind": "unit", "code": user.unit_code}, sc, lg)),
            ]),
        ])

    app.layout = layout

    # -- map: layers, fitting, clicks (client side, in assets/brain.js) ----------------------------------
    app.clientside_callback("function (c, v) { return window.brain.sync(c, v); }",
                            Output("sink", "children"), Input("catalog", "data"), Input("layers", "value"))
    app.clientside_callback("function (v) { return window.brain.fit(v); }",
                            Output("sink", "title"), Input("view", "data"))
    app.clientside_callback("function (n) { return window.brain.goto(dash_clientside.callback_context); }",
                            Output("sink", "className"), Input({"type": "goto", "at": ALL}, "n_clicks"),
                            prevent_initial_call=True)

    @app.callback(Output("current", "data", allow_duplicate=True), Input("draw", "geojson"),
                  prevent_initial_call=True)
    def drawn(fc):
        feats = fc.get("features") if isinstance(fc, dict) else None
        if not feats or not isinstance(feats, list) or not isinstance(feats[-1], dict):
            raise PreventUpdate
        geom = parse_area(feats[-1].get("geometry"), limits())  # the API's limits, checked before it is kept
        return {"kind": "area", "geometry": shapely.geometry.mapping(geom)}

    @app.callback(Output("current", "data", allow_duplicate=True), Output("view", "data", allow_duplicate=True),
                  Input({"type": "unit", "code": ALL}, "n_clicks"), State("units", "data"),
                  prevent_initial_call=True)
    def pick_unit(clicks, units):
        if not isinstance(ctx.triggered_id, dict) or not isinstance(clicks, list) or not any(clicks):
            raise PreventUpdate
        code, units = ctx.triggered_id.get("code"), _units(units)
        if code not in units:
            raise NotFound(f"no unit {code!r} on this page")
        return {"kind": "unit", "code": code}, {"bbox": units[code].get("bbox")}

    @app.callback(Output("current", "data", allow_duplicate=True), Output("view", "data", allow_duplicate=True),
                  Output("building-id", "data"), Output("tabs", "value"),
                  Input("clicked", "data"), State("units", "data"), prevent_initial_call=True)
    def map_click(clicked, units):
        if not isinstance(clicked, dict) or clicked.get("lon") is None:
            raise PreventUpdate
        lon, lat = _number(clicked.get("lon"), "lon"), _number(clicked.get("lat"), "lat")
        zoom, units = _number(clicked.get("zoom", 0), "zoom"), _units(units)
        hit = queries.at_point(service().db, scope(), lon, lat)
        if hit["building"] and zoom >= CATALOG["buildings"].detail_zoom:
            return dash.no_update, dash.no_update, hit["building"], "building"
        code = hit["unit"]
        if code in units:
            return {"kind": "unit", "code": code}, {"bbox": units[code].get("bbox")}, dash.no_update, "indicators"
        raise PreventUpdate

    @app.callback(Output("breadcrumb", "children"), Output("unit-list", "children"),
                  Input("current", "data"), State("units", "data"))
    def crumbs(current, units):
        lg = lang()
        user = scope().user
        current, units = _current(current), _units(units)
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
        listing = [html.Button(f"{LEVEL_LABELS.get(u.get('level'), '')} {u.get('name')}",
                               id={"type": "unit", "code": u["code"]}, className="unit") for u in children]
        return items, listing

    def area_of(current, sc: Scope | None = None) -> Area:
        current = _current(current)
        if current["kind"] == "unit":
            return unit_area(service().db, sc or scope(), current["code"])
        return Area(polygon=parse_area(current["geometry"], limits()))

    @app.callback(Output("panel", "children"), Input("current", "data"), State("units", "data"))
    def panel(current, units):
        lg = lang()
        sc = scope()
        svc = service()
        current, units = _current(current), _units(units)
        _read(f"indicators {_where(current)}")
        try:
            area = area_of(current)
            ind = indicators(svc.db, sc, area, svc.clock())
        except BrainError as exc:
            return html.P(str(exc), className="error")
        title = (t("drawn_area", lg) if current.get("kind") == "area"
                 else f"{units.get(current['code'], {}).get('name', '')} · {LEVEL_LABELS.get(area.level, '')} "
                      f"{current['code']}")
        body = [html.H3(title, id="panel-title")]
        if "grids" in ind:  # a role whose counts describe whole grids (brain.scope.Disclosure)
            body.append(html.P(t("snapped", lg).format(n=len(ind["grids"])), className="muted", id="snapped"))
        body.append(_kpis(ind["values"], HEADLINE, lg))
        if current.get("kind") == "area":
            res = resources(svc.db, sc, area, 1, 100)
            body += [html.H4(f"{t('resources', lg)} ({res['total']})"),
                     html.Ul(className="resources", children=[
                         html.Li(html.Button(f"{r['kind']} · {r['name']}", className="goto",
                                             id={"type": "goto", "at": f"{r['lon']:.6f},{r['lat']:.6f}"}))
                         for r in res["items"]])]
        return html.Div(body, **{"data-as-of": ind["as_of"]})

    @app.callback(Output("events", "children"), Input("current", "data"))
    def events_panel(current):
        lg = lang()
        sc = scope()
        svc = service()
        current = _current(current)
        if current["kind"] != "unit":
            raise PreventUpdate
        _read(f"events {current['code']}", "events")
        try:
            ev = queries.events(svc.db, sc, svc.clock(), unit=current["code"], overdue=True, size=100)
        except BrainError as exc:
            return html.P(str(exc), className="error")
        voc = stored(svc.db)  # labels for codes, a deployment's own item types included
        return [html.H3(f"{t('open_overdue', lg)} ({ev['total']})"), html.Ul(className="events", children=[
            html.Li(html.Button(" · ".join(x for x in (
                e["reported_at"][:16], voc.label("event_class", e["class"], lg),
                voc.label("event_type", e.get("type"), lg), voc.label("event_status", e["status"], lg)) if x),
                                className="goto", id={"type": "goto", "at": f"{e['lon']:.6f},{e['lat']:.6f}"}))
            for e in ev["items"]])]

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

    @app.callback(Output("building", "children"), Input("building-id", "data"), prevent_initial_call=True)
    def building_panel(bid):
        lg = lang()
        sc = scope()
        svc = service()
        if not isinstance(bid, str) or not bid:
            raise BadRequest("a building id is text")
        _read(bid, "buildings")
        try:
            b = queries.building(svc.db, sc, bid, svc.clock())
        except BrainError as exc:
            return html.P(str(exc), className="error")
        info = b["building"]
        out = [html.H3(info.get("address") or bid, id="building-title"),
               html.P(f"{info.get('use') or ''} · {info.get('floors') or '?'} F · "
                      f"{'rented' if info.get('rented') else ''}"),
               _kpis(b["summary"], tuple(b["summary"]), lg)]
        if b["households"] is None:
            out.append(html.P(t("personal_hidden", lg), className="muted"))
        else:
            cols = [c for c in (b["households"][0]["residents"][0] if b["households"] and
                                b["households"][0]["residents"] else {}) if c not in ("id", "building_id")]
            out.append(html.H4(t("residents", lg)))
            out.append(html.Table(className="residents", children=[
                html.Thead(html.Tr([html.Th(c) for c in cols])),
                html.Tbody([html.Tr([html.Td(str(r.get(c) if r.get(c) is not None else "")) for c in cols])
                            for h in b["households"] for r in h["residents"]])]))
        out.append(html.H4(t("organisations", lg)))
        voc = stored(service().db)
        out.append(html.Ul([html.Li(f"{voc.label('org_kind', o.get('kind'), lg)} · {o.get('name')}")
                            for o in b["organisations"]]
                           or [html.Li(t("none", lg))]))
        if b["events"] is not None:
            out.append(html.H4(t("recent_events", lg)))
            out.append(html.Ul([html.Li(f"{e['reported_at'][:10]} · {voc.label('event_class', e['class'], lg)} · "
                                        f"{voc.label('event_status', e['status'], lg)}")
                                for e in b["events"]] or [html.Li(t("none", lg))]))
        return html.Div(out, **{"data-building": bid})

    # -- my page: indicator widgets (指标磁铁), saved per user (千人千面) -----------------------------------
    @app.callback(Output("page", "data"), Output("grid", "children", allow_duplicate=True), Output("grid", "layout"),
                  Input({"type": "add", "w": ALL}, "n_clicks"),
                  Input({"type": "rm", "i": ALL}, "n_clicks"), Input("grid", "layout"),
                  Input("grid", "droppedItem"), State("page", "data"), State("current", "data"),
                  prevent_initial_call=True)
    def edit_page(adds, rms, layout, dropped, page, current):
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
        elif trig == "grid":
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
        return page, cards(page, current, scope(), lang()), page["layout"]

    def cards(page, current, sc, lg):
        svc = service()
        area = area_of(current, sc)
        ind = indicators(svc.db, sc, area, svc.clock())
        places = {it["i"]: it for it in page["layout"]}
        out = []
        for w in page["widgets"]:
            try:
                body = _widget(w["type"], ind, sc, svc, area, current, lg)
            except BrainError as exc:
                body = html.P(str(exc), className="error")
            place = places.get(w["i"], {"x": 0, "y": 100, "w": 6, "h": 2})
            out.append(html.Div(id=w["i"], className="widget", children=[
                html.Div(className="whead", children=[
                    html.Span(t(w["type"], lg)),
                    html.Button("×", id={"type": "rm", "i": w["i"]}, className="rm", title=t("remove", lg))]),
                html.Div(body, className="wbody")],
                **{"data-widget": w["type"], "data-grid": {k: place[k] for k in ("x", "y", "w", "h")}}))
        return out

    @app.callback(Output("grid", "children"), Input("current", "data"), State("page", "data"),
                  prevent_initial_call=True)
    def widgets(current, page):
        current = _current(current)
        _read(f"widgets {_where(current)}")
        return cards(_page(page), current, scope(), lang())

    return app


def page_layout(page) -> list[dict]:
    """The places of a page's widgets, in a canonical form (for comparing and saving)."""
    return [{k: it[k] for k in ("i", "x", "y", "w", "h")} for it in page["layout"]]


def _legend(layers, lg):
    rows = []
    for layer in layers:
        colors = layer.style.get("colors") or {}
        if colors:
            keys = [html.Span([html.I(className="swatch", style={"background": c}), k], className="key")
                    for k, c in colors.items()]
            if layer.style.get("ring"):
                keys.append(html.Span([html.I(className="swatch ring"), layer.style["ring"]], className="key"))
            rows.append(html.Div([html.B(bilingual(layer.title, lg))] + keys, className="legend-row"))
    return rows


def _kpis(values: dict, names, lg) -> html.Div:
    return html.Div(className="kpis", children=[
        html.Div(className="kpi", **{"data-indicator": n, "data-value": json.dumps(values.get(n))}, children=[
            html.Div(_fmt(n, values.get(n)), className="kv"),
            html.Div(bilingual(INDICATORS[n].label, lg) if n in INDICATORS else n, className="kl")])
        for n in names])


def _graph(fig: go.Figure) -> dcc.Graph:
    fig.update_layout(margin=dict(l=30, r=10, t=10, b=30), height=230, showlegend=True,
                      legend=dict(orientation="h", y=-0.2))
    return dcc.Graph(figure=fig, config={"displayModeBar": False}, style={"height": "230px"})


def _widget(kind, ind, sc, svc, area, current, lg):
    v = ind["values"]
    if kind == "headline":
        return _kpis(v, ("population", "households", "events", "open_events", "overdue_close", "resolution_rate"), lg)
    if kind == "age":  # a pyramid: men to the left, women to the right
        rows = queries.age_pyramid(svc.db, sc, area, svc.clock())
        bands = sorted({r["band"] for r in rows if r["band"] != "?"}, key=lambda b: int(b.split("–")[0]))
        fig = go.Figure()
        for gender, sign, name in (("male", -1, "男 male"), ("female", 1, "女 female")):
            n = {r["band"]: r["count"] for r in rows if r["gender"] == gender}
            fig.add_bar(y=bands, x=[sign * n.get(b, 0) for b in bands], orientation="h",
                        name=bilingual(name, lg), customdata=[n.get(b, 0) for b in bands],
                        hovertemplate="%{y}: %{customdata}<extra></extra>")
        fig.update_layout(barmode="relative")
        return _graph(fig)
    if kind == "origin":
        o = ind["origin"]
        return _graph(go.Figure(go.Bar(x=[r["key"] for r in o], y=[r["count"] for r in o], showlegend=False)))
    if kind == "events_time":
        rows = queries.events_by_month(svc.db, sc, area, svc.clock())
        fig = go.Figure()
        for status in ("reported", "dispatched", "resolved", "closed"):
            pts = [r for r in rows if r["status"] == status]
            fig.add_bar(x=[r["month"] for r in pts], y=[r["count"] for r in pts], name=status)
        fig.update_layout(barmode="stack")
        return _graph(fig)
    if kind == "resolution":
        return _kpis(v, ("resolution_rate", "respond_on_time_rate", "close_on_time_rate", "median_respond_minutes",
                         "median_close_hours"), lg)
    if kind == "overdue":
        if current.get("kind") != "unit":
            return _kpis(v, ("overdue_respond", "overdue_close"), lg)
        ev = queries.events(svc.db, sc, svc.clock(), unit=current["code"], overdue=True, size=20)
        return html.Ul([html.Li(f"{e['reported_at'][:16]} · {e['class']} · {e['status']}") for e in ev["items"]])
    if kind == "party":
        return _kpis(v, ("party_members", "org_party_org", "org_service_centre", "households_linked",
                         "party_link_share"), lg)
    if kind == "ranking":
        if current.get("kind") != "unit" or area.level == LEVELS[-1]:
            return html.P("—")
        r = ranking(svc.db, sc, current["code"], "open_events", svc.clock())
        return html.Ol([html.Li(f"{x['name']} · {x['value']}") for x in r["ranking"]])
    if kind == "alarms":
        rows = queries.devices_in_alarm(svc.db, sc, area)
        return html.Ul([html.Li(f"{d['kind']} · {d['name']}") for d in rows] or [html.Li(t("none", lg))])
    return html.P(kind)
