"""Settings of the service, read from BRAIN_* environment variables when the app or CLI is created."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of `brain serve`; each can be set as BRAIN_<NAME> (e.g. BRAIN_TILE_CACHE_MB=0)."""

    model_config = SettingsConfigDict(env_prefix="BRAIN_", extra="ignore")

    db: str = "duckdb:///data/brain.duckdb"
    archive_dir: Optional[Path] = Path("data/archives")
    """The folder of exported tile archives served at /archives (`brain export tiles --out` into it)."""
    tile_cache_mb: int = 256
    """Memory for cached tiles; 0 turns the cache off."""
    respond_limit_hours: float = 2.0
    """An event not dispatched within this many hours of its report is overdue to respond (源文件: 2 小时响应)."""
    close_limit_hours: float = 24.0
    """An event not closed within this many hours of its report is overdue to close (源文件: 1 天办结)."""
    timezone: str = "Asia/Shanghai"
    """The district's time zone: times in the database are its wall-clock times; a `since`/`until` sent with an
    offset (…+00:00, …Z) is converted to it."""
    as_of: datetime | None = None
    """The clock indicators are computed against (overdue, age bands); None means now."""
    max_body_bytes: int = 1_000_000
    max_vertices: int = 20_000
    """Vertices of a drawn area, before and after it is repaired."""
    max_parts: int = 500
    """Polygons of a drawn MultiPolygon, before and after it is repaired."""
    repair_seconds: float = 2.0
    """Time a self-intersecting drawn area may take to repair (in a child process); longer answers 413."""
    repair_memory_mb: int = 512
    """Memory that repair may use."""
    max_page_size: int = 500
    audit_flush_seconds: float = 0.5
    dashboards: bool = True
    """Serve the Dash apps at / in the same process (BRAIN_DASHBOARDS=0 serves the API alone)."""
    session_idle_minutes: float = 60
    """A dashboard session unused this long ends (sign in again)."""
    session_hours: float = 12
    """A dashboard session ends this long after sign-in, used or not (the cookie's lifetime too)."""
    signin_failures_per_name: int = 5
    """Failed sign-ins of one name within the window, after which that name waits."""
    signin_failures_per_address: int = 20
    """Failed sign-ins from one address within the window, after which that address waits."""
    signin_window_minutes: float = 15
    secure_cookies: bool = False
    """Send the session cookie only over HTTPS (set it when brain is served behind TLS; on by itself for https)."""
    public_url: str | None = None
    """The address clients reach brain at (e.g. https://map.example.gov.cn): tile and TileJSON URLs are made from
    it, never from the request's Host header. Unset: the server's own address and port the request arrived at."""
    basemap_url: str | None = None
    """An online raster basemap template ({z}/{x}/{y}); never required, the map draws our own units."""
    basemap_pmtiles: Optional[Path] = None
    """A Protomaps basemap archive (PMTiles v3) extracted for the district (`pmtiles extract`): served at
    /basemap.pmtiles by range requests to signed-in users and drawn under brain's layers, styled with
    @protomaps/basemaps (BRAIN_BASEMAP_PMTILES)."""
