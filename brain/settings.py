"""Settings of the service, read from BRAIN_* environment variables when the app or CLI is created."""

from __future__ import annotations

from datetime import datetime

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of `brain serve`; each can be set as BRAIN_<NAME> (e.g. BRAIN_TILE_CACHE_MB=0)."""

    model_config = SettingsConfigDict(env_prefix="BRAIN_", extra="ignore")

    db: str = "duckdb:///data/brain.duckdb"
    tile_cache_mb: int = 256
    """Memory for cached tiles; 0 turns the cache off."""
    respond_limit_hours: float = 2.0
    """An event not dispatched within this many hours of its report is overdue to respond (源文件: 2 小时响应)."""
    close_limit_hours: float = 24.0
    """An event not closed within this many hours of its report is overdue to close (源文件: 1 天办结)."""
    as_of: datetime | None = None
    """The clock indicators are computed against (overdue, age bands); None means now."""
    max_body_bytes: int = 1_000_000
    max_vertices: int = 20_000
    max_page_size: int = 500
    audit_flush_seconds: float = 0.5
    portal_min_count: int = 5
    dashboards: bool = True
    """Serve the Dash apps at / in the same process (BRAIN_DASHBOARDS=0 serves the API alone)."""
    basemap_url: str | None = None
    """An online raster basemap template ({z}/{x}/{y}); never required, the map draws our own units."""
