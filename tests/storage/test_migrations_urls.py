"""Migrations, URL handling and the embedded server (Postgres-only, not parametrized)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tableside.storage import GroupSnapshot, GroupWrite, PostgresStore, Restaurant, Table, TableStatus
from tableside.storage.migrate import (
    MIGRATIONS_DIR,
    current_revision,
    downgrade_to,
    head_revision,
    upgrade_to_head,
)
from tableside.storage.schema import metadata
from tableside.storage.urls import to_async_url, to_plain_url


async def test_migrate_is_idempotent_and_concurrency_safe(scratch_db_url: str) -> None:
    assert await current_revision(scratch_db_url) is None
    # two "processes" starting at once: the advisory lock lets one migrate, the other finds head
    await asyncio.gather(upgrade_to_head(scratch_db_url), upgrade_to_head(scratch_db_url))
    assert await current_revision(scratch_db_url) == head_revision()
    store = await PostgresStore.connect(scratch_db_url)
    try:
        await store.upsert_restaurant(Restaurant(1, "R"))
        await store.commit_writes([GroupWrite(GroupSnapshot("g", "t", 1, 1, {"k": 1}), 0)])
        await upgrade_to_head(scratch_db_url)  # again: a no-op that keeps the data
        assert await current_revision(scratch_db_url) == head_revision()
        assert await store.get_restaurant(1) == Restaurant(1, "R")
        assert (await store.load_group("g")) == GroupSnapshot("g", "t", 1, 1, {"k": 1})
    finally:
        await store.close()


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
    return list(compare_metadata(ctx, metadata))


async def test_migrated_schema_matches_schema_module(pg_url: str) -> None:
    engine = create_async_engine(to_async_url(pg_url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            seq = (await conn.execute(text("SELECT to_regclass('kitchen_seq_seq') IS NOT NULL"))).scalar()
    finally:
        await engine.dispose()
    assert diff == []
    assert seq


def test_migrations_shipped_next_to_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert any(p.name.startswith("0001") for p in (MIGRATIONS_DIR / "versions").glob("*.py"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db.example:5433/app", "postgresql+asyncpg://u:p@db.example:5433/app"),
        ("postgres://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        (
            "postgresql://postgres:@/tableside?host=/tmp/x/pg",
            "postgresql+asyncpg://postgres:@/tableside?host=%2Ftmp%2Fx%2Fpg",
        ),
    ],
)
def test_to_async_url(given: str, expected: str) -> None:
    assert to_async_url(given) == expected


def test_to_async_url_rejects_other_databases() -> None:
    with pytest.raises(ValueError):
        to_async_url("mysql://u@h/db")


def test_plain_url_round_trip() -> None:
    assert to_plain_url("postgresql+asyncpg://u@h:1/db") == "postgresql://u@h:1/db"
    assert to_plain_url("postgres://u@/db?host=/run/pg").startswith("postgresql://u@/db?host=")


async def test_store_over_unix_socket(pg_url: str) -> None:
    # The server says where its socket is (no hard-coded directory): the same database over it.
    conn = await asyncpg.connect(to_plain_url(pg_url))
    try:
        socket_dirs = await conn.fetchval("SHOW unix_socket_directories")
        port = await conn.fetchval("SHOW port")
    finally:
        await conn.close()
    socket_dir = socket_dirs.split(",")[0].strip()
    assert socket_dir and os.path.exists(f"{socket_dir}/.s.PGSQL.{port}"), socket_dirs
    dbname = pg_url.rsplit("/", 1)[1].split("?", 1)[0]
    socket_url = f"postgresql://postgres@/{dbname}?host={socket_dir}&port={port}"
    store = await PostgresStore.connect(socket_url)
    try:
        async with store.engine.connect() as conn2:
            addr = (await conn2.execute(text("SELECT inet_client_addr()"))).scalar()
        assert addr is None  # NULL client address == a unix-domain connection
        await store.upsert_restaurant(Restaurant(7, "socket"))
        assert await store.get_restaurant(7) == Restaurant(7, "socket")
    finally:
        await store.close()


async def test_open_store_with_url_migrates(scratch_db_url: str, tmp_path: Path) -> None:
    from tableside.storage.factory import open_store

    store, used = await open_store(scratch_db_url, tmp_path)
    try:
        assert used == scratch_db_url and isinstance(store, PostgresStore)
        assert await current_revision(scratch_db_url) == head_revision()
        await store.upsert_restaurant(Restaurant(1, "R"))
    finally:
        await store.close()


def test_embedded_postgres_start_connect_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tableside.storage.embedded import start_embedded_postgres, stop_embedded_postgres

    t0 = time.monotonic()
    monkeypatch.chdir(tmp_path)
    data_dir = Path("var")  # relative on purpose: the embedded package needs an absolute pgdata
    url = start_embedded_postgres(data_dir)
    try:
        assert url.startswith("postgresql://postgres") and url.split("?")[0].endswith("/tableside")
        assert start_embedded_postgres(data_dir) == url  # reattach: same server

        async def roundtrip() -> None:
            await upgrade_to_head(url)
            store = await PostgresStore.connect(url)
            try:
                await store.upsert_restaurant(Restaurant(1, "embedded"))
                assert await store.get_restaurant(1) == Restaurant(1, "embedded")
            finally:
                await store.close()
            conn = await asyncpg.connect(url)
            try:
                assert await conn.fetchval("SELECT current_database()") == "tableside"
            finally:
                await conn.close()

        asyncio.run(roundtrip())
    finally:
        stop_embedded_postgres(data_dir)
    assert not (tmp_path / "var" / "postgres" / "postmaster.pid").exists()
    stop_embedded_postgres(data_dir)  # stopping a stopped server is a no-op

    # data survives a restart
    url2 = start_embedded_postgres(tmp_path / "var")
    try:

        async def check() -> None:
            store = await PostgresStore.connect(url2)
            try:
                assert await store.get_restaurant(1) == Restaurant(1, "embedded")
            finally:
                await store.close()

        asyncio.run(check())
    finally:
        stop_embedded_postgres(tmp_path / "var")
    assert time.monotonic() - t0 < 20


async def assert_users_schema(url: str) -> None:
    """Seed 003 section 2.1: the users columns and types, email/phone/line_id under unique indexes; and
    user_sessions with its cascading foreign key and indexed expiry."""
    conn = await asyncpg.connect(to_plain_url(url))
    try:
        rows = await conn.fetch(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_name = 'users'"
        )
        cols = {r["column_name"]: (r["data_type"], r["character_maximum_length"], r["is_nullable"]) for r in rows}
        assert cols == {
            "id": ("uuid", None, "NO"),
            "name": ("character varying", 255, "NO"),
            "email": ("character varying", 255, "YES"),
            "phone": ("character varying", 20, "YES"),
            "line_id": ("character varying", 50, "YES"),
            "password_hash": ("text", None, "NO"),
            "created_at": ("timestamp with time zone", None, "NO"),
            "updated_at": ("timestamp with time zone", None, "NO"),
        }
        defaults = {r["column_name"]: r["column_default"] for r in rows}
        assert defaults["created_at"] == defaults["updated_at"] == "now()"
        assert await conn.fetchval(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'users'::regclass AND i.indisprimary"
        ) == "id"
        unique = await conn.fetch(
            "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = 'users'::regclass AND i.indisunique AND NOT i.indisprimary"
        )
        assert {(r["relname"], r["attname"]) for r in unique} == {
            ("ix_users_email", "email"), ("ix_users_phone", "phone"), ("ix_users_line_id", "line_id")}
        assert await conn.fetchval(
            "SELECT confdeltype::text FROM pg_constraint WHERE conrelid = 'user_sessions'::regclass AND contype = 'f'"
        ) == "c"  # ON DELETE CASCADE
        assert await conn.fetchval("SELECT to_regclass('ix_user_sessions_expires_at') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('ix_user_sessions_user_id') IS NOT NULL")
    finally:
        await conn.close()


async def fetch_users_gone(url: str) -> bool:
    conn = await asyncpg.connect(to_plain_url(url))
    try:
        return bool(await conn.fetchval("SELECT to_regclass('users') IS NULL AND to_regclass('user_sessions') IS NULL"))
    finally:
        await conn.close()


async def test_every_migration_downgrades_and_upgrades_again(scratch_db_url: str) -> None:
    """upgrade → downgrade step by step to the first revision → upgrade, with data kept across 0002 and 0003,
    and 0005's users / user_sessions (seed 003's columns, types and unique indexes) gone and back."""
    await upgrade_to_head(scratch_db_url)
    assert head_revision() == "0009"
    await assert_users_schema(scratch_db_url)
    await downgrade_to(scratch_db_url, "0004")
    assert await current_revision(scratch_db_url) == "0004"
    assert await fetch_users_gone(scratch_db_url)
    await downgrade_to(scratch_db_url, "0003")

    async def fetch(sql: str) -> object:
        conn = await asyncpg.connect(to_plain_url(scratch_db_url))
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def username_index() -> bool:
        return bool(await fetch("SELECT to_regclass('ix_staff_sessions_username') IS NOT NULL"))

    async def group_columns() -> set[str]:
        names = await fetch(
            "SELECT array_agg(column_name::text) FROM information_schema.columns"
            " WHERE table_name = 'group_state' AND column_name IN ('epoch', 'owner_node')"
        )
        assert names is None or isinstance(names, list)
        return {str(n) for n in names or []}

    assert await username_index()
    assert await group_columns() == {"epoch", "owner_node"}
    # At 0003 (the old shape, table "restaurants"): raw SQL, as the store code now speaks 0004.
    await execute(scratch_db_url, "INSERT INTO restaurants (restaurant_id, name) VALUES (1, 'R')")
    await execute(
        scratch_db_url,
        "INSERT INTO group_state (group_id, table_id, restaurant_id, revision, state, updated_at, epoch)"
        " VALUES ('g', 't', 1, 1, '{\"k\": 1}', 0, 1)",
    )
    await downgrade_to(scratch_db_url, "0002")
    assert await current_revision(scratch_db_url) == "0002"
    assert await group_columns() == set()
    assert await fetch("SELECT revision FROM group_state WHERE group_id = 'g'") == 1
    await downgrade_to(scratch_db_url, "0001")
    assert await current_revision(scratch_db_url) == "0001"
    assert not await username_index()
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009" and await username_index()
    await assert_users_schema(scratch_db_url)
    assert await group_columns() == {"epoch", "owner_node"}
    # a row that predates 0003 starts at epoch 0: the first activation makes it 1
    assert await fetch("SELECT epoch FROM group_state WHERE group_id = 'g'") == 0
    store = await PostgresStore.connect(scratch_db_url)
    try:
        assert await store.get_restaurant(1) == Restaurant(1, "R")
        assert (await store.load_group("g")) == GroupSnapshot("g", "t", 1, 1, {"k": 1})
        assert (await store.activate_group("g", "t", 1, "node-b")).epoch == 1
    finally:
        await store.close()


async def execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(to_plain_url(url))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def fetch_rows(url: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(to_plain_url(url))
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_0004_turns_the_single_restaurant_into_the_first_store_and_back(scratch_db_url: str) -> None:
    """The data of a deployment at 0003 (one restaurant with a table, a menu, an order, a counter, staff)
    survives upgrade to 0004 (the restaurant is store 1 with default hours, staff bound to it) and a
    downgrade back to 0003 (the old shape, same rows), and the store code works on the migrated data."""
    await upgrade_to_head(scratch_db_url)
    await downgrade_to(scratch_db_url, "0003")
    await execute(
        scratch_db_url,
        "INSERT INTO restaurants (restaurant_id, name, next_order_number) VALUES (1, 'Bistro', 42)",
        "INSERT INTO tables (table_id, restaurant_id, name, status, qr_secret, updated_at)"
        " VALUES ('T001', 1, 'Table 1', 'vacant', 'sekret', 0)",
        "INSERT INTO menu_items (menu_item_id, restaurant_id, name, category, price)"
        " VALUES ('miso', 1, 'Miso', 'Starters', 350)",
        "INSERT INTO orders (order_id, order_number, restaurant_id, table_id, group_id, status, items, total,"
        " placed_by, created_at, kitchen_seq) VALUES ('ORD-1-41', 41, 1, 'T001', 'g1', 'confirmed', '[]', 350,"
        " 'm1', 1, 7)",
        "INSERT INTO staff_users (username, role, password_hash) VALUES ('mgr', 'manager', 'h'), ('root', 'admin', 'h')",
    )
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"  # head: 0004 stores, 0005 users, 0006 guests, 0007 till, 0008 reservations, 0009 group_ops
    assert await fetch_rows(scratch_db_url, "SELECT to_regclass('restaurants') IS NULL") == [(True,)]
    assert await fetch_rows(
        scratch_db_url, "SELECT username, store_id FROM staff_users ORDER BY username"
    ) == [("mgr", 1), ("root", None)]
    store = await PostgresStore.connect(scratch_db_url)
    try:
        first = await store.get_restaurant(1)
        assert first is not None and first.name == "Bistro" and first.timezone == "UTC"
        assert first.business_hours["mon"] == [["11:00", "22:00"]] and first.business_hours["closed_dates"] == []
        assert first.created_at > 0
        assert [r.restaurant_id for r in await store.list_restaurants()] == [1]
        table = await store.get_table("T001")
        assert table is not None and table.restaurant_id == 1 and table.qr_secret == "sekret"
        assert [m.menu_item_id for m in await store.list_menu(1)] == ["miso"]
        assert [o.order_id for o in await store.list_kitchen_orders(1, 0, 10)] == ["ORD-1-41"]
        assert await store.next_order_number(1) == 42  # the counter continues, no number reused
        mgr = await store.get_staff("mgr")
        assert mgr is not None and mgr.store_id == 1
        await store.add_table(Table("T002", 1, "Table 2", TableStatus.VACANT, None, "s2", 0.0))  # FK to stores
    finally:
        await store.close()
    await downgrade_to(scratch_db_url, "0003")
    assert await fetch_rows(
        scratch_db_url, "SELECT restaurant_id, name, next_order_number FROM restaurants"
    ) == [(1, "Bistro", 43)]
    assert await fetch_rows(scratch_db_url, "SELECT to_regclass('stores') IS NULL") == [(True,)]
    assert await fetch_rows(scratch_db_url, "SELECT table_id FROM tables ORDER BY table_id") == [("T001",), ("T002",)]
    assert await fetch_rows(scratch_db_url, "SELECT order_id FROM orders") == [("ORD-1-41",)]
    assert await fetch_rows(scratch_db_url, "SELECT username FROM staff_users ORDER BY 1") == [("mgr",), ("root",)]
    cols = await fetch_rows(
        scratch_db_url, "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'staff_users'"
    )
    assert ("store_id",) not in cols
    await upgrade_to_head(scratch_db_url)  # and up again
    store = await PostgresStore.connect(scratch_db_url)
    try:
        again = await store.get_restaurant(1)
        assert again is not None and again.name == "Bistro"
        assert await store.next_order_number(1) == 43
    finally:
        await store.close()


async def test_a_database_that_cannot_be_reached_is_one_typed_error() -> None:
    """Down, restarting or a lost connection: ``StorageUnavailable`` (the server's 503), never a driver
    exception of its own kind."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from tableside.storage.interface import StorageUnavailable
    from tableside.storage.postgres import PostgresStore

    dead = PostgresStore(create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing"))
    try:
        with pytest.raises(StorageUnavailable, match="database unavailable"):
            await dead.get_table("T001")
        with pytest.raises(StorageUnavailable):
            await dead.resolve_token("x" * 64, 0.0)
    finally:
        await dead.close()


async def test_a_query_cancelled_midway_stays_a_cancellation(pg_url: str) -> None:
    """The outage translation must never turn a task's cancellation into an error (a server stopping
    would then wait forever for tasks that were told to stop)."""
    import asyncio

    import sqlalchemy as sa

    from tableside.storage.postgres import PostgresStore

    store = await PostgresStore.connect(pg_url)
    try:
        async def slow() -> None:
            async with store.engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(5)"))

        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert task.cancelled()
    finally:
        await store.close()


async def test_0006_guest_tables_columns_indexes_cascade_and_round_trip(scratch_db_url: str) -> None:
    """Seed 001's acceptance checks: guest_sessions / guest_cart_items with their columns and types, the
    unique session_id index, the expires_at index, deleting a session cascades its cart rows, the quantity
    CHECK; then downgrade to 0005 (gone) and upgrade again (back)."""
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"  # head

    async def columns(table: str) -> dict[str, tuple[str, str, int | None]]:
        rows = await fetch_rows(
            scratch_db_url,
            "SELECT column_name::text, data_type::text, is_nullable::text, character_maximum_length"
            f" FROM information_schema.columns WHERE table_name = '{table}'",
        )
        return {str(r[0]): (str(r[1]), str(r[2]), r[3]) for r in rows}  # type: ignore[misc]

    tz = "timestamp with time zone"
    assert await columns("guest_sessions") == {
        "id": ("integer", "NO", None),
        "session_id": ("character varying", "NO", 64),
        "selected_store_id": ("integer", "YES", None),
        "created_at": (tz, "NO", None),
        "expires_at": (tz, "NO", None),
        "converted_to_user_id": ("uuid", "YES", None),
        "last_accessed_at": (tz, "NO", None),
    }
    assert await columns("guest_cart_items") == {
        "id": ("integer", "NO", None),
        "session_id": ("character varying", "NO", 64),
        "menu_item_id": ("text", "NO", None),
        "quantity": ("integer", "NO", None),
        "added_at": (tz, "NO", None),
        "updated_at": (tz, "NO", None),
    }
    indexes = dict(
        await fetch_rows(
            scratch_db_url,
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename IN ('guest_sessions', 'guest_cart_items')",
        )
    )
    assert "UNIQUE INDEX ix_guest_sessions_session_id" in str(indexes["ix_guest_sessions_session_id"])
    assert "(expires_at)" in str(indexes["ix_guest_sessions_expires_at"])
    assert "(session_id)" in str(indexes["ix_guest_cart_items_session_id"])
    assert "UNIQUE" in str(indexes["uq_guest_cart_items_session_item"])
    sid = "a" * 64
    await execute(
        scratch_db_url,
        "INSERT INTO stores (store_id, name, business_hours, created_at) VALUES (1, 'R', '{}', 0)",
        "INSERT INTO menu_items (menu_item_id, restaurant_id, name, category, price) VALUES ('m', 1, 'M', 'C', 1)",
        f"INSERT INTO guest_sessions (session_id, selected_store_id, expires_at) VALUES ('{sid}', 1, now())",
        f"INSERT INTO guest_cart_items (session_id, menu_item_id) VALUES ('{sid}', 'm')",
    )
    assert await fetch_rows(scratch_db_url, "SELECT quantity FROM guest_cart_items") == [(1,)]  # default 1
    with pytest.raises(asyncpg.CheckViolationError):
        await execute(scratch_db_url, "UPDATE guest_cart_items SET quantity = 100")
    with pytest.raises(asyncpg.UniqueViolationError):
        await execute(scratch_db_url, f"INSERT INTO guest_cart_items (session_id, menu_item_id) VALUES ('{sid}', 'm')")
    await execute(scratch_db_url, f"DELETE FROM guest_sessions WHERE session_id = '{sid}'")
    assert await fetch_rows(scratch_db_url, "SELECT count(*) FROM guest_cart_items") == [(0,)]  # cascaded
    await downgrade_to(scratch_db_url, "0005")
    assert await fetch_rows(
        scratch_db_url, "SELECT to_regclass('guest_sessions') IS NULL AND to_regclass('guest_cart_items') IS NULL"
    ) == [(True,)]
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"  # head
    assert "id" in await columns("guest_cart_items")


async def test_0007_till_tables_round_trip(scratch_db_url: str) -> None:
    """Seed 002's order_sessions / tabs / transactions: columns, the partial unique index (one open session
    per user), the status CHECKs, exactly one source per transaction and one transaction per source; then
    downgrade to 0006 (gone) and upgrade again (back)."""
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"

    async def columns(table: str) -> dict[str, tuple[str, str]]:
        rows = await fetch_rows(
            scratch_db_url,
            "SELECT column_name::text, data_type::text, is_nullable::text"
            f" FROM information_schema.columns WHERE table_name = '{table}'",
        )
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    dbl = "double precision"
    assert await columns("order_sessions") == {
        "id": ("integer", "NO"),
        "user_id": ("text", "NO"),
        "store_id": ("integer", "NO"),
        "items": ("jsonb", "NO"),
        "status": ("text", "NO"),
        "created_at": (dbl, "NO"),
        "updated_at": (dbl, "NO"),
        "logout_time": (dbl, "YES"),
        "tab_id": ("integer", "YES"),
        "till_id": ("text", "YES"),
        "revision": ("bigint", "NO"),
        "transaction_id": ("integer", "YES"),
        "order_id": ("text", "YES"),
    }
    assert await columns("tabs") == {
        "id": ("integer", "NO"),
        "store_id": ("integer", "NO"),
        "name": ("text", "NO"),
        "table_id": ("text", "YES"),
        "group_id": ("text", "YES"),
        "status": ("text", "NO"),
        "created_at": (dbl, "NO"),
        "closed_at": (dbl, "YES"),
    }
    assert await columns("transactions") == {
        "id": ("integer", "NO"),
        "store_id": ("integer", "NO"),
        "tab_id": ("integer", "YES"),
        "order_session_id": ("integer", "YES"),
        "lines": ("jsonb", "NO"),
        "total": ("bigint", "NO"),
        "payment_method": ("text", "NO"),
        "created_at": (dbl, "NO"),
    }
    indexes = {
        str(k): str(v)
        for k, v in await fetch_rows(
            scratch_db_url,
            "SELECT indexname::text, indexdef FROM pg_indexes"
            " WHERE tablename IN ('order_sessions', 'tabs', 'transactions')",
        )
    }
    assert "(user_id, status)" in indexes["ix_order_sessions_user_id_status"]
    open_user = indexes["uq_order_sessions_open_user"]
    assert "UNIQUE INDEX" in open_user and "(user_id)" in open_user and "WHERE" in open_user
    assert "'active'" in open_user and "'pending_logout'" in open_user
    assert "UNIQUE INDEX" in indexes["ix_tabs_group_id"] and "WHERE (group_id IS NOT NULL)" in indexes["ix_tabs_group_id"]
    assert "(store_id, status)" in indexes["ix_tabs_store_id_status"]
    assert "UNIQUE" in indexes["uq_transactions_tab_id"] and "UNIQUE" in indexes["uq_transactions_order_session_id"]

    await execute(
        scratch_db_url,
        "INSERT INTO stores (store_id, name, business_hours, created_at) VALUES (1, 'R', '{}', 0)",
        "INSERT INTO staff_users (username, role, password_hash) VALUES ('al', 'server', 'h')",
        "INSERT INTO order_sessions (user_id, store_id, items, status, created_at, updated_at, revision)"
        " VALUES ('al', 1, '[]', 'completed', 0, 0, 2), ('al', 1, '[]', 'active', 0, 0, 1)",
        "INSERT INTO tabs (store_id, name, group_id, created_at) VALUES (1, 'T1', 'g1', 0)",
    )
    assert await fetch_rows(scratch_db_url, "SELECT status FROM tabs") == [("open",)]  # default open
    with pytest.raises(asyncpg.UniqueViolationError):  # a second open session of the user
        await execute(
            scratch_db_url,
            "INSERT INTO order_sessions (user_id, store_id, items, status, created_at, updated_at, revision)"
            " VALUES ('al', 1, '[]', 'pending_logout', 0, 0, 1)",
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await execute(scratch_db_url, "UPDATE order_sessions SET status = 'paid'")
    with pytest.raises(asyncpg.CheckViolationError):
        await execute(scratch_db_url, "UPDATE tabs SET status = 'gone'")
    with pytest.raises(asyncpg.UniqueViolationError):  # one tab per sitting
        await execute(scratch_db_url, "INSERT INTO tabs (store_id, name, group_id, created_at) VALUES (1, 'x', 'g1', 0)")
    await execute(scratch_db_url, "INSERT INTO tabs (store_id, name, created_at) VALUES (1, 'a', 0), (1, 'b', 0)")
    tx = "INSERT INTO transactions (store_id, tab_id, order_session_id, lines, total, payment_method, created_at)"
    with pytest.raises(asyncpg.CheckViolationError):  # neither source
        await execute(scratch_db_url, f"{tx} VALUES (1, NULL, NULL, '[]', 0, 'card', 0)")
    with pytest.raises(asyncpg.CheckViolationError):  # both sources
        await execute(scratch_db_url, f"{tx} VALUES (1, 1, 1, '[]', 0, 'card', 0)")
    await execute(scratch_db_url, f"{tx} VALUES (1, 1, NULL, '[]', 0, 'card', 0), (1, NULL, 1, '[]', 0, 'cash', 0)")
    with pytest.raises(asyncpg.UniqueViolationError):  # a tab is paid once
        await execute(scratch_db_url, f"{tx} VALUES (1, 1, NULL, '[]', 0, 'card', 0)")
    with pytest.raises(asyncpg.UniqueViolationError):  # a session is paid once
        await execute(scratch_db_url, f"{tx} VALUES (1, NULL, 1, '[]', 0, 'card', 0)")

    await downgrade_to(scratch_db_url, "0006")
    assert await current_revision(scratch_db_url) == "0006"
    assert await fetch_rows(
        scratch_db_url,
        "SELECT to_regclass('order_sessions') IS NULL AND to_regclass('tabs') IS NULL"
        " AND to_regclass('transactions') IS NULL",
    ) == [(True,)]
    assert await fetch_rows(scratch_db_url, "SELECT to_regclass('guest_sessions') IS NOT NULL") == [(True,)]
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"
    assert "revision" in await columns("order_sessions")
    store = await PostgresStore.connect(scratch_db_url)
    try:
        assert (await store.create_tab(1, "again", 5.0)).status == "open"
    finally:
        await store.close()


async def test_0008_reservations_round_trip(scratch_db_url: str) -> None:
    """Seed 003's staff / menus / reservations / payments, the waitlist and the JSONB documents: columns,
    CHECKs, the exclusion constraint (two overlapping rows of one staff member refused by the database, an
    adjacent one, another staff member's and a canceled one accepted), the partial unique waitlist index;
    then downgrade to 0007 (tables gone, btree_gist kept) and upgrade again (back and working)."""
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"

    async def columns(table: str) -> dict[str, tuple[str, str]]:
        rows = await fetch_rows(
            scratch_db_url,
            "SELECT column_name::text, data_type::text, is_nullable::text"
            f" FROM information_schema.columns WHERE table_name = '{table}'",
        )
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}

    tz = "timestamp with time zone"
    assert await columns("reservations") == {
        "id": ("uuid", "NO"),
        "user_id": ("uuid", "NO"),
        "store_id": ("integer", "NO"),
        "staff_id": ("uuid", "NO"),
        "menu_id": ("uuid", "NO"),
        "start_time": (tz, "NO"),
        "end_time": (tz, "NO"),
        "status": ("text", "NO"),
        "notes": ("text", "YES"),
        "party_size": ("integer", "NO"),
        "table_id": ("text", "YES"),
        "group_id": ("text", "YES"),
        "hold_expires_at": (tz, "YES"),
        "created_at": (tz, "NO"),
        "updated_at": (tz, "NO"),
    }
    assert await columns("staff") == {
        "id": ("uuid", "NO"), "store_id": ("integer", "NO"), "name": ("character varying", "NO"),
        "role": ("character varying", "NO"), "bookable": ("boolean", "NO"), "created_at": (tz, "NO"),
    }
    assert await columns("menus") == {
        "id": ("uuid", "NO"), "store_id": ("integer", "NO"), "name": ("character varying", "NO"),
        "price": ("bigint", "NO"), "duration": ("integer", "NO"), "bookable": ("boolean", "NO"),
        "sort_order": ("integer", "NO"),
    }
    assert await columns("payments") == {
        "id": ("uuid", "NO"), "reservation_id": ("uuid", "NO"), "user_id": ("uuid", "NO"),
        "amount": ("bigint", "NO"), "status": ("text", "NO"), "idempotency_key": ("text", "NO"),
        "created_at": (tz, "NO"), "updated_at": (tz, "NO"),
    }
    assert set(await columns("waitlist")) == {
        "id", "user_id", "store_id", "menu_id", "staff_id", "start_time", "status", "offered_until",
        "offered_staff_id", "reservation_id", "created_at"}
    assert await columns("reservation_history") == {
        "user_id": ("uuid", "NO"), "doc": ("jsonb", "NO"), "updated_at": (tz, "NO")}
    assert await columns("chat_logs") == {
        "user_id": ("uuid", "NO"), "channel": ("character varying", "NO"), "logs": ("jsonb", "NO"),
        "updated_at": (tz, "NO")}
    [(exdef,)] = await fetch_rows(
        scratch_db_url,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conname = 'ex_reservations_staff_time' AND contype = 'x'",
    )
    assert "EXCLUDE USING gist" in str(exdef) and "staff_id WITH =" in str(exdef)
    assert "tstzrange(start_time, end_time, '[)'::text) WITH &&" in str(exdef)
    assert "WHERE ((status <> 'canceled'::text))" in str(exdef)

    chef, somm, menu, user = (
        "00000000-0000-4000-8000-00000000c4ef", "00000000-0000-4000-8000-00000000501e",
        "00000000-0000-4000-8000-0000000000c1", "00000000-0000-4000-8000-0000000000a1")

    def resv(n: int, staff: str, start: str, end: str, status: str = "pending") -> str:
        return (
            "INSERT INTO reservations (id, user_id, store_id, staff_id, menu_id, start_time, end_time, status)"
            f" VALUES ('00000000-0000-4000-8000-{n:012d}', '{user}', 1, '{staff}', '{menu}',"
            f" '2026-12-01 {start}+00', '2026-12-01 {end}+00', '{status}')"
        )

    async def fill() -> None:
        await execute(
            scratch_db_url,
            "INSERT INTO stores (store_id, name, business_hours, created_at) VALUES (1, 'R', '{}', 0)",
            f"INSERT INTO users (id, name, password_hash) VALUES ('{user}', 'Ann', 'h')",
            f"INSERT INTO staff (id, store_id, name, role) VALUES ('{chef}', 1, 'Kenji', 'chef'),"
            f" ('{somm}', 1, 'Aiko', 'sommelier')",
            f"INSERT INTO menus (id, store_id, name, price, duration) VALUES ('{menu}', 1, 'Omakase', 12000, 60)",
            resv(1, chef, "12:00", "13:00"),
        )
        with pytest.raises(asyncpg.ExclusionViolationError):  # overlapping, same staff
            await execute(scratch_db_url, resv(2, chef, "12:30", "13:30"))
        with pytest.raises(asyncpg.ExclusionViolationError):
            await execute(scratch_db_url, resv(2, chef, "11:00", "14:00", "confirmed"))
        await execute(
            scratch_db_url,
            resv(3, chef, "13:00", "14:00"),  # adjacent: [12, 13) and [13, 14) do not overlap
            resv(4, somm, "12:00", "13:00"),  # another staff member
            resv(5, chef, "12:00", "13:00", "canceled"),  # canceled rows hold nothing
        )
        await execute(scratch_db_url, "UPDATE reservations SET status = 'canceled' WHERE id::text LIKE '%000000000001'")
        await execute(scratch_db_url, resv(6, chef, "12:00", "13:00"))  # the freed slot
        with pytest.raises(asyncpg.ExclusionViolationError):  # un-canceling into a taken slot is refused too
            await execute(scratch_db_url, "UPDATE reservations SET status = 'pending' WHERE id::text LIKE '%000000000005'")
        with pytest.raises(asyncpg.CheckViolationError):
            await execute(scratch_db_url, resv(7, somm, "15:00", "15:00"))  # end > start
        with pytest.raises(asyncpg.CheckViolationError):
            await execute(scratch_db_url, "UPDATE reservations SET status = 'done'")
        with pytest.raises(asyncpg.CheckViolationError):
            await execute(scratch_db_url, "UPDATE reservations SET party_size = 51")
        with pytest.raises(asyncpg.CheckViolationError):
            await execute(scratch_db_url, "UPDATE menus SET duration = 0")
        assert await fetch_rows(scratch_db_url, "SELECT DISTINCT party_size FROM reservations") == [(2,)]
        wl = ("INSERT INTO waitlist (user_id, store_id, menu_id, start_time, status)"
              f" VALUES ('{user}', 1, '{menu}', '2026-12-01 12:00+00', ")
        await execute(scratch_db_url, wl + "'waiting')", wl + "'expired')", wl + "'expired')")
        with pytest.raises(asyncpg.UniqueViolationError):  # one open entry per customer and slot
            await execute(scratch_db_url, wl + "'offered')")
        await execute(
            scratch_db_url,
            f"INSERT INTO reservation_history (user_id, doc) VALUES ('{user}', '{{\"history\": []}}')",
            f"INSERT INTO chat_logs (user_id, channel, logs) VALUES ('{user}', 'LINE', '[]')",
        )

    await fill()
    await downgrade_to(scratch_db_url, "0007")
    assert await current_revision(scratch_db_url) == "0007"
    assert await fetch_rows(
        scratch_db_url,
        "SELECT bool_and(to_regclass(t) IS NULL) FROM unnest(ARRAY['staff', 'menus', 'reservations', 'payments',"
        " 'waitlist', 'reservation_history', 'chat_logs']) AS t",
    ) == [(True,)]
    assert await fetch_rows(scratch_db_url, "SELECT count(*) FROM pg_extension WHERE extname = 'btree_gist'") == [(1,)]
    assert await fetch_rows(scratch_db_url, "SELECT to_regclass('tabs') IS NOT NULL") == [(True,)]
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"
    await execute(scratch_db_url, "DELETE FROM users", "DELETE FROM stores")
    await fill()  # the same checks hold after the round trip


async def test_0009_op_log_migrates_existing_groups_and_downgrades_once_folded(scratch_db_url: str) -> None:
    """Groups written the old way (a whole snapshot per write) at 0008 become snapshots of their own revision
    at 0009 (``last_updated`` from the state); the store loads them and appends op records after them;
    downgrade refuses while records are not folded into a snapshot, works once they are, and upgrade again."""
    from tableside.actors.cart import GroupState, op_record

    await upgrade_to_head(scratch_db_url)
    await downgrade_to(scratch_db_url, "0008")
    assert await current_revision(scratch_db_url) == "0008"
    old = GroupState()
    old.add_member("m1")
    old.add_line("miso", "Miso Soup", 2, 350, "", "m1")
    old.touch(1_700_000_123.5)
    old.revision = 7
    state = old.to_snapshot()
    await execute(
        scratch_db_url,
        "INSERT INTO group_state (group_id, table_id, restaurant_id, revision, state, updated_at, epoch, owner_node)"
        f" VALUES ('g-old', 'T1', 1, 7, '{json.dumps(state)}', 0, 3, 'node-a'),"
        "        ('g-new', 'T2', 1, 0, '{}', 0, 1, 'node-a')",
    )
    await upgrade_to_head(scratch_db_url)
    assert await fetch_rows(
        scratch_db_url, "SELECT group_id, revision, snapshot_revision, last_updated FROM group_state ORDER BY 1"
    ) == [("g-new", 0, 0, 0.0), ("g-old", 7, 7, 1_700_000_123.5)]
    store = await PostgresStore.connect(scratch_db_url)
    try:
        assert await store.load_group("g-old") == GroupSnapshot("g-old", "T1", 1, 7, state)
        assert await store.load_group("g-new") is None
        activation = await store.activate_group("g-old", "T1", 1, "node-b")
        assert (activation.epoch, activation.snapshot, activation.ops) == (4, GroupSnapshot("g-old", "T1", 1, 7, state), [])
        # The server goes on with op records after the migrated snapshot.
        now = GroupState.from_snapshot(7, state)
        now.set_qty("L1", 5)
        now.touch(1_700_000_200.0)
        record = op_record(now, 7)
        write = GroupWrite(GroupSnapshot("g-old", "T1", 1, 8, {}), 7, epoch=4, ops=record)
        assert await store.commit_writes([write]) == [None]
        current = GroupSnapshot("g-old", "T1", 1, 8, json.loads(json.dumps(now.to_snapshot())))
        assert await store.load_group("g-old") == current
        # Not folded: the old code would read revision 8 with revision 7's state. Refused, nothing changed.
        with pytest.raises(Exception, match="group_ops"):
            await downgrade_to(scratch_db_url, "0008")
        assert await current_revision(scratch_db_url) == "0009"
        # A clean stop folds the log (a snapshot of the same revision); then downgrade works.
        now.take_ops()
        assert await store.commit_writes([GroupWrite(replace_state(current, now.to_snapshot()), 8, epoch=4)]) == [None]
    finally:
        await store.close()
    await downgrade_to(scratch_db_url, "0008")
    assert await fetch_rows(scratch_db_url, "SELECT to_regclass('group_ops') IS NULL") == [(True,)]
    assert await fetch_rows(scratch_db_url, "SELECT revision, state->'lines'->0->>'qty' FROM group_state WHERE group_id = 'g-old'") == [
        (8, "5")
    ]
    await upgrade_to_head(scratch_db_url)
    assert await current_revision(scratch_db_url) == "0009"
    store = await PostgresStore.connect(scratch_db_url)
    try:
        assert await store.load_group("g-old") == current
        activation = await store.activate_group("g-old", "T1", 1, "node-c")
        assert activation.snapshot == current and activation.ops == []
    finally:
        await store.close()


def replace_state(snapshot: GroupSnapshot, state: dict[str, object]) -> GroupSnapshot:
    return GroupSnapshot(snapshot.group_id, snapshot.table_id, snapshot.restaurant_id, snapshot.revision, state)
