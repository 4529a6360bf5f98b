"""``tableside`` command line: serve, migrate, pos-sim, staff."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import getpass
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tableside.config import ConfigError, Settings, StartupError, load_settings
from tableside.logs import configure_logging
from tableside.storage.interface import Store

if TYPE_CHECKING:
    from tableside.server.app import RunningServer
    from tableside.storage.interface import Restaurant, Table

MAX_PRINTED_TABLES = 100
MAX_WORKERS = 64
# Internal: set (to the supervisor's pid) in the environment of the node processes of `serve --workers N`.
WORKER_ENV = "TABLESIDE_WORKER"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (default ./config.yaml)")
    p.add_argument("--database-url", help="postgresql://... (default: embedded Postgres under ./var)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tableside", description="Real-time table ordering server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    _common(serve)
    serve.add_argument("--demo", action="store_true", help="seed the demo restaurant and staff users")
    serve.add_argument("--port", type=int, help="listen port (also TABLESIDE_PORT; default 8080)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--node-id", help="this node's id in a cluster (also TABLESIDE_NODE_ID; default hostname-pid)")
    serve.add_argument(
        "--redis-url", help="Redis for leases, routing and pub/sub between nodes (also TABLESIDE_REDIS_URL)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"node processes on one port (SO_REUSEPORT), 1..{MAX_WORKERS}; without --redis-url they share "
        "a private redis-server (default 1: one process, no Redis)",
    )
    migrate = sub.add_parser("migrate", help="bring the database schema to the latest migration")
    _common(migrate)
    sub.add_parser("pos-sim", help="run the standalone POS simulator", add_help=False)
    staff = sub.add_parser("staff", help="manage staff users")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    add = staff_sub.add_parser("add", help="add a user (or replace its role and password)")
    _common(add)
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["admin", "manager", "server", "kitchen"])
    add.add_argument("--password", help="(prompted when omitted)")
    add.add_argument(
        "--store",
        type=int,
        default=None,
        help="the store the user works in (default: the first store; an admin without --store: every store)",
    )
    _common(staff_sub.add_parser("list", help="list users and roles"))
    passwd = staff_sub.add_parser("passwd", help="change a user's password")
    _common(passwd)
    passwd.add_argument("username")
    passwd.add_argument("--password", help="(prompted when omitted)")
    remove = staff_sub.add_parser("remove", help="delete a user and end every session of theirs")
    _common(remove)
    remove.add_argument("username")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pos-sim"]:
        from tableside.pos.simulator import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    workers = getattr(args, "workers", 1)
    if not 1 <= workers <= MAX_WORKERS:
        return _fail(f"--workers must be between 1 and {MAX_WORKERS} (got {workers})", 2)
    # Mistakes a new user makes (a bad setting, a missing config file, no database, the port taken) end
    # in one clear line on stderr and a non-zero exit, not a traceback: 2 for configuration, 1 at runtime.
    try:
        settings = load_settings(
            getattr(args, "config", None),
            database_url=getattr(args, "database_url", None),
            port=getattr(args, "port", None),
            host=getattr(args, "host", None),
            node_id=getattr(args, "node_id", None),
            redis_url=getattr(args, "redis_url", None),
        )
    except ConfigError as exc:
        return _fail(str(exc), 2)
    configure_logging(settings.log_level)
    try:
        if args.command == "serve":
            supervisor = os.environ.get(WORKER_ENV)
            if supervisor:
                return asyncio.run(_serve(settings, demo=False, worker_of=int(supervisor)))
            if workers > 1:
                from tableside.server.workers import run_workers

                return run_workers(settings, workers=workers, demo=args.demo, config=args.config)
            return asyncio.run(_serve(settings, demo=args.demo))
        if args.command == "migrate":
            return _with_embedded_stopped_after(settings, lambda: asyncio.run(_migrate(settings)))
        if args.command == "staff":
            code = _with_embedded_stopped_after(settings, lambda: asyncio.run(_staff(settings, args)))
            if code == 0 and args.staff_command in ("add", "passwd"):
                _forget_generated_login(settings, args.username)
            return code
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except StartupError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    return 2


def _fail(message: str, code: int) -> int:
    print(f"tableside: {message}", file=sys.stderr)
    return code


def _forget_generated_login(settings: Settings, username: str) -> None:
    """A password just set by hand: the generated one in the logins file is stale, drop its line."""
    from tableside.demo import demo_logins_path, read_logins, write_logins

    path = demo_logins_path(settings.data_dir)
    logins = read_logins(path)
    if username in logins:
        del logins[username]
        write_logins(path, logins)


def _with_embedded_stopped_after(settings: Settings, run: Callable[[], int]) -> int:
    """One-shot commands on the embedded database leave it as they found it: a server they had to start
    (no `serve` running) is stopped again afterwards."""
    if settings.database_url is not None:
        return run()
    from tableside.storage.embedded import embedded_running, stop_embedded_postgres

    was_running = embedded_running(settings.data_dir)
    try:
        return run()
    finally:
        if not was_running:
            stop_embedded_postgres(settings.data_dir)


async def _open(settings: Settings) -> tuple[Store, str]:
    from tableside.storage.factory import open_store

    return await open_store(settings.database_url, settings.data_dir, migrate=True)


async def _migrate(settings: Settings) -> int:
    store, url = await _open(settings)
    await store.close()
    print("database is at the latest migration")
    return 0


def _check_port(settings: Settings) -> None:
    """Fail before the database work (embedded start, migrations) when the listen address is unusable."""
    import tornado.netutil

    if settings.port == 0:
        return
    try:
        sockets = tornado.netutil.bind_sockets(settings.port, address=settings.host, reuse_port=settings.reuse_port)
    except OSError as exc:
        raise StartupError(_listen_error(settings, exc)) from exc
    for sock in sockets:
        sock.close()


def _listen_error(settings: Settings, exc: OSError) -> str:
    where = f"{settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use "
            "(another tableside running? pick another with --port or TABLESIDE_PORT)"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}"


async def _serve(settings: Settings, *, demo: bool, worker_of: int | None = None) -> int:
    """``worker_of``: this is a node process of `serve --workers N` run by that supervisor pid: it does no
    demo seeding or staff bootstrap (the supervisor did), prints one line instead of the banner, and
    stops when the supervisor is gone."""
    from tableside.server.app import start_server

    # Ctrl-C / SIGTERM from here on, also during start-up, ends in an orderly stop below.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watch: asyncio.Task[None] | None = None
    if worker_of is not None:
        watch = asyncio.create_task(_stop_when_orphaned(worker_of, stop))
    _check_port(settings)
    store: Store | None = None
    running: RunningServer | None = None
    try:
        store, _url = await _open(settings)
        try:
            running, passwords = await start_server(settings, store, demo=demo, bootstrap=worker_of is None)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
            raise StartupError(_listen_error(settings, exc)) from exc  # taken since _check_port
        # Everything allocated at start-up lives forever: keep it out of the collector's scans, and collect
        # young objects less often. Full collections over a large heap are what made tail latencies spike.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        if not stop.is_set():  # not interrupted while starting
            if worker_of is not None:
                print(f"worker {settings.node_id} listening on http://{settings.host}:{running.port}", flush=True)
            else:
                await _print_banner(settings, running, passwords)
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        if running is not None:
            await running.stop()
        elif store is not None:
            await store.close()
        if settings.database_url is None:
            # The embedded server was started (or reattached) for this process: stop it with us. Only a
            # kill -9 leaves it running; the next start reattaches to it.
            from tableside.storage.embedded import stop_embedded_postgres

            await asyncio.to_thread(stop_embedded_postgres, settings.data_dir)
    return 0


async def _stop_when_orphaned(supervisor_pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor is gone stops (on Linux PR_SET_PDEATHSIG also sends it SIGTERM)."""
    from tableside.server.redis_child import die_with_parent

    die_with_parent(supervisor_pid)
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != supervisor_pid:
            stop.set()
            return


async def banner_tables(store: Store) -> tuple[list[Table], list[Restaurant]]:
    """Every store and the tables of each (for the banner's join URLs)."""
    stores = await store.list_restaurants()
    tables: list[Table] = []
    for info in stores:
        tables += await store.list_tables(info.restaurant_id)
    return tables, stores


async def _print_banner(settings: Settings, running: RunningServer, passwords: dict[str, str]) -> None:
    tables, stores = await banner_tables(running.services.store)
    print_banner(settings, tables, passwords, stores=stores)


def print_banner(
    settings: Settings,
    tables: Sequence[Table],
    passwords: dict[str, str],
    extra: Sequence[str] = (),
    *,
    stores: Sequence[Restaurant] = (),
) -> None:
    """What a new user needs, and nothing else: where to point a browser and how to log in. ``extra``:
    more lines after the addresses (the workers of `serve --workers N` and their Redis)."""
    from tableside.demo import demo_logins_path
    from tableside.server.services import table_join_url

    base = settings.base_url()
    out = sys.stdout
    print(f"tableside listening on {base}", file=out)
    print("  guest page:      open a table's join URL below (what its QR code carries)", file=out)
    print(f"  staff console:   {base}/staff", file=out)
    print(f"  kitchen display: {base}/kitchen", file=out)
    print(f"  till:            {base}/till  (ring up orders at the counter; staff login)", file=out)
    print(f"  reservations:    {base}/book  (customers book a course; the timeline is in the staff console)", file=out)
    print(f"  QR codes:        {base}/staff/qr-sheet (log in at /staff first)", file=out)
    for info in stores:  # a visitor's menu and cart before sitting down (it comes along to the table)
        print(f"  store page:      {base}/store/{info.restaurant_id}  ({info.name})", file=out)
    print(f"  health: {base}/healthz   metrics: {base}/metrics", file=out)
    for line in extra:
        print(line, file=out)
    logins = demo_logins_path(settings.data_dir)
    if passwords:
        print(f"staff logins (new; kept in {logins}, change with `tableside staff passwd NAME`):", file=out)
        for user, pw in passwords.items():
            print(f"  {user:8s} {pw}", file=out)
    elif logins.exists():
        print(f"staff logins: in {logins}", file=out)
    elif settings.admin_password:
        print("staff logins: admin, with the password from TABLESIDE_ADMIN_PASSWORD", file=out)
    else:
        print("staff logins: set with `tableside staff add NAME --role admin` or `tableside staff passwd NAME`",
              file=out)
    if tables:
        print("join URLs (open one on a phone or in a browser window to join that table):", file=out)
        names = {s.restaurant_id: s.name for s in stores}
        shown_store: int | None = None
        for table in tables[:MAX_PRINTED_TABLES]:
            if len(names) > 1 and table.restaurant_id != shown_store:
                shown_store = table.restaurant_id
                name = names.get(shown_store, "")
                print(f" store {shown_store}: {name}", file=out)
            print(f"  {table.table_id}  {table_join_url(settings, table)}", file=out)
        if len(tables) > MAX_PRINTED_TABLES:
            listing = Path(settings.data_dir) / "join-urls.txt"
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text(
                "".join(f"{t.table_id} {table_join_url(settings, t)} store={t.restaurant_id}\n" for t in tables)
            )
            print(f"  ... {len(tables) - MAX_PRINTED_TABLES} more in {listing}", file=out)
    print("Stop with Ctrl-C.", file=out)
    out.flush()


async def _staff(settings: Settings, args: argparse.Namespace) -> int:
    from tableside.auth import StaffAuth
    from tableside.storage.interface import StaffRole

    store, _ = await _open(settings)
    try:
        auth = StaffAuth(store, settings.tokens.staff_ttl_hours * 3600)
        if args.staff_command == "list":
            for user in await store.list_staff():
                where = "every store" if user.store_id is None else f"store {user.store_id}"
                print(f"{user.username}\t{user.role.value}\t{'active' if user.active else 'disabled'}\t{where}")
            return 0
        if args.staff_command == "add":
            role = StaffRole(args.role)
            store_id: int | None = args.store
            if store_id is not None:
                if await store.get_restaurant(store_id) is None:
                    print(f"no store {store_id}", file=sys.stderr)
                    return 1
            elif (existing := await store.get_staff(args.username)) is not None and (
                existing.store_id is not None or role == StaffRole.ADMIN
            ):
                store_id = existing.store_id  # replacing a user keeps their store unless --store says otherwise
            elif role != StaffRole.ADMIN:
                stores = await store.list_restaurants()
                store_id = stores[0].restaurant_id if stores else None  # None: the first store, once there is one
            pw = args.password or getpass.getpass(f"password for {args.username}: ")
            ended = await auth.set_user(args.username, role, pw, store_id)
            where = "every store" if store_id is None and role == StaffRole.ADMIN else f"store {store_id or 'first'}"
            print(f"added {args.username} ({args.role}, {where})" + _sessions_ended(ended))
            return 0
        if args.staff_command == "passwd":
            found = await store.get_staff(args.username)
            if found is None:
                print(f"no staff user {args.username}", file=sys.stderr)
                return 1
            pw = args.password or getpass.getpass(f"new password for {args.username}: ")
            ended = await auth.set_user(found.username, found.role, pw, found.store_id)
            print(f"password changed for {args.username}" + _sessions_ended(ended))
            return 0
        if args.staff_command == "remove":
            if not await auth.remove_user(args.username):
                print(f"no staff user {args.username}", file=sys.stderr)
                return 1
            print(f"removed {args.username}; their sessions have ended")
            return 0
    finally:
        await store.close()
    return 2


def _sessions_ended(count: int) -> str:
    return f"; {count} session{'s' if count != 1 else ''} ended" if count else ""


if __name__ == "__main__":
    raise SystemExit(main())
