"""Throwaway databases in the test Postgres (TABLESIDE_TEST_DATABASE_URL, default the CI server).

Never skips: if Postgres is not reachable the tests fail loudly."""

from __future__ import annotations

import asyncio
import os
import secrets

import asyncpg

from tableside.storage.migrate import upgrade_to_head

ADMIN_URL = os.environ.get("TABLESIDE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def url_for(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def create_database(prefix: str = "ts") -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    except Exception as exc:  # make the cause obvious instead of a wall of connection errors
        raise RuntimeError(f"test Postgres not reachable at {ADMIN_URL}: {exc!r}") from exc
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = url_for(name)
    await upgrade_to_head(url)
    return url


async def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def create_database_sync(prefix: str = "ts") -> str:
    return asyncio.run(create_database(prefix))


def drop_database_sync(url: str) -> None:
    asyncio.run(drop_database(url))


TABLES_TO_TRUNCATE = (
    "tokens",
    "group_state",
    "orders",
    "staff_sessions",
    "staff_users",
    "menu_items",
    "tables",
    "restaurants",
)


async def truncate_all(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("TRUNCATE " + ", ".join(TABLES_TO_TRUNCATE) + " RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
