"""The HTTP service: assembles brain's library (catalog, scope, tiles, metrics, queries) behind FastAPI.

No SQL and no permission rule lives here: endpoints parse, call the library with the request's Scope, and
render. Domain errors map to HTTP codes in one table (brain.errors.HTTP_STATUS); every request is audited by one middleware.
"""

from __future__ import annotations

import copy
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional
from zoneinfo import ZoneInfo

import shapely
from anyio import to_thread
from cachetools import LRUCache
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyQuery, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from fastapi.staticfiles import StaticFiles

from brain import archives, queries
from brain.areas import AreaLimits, parse_area
from brain.areas import warm as warm_repair
from brain.audit import AuditLog
from brain.auth import authenticate, hash_token, session_user
from brain.backend import Backend, connect
from brain.errors import BadRequest, BrainError, NotAuthenticated, NotFound, TooLarge, http_status
from brain.layers import derive
from brain.layers.catalog import CATALOG
from brain.metrics import INDICATORS, Area, Clock, indicators, ranking, resources, unit_area
from brain.schema import data_version, init_schema
from brain.scope import Scope
from brain.settings import Settings
from brain.tiles.source import TileSource

DOCS_STATIC = Path(__file__).parent / "static" / "swagger-ui"  # Swagger UI, vendored (README there)
#: Paths the dashboards answer (the Dash app is mounted at /); anything else unmatched is a JSON 404.
DASH_PATHS = ("/_dash-", "/assets/", "/_favicon.ico", "/_reload-hash", "/signin", "/signout", "/lang/")
#: Every response's Content-Security-Policy (the dashboards' pages extend it with their scripts' rules)
BASE_POLICY = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'; form-action 'self'"
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", BASE_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
SESSION_COOKIE = "brain_session"
AUTH_TTL = 5.0  # seconds a token → user lookup is reused; a removed user stops working within this
MVT = "application/vnd.mapbox-vector-tile"

bearer = HTTPBearer(auto_error=False, description="API token printed by `brain users add`")
token_query = APIKeyQuery(name="token", auto_error=False,
                          description="The same token, for map clients that cannot set headers")


#: The tile route's parameters as FastAPI would document them (the route reads them itself: see `tile`).
TILE_OPENAPI = {
    "parameters": [{"name": "layer", "in": "path", "required": True, "schema": {"type": "string", "title": "Layer"},
                    "description": "a layer id from /layers, or several joined by commas (units,water,roads): "
                                   "one tile holding each layer's MVT layers"}]
                  + [{"name": n, "in": "path", "required": True, "schema": {"type": "integer", "title": n.upper()}}
                     for n in "zxy"],
    "security": [{"HTTPBearer": []}, {"APIKeyQuery": []}],
}


def _tile_address(request: Request) -> tuple[str, int, int, int]:
    """layer, z, x, y of a tile request; a 422 naming the part that is not an integer, as FastAPI's would be."""
    p = request.path_params
    out, errors = [], []
    for n in "zxy":
        try:
            out.append(int(p[n]))
        except ValueError:
            errors.append({"type": "int_parsing", "loc": ("path", n), "input": p[n],
                           "msg": "Input should be a valid integer, unable to parse string as an integer"})
    if errors:
        raise RequestValidationError(errors)
    return (p["layer"], *out)


def no_nul_characters(request: Request) -> None:
    """Refuse NUL characters in the path and query: no field holds one, and PostgreSQL cannot bind one."""
    if any("\x00" in v for v in (*request.path_params.values(), *request.query_params.values(),
                                   *request.query_params.keys())):
        raise BadRequest("a parameter contains a NUL character (%00); remove it")


class Service:
    """What the endpoints share: the backend, settings, tile source, audit log and a short auth cache."""

    def __init__(self, db: Backend, settings: Settings):
        self.db = db
        self.settings = settings
        self.tiles = TileSource(db, settings)
        self.audit = AuditLog(db, settings.audit_flush_seconds)
        self._users: dict[tuple[str, str], tuple[float, Any]] = {}
        self._indicators: LRUCache = LRUCache(maxsize=512)
        self._indicators_lock = threading.Lock()

    def cached_user(self, token: str | None = None, session: str | None = None):
        """The user of a token or session seen less than AUTH_TTL seconds ago, without touching the database.

        Tokens and sessions are cached apart: a token sent as the session cookie is not a session.
        """
        hit = self._users.get(_auth_key(token, session)) if token or session else None
        return hit[1] if hit and time.monotonic() - hit[0] < AUTH_TTL else None

    def user(self, token: str | None = None, session: str | None = None):
        """The user holding an API token or a dashboard session (cached for AUTH_TTL s), or NotAuthenticated."""
        if not (token or session):
            raise NotAuthenticated("no token: send `Authorization: Bearer TOKEN` or add ?token=TOKEN "
                                   "(create one with `brain users add`)")
        user = self.cached_user(token, session)
        if user is None:
            if token:
                user = authenticate(self.db, token)
            else:
                user = session_user(self.db, session, timedelta(minutes=self.settings.session_idle_minutes),
                                    timedelta(hours=self.settings.session_hours))
            self._users[_auth_key(token, session)] = (time.monotonic(), user)
        if user is None:
            raise NotAuthenticated("unknown or disabled token" if token else "session ended: sign in again")
        return user

    def forget(self, session: str | None) -> None:
        """Drop a session from the auth cache (sign-out)."""
        if session:
            self._users.pop(_auth_key(None, session), None)

    def base_url(self, request: Request) -> str:
        """Where clients reach the service: the configured public URL, else the socket the request came in on
        (never the request's Host header, which a client chooses)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        host, port = request.scope.get("server") or ("127.0.0.1", 80)
        return f"{request.scope.get('scheme', 'http')}://{host}:{port}"

    def clock(self) -> Clock:
        """The clock indicators of this request are computed against."""
        return Clock.from_settings(self.settings)

    def indicators(self, scope: Scope, area: Area, names: list[str] | None = None) -> dict:
        """`brain.metrics.indicators` of an area in the scope, kept for the minute until the data changes.

        The dashboards show the same unit's indicators on every page load and callback (seven queries, ~45 ms of a
        page's layout). The key holds all the result depends on: the scope's key (never another's results), the
        area, the names, the clock's limits and minute, and the data version (read each time: ingest bumps it)."""
        clock = self.clock()
        key = (scope.key, area.unit, area.level, area.grids,
               None if area.polygon is None else shapely.to_wkb(area.polygon), area.since, tuple(names or ()),
               clock.as_of.replace(second=0), clock.respond_s, clock.close_s, data_version(self.db))
        with self._indicators_lock:
            out = self._indicators.get(key)
        if out is None:
            out = indicators(self.db, scope, area, clock, names)
            with self._indicators_lock:
                self._indicators[key] = out
        return copy.deepcopy(out)  # the caller's to change


def _auth_key(token: str | None, session: str | None) -> tuple[str, str]:
    """The auth cache's key: a token (when given) or a session, apart, so that neither passes for the other."""
    return ("token", hash_token(token)) if token else ("session", hash_token(session or ""))


def _service(request: Request) -> Service:
    return request.app.state.service


async def scope_of(request: Request, cred=Depends(bearer), token: Optional[str] = Depends(token_query)) -> Scope:
    """The Scope of the request's token (header first, then ?token=)."""
    return await _scope(request, cred.credentials if cred else token)


def _token(request: Request) -> str | None:
    """The token as `bearer` and `token_query` read it: a Bearer header first, then ?token=."""
    scheme, cred = get_authorization_scheme_param(request.headers.get("authorization"))
    return cred if scheme.lower() == "bearer" and cred else request.query_params.get("token")


async def _scope(request: Request, tok: str | None) -> Scope:
    svc = _service(request)
    # the token, else the dashboards' session cookie (the map fetches tiles with it)
    sid = None if tok else request.cookies.get(SESSION_COOKIE)
    user = svc.cached_user(tok, sid) or await to_thread.run_sync(svc.user, tok, sid)
    request.state.user = user
    no_nul_characters(request)  # after the user is known, so that the refusal is audited under their name
    return Scope(user)


def _audit(request: Request, layer: str | None = None, target: str | None = None,
           features: int | None = None) -> None:
    request.state.layer, request.state.target, request.state.features = layer, target, features


class AuditMiddleware:
    """Writes one audit row per HTTP request: who, what, how many features, status, time taken."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                have = {k.lower() for k, _ in message.get("headers", [])}
                # the dashboards' pages send their own policy, scripts included (dashboards.app)
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in SECURITY_HEADERS if h[0] not in have)]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            state = scope.get("state") or {}
            user = state.get("user")
            svc = scope["app"].state.service if "app" in scope else None
            if svc is not None and user is None:
                # the dashboards' requests carry the session cookie; its user is in the auth cache already
                user = svc.cached_user(session=Request(scope).cookies.get(SESSION_COOKIE))
            target = state.get("target")
            if target is None and status["code"] >= 400:  # a refusal names what was asked for
                target = _asked(scope)
            if svc is not None:
                # `actor`: the name a sign-in attempt gave, when it names nobody who signed in
                svc.audit.record(user.name if user else state.get("actor"), user.role.name if user else None,
                                 user.unit_code if user else None, scope["method"], scope["path"],
                                 state.get("layer"), target, state.get("features"),
                                 status["code"], (time.perf_counter() - t0) * 1000)


def _asked(scope) -> str | None:
    """What a refused request asked for: its path parameters, else its query (tokens left out)."""
    params = scope.get("path_params") or {}
    if params:
        return "/".join(str(v) for v in params.values())[:200]
    query = [(k, v) for k, v in Request(scope).query_params.multi_items() if k != "token"]
    return "&".join(f"{k}={v}" for k, v in query)[:200] or None


def _layer_json(layer, scope: Scope, base: str) -> dict[str, Any]:
    parts = []
    for p in layer.parts:
        modes = {z: layer.mode(p, scope, z) for z in range(layer.minzoom, layer.maxzoom + 1)}
        if not any(modes.values()):
            continue
        feature_from = min((z for z, m in modes.items() if m == "features"), default=None)
        fields = ["id", *p.visible_fields(scope), *(n for n, _ in p.computed)] if feature_from is not None else []
        parts.append({"name": p.name, "geometry": p.geometry, "fields": fields,
                      "aggregate": list(p.aggregate) if any(m == "aggregate" for m in modes.values()) else [],
                      "features_from_zoom": feature_from})
    return {"id": layer.id, "title": layer.title, "description": layer.description, "minzoom": layer.minzoom,
            "maxzoom": layer.maxzoom, "parts": parts, "style": layer.style,
            "tiles": f"{base}/tiles/{layer.id}/{{z}}/{{x}}/{{y}}.mvt",
            "tilejson": f"{base}/tiles/{layer.id}/tilejson.json"}


def _local(t: datetime | None, zone: str) -> datetime | None:
    """A time as the district's wall clock (the database's times are): an offset is converted, none is kept."""
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (a chunked body has no length)."""
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise TooLarge(f"request body over {limit:,} bytes: send a smaller polygon")
        chunks.append(chunk)
    return b"".join(chunks)


POLYGON_SCHEMA = {
    "type": "object", "required": ["type"],
    "properties": {"type": {"type": "string", "enum": ["Polygon", "MultiPolygon", "Feature"]},
                   "coordinates": {"type": "array"}, "geometry": {"type": "object"}},
    "example": {"type": "Polygon", "coordinates": [[[113.30, 23.08], [113.32, 23.08], [113.32, 23.09],
                                                     [113.30, 23.09], [113.30, 23.08]]]},
}


def create_app(settings: Settings | None = None, db: Backend | None = None) -> FastAPI:
    """The service for one database: `brain serve` runs it under uvicorn; tests and notebooks may too."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        backend = db or connect(settings.db)
        init_schema(backend)
        if not derive.is_fresh(backend):
            derive.refresh(backend)
        derive.ensure_indexes(backend)
        svc = Service(backend, settings)
        app.state.service = svc
        svc.audit.start()
        warm_repair(AreaLimits.from_settings(settings))
        try:
            yield
        finally:
            svc.audit.stop()
            await backend.aclose()  # the tiles' pool belongs to this event loop
            if db is None:
                backend.close()

    app = FastAPI(title="brain", version="0.3",
                  description="One map (一张图) of a district: permission-filtered vector tiles and indicators. "
                              "Every endpoint but /health needs a token (Authorization: Bearer, or ?token=).",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(AuditMiddleware)

    # The API's browser: FastAPI's own /docs loads Swagger UI from a CDN, which a machine offline never reaches
    # (a blank page). The same page with Swagger UI vendored (brain/static/swagger-ui, from the npm registry).
    app.mount("/docs/static", StaticFiles(directory=DOCS_STATIC), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API",
                                   swagger_js_url=f"{root}/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs/static/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs/static/favicon-32x32.png")

    @app.exception_handler(BrainError)
    async def brain_error(request: Request, exc: BrainError):
        code = http_status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errs = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(errs) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug of ours: say so, never leak a traceback
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); it has been logged"},
                            status_code=500)

    @app.get("/health", summary="Liveness and the data version")
    def health(request: Request) -> dict:
        svc = _service(request)
        return {"status": "ok", "data_version": data_version(svc.db), "backend": svc.db.dialect}

    @app.get("/layers", summary="The layers this user may see, with their fields and tile URLs")
    def layers(request: Request, scope: Scope = Depends(scope_of)) -> list[dict]:
        base = _service(request).base_url(request)
        out = [_layer_json(l, scope, base) for l in CATALOG.values() if l.visible(scope)]
        _audit(request, features=len(out))
        return out

    @app.get("/indicators", summary="The indicator registry: names, labels, groups")
    def indicator_list(request: Request, scope: Scope = Depends(scope_of)) -> list[dict]:
        return [{"name": i.name, "label": i.label, "group": i.group, "kind": i.kind, "table": i.table}
                for i in INDICATORS.values()]

    @app.api_route("/tiles/{layer}/tilejson.json", methods=["GET", "HEAD"],
                   summary="TileJSON 3.0.0 of a layer (or of several joined by commas), for this user")
    def tilejson(request: Request, layer: str, scope: Scope = Depends(scope_of)) -> dict:
        svc = _service(request)
        specs = svc.tiles.layers(layer, scope)
        base = svc.base_url(request)
        suffix = f"?token={request.query_params['token']}" if "token" in request.query_params else ""
        tree = queries.unit_tree(svc.db, scope, level=scope.user.unit_level, geometry=False)
        bbox = tree["features"][0]["bbox"] if tree["features"] else [-180, -85, 180, 85]
        minzoom, maxzoom = min(s.minzoom for s in specs), max(s.maxzoom for s in specs)
        _audit(request, layer=layer)
        return {"tilejson": "3.0.0", "name": " + ".join(s.title for s in specs),
                "description": " ".join(s.description for s in specs), "scheme": "xyz",
                "tiles": [f"{base}/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt{suffix}"],
                "minzoom": minzoom, "maxzoom": maxzoom, "bounds": bbox,
                "center": [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, max(minzoom, 13)],
                "vector_layers": [v for s in specs for v in s.vector_layers(scope)], "attribution": "brain"}

    @app.api_route("/tiles/{layer}/{z}/{x}/{y}.mvt", methods=["GET", "HEAD"],
                   summary="A Mapbox Vector Tile 2.1 of a layer (or of several joined by commas), filtered to the user",
             response_class=Response, openapi_extra=TILE_OPENAPI,
             responses={200: {"content": {MVT: {}}}, 422: {"description": "z, x or y is not an integer"}})
    async def tile(request: Request):
        # The busiest route reads its own parameters (documented by TILE_OPENAPI): FastAPI's per-request
        # dependency solving and validation took a sixth of a worker's time per tile (py-spy, bench/postgis.py).
        scope = await _scope(request, _token(request))
        layer, z, x, y = _tile_address(request)
        svc = _service(request)
        clock = svc.clock()
        t, hit = await svc.tiles.acomposite(layer, scope, z, x, y, clock)
        _audit(request, layer=layer, target=f"{z}/{x}/{y}", features=t.features)
        headers = {"X-Cache": "HIT" if hit else "MISS", "X-Features": str(t.features),
                   "Cache-Control": "private, max-age=60", "Vary": "Authorization, Cookie"}
        data = t.data
        if data and "gzip" in request.headers.get("accept-encoding", ""):
            data = t.gzip()
            headers["Content-Encoding"] = "gzip"
        return Response(data, media_type=MVT, headers=headers)

    @app.api_route("/outside/{z}/{x}/{y}.mvt", methods=["GET", "HEAD"], response_class=Response,
                   summary="A Mapbox Vector Tile of the world outside the user's unit (MVT layer `outside`), to dim it",
                   responses={200: {"content": {MVT: {}}}})
    def outside(request: Request, z: int, x: int, y: int, scope: Scope = Depends(scope_of)):
        svc = _service(request)
        t = svc.tiles.outside(scope, z, x, y)
        _audit(request, layer="outside", target=f"{z}/{x}/{y}", features=t.features)
        return Response(t.data, media_type=MVT, headers={"X-Features": str(t.features),
                                                         "Cache-Control": "private, max-age=60",
                                                         "Vary": "Authorization, Cookie"})

    @app.get("/archives", summary="The exported tile archives this user may read (README#exports)")
    def archive_list(request: Request, scope: Scope = Depends(scope_of)) -> list[dict]:
        svc = _service(request)
        out = archives.listing(svc.db, scope, svc.settings.archive_dir)
        _audit(request, features=len(out))
        return out

    @app.api_route("/archives/{name}", methods=["GET", "HEAD"], response_class=Response,
                   summary="One exported tile archive, by HTTP range (PMTiles clients read it so)")
    def archive_file(request: Request, name: str, scope: Scope = Depends(scope_of)):
        svc = _service(request)
        _audit(request, target=name)  # audited with its name even when refused
        path, media = archives.archive(svc.db, scope, svc.settings.archive_dir, name)
        # Starlette answers Range (206, multiple ranges, 416) and HEAD from the file
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=60",
                                                             "Vary": "Authorization, Cookie"})

    @app.api_route("/basemap.pmtiles", methods=["GET", "HEAD"], response_class=Response,
                   summary="The Protomaps basemap archive (BRAIN_BASEMAP_PMTILES), by HTTP range, to signed-in users")
    def basemap(request: Request, scope: Scope = Depends(scope_of)):
        path = _service(request).settings.basemap_pmtiles
        _audit(request, target="basemap")
        if path is None or not Path(path).is_file():
            raise NotFound("no basemap archive here: BRAIN_BASEMAP_PMTILES names none (or not a file)")
        # the whole district's streets and water: no feature of brain's, the same for every user
        return FileResponse(path, media_type="application/vnd.pmtiles",
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/units", summary="The admin-unit tree in scope, as GeoJSON")
    def units(request: Request, level: Optional[str] = None, geometry: bool = True,
              scope: Scope = Depends(scope_of)) -> dict:
        out = queries.unit_tree(_service(request).db, scope, level, geometry)
        _audit(request, target=level, features=len(out["features"]))
        return out

    @app.get("/units/{code}/metrics", summary="Indicators of one unit")
    def unit_metrics(request: Request, code: str, names: Optional[str] = Query(None, description="comma-separated"),
                     scope: Scope = Depends(scope_of)) -> dict:
        svc = _service(request)
        area = unit_area(svc.db, scope, code)
        out = svc.indicators(scope, area, names.split(",") if names else None)  # kept as the dashboards' are
        _audit(request, target=code)
        return {"unit": code, **out}

    @app.get("/units/{code}/ranking", summary="Child units ranked by one indicator (一月一排名)")
    def unit_ranking(request: Request, code: str, metric: str = "population",
                     scope: Scope = Depends(scope_of)) -> dict:
        svc = _service(request)
        out = ranking(svc.db, scope, code, metric, svc.clock())
        _audit(request, target=f"{code}:{metric}", features=len(out["ranking"]))
        return out

    @app.post("/metrics", summary="Indicators and resources of a drawn area, clipped to the user's scope",
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema": POLYGON_SCHEMA}}}})
    async def area_metrics(request: Request, page: int = Query(1, ge=1, le=100_000), size: int = Query(50, ge=1, le=500),
                           scope: Scope = Depends(scope_of)) -> dict:
        svc = _service(request)
        head = request.headers.get("content-length")
        if head and head.isdigit() and int(head) > svc.settings.max_body_bytes:
            raise TooLarge(f"request body of {int(head):,} bytes: the limit is {svc.settings.max_body_bytes:,}")
        body = await _body(request, svc.settings.max_body_bytes)
        clock = svc.clock()
        # parsing and repair run off the event loop (repair in its own process, with a time and memory budget)
        geom = await to_thread.run_sync(parse_area, body, AreaLimits.from_settings(svc.settings))
        xmin, ymin, xmax, ymax = geom.bounds
        target = f"bbox({xmin:.5f},{ymin:.5f},{xmax:.5f},{ymax:.5f})"
        _audit(request, target=target)  # audited with its target even if the work below fails
        area = Area(polygon=geom)

        def work():
            out = indicators(svc.db, scope, area, clock)
            out["resources"] = resources(svc.db, scope, area, page, size)
            return out

        out = await to_thread.run_sync(work)
        _audit(request, target=target, features=out["resources"]["total"])
        return {"area": {"bbox": [xmin, ymin, xmax, ymax], "vertices": int(shapely.get_num_coordinates(geom))},
                **out}

    @app.get("/search", summary="Buildings, organisations and (roles with personal access) people by name, in scope")
    def search(request: Request, q: str = Query(..., max_length=100), limit: int = Query(20, ge=1, le=100),
               scope: Scope = Depends(scope_of)) -> list[dict]:
        svc = _service(request)
        out = queries.search(svc.db, scope, q, limit, svc.clock())
        _audit(request, target=q, features=len(out))
        return out

    @app.get("/buildings/{building_id}", summary="Drill-down of one building: households, residents, events")
    def building(request: Request, building_id: str, scope: Scope = Depends(scope_of)) -> dict:
        svc = _service(request)
        out = queries.building(svc.db, scope, building_id, svc.clock())
        _audit(request, layer="buildings", target=building_id,
               features=sum(len(h["residents"]) for h in out["households"] or []))
        return out

    @app.get("/events", summary="Events in scope, newest first, filtered and paged")
    def event_list(request: Request, status: Optional[str] = None,
                   cls: Optional[str] = Query(None, alias="class"), unit: Optional[str] = None,
                   overdue: Optional[bool] = None, since: Optional[datetime] = None,
                   until: Optional[datetime] = None, page: int = Query(1, ge=1, le=100_000),
                   size: int = Query(50, ge=1, le=500), scope: Scope = Depends(scope_of)) -> dict:
        svc = _service(request)
        since, until = (_local(t, svc.settings.timezone) for t in (since, until))
        out = queries.events(svc.db, scope, svc.clock(), status=status, cls=cls, unit=unit, overdue=overdue,
                             since=since, until=until, page=page, size=size)
        _audit(request, layer="events", target=unit, features=len(out["items"]))
        return out

    if settings.dashboards:
        # The dashboards are assembled here, not imported by the library: brain.* imports without Dash.
        from a2wsgi import WSGIMiddleware

        from dashboards import create_dash

        dash_app = create_dash(lambda: app.state.service, settings.basemap_url, 4 * settings.max_body_bytes,
                               BASE_POLICY)
        dash_wsgi = WSGIMiddleware(dash_app.server)

        async def pages(scope, receive, send):
            # the Dash app answers its own paths only: any other unmatched path is a 404 a client can read (a
            # dashboard page with 200 for /tiles/buildings/16/1/1.pbf misleads GDAL and caches)
            path = scope.get("path", "")
            if scope["type"] == "http" and path != "/" and not path.startswith(DASH_PATHS):
                response = JSONResponse({"detail": f"no such path {path[:200]!r}: see /docs for the API"},
                                        status_code=404)
                return await response(scope, receive, send)
            if scope["type"] == "http" and path in ("/signin", "/signout") and scope["method"] != "POST":
                response = JSONResponse({"detail": f"{path} takes a POST from the sign-in page"}, status_code=405,
                                        headers={"Allow": "POST"})
                return await response(scope, receive, send)
            return await dash_wsgi(scope, receive, send)

        app.mount("/", pages)
    return app


def app_from_env() -> FastAPI:
    """The app of one worker process of `brain serve --workers N` (settings from BRAIN_* variables)."""
    return create_app(Settings())
