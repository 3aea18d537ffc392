"""brain: an open-source geospatial city brain — one map (一张图) of a district.

    import brain
    db = brain.connect("duckdb:///data/brain.duckdb")
    db.frame("SELECT grid_code, count(*) FROM people GROUP BY 1")
"""

from brain.backend import Backend, connect
from brain.errors import BackendError, BrainError, ManifestError, SourceError

__all__ = ["Backend", "BackendError", "BrainError", "ManifestError", "SourceError", "connect"]
__version__ = "0.1.0"
