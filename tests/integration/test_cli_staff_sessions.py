"""`tableside staff passwd/add/remove` end the sessions of the user they change (a real database)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tableside.auth import StaffAuth, token_hash
from tableside.storage.postgres import PostgresStore
from tests.integration.test_cli import tableside
from tests.pg import create_database_sync, drop_database_sync

NOW = 1_700_000_000.0


@pytest.fixture
def db() -> Iterator[str]:
    url = create_database_sync("ts_cli")
    yield url
    drop_database_sync(url)


def login(url: str, username: str, password: str) -> str:
    async def go() -> str:
        store = await PostgresStore.connect(url)
        try:
            result = await StaffAuth(store, 3600).login(username, password, NOW)
            assert result is not None
            return result[0]
        finally:
            await store.close()

    return asyncio.run(go())


def session_alive(url: str, token: str) -> bool:
    async def go() -> bool:
        store = await PostgresStore.connect(url)
        try:
            return await store.resolve_staff_session(token_hash(token), NOW) is not None
        finally:
            await store.close()

    return asyncio.run(go())


def test_staff_commands_end_sessions(db: str) -> None:
    done = tableside("staff", "add", "kim", "--role", "kitchen", "--password", "first-pass", "--database-url", db)
    assert done.returncode == 0, done.stderr
    token = login(db, "kim", "first-pass")
    done = tableside("staff", "passwd", "kim", "--password", "second-pass", "--database-url", db)
    assert done.returncode == 0 and "1 session ended" in done.stdout, done.stdout + done.stderr
    assert not session_alive(db, token)

    token = login(db, "kim", "second-pass")
    done = tableside("staff", "add", "kim", "--role", "kitchen", "--password", "third-pass", "--database-url", db)
    assert done.returncode == 0, done.stderr
    assert not session_alive(db, token)

    token = login(db, "kim", "third-pass")
    done = tableside("staff", "remove", "kim", "--database-url", db)
    assert done.returncode == 0, done.stderr
    assert not session_alive(db, token)
    done = tableside("staff", "list", "--database-url", db)
    assert "kim" not in done.stdout
    done = tableside("staff", "remove", "kim", "--database-url", db)
    assert done.returncode == 1 and "no staff user" in done.stderr
