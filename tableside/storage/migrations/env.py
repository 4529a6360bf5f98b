"""Alembic environment for tableside.

At runtime ``tableside.storage.migrate`` builds the Alembic ``Config`` in code and hands us an open
synchronous connection (``config.attributes["connection"]``) on which it already holds the migration
advisory lock, so no alembic.ini is needed. For manual use (``alembic -c ... upgrade head``) the URL can be
given as ``config.attributes["url"]`` or the ``sqlalchemy.url`` main option; we then open our own async
(asyncpg) engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tableside.storage.schema import metadata
from tableside.storage.urls import to_async_url

config = context.config


def _run_on_connection(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(to_async_url(url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_on_connection)
    finally:
        await engine.dispose()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on_connection(connection)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set config.attributes['url'] or sqlalchemy.url")
    asyncio.run(_run_with_own_engine(str(url)))


if context.is_offline_mode():
    context.configure(
        url=str(config.attributes.get("url") or config.get_main_option("sqlalchemy.url")),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
