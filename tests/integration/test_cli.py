"""The command line against a real database: migrate, staff add/list/passwd; what a new user meets on\n`serve`: one-line errors with non-zero exits, demo logins that survive restarts."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tableside.auth import StaffAuth
from tableside.demo import read_logins
from tableside.storage.migrate import current_revision
from tableside.storage.postgres import PostgresStore
from tests.client import t
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import start_tableside


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


def test_staff_add_binds_a_user_to_a_store(empty_db: str) -> None:
    """``staff add --store N``; without it a non-admin works in the first store and an admin in every store;
    an unknown store is refused; ``passwd`` keeps the store."""
    from tableside.storage.interface import Restaurant

    assert tableside("migrate", "--database-url", empty_db).returncode == 0

    async def stores() -> None:
        store = await PostgresStore.connect(empty_db)
        try:
            await store.upsert_restaurant(Restaurant(1, "One"))
            await store.upsert_restaurant(Restaurant(2, "Two"))
        finally:
            await store.close()

    asyncio.run(stores())
    db = ("--database-url", empty_db)
    done = tableside("staff", "add", "m2", "--role", "manager", "--store", "2", "--password", "p-1", *db)
    assert done.returncode == 0 and "store 2" in done.stdout, done.stderr
    done = tableside("staff", "add", "s1", "--role", "server", "--password", "p-1", *db)
    assert done.returncode == 0 and "store 1" in done.stdout, done.stderr
    done = tableside("staff", "add", "boss", "--role", "admin", "--password", "p-1", *db)
    assert done.returncode == 0 and "every store" in done.stdout, done.stderr
    done = tableside("staff", "add", "ghost", "--role", "kitchen", "--store", "9", "--password", "p-1", *db)
    assert done.returncode == 1 and "no store 9" in done.stderr
    assert tableside("staff", "passwd", "m2", "--password", "p-2", *db).returncode == 0
    # replacing a user without --store keeps their store
    assert tableside("staff", "add", "m2", "--role", "manager", "--password", "p-3", *db).returncode == 0
    listed = tableside("staff", "list", *db).stdout
    assert "m2\tmanager\tactive\tstore 2" in listed and "s1\tserver\tactive\tstore 1" in listed
    assert "boss\tadmin\tactive\tevery store" in listed and "ghost" not in listed


# -- what a new user meets: mistakes end in one clear line, not a traceback -----------------------------


def tableside_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TABLESIDE_CONFIG_FILE": "/nonexistent.yaml", **env}
    return subprocess.run(
        [sys.executable, "-m", "tableside", *args], capture_output=True, text=True, timeout=t(60), env=full
    )


def assert_short_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, (done.returncode, done.stderr)
    assert 1 <= len(lines) <= 2, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_invalid_port_setting_is_one_line_and_exit_2() -> None:
    done = tableside_env("serve", "--database-url", "postgresql://x@127.0.0.1:1/db", TABLESIDE_PORT="abc")
    assert_short_error(done, 2, "TABLESIDE_PORT", "valid integer", "'abc'")


def test_missing_config_file_is_refused() -> None:
    done = tableside_env("serve", "--config", "/nonexistent/tableside.yaml")
    assert_short_error(done, 2, "config file /nonexistent/tableside.yaml not found")
    done = tableside_env("migrate", "--config", "/nonexistent/tableside.yaml")
    assert_short_error(done, 2, "not found")


def test_unreachable_database_is_one_line_and_exit_1() -> None:
    with socket.socket() as held:  # bound and held but not listening: refused, and nobody else can take it
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        url = f"postgresql://someone:secret@127.0.0.1:{port}/db"
        done = tableside_env("serve", "--port", "0", "--database-url", url)
        assert_short_error(done, 1, "cannot connect to the database", f"127.0.0.1:{port}/db")
        assert "secret" not in done.stderr  # the password is not echoed
        done = tableside_env("migrate", "--database-url", f"postgresql://someone@127.0.0.1:{port}/db")
        assert_short_error(done, 1, "cannot connect to the database")


def test_port_in_use_is_refused_before_migrations(empty_db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = tableside_env("serve", "--demo", "--port", str(port), "--database-url", empty_db)
    assert_short_error(done, 1, f"127.0.0.1:{port}", "already in use", "--port")
    assert asyncio.run(current_revision(empty_db)) is None  # nothing was migrated


# -- demo staff: created once, passwords kept in a 0600 file, changed passwords survive restarts ----------


def serve_once(database_url: str, data_dir: Path) -> str:
    """Start `serve --demo`, stop it with SIGTERM, return everything it printed on stdout."""
    proc = start_tableside(database_url, TABLESIDE_DATA_DIR=str(data_dir), TABLESIDE_DEMO__TABLES="2")
    proc.stop()
    assert proc.proc.returncode == 0, proc.stderr()
    out = proc.stdout()
    assert f"tableside listening on http://127.0.0.1:{proc.port}" in out  # the port it bound (asked for 0)
    return out


def printed_logins(out: str) -> dict[str, str]:
    logins: dict[str, str] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("staff logins (new"):
            for row in lines[i + 1 :]:
                if not row.startswith("  "):
                    break
                user, pw = row.split()
                logins[user] = pw
    return logins


async def can_login(url: str, user: str, pw: str) -> bool:
    store = await PostgresStore.connect(url)
    try:
        return await StaffAuth(store, 3600).login(user, pw, 0.0) is not None
    finally:
        await store.close()


def test_demo_logins_survive_restarts(tmp_path: Path) -> None:
    url = create_database_sync("ts_cli_demo")
    try:
        first = serve_once(url, tmp_path)
        logins = printed_logins(first)
        assert set(logins) == {"admin", "manager", "server", "kitchen", "manager2", "kitchen2"}, first
        # two demo stores, and the join URLs say which store each table is in
        assert " store 1: Tableside Demo Bistro" in first and " store 2: Tableside Demo Trattoria" in first
        assert first.index(" store 1:") < first.index("/q/T001/") < first.index(" store 2:")
        assert first.index(" store 2:") < first.index("/q/S2-T001/")
        path = tmp_path / "demo-logins.txt"
        assert f"kept in {path}" in first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert read_logins(path) == logins
        assert "guest page:" in first and "/staff" in first and "/q/T001/" in first
        assert "/store/1  (" in first and "/store/2  (" in first  # each store page, named

        second = serve_once(url, tmp_path)
        assert printed_logins(second) == {}
        assert f"staff logins: in {path}" in second
        for pw in logins.values():
            assert pw not in second
        assert read_logins(path) == logins
        assert all(asyncio.run(can_login(url, user, pw)) for user, pw in logins.items())

        done = tableside_env(
            "staff", "passwd", "manager", "--password", "my-own-pass", "--database-url", url,
            TABLESIDE_DATA_DIR=str(tmp_path),
        )
        assert done.returncode == 0, done.stderr
        assert "manager" not in read_logins(path)  # dropped at once
        path.write_text(path.read_text() + f"manager {logins['manager']}\n")  # as if changed by other means
        serve_once(url, tmp_path)
        after = read_logins(path)
        assert "manager" not in after  # never shown a stale password
        assert after == {k: v for k, v in logins.items() if k != "manager"}
        assert asyncio.run(can_login(url, "manager", "my-own-pass"))
        assert asyncio.run(can_login(url, "admin", logins["admin"]))
    finally:
        drop_database_sync(url)
