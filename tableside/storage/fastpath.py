"""The hot path's direct asyncpg pool: prepared statements without SQLAlchemy's per-statement overhead.

SQLAlchemy stays for the schema, the migrations and every cold path; the statements run per cart batch, per
join and per websocket connect go through here instead (``connection.prepare`` caches one server-side
prepared statement per connection, so each call is Bind/Execute only). The pool is opened lazily from the
engine's URL, so a ``PostgresStore`` built around an engine (as tests do) gets one too.

Errors keep the store's contract: a database that is down, restarting or drops the connection is
``StorageUnavailable`` (the server answers 503), never a raw driver exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from tableside.config import first_line
from tableside.storage.interface import StorageUnavailable

# asyncpg's "the database system is starting up / shutting down" and lost-connection errors.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
)


def asyncpg_dsn(url: URL) -> str:
    """The libpq-style DSN asyncpg takes, from an SQLAlchemy URL of any postgres driver."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _keep_session(conn: Any) -> None:
    return None


class RawPool:
    """A lazily opened ``asyncpg.Pool``. ``acquire()`` yields a connection whose failures to connect or
    mid-call disconnects surface as ``StorageUnavailable``."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _get(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    # Prepared statements are cached per connection by asyncpg (LRU of this size).
                    statement_cache_size=256,
                    # asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a round trip
                    # on every release; the hot path sets no session state, so releasing costs nothing.
                    # (An open transaction is still rolled back by the pool before this hook.)
                    reset=_keep_session,
                )
        return self._pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        try:
            pool = await self._get()
            conn = await pool.acquire()
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"database unavailable: {first_line(exc)}") from exc
        try:
            yield conn
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"database unavailable: {first_line(exc)}") from exc
        finally:
            try:
                await pool.release(conn)
            except UNAVAILABLE:
                pass  # a connection lost mid-call: the pool drops it

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except TimeoutError:
                pool.terminate()
            except UNAVAILABLE:
                pool.terminate()
