"""``tableside serve --workers N``: N node processes of one machine on one port (SO_REUSEPORT).

The supervisor (this module, in the ``tableside serve`` process) does the one-time work once: it opens
the database (starting the embedded Postgres when no URL is given; it owns it and stops it on exit), runs
the migrations, seeds the demo and bootstraps staff users, starts a private ``redis-server`` when no Redis
URL is given (``redis_child``), then runs N workers ``python -m tableside.cli serve`` on the same port with
``TABLESIDE_REUSE_PORT=true``, each with its own node id ``<node id>-w<i>``. It prints the banner once all
of them listen.

A worker that exits unexpectedly is logged and restarted after a back-off (1 s, doubling while it keeps
dying within a minute, at most 30 s). SIGINT/SIGTERM: every worker gets SIGTERM, is waited for (15 s, then
SIGKILL), then the private Redis and the embedded Postgres are stopped. Workers stop when the supervisor
dies (PR_SET_PDEATHSIG on Linux, and they watch their parent pid).

The supervisor is plain blocking code on the main thread: the death signal of a child follows the thread
that forked it, so every child is started from here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import FrameType
from urllib.parse import urlsplit

import structlog
import tornado.netutil

from tableside.cli import WORKER_ENV, _listen_error, _open, banner_tables, print_banner
from tableside.config import ConfigError, Settings, StartupError
from tableside.server.app import seed_and_bootstrap
from tableside.server.redis_child import PrivateRedis, redis_server_binary, start_private_redis
from tableside.storage.interface import Restaurant, Table

log = structlog.get_logger("tableside.workers")

START_TIMEOUT_S = 120.0  # all workers listening (imports, pool, menu load)
STOP_TIMEOUT_S = 15.0  # after SIGTERM, before SIGKILL
RESTART_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
RESTART_WINDOW_S = 60.0
POLL_S = 0.2
NODE_ID_MAX = 64


@dataclass
class Worker:
    index: int
    node_id: str
    proc: subprocess.Popen[str] | None = None
    listening: threading.Event = field(default_factory=threading.Event)
    restarts: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class Supervisor:
    def __init__(self, settings: Settings, *, count: int, database_url: str, redis_url: str, config: str | None):
        base = settings.node_id
        if len(f"{base}-w{count - 1}") > NODE_ID_MAX:
            raise ConfigError(f"node id {base!r} is too long for --workers (at most {NODE_ID_MAX - 4} characters)")
        self.settings = settings
        self.workers = [Worker(i, f"{base}-w{i}") for i in range(count)]
        self.config = config
        self.env = {
            **os.environ,
            WORKER_ENV: str(os.getpid()),
            "TABLESIDE_REUSE_PORT": "true",
            "TABLESIDE_DATA_DIR": str(settings.data_dir),
            # In the environment rather than on the command line: URLs may carry passwords (ps shows argv).
            "TABLESIDE_DATABASE_URL": database_url,
            "TABLESIDE_REDIS_URL": redis_url,
        }

    def spawn(self, worker: Worker) -> None:
        s = self.settings
        cmd = [sys.executable, "-m", "tableside.cli", "serve", "--port", str(s.port), "--host", s.host,
               "--node-id", worker.node_id]
        if self.config:
            cmd += ["--config", self.config]
        worker.listening.clear()
        worker.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # its one "worker ... listening on" line; logs go to our stderr
            text=True,
            env=self.env,
            start_new_session=True,  # Ctrl-C in a terminal reaches the supervisor only; it stops them in order
        )
        threading.Thread(target=self._read, args=(worker, worker.proc), daemon=True).start()

    def _read(self, worker: Worker, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line and proc is worker.proc:
                worker.listening.set()
                log.info("worker_listening", node_id=worker.node_id, pid=proc.pid)
            else:
                sys.stderr.write(line)

    def wait_all_listening(self, stop: threading.Event) -> bool:
        """True once every worker listens; False when stopped meanwhile. StartupError when a worker exits
        first (its own error is on stderr above) or they take too long."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not stop.is_set():
            if all(w.listening.is_set() for w in self.workers):
                return True
            for w in self.workers:
                assert w.proc is not None
                code = w.proc.poll()
                if code is not None:
                    raise StartupError(f"worker {w.node_id} exited with code {code} before it listened")
            if time.monotonic() > deadline:
                raise StartupError(f"the workers did not all listen within {START_TIMEOUT_S:.0f} s")
            stop.wait(POLL_S)
        return False

    def supervise(self, stop: threading.Event, redis: PrivateRedis | None) -> None:
        """Restart workers that exit, until ``stop`` is set."""
        redis_down_logged = False
        while not stop.wait(POLL_S):
            now = time.monotonic()
            for w in self.workers:
                assert w.proc is not None
                if w.restart_at is None:
                    code = w.proc.poll()
                    if code is None:
                        continue
                    while w.restarts and now - w.restarts[0] > RESTART_WINDOW_S:
                        w.restarts.popleft()
                    delay = min(MAX_BACKOFF_S, RESTART_BACKOFF_S * 2 ** len(w.restarts))
                    w.restart_at = now + delay
                    log.warning("worker_exited", node_id=w.node_id, pid=w.proc.pid, code=code, restart_in_s=delay)
                elif now >= w.restart_at:
                    w.restart_at = None
                    w.restarts.append(now)
                    self.spawn(w)
                    log.info("worker_restarted", node_id=w.node_id, pid=w.proc.pid)
            if redis is not None and not redis.running() and not redis_down_logged:
                redis_down_logged = True
                log.error("private_redis_exited", code=redis.proc.returncode, log=str(redis.log_path))

    def stop_all(self) -> None:
        """SIGTERM to every worker, a bounded wait, then SIGKILL to any left."""
        procs = [w.proc for w in self.workers if w.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker_killed", pid=proc.pid, after_s=STOP_TIMEOUT_S)
                proc.kill()
                proc.wait()


def _reserve_port(settings: Settings) -> socket.socket:
    """Check the listen address like a single server does, then hold it bound with SO_REUSEPORT while the
    workers run (bound, never listening: connections go to the workers only); with --port 0 this picks the
    one port they all share."""
    try:
        if settings.port != 0:
            # Without SO_REUSEPORT first: it also fails on another `--workers` run's port, which a
            # SO_REUSEPORT bind would silently share.
            for sock in tornado.netutil.bind_sockets(settings.port, address=settings.host):
                sock.close()
        family, kind, proto, _name, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        reserved = socket.socket(family, kind, proto)
        try:
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reserved.bind(address)
        except OSError:
            reserved.close()
            raise
    except OSError as exc:
        raise StartupError(_listen_error(settings, exc)) from exc
    settings.port = int(reserved.getsockname()[1])
    return reserved


async def _prepare(
    settings: Settings, *, demo: bool
) -> tuple[str, dict[str, str], list[Table], list[Restaurant]]:
    """Database (embedded started when no URL), migrations, demo seed and staff bootstrap, once."""
    store, url = await _open(settings)
    try:
        passwords = await seed_and_bootstrap(settings, store, demo=demo)
        tables, stores = await banner_tables(store)
    finally:
        await store.close()
    return url, passwords, tables, stores


def _shown_redis(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def run_workers(settings: Settings, *, workers: int, demo: bool, config: str | None) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    if settings.redis_url is None:
        redis_server_binary()  # none on PATH: say so before the database work
    reserved = _reserve_port(settings)
    redis: PrivateRedis | None = None
    supervisor: Supervisor | None = None
    try:
        database_url, passwords, tables, stores = asyncio.run(_prepare(settings, demo=demo))
        if stop.is_set():
            return 0
        if settings.redis_url is None:
            redis = start_private_redis(settings.data_dir)
            redis_url = redis.url
            redis_line = f"  redis: private {redis.binary} at {redis.url} (nothing saved; stops with us)"
        else:
            redis_url = settings.redis_url
            redis_line = f"  redis: {_shown_redis(redis_url)}"
        supervisor = Supervisor(settings, count=workers, database_url=database_url, redis_url=redis_url,
                                config=config)
        for w in supervisor.workers:
            supervisor.spawn(w)
        if not supervisor.wait_all_listening(stop):
            return 0
        ids = ", ".join(w.node_id for w in supervisor.workers)
        print_banner(settings, tables, passwords, [f"  {workers} workers: node ids {ids}", redis_line], stores=stores)
        supervisor.supervise(stop, redis)
    finally:
        if supervisor is not None:
            supervisor.stop_all()
        if redis is not None:
            redis.stop()
        reserved.close()
        if settings.database_url is None:
            from tableside.storage.embedded import stop_embedded_postgres

            stop_embedded_postgres(settings.data_dir)
    return 0
