"""``tableside`` command line: serve, migrate, pos-sim, staff."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import signal
import sys
from pathlib import Path

from tableside.config import Settings, load_settings
from tableside.logs import configure_logging
from tableside.storage.interface import Store

MAX_PRINTED_TABLES = 100


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
    settings = load_settings(
        getattr(args, "config", None),
        database_url=getattr(args, "database_url", None),
        port=getattr(args, "port", None),
        host=getattr(args, "host", None),
    )
    configure_logging(settings.log_level)
    if args.command == "serve":
        return asyncio.run(_serve(settings, demo=args.demo))
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "staff":
        return asyncio.run(_staff(settings, args))
    return 2


async def _open(settings: Settings) -> tuple[Store, str]:
    from tableside.storage.factory import open_store

    return await open_store(settings.database_url, settings.data_dir, migrate=True)


async def _migrate(settings: Settings) -> int:
    store, url = await _open(settings)
    await store.close()
    print("database is at the latest migration")
    return 0


async def _serve(settings: Settings, *, demo: bool) -> int:
    from tableside.server.app import start_server

    store, _url = await _open(settings)
    running, passwords = await start_server(settings, store, demo=demo)
    # Everything allocated at start-up lives forever: keep it out of the collector's scans, and collect
    # young objects less often. Full collections over a large heap are what made tail latencies spike.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    base = settings.base_url()
    out = sys.stdout
    print(f"tableside listening on {base}", file=out)
    print(f"  staff console: {base}/staff   kitchen display: {base}/kitchen", file=out)
    print(f"  health: {base}/healthz   metrics: {base}/metrics", file=out)
    if passwords:
        print("staff logins (printed once, change them with `tableside staff passwd`):", file=out)
        for user, pw in passwords.items():
            print(f"  {user:8s} {pw}", file=out)
    tables = await running.services.store.list_tables(settings.demo.restaurant_id)
    if tables:
        print("join URLs (what each table's QR code carries):", file=out)
        for table in tables[:MAX_PRINTED_TABLES]:
            print(f"  {table.table_id}  {running.services.join_url(table)}", file=out)
        if len(tables) > MAX_PRINTED_TABLES:
            listing = Path(settings.data_dir) / "join-urls.txt"
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text("".join(f"{t.table_id} {running.services.join_url(t)}\n" for t in tables))
            print(f"  ... {len(tables) - MAX_PRINTED_TABLES} more in {listing}", file=out)
    out.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
    return 0


async def _staff(settings: Settings, args: argparse.Namespace) -> int:
    from tableside.auth import StaffAuth
    from tableside.storage.interface import StaffRole

    store, _ = await _open(settings)
    try:
        auth = StaffAuth(store, settings.tokens.staff_ttl_hours * 3600)
        if args.staff_command == "list":
            for user in await store.list_staff():
                print(f"{user.username}\t{user.role.value}\t{'active' if user.active else 'disabled'}")
            return 0
        if args.staff_command == "add":
            pw = args.password or getpass.getpass(f"password for {args.username}: ")
            ended = await auth.set_user(args.username, StaffRole(args.role), pw)
            print(f"added {args.username} ({args.role})" + _sessions_ended(ended))
            return 0
        if args.staff_command == "passwd":
            found = await store.get_staff(args.username)
            if found is None:
                print(f"no staff user {args.username}", file=sys.stderr)
                return 1
            pw = args.password or getpass.getpass(f"new password for {args.username}: ")
            ended = await auth.set_user(found.username, found.role, pw)
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
