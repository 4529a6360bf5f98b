"""One storage suite, two implementations: every test taking ``store`` runs on MemoryStore and PostgresStore.

Postgres: ``TABLESIDE_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) names a
server and a database we may connect to; the session creates a fresh ``tableside_t_<hex>`` database,
migrates it, truncates it before each test and drops it at the end. An unreachable server is an error,
never a skip - a silently skipped Postgres suite would hide exactly the bugs it exists for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tableside.storage import MemoryStore, PostgresStore, Store
from tests.pg import create_database_sync, drop_database_sync


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_database_sync("tableside_t")
    try:
        yield url
    finally:
        drop_database_sync(url)


@pytest.fixture
def scratch_db_url() -> Iterator[str]:
    """A fresh, unmigrated database for migration tests."""
    url = create_database_sync("tableside_t", migrate=False)
    try:
        yield url
    finally:
        drop_database_sync(url)


@pytest.fixture(params=["memory", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    # Sync on purpose: pg_url's setup uses asyncio.run, which cannot run inside the test's event loop.
    if request.param == "memory":
        return ("memory", None)
    return ("postgres", request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(store_kind: tuple[str, str | None]) -> AsyncIterator[Store]:
    kind, url = store_kind
    if kind == "memory":
        yield MemoryStore()
        return
    assert url is not None
    pg = await PostgresStore.connect(url)
    await pg.truncate_all()
    try:
        yield pg
    finally:
        await pg.close()


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    """The Postgres store alone, for what only a real database has (row locks, several processes)."""
    pg = await PostgresStore.connect(pg_url)
    await pg.truncate_all()
    try:
        yield pg
    finally:
        await pg.close()
