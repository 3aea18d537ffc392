"""The access audit: every request of the service becomes one row of `audit_log`.

Rows are queued in memory and written in one bulk append per flush (a background thread, every
`audit_flush_seconds`, and at shutdown): a row-per-request INSERT would cost more than a cached tile.

A process killed before it flushes loses what it had queued. So each process records itself in `audit_runs`
(started, last flush, stopped); a process starting finds the runs that never stopped and whose process is gone,
and writes one `(audit gap)` row for each into `audit_log`: requests between that run's last flush and its end
may be missing from the log. A gap is recorded, never hidden.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime, timedelta

from brain.backend import Backend

RUNS_DDL = """CREATE TABLE IF NOT EXISTS audit_runs (
    run_id VARCHAR PRIMARY KEY,
    host VARCHAR,
    pid INTEGER,
    started_at TIMESTAMP,
    last_flush TIMESTAMP,
    stopped_at TIMESTAMP,
    crashed BOOLEAN DEFAULT false
)"""
#: A run that has not flushed for this long is taken for dead even when its host cannot be asked.
HEARTBEAT = timedelta(seconds=10)
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
        self._run: str | None = None
        self._beat = datetime.now()

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
            now = datetime.now()
            beat = self._run is not None and now - self._beat >= HEARTBEAT / 2
            if not rows and not beat:
                return 0
            with self.db.transaction():
                if rows:
                    self.db.append("audit_log", COLUMNS, rows)
                if self._run is not None:
                    self.db.execute("UPDATE audit_runs SET last_flush = ? WHERE run_id = ?", [now, self._run])
            self._beat = now
            return len(rows)

    def start(self) -> None:
        """Record this run, write a gap row for each run that died unflushed, then flush in the background."""
        self.db.execute(RUNS_DDL)
        self.record_gaps()
        self._run, self._beat = secrets.token_hex(8), datetime.now()
        self.db.execute("INSERT INTO audit_runs (run_id, host, pid, started_at, last_flush) VALUES (?, ?, ?, ?, ?)",
                        [self._run, socket.gethostname(), os.getpid(), self._beat, self._beat])

        def loop() -> None:
            while not self._stop.wait(self.flush_seconds):
                self.flush()
        self._thread = threading.Thread(target=loop, name="audit-flush", daemon=True)
        self._thread.start()

    def record_gaps(self) -> int:
        """Close every run whose process died without stopping, with an `(audit gap)` row each; return how many."""
        host, now = socket.gethostname(), datetime.now()
        gaps = 0
        for run, run_host, pid, last in self.db.query(
                "SELECT run_id, host, pid, last_flush FROM audit_runs WHERE stopped_at IS NULL"):
            if run_host == host and _alive(pid) and now - last < HEARTBEAT * 6:
                continue  # another worker of this service, at work
            if run_host != host and now - last < HEARTBEAT * 6:
                continue  # a worker on another machine, still flushing
            with self.db.transaction():
                self.db.append("audit_log", COLUMNS, [(
                    now, None, None, None, "-", "(audit gap)", None,
                    f"process {pid} on {run_host} ended without closing its audit: requests it answered after "
                    f"{last:%Y-%m-%d %H:%M:%S} may be missing", None, 0, 0.0)])
                self.db.execute("UPDATE audit_runs SET stopped_at = ?, crashed = true WHERE run_id = ?", [last, run])
            gaps += 1
        return gaps

    def stop(self) -> None:
        """Stop the background thread, write what is left and close this run."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.flush()
        if self._run is not None:
            self.db.execute("UPDATE audit_runs SET stopped_at = ? WHERE run_id = ?", [datetime.now(), self._run])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
