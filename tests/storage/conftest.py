"""One storage suite, two implementations: every test taking ``store`` runs on MemoryStore and PostgresStore.

Postgres: ``TABLESIDE_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) names a
server and a database we may connect to; the session creates a fresh ``tableside_t_<hex>`` database,
migrates it, truncates it before each test and drops it at the end. An unreachable server is an error,
never a skip - a silently skipped Postgres suite would hide exactly the bugs it exists for.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import create_database_sync, drop_database_sync


@pytest.fixture
def scratch_db_url() -> Iterator[str]:
    """A fresh, unmigrated database for migration tests."""
    url = create_database_sync("tableside_t", migrate=False)
    try:
        yield url
    finally:
        drop_database_sync(url)
