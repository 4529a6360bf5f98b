"""One storage suite, two implementations: every test taking ``store`` runs on MemoryStore and PostgresStore.

Postgres: ``TABLESIDE_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) names a
server and a database we may connect to; the session creates a fresh ``tableside_t_<hex>`` database,
migrates it, truncates it before each test and drops it at the end. An unreachable server is an error,
never a skip - a silently skipped Postgres suite would hide exactly the bugs it exists for.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tableside.storage import MemoryStore, PostgresStore, Store
from tableside.storage.migrate import upgrade_to_head_sync
from tableside.storage.urls import to_plain_url, with_database

BASE_URL = os.environ.get("TABLESIDE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(to_plain_url(BASE_URL), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_scratch_database() -> str:
    """A new empty database on the test server; returns its URL. Fails the test loudly if unreachable."""
    name = f"tableside_t_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001 - any failure to reach Postgres must fail, not skip
        pytest.fail(
            f"PostgreSQL test server unreachable at {BASE_URL!r} (set TABLESIDE_TEST_DATABASE_URL): {e!r}",
            pytrace=False,
        )
    return with_database(BASE_URL, name)


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_scratch_database()
    try:
        upgrade_to_head_sync(url)
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def scratch_db_url() -> Iterator[str]:
    """A fresh, unmigrated database for migration tests."""
    url = create_scratch_database()
    try:
        yield url
    finally:
        drop_database(url)


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
