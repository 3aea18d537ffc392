"""Small helpers for the planners' notebooks: maps with pydeck that work with no internet.

`deck_html` writes a pydeck map as one HTML file that loads nothing from the network. pydeck's own
`to_html(offline=True)` inlines the deck.gl bundle, but its page template still links mapbox-gl.js, Bootstrap and
Font Awesome CSS, MapLibre's CSS and the widgets' CSS from CDNs whatever the options (pydeck 0.9.3,
`pydeck/io/templates/index.j2`); with no map provider none of them is used, so they are dropped here rather
than left to fail (or to leak the planner's visit) on a machine that reaches no CDN.
"""

from __future__ import annotations

import re
from pathlib import Path

_REMOTE = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)\s*=\s*["']?https?://[^>]*>(?:\s*</script>)?""", re.I)


def deck_html(deck, path: str | Path) -> Path:
    """Write the deck (built with `map_provider=None`) as a self-contained HTML file; returns its path."""
    html = deck.to_html(as_string=True, offline=True, notebook_display=False)
    html = _REMOTE.sub("", html)
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path


def outline_layer(units, color=(60, 60, 60), width=1):
    """Unit outlines as the base of a map (our own data: no basemap provider)."""
    import pydeck as pdk

    return pdk.Layer("GeoJsonLayer", data=units[["code", "name", "geometry"]].__geo_interface__, stroked=True,
                     filled=False, get_line_color=list(color), line_width_min_pixels=width, pickable=False)


def view_of(units, zoom: float = 12):
    """A view centred on the units."""
    import pydeck as pdk

    x0, y0, x1, y1 = units.total_bounds
    return pdk.ViewState(longitude=(x0 + x1) / 2, latitude=(y0 + y1) / 2, zoom=zoom)
