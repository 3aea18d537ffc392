"""brain: an open-source geospatial city brain — one map (一张图) of a district.

    import brain
    s = brain.open("duckdb:///data/brain.duckdb", user="analyst")   # read as a user: brain.api
    s.layer("people", unit="440104001001")                          # a GeoDataFrame, in that user's scope

    db = brain.connect("duckdb:///data/brain.duckdb")                 # the raw database, no permission at all
"""

from brain.backend import Backend, connect
from brain.errors import BackendError, BrainError, ManifestError, SourceError

__all__ = ["Backend", "BackendError", "BrainError", "ManifestError", "SourceError", "connect", "open"]


def open(url=None, **kwargs):  # noqa: A001 — brain.open, as a planner writes it
    """A session reading the map as one user (`token=`, `user=` or `admin=True`): see `brain.api.open`."""
    from brain.api import open as _open  # imported on use: `import brain` stays light

    return _open(url, **kwargs)
__version__ = "0.1.0"
