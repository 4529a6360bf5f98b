"""Open the configured store: an external Postgres (URL given) or the embedded one (no URL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from tableside.config import ConfigError, StartupError, first_line
from tableside.storage.embedded import pgdata_dir, start_embedded_postgres
from tableside.storage.interface import Store
from tableside.storage.migrate import upgrade_to_head
from tableside.storage.postgres import PostgresStore
from tableside.storage.urls import to_plain_url

CONNECT_TIMEOUT_S = 10.0


def shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


async def check_reachable(url: str) -> None:
    """Connect once and hang up; a clear StartupError (not a traceback) when the database cannot be used."""
    try:
        plain = to_plain_url(url)
    except Exception as exc:
        raise ConfigError(f"database URL {shown_url(url)} is not a PostgreSQL URL (postgresql://...)") from exc
    try:
        conn = await asyncpg.connect(plain, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:
        raise StartupError(f"cannot connect to the database {shown_url(url)}: {first_line(exc)}") from exc
    await conn.close()


async def open_store(url: str | None, data_dir: Path, *, migrate: bool = True) -> tuple[Store, str]:
    """Return ``(store, url)``: ``url`` is the one actually used (the embedded server's when None was
    given), so other processes of a cluster can be pointed at the same database.

    Raises StartupError when the database cannot be reached or the embedded server cannot start."""
    if url is None:
        # Blocking work (initdb, pg_ctl, psql) kept off the event loop.
        try:
            url = await asyncio.to_thread(start_embedded_postgres, data_dir)
        except Exception as exc:
            log = pgdata_dir(data_dir) / "log"
            raise StartupError(f"could not start the embedded PostgreSQL: {first_line(exc)} (see {log})") from exc
    await check_reachable(url)
    if migrate:
        await upgrade_to_head(url)
    store = await PostgresStore.connect(url)
    return store, url
