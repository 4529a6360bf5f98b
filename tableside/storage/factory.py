"""Open the configured store: an external Postgres (URL given) or the embedded one (no URL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tableside.storage.embedded import start_embedded_postgres
from tableside.storage.interface import Store
from tableside.storage.migrate import upgrade_to_head
from tableside.storage.postgres import PostgresStore


async def open_store(url: str | None, data_dir: Path, *, migrate: bool = True) -> tuple[Store, str]:
    """Return ``(store, url)``: ``url`` is the one actually used (the embedded server's when None was
    given), so other processes of a cluster can be pointed at the same database."""
    if url is None:
        # Blocking work (initdb, pg_ctl, psql) kept off the event loop.
        url = await asyncio.to_thread(start_embedded_postgres, data_dir)
    if migrate:
        await upgrade_to_head(url)
    store = await PostgresStore.connect(url)
    return store, url
