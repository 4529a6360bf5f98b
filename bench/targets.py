"""What the generator loads: tableside (started here as subprocesses on free ports, or an already running
deployment given by ``--url``) and the two baselines (always started here).

A started tableside gets the POS simulator (``tableside pos-sim``, 0 ms latency) as its POS, a fresh database
(``--fresh-db-from``: CREATE DATABASE bench_<hex> on that server, dropped afterwards; ``--database-url``: used
as is; neither: embedded Postgres in a temporary data directory), raised rate limits and a random admin
password. All processes bind to 127.0.0.1 and are stopped (SIGTERM, then SIGKILL) by :meth:`Target.stop`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from bench.addrs import free_port, require_loopback_url
from bench.client import TargetKind

READY_TABLESIDE = re.compile(r"tableside listening on (http://\S+)")
READY_POS = re.compile(r"pos-sim listening on (http://\S+)")
READY_BASELINE = re.compile(r"baseline \w+ listening on (http://\S+)")

BENCH_LIMITS_ENV = {
    "TABLESIDE_LIMITS__MESSAGES_PER_SECOND": "1000000",
    "TABLESIDE_LIMITS__BURST": "1000000",
    "TABLESIDE_LIMITS__JOIN_PER_MINUTE_PER_IP": "100000000",
    "TABLESIDE_LIMITS__MAX_CONNECTIONS": "100000",
}

def server_env(pos_url: str, tables: int, password: str, log_level: str, pos_latency_ms: int) -> dict[str, str]:
    """The environment of a tableside the bench starts (one node or every node of a cluster): the demo with
    enough tables, the POS simulator always succeeding, limits raised so the generator is not throttled."""
    env = dict(os.environ)
    env.update(BENCH_LIMITS_ENV)
    env.update(
        {
            "TABLESIDE_DEMO__TABLES": str(max(1, tables)),
            "TABLESIDE_ADMIN_PASSWORD": password,
            "TABLESIDE_POS__ADAPTER": "http",
            "TABLESIDE_POS__URL": pos_url,
            "TABLESIDE_POS__LATENCY_MS": str(pos_latency_ms),
            "TABLESIDE_POS__SUCCESS_RATE": "1.0",
            "TABLESIDE_LOG_LEVEL": log_level,
            "TABLESIDE_HOST": "127.0.0.1",
        }
    )
    return env



class TargetError(RuntimeError):
    pass


# -- small sync HTTP helpers (parent side only) -------------------------------------------------------
def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 15.0
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = int(exc.code)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_ready(proc: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str], timeout: float) -> str:
    """Wait until ``pattern`` shows up in the process's log; returns its first group."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        found = pattern.search(text)
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise TargetError(f"{proc.args!r} exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.05)
    raise TargetError(
        f"{proc.args!r} not ready after {timeout:.0f}s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def wait_health(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, _ = http_json("GET", url + "/healthz", timeout=2.0)
            if status == 200:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TargetError(f"{url}/healthz not healthy after {timeout:.0f}s: {last!r}")


def pid_listening_on(port: int) -> int | None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


# -- databases ------------------------------------------------------------------------------------------
def _with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + db, parts.query, parts.fragment))


async def _admin_exec(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """CREATE DATABASE bench_<hex> on the server of ``admin_url``; returns (url, drop)."""
    name = "bench_" + secrets.token_hex(6)
    asyncio.run(_admin_exec(admin_url, f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        asyncio.run(_admin_exec(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return _with_db(admin_url, name), drop


# -- targets --------------------------------------------------------------------------------------------
@dataclass
class Target:
    kind: TargetKind
    urls: list[str]
    server_pids: list[int | None]
    label: str = ""
    pos_url: str | None = None
    admin_password: str | None = None
    started: bool = False
    logs: list[Path] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def server_pid(self) -> int | None:
        return self.server_pids[0] if self.server_pids else None

    def pos_tickets(self) -> int | None:
        if not self.pos_url:
            return None
        status, data = http_json("GET", self.pos_url + "/stats")
        if status != 200 or not isinstance(data, dict):
            return None
        tickets = data.get("tickets")
        return int(tickets) if isinstance(tickets, int) else None

    def kill_node(self, index: int) -> int | None:
        """SIGKILL node ``index``; returns the pid killed."""
        pid = self.server_pids[index] if index < len(self.server_pids) else None
        if pid is None:
            port = urlsplit(self.urls[index]).port
            pid = pid_listening_on(port) if port else None
        if pid is None:
            return None
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._procs.clear()
        while self._cleanup:
            fn = self._cleanup.pop()
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - cleanup is best effort, but say so
                print(f"bench: cleanup failed: {exc!r}", file=sys.stderr)

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(
    args: list[str], env: dict[str, str], log: Path, cwd: str | None = None
) -> subprocess.Popen[bytes]:
    raise_nofile()
    with open(log, "wb") as fh:
        return subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )


def log_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "tableside-bench-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_pos_sim(target: Target, latency_ms: int = 0) -> str:
    port = free_port()
    log = log_dir() / f"pos-sim-{port}.log"
    proc = _spawn(
        [sys.executable, "-m", "tableside", "pos-sim", "--port", str(port), "--latency-ms", str(latency_ms)],
        dict(os.environ),
        log,
    )
    target._procs.append(proc)
    target.logs.append(log)
    url = wait_ready(proc, log, READY_POS, 30).rstrip("/")
    return url


def start_tableside(
    tables: int,
    *,
    database_url: str | None = None,
    fresh_db_from: str | None = None,
    pos_latency_ms: int = 0,
    log_level: str = "warning",
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = 120.0,
) -> Target:
    """Start pos-sim and ``tableside serve --demo`` on free loopback ports."""
    target = Target(kind="tableside", urls=[], server_pids=[], label="tableside", started=True)
    try:
        target.pos_url = start_pos_sim(target, pos_latency_ms)
        if fresh_db_from:
            require_loopback_url(fresh_db_from.replace("postgresql://", "http://", 1))
            database_url, drop = create_database(fresh_db_from)
            target._cleanup.append(drop)
            target.info["database"] = "fresh " + urlsplit(database_url).path.lstrip("/")
        elif database_url:
            target.info["database"] = "given"
        else:
            data_dir = tempfile.mkdtemp(prefix="tableside-bench-pg-")
            target._cleanup.append(lambda: shutil.rmtree(data_dir, ignore_errors=True))
            target.info["database"] = "embedded (temporary data dir)"
        port = free_port()
        password = secrets.token_urlsafe(16)
        env = server_env(target.pos_url, tables, password, log_level, pos_latency_ms)
        if not database_url:
            env["TABLESIDE_DATA_DIR"] = data_dir
        env.update(extra_env or {})
        args = [sys.executable, "-m", "tableside", "serve", "--demo", "--port", str(port)]
        if database_url:
            args += ["--database-url", database_url]
        log = log_dir() / f"tableside-{port}.log"
        proc = _spawn(args, env, log)
        target._procs.append(proc)
        target.logs.append(log)
        url = wait_ready(proc, log, READY_TABLESIDE, ready_timeout).rstrip("/")
        wait_health(url)
        target.urls = [url]
        target.server_pids = [proc.pid]
        target.admin_password = password
        target.info["log_level"] = log_level
        return target
    except BaseException:
        target.stop()
        raise


def start_redis(target: Target) -> str:
    """A private ``redis-server`` child on a free loopback port, nothing on disk; stopped with the target."""
    binary = shutil.which("redis-server")
    if not binary:
        raise TargetError("a multi-node target needs redis-server on PATH (Debian package redis-server)")
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="tableside-bench-redis-")
    target._cleanup.append(lambda: shutil.rmtree(data_dir, ignore_errors=True))
    log = log_dir() / f"redis-{port}.log"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", data_dir]
    proc = _spawn(args, dict(os.environ), log)
    target._procs.append(proc)
    target.logs.append(log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetError(
                f"redis-server exited with {proc.returncode}: {log.read_text(errors='replace')[-500:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    target.info["redis"] = f"private redis-server child on port {port} (no persistence)"
                    target.info["redis_pid"] = proc.pid
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise TargetError(f"redis-server did not answer on port {port}")


def start_cluster(
    tables: int,
    *,
    nodes: int = 0,
    workers: int = 0,
    database_url: str | None = None,
    fresh_db_from: str | None = None,
    log_level: str = "warning",
    lease_ttl_s: float = 5.0,
    ready_timeout: float = 120.0,
) -> Target:
    """Several tableside node processes sharing one database and a private Redis.

    ``nodes`` N: N ports, one URL each (node ids n0..n{N-1}). ``workers`` N: N processes on ONE port with
    ``TABLESIDE_REUSE_PORT=true`` (the kernel spreads connections; ids w0..w{N-1}) — what ``tableside serve
    --workers N`` does. Node 0 seeds the demo restaurant, the others start once it is up."""
    if (nodes > 0) == (workers > 0):
        raise ValueError("start_cluster: exactly one of nodes / workers")
    count = nodes or workers
    if not (database_url or fresh_db_from):
        raise TargetError("a multi-node target needs --fresh-db-from or --database-url (one shared database)")
    label = f"tableside-{count}{'n' if nodes else 'w'}"
    target = Target(kind="tableside", urls=[], server_pids=[], label=label, started=True)
    try:
        target.pos_url = start_pos_sim(target)
        if fresh_db_from:
            require_loopback_url(fresh_db_from.replace("postgresql://", "http://", 1))
            database_url, drop = create_database(fresh_db_from)
            target._cleanup.append(drop)
            target.info["database"] = "fresh " + urlsplit(database_url).path.lstrip("/")
        else:
            target.info["database"] = "given"
        assert database_url is not None
        redis_url = start_redis(target)
        password = secrets.token_urlsafe(16)
        env = server_env(target.pos_url, tables, password, log_level, 0)
        env.update(
            {
                "TABLESIDE_REDIS_URL": redis_url,
                "TABLESIDE_CLUSTER__LEASE_TTL_S": f"{lease_ttl_s:g}",
                # the product's default ratio (5 s / 1 s); it requires renew <= ttl / 2
                "TABLESIDE_CLUSTER__RENEW_INTERVAL_S": f"{min(1.0, lease_ttl_s / 5):g}",
            }
        )
        if workers:
            env["TABLESIDE_REUSE_PORT"] = "true"
        shared_port = free_port() if workers else 0
        prefix = "n" if nodes else "w"
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []

        def spawn(i: int) -> None:
            port = shared_port or free_port()
            args = [sys.executable, "-m", "tableside", "serve", "--port", str(port)]
            args += ["--database-url", database_url, "--node-id", f"{prefix}{i}"]
            if i == 0:
                args.append("--demo")
            log = log_dir() / f"tableside-{prefix}{i}-{port}.log"
            proc = _spawn(args, env, log)
            target._procs.append(proc)
            target.logs.append(log)
            procs.append((proc, log))

        spawn(0)  # seeds the restaurant (and runs the migrations) before the others look for it
        first = wait_ready(procs[0][0], procs[0][1], READY_TABLESIDE, ready_timeout).rstrip("/")
        wait_health(first)
        for i in range(1, count):
            spawn(i)
        urls = [first] + [
            wait_ready(p, lg, READY_TABLESIDE, ready_timeout).rstrip("/") for p, lg in procs[1:]
        ]
        for u in urls:
            wait_health(u)
        target.urls = urls[:1] if workers else urls
        target.server_pids = [p.pid for p, _ in procs]
        target.admin_password = password
        target.info.update(
            {
                "log_level": log_level,
                "mode": f"{count} nodes on {count} ports"
                if nodes
                else f"{count} workers on one port (SO_REUSEPORT)",
                "nodes": count,
                "node_ids": {str(p.pid): f"{prefix}{i}" for i, (p, _) in enumerate(procs)},
                "node_urls": {f"{prefix}{i}": urls[i] for i in range(count)},
                "lease_ttl_s": lease_ttl_s,
                "renew_interval_s": min(1.0, lease_ttl_s / 5),
            }
        )
        return target
    except BaseException:
        target.stop()
        raise


def start_baseline(kind: TargetKind, codec: str = "json", nodelay: bool = True) -> Target:
    """Start ``python -m bench baseline raw|socketio`` on a free loopback port."""
    if kind not in ("raw", "socketio"):
        raise ValueError(kind)
    port = free_port()
    args = [sys.executable, "-m", "bench", "baseline", kind, "--port", str(port), "--codec", codec]
    if not nodelay:
        args.append("--no-nodelay")
    log = log_dir() / f"baseline-{kind}-{port}.log"
    target = Target(
        kind=kind, urls=[], server_pids=[], label=kind if nodelay else f"{kind}-nagle", started=True
    )
    try:
        proc = _spawn(args, dict(os.environ), log)
        target._procs.append(proc)
        target.logs.append(log)
        url = wait_ready(proc, log, READY_BASELINE, 30).rstrip("/")
        wait_health(url)
        target.urls = [url]
        target.server_pids = [proc.pid]
        target.info["nodelay"] = nodelay
        return target
    except BaseException:
        target.stop()
        raise


def attach(
    urls: list[str],
    kind: TargetKind = "tableside",
    admin_password: str | None = None,
    pos_url: str | None = None,
    server_pids: list[int] | None = None,
) -> Target:
    """An already running deployment (loopback only). Server pids are found by listening port if not given."""
    clean = [require_loopback_url(u).rstrip("/") for u in urls]
    if pos_url:
        pos_url = require_loopback_url(pos_url).rstrip("/")
    pids: list[int | None] = list(server_pids) if server_pids else []
    if not pids:
        for u in clean:
            port = urlsplit(u).port
            pids.append(pid_listening_on(port) if port else None)
    for u in clean:
        wait_health(u, timeout=10)
    return Target(
        kind=kind,
        urls=clean,
        server_pids=pids,
        label=kind,
        pos_url=pos_url,
        admin_password=admin_password,
        started=False,
    )


# -- what the generator needs from the target -------------------------------------------------------------
def fetch_menu(target: Target) -> list[tuple[str, int]]:
    status, data = http_json("GET", target.url + "/api/menu")
    if status != 200 or not isinstance(data, dict):
        raise TargetError(f"GET /api/menu: {status} {data!r}"[:300])
    items = [
        (str(it["menu_item_id"]), int(it.get("price", 0)))
        for it in data.get("items", [])
        if isinstance(it, dict) and it.get("available", True)
    ]
    if not items:
        raise TargetError("the menu has no available items")
    return items


def fetch_tables(target: Target, needed: int) -> list[tuple[str | int, str | None]]:
    """(table_id, qr) for ``needed`` tables. tableside: staff login + /api/staff/tables; baselines: names."""
    if target.kind != "tableside":
        return [(f"t{i + 1}", None) for i in range(needed)]
    if not target.admin_password:
        raise TargetError(
            "tableside target needs the admin password (--admin-password or TABLESIDE_ADMIN_PASSWORD)"
        )
    status, data = http_json(
        "POST", target.url + "/api/staff/login", {"username": "admin", "password": target.admin_password}
    )
    if status != 200 or not isinstance(data, dict) or "token" not in data:
        raise TargetError(f"staff login failed: {status} {data!r}"[:300])
    status, tables = http_json("GET", target.url + "/api/staff/tables", token=str(data["token"]), timeout=60)
    if status != 200 or not isinstance(tables, list):
        raise TargetError(f"GET /api/staff/tables: {status} {tables!r}"[:300])
    out: list[tuple[str | int, str | None]] = []
    for t in tables:
        if not isinstance(t, dict) or t.get("status") == "paid":
            continue
        join_url = str(t.get("join_url", ""))
        match = re.search(r"/q/([^/]+)/([^/?#]+)", join_url)
        if not match:
            continue
        raw_id = t.get("table_id", match.group(1))
        out.append((raw_id if isinstance(raw_id, int) else str(raw_id), match.group(2)))
        if len(out) >= needed:
            break
    if len(out) < needed:
        raise TargetError(
            f"the target has {len(out)} joinable tables, the run needs {needed} "
            "(start it with TABLESIDE_DEMO__TABLES >= that)"
        )
    return out
