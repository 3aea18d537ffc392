"""The HTTP service: assembles brain's library (catalog, scope, tiles, metrics, queries) behind FastAPI.

No SQL and no permission rule lives here: endpoints parse, call the library with the request's Scope, and
render. Domain errors map to HTTP codes in one table (ERRORS); every request is audited by one middleware.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Optional

import shapely
from anyio import to_thread
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyQuery, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from shapely.geometry import shape

from brain import queries
from brain.audit import AuditLog
from brain.auth import authenticate, hash_token, session_user
from brain.backend import Backend, connect
from brain.errors import BadRequest, BrainError, Forbidden, NotAuthenticated, NotFound, TooLarge
from brain.layers import derive
from brain.layers.catalog import CATALOG, MVT_TYPES
from brain.metrics import INDICATORS, Area, Clock, indicators, ranking, resources, unit_area
from brain.schema import data_version, init_schema
from brain.scope import Scope
from brain.settings import Settings
from brain.tiles.source import TileSource

ERRORS: dict[type[BrainError], int] = {
    NotAuthenticated: 401, Forbidden: 403, NotFound: 404, BadRequest: 400, TooLarge: 413, BrainError: 400,
}
SESSION_COOKIE = "brain_session"
AUTH_TTL = 5.0  # seconds a token → user lookup is reused; a removed user stops working within this
MVT = "application/vnd.mapbox-vector-tile"
JSON_TYPES = {"VARCHAR": "String", "BIGINT": "Number", "DOUBLE PRECISION": "Number", "BOOLEAN": "Boolean"}

bearer = HTTPBearer(auto_error=False, description="API token printed by `brain users add`")
token_query = APIKeyQuery(name="token", auto_error=False,
                          description="The same token, for map clients that cannot set headers")


#: The tile route's parameters as FastAPI would document them (the route reads them itself: see `tile`).
TILE_OPENAPI = {
    "parameters": [{"name": "layer", "in": "path", "required": True, "schema": {"type": "string", "title": "Layer"},
                    "description": "a layer id from /layers"}]
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
        self._users: dict[str, tuple[float, Any]] = {}

    def cached_user(self, secret: str | None):
        """The user of a token or session seen less than AUTH_TTL seconds ago, without touching the database."""
        hit = self._users.get(hash_token(secret)) if secret else None
        return hit[1] if hit and time.monotonic() - hit[0] < AUTH_TTL else None

    def user(self, token: str | None = None, session: str | None = None):
        """The user holding an API token or a dashboard session (cached for AUTH_TTL s), or NotAuthenticated."""
        secret = token or session
        if not secret:
            raise NotAuthenticated("no token: send `Authorization: Bearer TOKEN` or add ?token=TOKEN "
                                   "(create one with `brain users add`)")
        user = self.cached_user(secret)
        if user is None:
            user = authenticate(self.db, token) if token else session_user(self.db, session)
            self._users[hash_token(secret)] = (time.monotonic(), user)
        if user is None:
            raise NotAuthenticated("unknown or disabled token" if token else "session ended: sign in again")
        return user

    def forget(self, secret: str | None) -> None:
        """Drop a token or session from the auth cache (sign-out)."""
        if secret:
            self._users.pop(hash_token(secret), None)

    def clock(self) -> Clock:
        """The clock indicators of this request are computed against."""
        return Clock.from_settings(self.settings)


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
    user = svc.cached_user(tok or sid) or await to_thread.run_sync(svc.user, tok, sid)
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
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            state = scope.get("state") or {}
            user = state.get("user")
            svc = scope["app"].state.service if "app" in scope else None
            if svc is not None and user is None:
                # the dashboards' requests carry the session cookie; its user is in the auth cache already
                user = svc.cached_user(Request(scope).cookies.get(SESSION_COOKIE))
            if svc is not None:
                svc.audit.record(user.name if user else None, user.role.name if user else None,
                                 user.unit_code if user else None, scope["method"], scope["path"],
                                 state.get("layer"), state.get("target"), state.get("features"),
                                 status["code"], (time.perf_counter() - t0) * 1000)


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


def _geometry(body: bytes, settings: Settings):
    """A drawn area from a request body: GeoJSON Polygon/MultiPolygon, or a Feature of one (EPSG:4326)."""
    if len(body) > settings.max_body_bytes:
        raise TooLarge(f"request body of {len(body):,} bytes: the limit is {settings.max_body_bytes:,}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = doc.get("geometry")
    if not isinstance(doc, dict) or doc.get("type") not in ("Polygon", "MultiPolygon"):
        raise BadRequest("send a GeoJSON Polygon or MultiPolygon (or a Feature holding one), lon/lat in EPSG:4326")
    try:
        geom = shape(doc)
    except Exception as exc:  # shapely raises a zoo of types for malformed coordinates
        raise BadRequest(f"malformed {doc.get('type')} coordinates: {exc}") from None
    n = shapely.get_num_coordinates(geom)
    if n > settings.max_vertices:
        raise TooLarge(f"the polygon has {n:,} vertices: the limit is {settings.max_vertices:,}; simplify it")
    if geom.is_empty or n < 4:
        raise BadRequest("the polygon is empty: it needs at least three distinct corners")
    xmin, ymin, xmax, ymax = geom.bounds
    if not all(map(lambda v: v == v and abs(v) != float("inf"), geom.bounds)) \
            or xmin < -180 or xmax > 180 or ymin < -90 or ymax > 90:
        raise BadRequest("coordinates must be lon/lat degrees (EPSG:4326): lon in [-180, 180], lat in [-90, 90]")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.union_all(polys) if polys else shapely.Polygon()
    if geom.is_empty or geom.area == 0:
        raise BadRequest("the polygon has no area")
    return geom


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
                  lifespan=lifespan)
    app.add_middleware(AuditMiddleware)

    @app.exception_handler(BrainError)
    async def brain_error(request: Request, exc: BrainError):
        code = next(c for t, c in ERRORS.items() if isinstance(exc, t))
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
        base = str(request.base_url).rstrip("/")
        out = [_layer_json(l, scope, base) for l in CATALOG.values() if l.visible(scope)]
        _audit(request, features=len(out))
        return out

    @app.get("/indicators", summary="The indicator registry: names, labels, groups")
    def indicator_list(request: Request, scope: Scope = Depends(scope_of)) -> list[dict]:
        return [{"name": i.name, "label": i.label, "group": i.group, "kind": i.kind, "table": i.table}
                for i in INDICATORS.values()]

    @app.get("/tiles/{layer}/tilejson.json", summary="TileJSON 3.0.0 of a layer, for this user")
    def tilejson(request: Request, layer: str, scope: Scope = Depends(scope_of)) -> dict:
        svc = _service(request)
        spec = svc.tiles.layer(layer, scope)
        base = str(request.base_url).rstrip("/")
        suffix = f"?token={request.query_params['token']}" if "token" in request.query_params else ""
        tree = queries.unit_tree(svc.db, scope, level=scope.user.unit_level, geometry=False)
        bbox = tree["features"][0]["bbox"] if tree["features"] else [-180, -85, 180, 85]
        info = _layer_json(spec, scope, base)
        vector_layers = []
        for p in info["parts"]:
            part = next(x for x in spec.parts if x.name == p["name"])
            computed = {n for n, _ in part.computed}
            fields = {f: "String" if f == "id" else "Boolean" if f in computed
                      else JSON_TYPES[MVT_TYPES[part.field_type(f)]] for f in p["fields"]}
            if p["aggregate"]:
                fields.update({"code": "String", "name": "String"} | {a: "Number" for a in p["aggregate"]})
            vector_layers.append({"id": p["name"], "fields": fields, "minzoom": spec.minzoom,
                                  "maxzoom": spec.maxzoom, "description": spec.description})
        _audit(request, layer=layer)
        return {"tilejson": "3.0.0", "name": spec.title, "description": spec.description, "scheme": "xyz",
                "tiles": [f"{base}/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt{suffix}"],
                "minzoom": spec.minzoom, "maxzoom": spec.maxzoom, "bounds": bbox,
                "center": [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, max(spec.minzoom, 13)],
                "vector_layers": vector_layers, "attribution": "brain"}

    @app.get("/tiles/{layer}/{z}/{x}/{y}.mvt", summary="A Mapbox Vector Tile 2.1 of a layer, filtered to the user",
             response_class=Response, openapi_extra=TILE_OPENAPI,
             responses={200: {"content": {MVT: {}}}, 422: {"description": "z, x or y is not an integer"}})
    async def tile(request: Request):
        # The busiest route reads its own parameters (documented by TILE_OPENAPI): FastAPI's per-request
        # dependency solving and validation took a sixth of a worker's time per tile (py-spy, bench/postgis.py).
        scope = await _scope(request, _token(request))
        layer, z, x, y = _tile_address(request)
        svc = _service(request)
        clock = svc.clock()
        t = svc.tiles.cached(layer, scope, z, x, y, clock)
        hit = t is not None
        if t is None:
            t = await svc.tiles.abuild(layer, scope, z, x, y, clock)
        _audit(request, layer=layer, target=f"{z}/{x}/{y}", features=t.features)
        headers = {"X-Cache": "HIT" if hit else "MISS", "X-Features": str(t.features),
                   "Cache-Control": "private, max-age=60", "Vary": "Authorization, Cookie"}
        data = t.data
        if data and "gzip" in request.headers.get("accept-encoding", ""):
            data = t.gzip()
            headers["Content-Encoding"] = "gzip"
        return Response(data, media_type=MVT, headers=headers)

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
        out = indicators(svc.db, scope, area, svc.clock(), names.split(",") if names else None)
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
        geom = _geometry(await request.body(), svc.settings)
        area = Area(polygon=geom)
        clock = svc.clock()

        def work():
            out = indicators(svc.db, scope, area, clock)
            out["resources"] = resources(svc.db, scope, area, page, size)
            return out

        out = await to_thread.run_sync(work)
        xmin, ymin, xmax, ymax = geom.bounds
        _audit(request, target=f"bbox({xmin:.5f},{ymin:.5f},{xmax:.5f},{ymax:.5f})",
               features=out["resources"]["total"])
        return {"area": {"bbox": [xmin, ymin, xmax, ymax], "vertices": int(shapely.get_num_coordinates(geom))},
                **out}

    @app.get("/search", summary="Buildings, organisations and (roles with personal access) people by name, in scope")
    def search(request: Request, q: str = Query(..., max_length=100), limit: int = Query(20, ge=1, le=100),
               scope: Scope = Depends(scope_of)) -> list[dict]:
        out = queries.search(_service(request).db, scope, q, limit)
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
        out = queries.events(svc.db, scope, svc.clock(), status=status, cls=cls, unit=unit, overdue=overdue,
                             since=since, until=until, page=page, size=size)
        _audit(request, layer="events", target=unit, features=len(out["items"]))
        return out

    if settings.dashboards:
        # The dashboards are assembled here, not imported by the library: brain.* imports without Dash.
        from a2wsgi import WSGIMiddleware

        from dashboards import create_dash

        dash_app = create_dash(lambda: app.state.service, settings.basemap_url)
        app.mount("/", WSGIMiddleware(dash_app.server))
    return app


def app_from_env() -> FastAPI:
    """The app of one worker process of `brain serve --workers N` (settings from BRAIN_* variables)."""
    return create_app(Settings())
