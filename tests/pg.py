"""Throwaway databases in the test Postgres (TABLESIDE_TEST_DATABASE_URL, default the CI server).

Never skips: if Postgres is not reachable the test fails loudly, naming the URL. A silently skipped
Postgres suite would hide exactly the bugs it exists for."""

from __future__ import annotations

import asyncio
import os
import secrets

import asyncpg
import pytest

from tableside.storage.migrate import upgrade_to_head
from tableside.storage.urls import to_plain_url, with_database

ADMIN_URL = os.environ.get("TABLESIDE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(to_plain_url(ADMIN_URL), timeout=10)
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL test server unreachable at {ADMIN_URL!r} (set TABLESIDE_TEST_DATABASE_URL): {exc!r}",
            pytrace=False,
        )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str = "ts", *, migrate: bool = True) -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = with_database(ADMIN_URL, name)
    if migrate:
        await upgrade_to_head(url)
    return url


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database_sync(prefix: str = "ts", *, migrate: bool = True) -> str:
    return asyncio.run(create_database(prefix, migrate=migrate))


def drop_database_sync(url: str) -> None:
    asyncio.run(drop_database(url))
