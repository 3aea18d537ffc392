"""Storage backends behind one small protocol; DuckDB with its spatial extension is the embedded default.

Nothing above this module imports duckdb: it opens a backend from a URL and speaks through the protocol.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence
from urllib.parse import urlparse

import pandas as pd

from brain.errors import BackendError

DEFAULT_URL = "duckdb:///data/brain.duckdb"


class Backend(Protocol):
    """What the rest of brain needs from a database."""

    url: str
    dialect: str

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement with bound parameters."""

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run a query and return its rows."""

    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query and return a DataFrame."""

    async def aquery(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """`query` for the service's event loop: it waits for the database without blocking other requests."""

    def append(self, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        """Add rows (tuples in the order of `columns`) to a table, in one bulk write."""

    def register(self, name: str, df: pd.DataFrame) -> None:
        """Expose a DataFrame to SQL under `name` for the current connection."""

    def unregister(self, name: str) -> None:
        """Drop a registered DataFrame."""

    def transaction(self) -> contextlib.AbstractContextManager:
        """All statements inside commit together or not at all."""

    def close(self) -> None:
        """Release the connection."""

    async def aclose(self) -> None:
        """Release what `aquery` opened on the running event loop (before `close`)."""


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (the one place identifiers are quoted)."""
    return '"' + str(name).replace('"', '""') + '"'


def lonlat_point(db: Backend, x: str, y: str) -> str:
    """SQL for a WGS84 point from two SQL expressions, comparable with the stored `geom` columns.

    PostGIS refuses to compare geometries of different SRIDs, and stored geometries carry 4326 there; DuckDB
    geometries carry none.
    """
    return f"ST_SetSRID(ST_Point({x}, {y}), 4326)" if db.dialect == "postgis" else f"ST_Point({x}, {y})"


def lonlat_box(db: Backend) -> str:
    """SQL for a WGS84 box from four bound values (xmin, ymin, xmax, ymax), comparable with the `geom` columns."""
    return "ST_MakeEnvelope(?, ?, ?, ?, 4326)" if db.dialect == "postgis" else "ST_MakeEnvelope(?, ?, ?, ?)"


def as_wkb(db: Backend, expr: str) -> str:
    """SQL for a geometry expression as WKB bytes (PostGIS spells it ST_AsBinary, DuckDB ST_AsWKB)."""
    return f"ST_AsBinary({expr})" if db.dialect == "postgis" else f"ST_AsWKB({expr})"


def spatial_extension_path() -> Path:
    """Path of the spatial extension shipped by the PyPI package duckdb-extension-spatial."""
    import duckdb
    import duckdb_extension_spatial

    base = Path(duckdb_extension_spatial.__file__).parent / "extensions"
    wanted = base / f"v{duckdb.__version__}" / "spatial.duckdb_extension"
    if wanted.exists():
        return wanted
    found = sorted(base.glob("*/spatial.duckdb_extension"))
    raise BackendError(
        f"duckdb {duckdb.__version__} needs duckdb-extension-spatial=={duckdb.__version__}; "
        f"found {[p.parent.name for p in found]} — run `make setup`"
    )


def write_conflict(exc: BaseException) -> bool:
    """Whether an error is another transaction having written the same rows first (DuckDB's optimistic
    concurrency; a serialization failure on PostgreSQL): the write may be retried or, if it only repeats the
    other one, dropped."""
    import duckdb

    if isinstance(exc, duckdb.TransactionException) and "onflict" in str(exc):
        return True
    return type(exc).__name__ in ("SerializationFailure", "LockNotAvailable")


class DuckDBBackend:
    """A DuckDB file (or :memory:) with the spatial extension loaded."""

    dialect = "duckdb"

    def __init__(self, path: str | os.PathLike, read_only: bool = False, memory_limit: str | None = None):
        import duckdb

        self.path = str(path)
        self.url = f"duckdb:///{self.path}"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            hint = (" — another process (a running `brain serve`?) holds it: DuckDB lets one process write a file, "
                    "so stop that process first") if "lock" in str(exc).lower() else ""
            raise BackendError(f"cannot open {self.path}: {exc}{hint}") from exc
        # One cursor (a connection to the same database) per thread: the service's worker threads run their
        # queries in parallel instead of queueing on one connection, which is not thread-safe.
        self._local = threading.local()
        self._cursors: list = []
        self._lock = threading.Lock()
        self._load_spatial()
        # DuckDB takes 80% of RAM by default; a bound keeps big ingests predictable (it spills to disk).
        limit = memory_limit or os.environ.get("BRAIN_DUCKDB_MEMORY_LIMIT", "2GB")
        self._con.execute("SET memory_limit = ?", [limit])

    def _load_spatial(self) -> None:
        import duckdb

        try:
            self._con.execute("LOAD spatial")
        except duckdb.Error:
            # Offline install from the wheel: never reach for the extension repository.
            # INSTALL takes no bound parameter; the path is ours, quoted as an SQL string literal.
            literal = str(spatial_extension_path()).replace("'", "''")
            self._con.execute(f"INSTALL '{literal}'")
            self._con.execute("LOAD spatial")

    def _cur(self):
        cur = getattr(self._local, "cur", None)
        if cur is None:
            if threading.current_thread() is threading.main_thread():
                cur = self._con
            else:
                cur = self._con.cursor()
                with self._lock:
                    self._cursors.append(cur)
            self._local.cur = cur
        return cur

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement with bound parameters."""
        self._cur().execute(sql, params or [])

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run a query and return its rows."""
        return self._cur().execute(sql, params or []).fetchall()

    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query and return a DataFrame."""
        return self._cur().execute(sql, params or []).df()

    async def aquery(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """`query` in a worker thread (DuckDB has no asynchronous API; each thread has its own cursor)."""
        from anyio import to_thread

        return await to_thread.run_sync(self.query, sql, params)

    async def aclose(self) -> None:
        """Nothing to release: `aquery` runs on the threads' cursors, which `close` closes."""

    def append(self, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        """Add rows to a table: DuckDB inserts a DataFrame fastest (executemany goes row by row)."""
        name = f"_append_{threading.get_ident()}"
        self.register(name, pd.DataFrame(list(rows), columns=list(columns)))
        try:
            self.execute(f"INSERT INTO {quote_ident(table)} ({', '.join(map(quote_ident, columns))}) "
                         f"SELECT * FROM {quote_ident(name)}")
        finally:
            self.unregister(name)

    def register(self, name: str, df: pd.DataFrame) -> None:
        """Expose a DataFrame to SQL under `name` (for this thread's connection)."""
        self._cur().register(name, df)

    def unregister(self, name: str) -> None:
        """Drop a registered DataFrame."""
        self._cur().unregister(name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside commit together or not at all."""
        cur = self._cur()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def close(self) -> None:
        """Close the file (and every thread's cursor)."""
        with self._lock:
            for cur in self._cursors:
                with contextlib.suppress(Exception):
                    cur.close()
            self._cursors.clear()
        self._con.close()


@functools.lru_cache(maxsize=512)  # the service sends the same few statements (tiles) thousands of times
def to_pyformat(sql: str) -> str:
    """brain's `?` placeholders as psycopg's `%s`; `%` doubled. Quoted text and identifiers are left alone."""
    out, quote = [], None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


PG_TYPES = {"i": "BIGINT", "u": "BIGINT", "f": "DOUBLE PRECISION", "b": "BOOLEAN", "M": "TIMESTAMP"}


class PostGISBackend:
    """A PostgreSQL/PostGIS database through a psycopg 3 connection pool."""

    dialect = "postgis"

    def __init__(self, url: str, max_size: int | None = None):
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        size = max_size or int(os.environ.get("BRAIN_PG_POOL_MAX", "20"))
        # A map asks a dozen small tile queries at once. Starting parallel workers costs ~10 ms, more than a
        # tile takes without them (an events tile at z15: 20 ms with a parallel bitmap scan, 7 ms without), so
        # the planner is told they cost that much; scans of a whole district (indicators) still get them.
        setup_cost = float(os.environ.get("BRAIN_PG_PARALLEL_SETUP_COST", "50000"))
        try:
            psycopg.connect(url, connect_timeout=5).close()  # a wrong URL fails now, with the server's reason
            self._kwargs = {"autocommit": True, "options": f"-c parallel_setup_cost={setup_cost:g}"}
            self._pool = ConnectionPool(url, min_size=1, max_size=size, open=True, timeout=10, kwargs=self._kwargs)
            self._pool.wait(timeout=10)
        except (psycopg.Error, Exception) as exc:  # the pool wraps connection errors in its own types
            raise BackendError(f"cannot connect to {_redact(url)}: {exc}") from exc
        self._size = size
        self._apool = None  # (event loop, AsyncConnectionPool): opened by the first aquery on that loop
        self._local = threading.local()
        self.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    @contextlib.contextmanager
    def _use(self):
        # A connection per statement, back to the pool at once; a thread inside a transaction, or holding a
        # registered frame (a temporary table lives on its connection), keeps its own until it lets go.
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
        else:
            with self._pool.connection() as conn:
                yield conn

    def _pin(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._pool.getconn()
            self._local.conn, self._local.pins = conn, 0
        self._local.pins += 1
        return conn

    def _unpin(self) -> None:
        self._local.pins -= 1
        if self._local.pins <= 0:
            conn, self._local.conn = self._local.conn, None
            self._pool.putconn(conn)

    def _run(self, conn, sql: str, params):
        import psycopg

        cur = conn.cursor()
        try:
            # without parameters psycopg leaves `%` alone, so only a parameterised statement is translated
            cur.execute(to_pyformat(sql) if params else sql, params or None)
        except psycopg.errors.UndefinedFunction as exc:
            cur.close()
            raise _not_ported(exc) from exc
        return cur

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement with bound parameters."""
        with self._use() as conn:
            self._run(conn, sql, params).close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run a query and return its rows."""
        with self._use() as conn, self._run(conn, sql, params) as cur:
            return cur.fetchall()

    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query and return a DataFrame."""
        with self._use() as conn, self._run(conn, sql, params) as cur:
            cols = [d.name for d in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    async def aquery(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """`query` on an asynchronous pool of the running event loop: no hop to a worker thread and back, which
        cost a tile request a fifth of the service's own work.

        Rows come in PostgreSQL's binary format, so a tile's bytes are not hex-encoded by the server and decoded
        here (the values are the same Python types as `query`'s for everything brain selects).
        """
        import psycopg

        pool = await self._async_pool()
        async with pool.connection() as conn:
            try:
                cur = await conn.execute(to_pyformat(sql) if params else sql, params or None, binary=True)
            except psycopg.errors.UndefinedFunction as exc:
                raise _not_ported(exc) from exc
            return await cur.fetchall()

    async def _async_pool(self):
        import asyncio

        from psycopg_pool import AsyncConnectionPool

        loop = asyncio.get_running_loop()
        if self._apool is None or self._apool[0] is not loop:  # a pool belongs to the loop that opened it
            pool = AsyncConnectionPool(self.url, min_size=1, max_size=self._size, open=False, timeout=10,
                                       kwargs=self._kwargs)
            await pool.open(wait=True, timeout=10)
            if self._apool is not None and self._apool[0] is loop:  # another request opened one meanwhile
                await pool.close()
            else:
                self._apool = (loop, pool)
        return self._apool[1]

    async def aclose(self) -> None:
        """Close the asynchronous pool of the running event loop, if `aquery` opened one."""
        if self._apool is not None:
            pool, self._apool = self._apool[1], None
            await pool.close()

    def append(self, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        """Add rows to a table with COPY (the values go as they are: no DataFrame, no temporary table)."""
        cols = ", ".join(map(quote_ident, columns))
        with self._use() as conn, conn.cursor().copy(f"COPY {quote_ident(table)} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def register(self, name: str, df: pd.DataFrame) -> None:
        """Expose a DataFrame to SQL as a temporary table of this thread's connection (loaded with COPY)."""
        def pg_type(col: pd.Series) -> str:
            if col.dtype.kind == "O":
                first = col.dropna().head(1).tolist()
                return "BYTEA" if first and isinstance(first[0], (bytes, bytearray, memoryview)) else "TEXT"
            return PG_TYPES.get(col.dtype.kind, "TEXT")

        cols = ", ".join(f"{quote_ident(c)} {pg_type(df[c])}" for c in df.columns)
        conn = self._pin()  # held until unregister(): the temporary table lives on this connection
        conn.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")
        conn.execute(f"CREATE TEMP TABLE {quote_ident(name)} ({cols})")
        with conn.cursor().copy(f"COPY {quote_ident(name)} FROM STDIN") as copy:
            for row in df.itertuples(index=False, name=None):
                copy.write_row([None if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)
                                else bytes(v) if isinstance(v, (bytearray, memoryview)) else v for v in row])

    def unregister(self, name: str) -> None:
        """Drop a registered DataFrame (and let its connection go back to the pool)."""
        from psycopg.pq import TransactionStatus

        conn = self._local.conn
        try:  # in a failed transaction the rollback drops it; a DROP there would hide the first error
            if conn.info.transaction_status != TransactionStatus.INERROR:
                conn.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")
        finally:
            self._unpin()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside commit together or not at all (on one connection held meanwhile)."""
        conn = self._pin()
        try:
            with conn.transaction():
                yield
        finally:
            self._unpin()

    def close(self) -> None:
        """Close the pool (and its connections)."""
        self._pool.close()


def _not_ported(exc: Exception) -> BackendError:
    return BackendError(f"postgis: {str(exc).splitlines()[0]} — not ported to PostGIS yet")


def _redact(url: str) -> str:
    p = urlparse(url)
    return url.replace(f":{p.password}@", ":***@") if p.password else url


def connect(url: str | None = None, read_only: bool = False) -> Backend:
    """Open a backend from a URL: `duckdb:///relative/or//absolute/path.duckdb` or `duckdb:///:memory:`."""
    url = url or DEFAULT_URL
    parsed = urlparse(url)
    if parsed.scheme == "duckdb":
        path = url[len("duckdb:///"):] if url.startswith("duckdb:///") else parsed.path
        if not path:
            raise BackendError(f"no file in {url!r}: write duckdb:///path/to/file.duckdb")
        return DuckDBBackend(path, read_only=read_only)
    if parsed.scheme in ("postgresql", "postgres"):
        return PostGISBackend(url)
    raise BackendError(f"unknown database URL {url!r}: use duckdb:///path/to/file.duckdb")
