"""Where an idle connection's bytes go: a tableside (or the raw baseline) in this process, N guests
connected from a child process, then the server's RSS growth and tracemalloc's top allocation sites per
connection.

    python -m bench.memprobe --tables 250 --members 4 --fresh-db-from postgresql://postgres@127.0.0.1/test
    python -m bench.memprobe --raw --tables 250 --members 4
    python -m bench.memprobe ... --trace 12 --top 40    # allocation sites (slow: tracemalloc on)

Not a benchmark (no load, one process, the client's HTTP pool differs from the bench's): a probe for
comparing two versions of the code or tableside against the baseline, ``python -m bench run idle`` stays
the measure. With ``--trace`` the RSS figure includes tracemalloc's own bookkeeping; read the sites."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tracemalloc
from typing import Any

import psutil

# The client: joins (tableside) and opens a websocket per member, waits for welcome, holds until stdin.
CLIENT = r"""
import asyncio, json, sys, aiohttp
async def main():
    base = sys.argv[1]; tables = json.loads(sys.argv[2]); members = int(sys.argv[3])
    sem = asyncio.Semaphore(40); socks = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def one(tid, qr, k):
            async with sem:
                if qr:
                    async with s.post(base + "/api/join", json={"table_id": tid, "qr": qr}) as r:
                        assert r.status == 201, (r.status, await r.text())
                        path = "/ws?token=" + (await r.json())["token"]
                else:
                    path = f"/ws?table={tid}&member=m{k}"
                ws = await s.ws_connect(base.replace("http", "ws", 1) + path, protocols=("tableside.v1.json",))
                msg = await ws.receive()
                assert "welcome" in str(msg.data), msg
                socks.append(ws)
        await asyncio.gather(*(one(t, q, k) for t, q in tables for k in range(members)))
        print("READY", len(socks), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for w in socks:
            await w.close()
asyncio.run(main())
"""


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def start_tableside(url: str, tables: int) -> tuple[Any, str, list[tuple[str, str]]]:
    from tableside.config import Settings
    from tableside.server.app import start_server
    from tableside.storage.postgres import PostgresStore

    settings = Settings(  # type: ignore[call-arg]
        port=0, host="127.0.0.1", database_url=url, admin_password="memprobe-" + "x" * 16,
        demo={"tables": tables}, http={"max_connections_per_ip": 1 << 20, "max_websockets_per_token": 10},
        limits={"messages_per_second": 1e6, "burst": 1_000_000, "join_per_minute_per_ip": 1 << 30,
                "max_connections": 1 << 20},
    )
    store = await PostgresStore.connect(url)
    running, _ = await start_server(settings, store, demo=True)
    qrs = []
    for i in range(1, tables + 1):
        table = await store.get_table(f"T{i:03d}")
        assert table is not None
        qrs.append((table.table_id, table.qr_secret))
    return running, f"http://127.0.0.1:{running.port}", qrs


async def start_raw(tables: int) -> tuple[Any, str, list[tuple[str, str]]]:
    import tornado.httpserver
    import tornado.netutil

    from bench.baselines.raw_server import make_app

    server = tornado.httpserver.HTTPServer(make_app())
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return server, f"http://127.0.0.1:{sockets[0].getsockname()[1]}", [(f"T{i:03d}", "") for i in range(tables)]


async def probe(args: argparse.Namespace, url: str | None) -> None:
    if args.raw:
        server, base, tables = await start_raw(args.tables)
    else:
        assert url is not None
        server, base, tables = await start_tableside(url, args.tables)
    await asyncio.sleep(1.0)
    gc.collect()
    if args.trace:
        tracemalloc.start(args.trace)
    before = tracemalloc.take_snapshot() if args.trace else None
    rss0 = rss()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, base, json.dumps(tables), str(args.members),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = (await proc.stdout.readline()).split()
    if not line or line[0] != b"READY":
        raise SystemExit("the client failed (see its traceback above)")
    n = int(line[1])
    await asyncio.sleep(2.0)
    gc.collect()
    print(f"{'raw' if args.raw else 'tableside'}: {n} connections, RSS growth {(rss() - rss0) / n / 1024:.2f} KB"
          " per connection")
    if before is not None:
        after = tracemalloc.take_snapshot()
        stats = after.compare_to(before, "lineno")
        print(f"traced growth {sum(s.size_diff for s in stats) / n:.0f} B per connection; top sites:")
        for stat in stats[: args.top]:
            print(f"{stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f} blocks  {stat.traceback[0]}")
    proc.stdin.write(b"\n")
    await proc.stdin.drain()
    await proc.wait()
    if args.raw:
        server.stop()
    else:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memprobe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=100)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--raw", action="store_true", help="the raw Tornado baseline instead of tableside")
    parser.add_argument("--fresh-db-from", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="admin URL: a fresh database is created there (and dropped) for tableside")
    parser.add_argument("--trace", type=int, default=0, metavar="FRAMES", help="tracemalloc with this depth")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    url = drop = None
    if not args.raw:
        from bench.targets import create_database
        from tableside.storage.migrate import upgrade_to_head

        url, drop = create_database(args.fresh_db_from)
        asyncio.run(upgrade_to_head(url))
    try:
        asyncio.run(probe(args, url))
    finally:
        if drop is not None:
            drop()


if __name__ == "__main__":
    main()
