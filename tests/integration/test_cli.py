"""The command line against a real database: migrate, staff add/list/passwd."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tableside.auth import StaffAuth
from tableside.storage.postgres import PostgresStore
from tests.pg import create_database_sync, drop_database_sync


@pytest.fixture
def empty_db() -> Iterator[str]:
    url = create_database_sync("ts_cli", migrate=False)
    yield url
    drop_database_sync(url)


def tableside(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TABLESIDE_CONFIG_FILE": "/nonexistent.yaml"}
    return subprocess.run(
        [sys.executable, "-m", "tableside", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_migrate_and_staff_commands(empty_db: str) -> None:
    done = tableside("migrate", "--database-url", empty_db)
    assert done.returncode == 0, done.stderr
    assert "latest migration" in done.stdout
    done = tableside("staff", "add", "kim", "--role", "kitchen", "--password", "first-pass", "--database-url", empty_db)
    assert done.returncode == 0, done.stderr
    done = tableside("staff", "list", "--database-url", empty_db)
    assert "kim\tkitchen\tactive" in done.stdout
    done = tableside("staff", "passwd", "kim", "--password", "second-pass", "--database-url", empty_db)
    assert done.returncode == 0, done.stderr
    done = tableside("staff", "passwd", "nobody", "--password", "x", "--database-url", empty_db)
    assert done.returncode == 1 and "no staff user" in done.stderr

    async def check() -> None:
        store = await PostgresStore.connect(empty_db)
        try:
            auth = StaffAuth(store, 3600)
            assert await auth.login("kim", "first-pass", 0.0) is None
            result = await auth.login("kim", "second-pass", 0.0)
            assert result is not None and result[1].role.value == "kitchen"
            user = await store.get_staff("kim")
            assert user is not None and user.password_hash.startswith("$argon2")
        finally:
            await store.close()

    asyncio.run(check())
