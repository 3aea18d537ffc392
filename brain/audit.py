"""The access audit: every request of the service becomes one row of `audit_log`.

Rows are queued in memory and written in one bulk append per flush (a background thread, every
`audit_flush_seconds`, and at shutdown): a row-per-request INSERT would cost more than a cached tile.
"""

from __future__ import annotations

import threading
from datetime import datetime

from brain.backend import Backend

COLUMNS = ("ts", "user_name", "role", "unit_code", "method", "endpoint", "layer", "target", "features", "status",
           "ms")


class AuditLog:
    """A buffered writer of audit rows."""

    def __init__(self, db: Backend, flush_seconds: float = 0.5):
        self.db = db
        self.flush_seconds = flush_seconds
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, user_name: str | None, role: str | None, unit_code: str | None, method: str, endpoint: str,
               layer: str | None, target: str | None, features: int | None, status: int, ms: float) -> None:
        """Queue one row (NUL characters shown as \\0: PostgreSQL text cannot hold them, and the row must land)."""
        endpoint, target = (v.replace("\x00", "\\0") if v else v for v in (endpoint, target))
        with self._lock:
            self._rows.append((datetime.now(), user_name, role, unit_code, method, endpoint, layer, target,
                               features, status, round(ms, 3)))

    def flush(self) -> int:
        """Write every queued row; return how many."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            self.db.append("audit_log", COLUMNS, rows)
            return len(rows)

    def start(self) -> None:
        """Flush in the background until stop()."""
        def loop() -> None:
            while not self._stop.wait(self.flush_seconds):
                self.flush()
        self._thread = threading.Thread(target=loop, name="audit-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and write what is left."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.flush()
