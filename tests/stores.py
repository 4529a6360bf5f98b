"""Store fixtures shared by the storage and actor suites (registered in tests/conftest.py): ``store`` runs a
test on both stores (memory and a real Postgres database), ``pg_store`` on Postgres alone."""

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
