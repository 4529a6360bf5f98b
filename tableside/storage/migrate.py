"""Bring a database schema to the newest Alembic revision.

Called on every server start, possibly by several processes at once, so the upgrade runs inside a
transaction that first takes a transaction-scoped advisory lock: the second process waits, then finds the
database already at head and does nothing. Postgres DDL is transactional, so a crash mid-upgrade leaves the
previous revision intact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tableside.storage.embedded import quiet_library_logs
from tableside.storage.urls import to_async_url

if TYPE_CHECKING:
    from alembic.config import Config

# Resolved relative to this file so it works for editable and regular (site-packages) installs alike;
# pyproject's package-data ships storage/migrations/* and storage/migrations/versions/*.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary fixed key ("tbls" in ASCII) shared by every tableside process migrating this database.
MIGRATION_LOCK_KEY = 0x74626C73


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini), for ``connection`` or ``url``."""
    quiet_library_logs("alembic")  # before alembic's modules load: they log their plugin setup at import
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def _upgrade_on(connection: Connection) -> None:
    config = alembic_config(connection=connection)  # first: it quiets alembic before its modules load
    from alembic import command

    command.upgrade(config, "head")


async def upgrade_to_head(url: str) -> None:
    """Migrate the database at ``url`` to head; a no-op when already there. Safe to run concurrently."""
    await _run_locked(url, _upgrade_on)


async def _run_locked(url: str, migrate: Callable[[Connection], None]) -> None:
    """Run ``migrate`` in one transaction holding the migration lock until it commits, i.e. until the
    migrated schema is visible to the next process that takes the lock."""
    engine = create_async_engine(to_async_url(url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            await conn.run_sync(migrate)
    finally:
        await engine.dispose()


def head_revision() -> str:
    """The newest revision shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def downgrade_to(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (operators rolling back; migration tests)."""

    def run(connection: Connection) -> None:
        config = alembic_config(connection=connection)  # first: it quiets alembic before its modules load
        from alembic import command

        command.downgrade(config, revision)

    await _run_locked(url, run)


def upgrade_to_head_sync(url: str) -> None:
    """``upgrade_to_head`` for callers without a running event loop (CLI, test setup)."""
    asyncio.run(upgrade_to_head(url))


async def current_revision(url: str) -> str | None:
    """The revision stamped in the database, or None for an unmigrated one."""
    engine = create_async_engine(to_async_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            exists = (await conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL"))).scalar()
            if not exists:
                return None
            rev = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            return None if rev is None else str(rev)
    finally:
        await engine.dispose()
