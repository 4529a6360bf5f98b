"""A private ``redis-server`` for ``tableside serve --workers N`` when no Redis URL is given.

Debian's ``redis-server`` (``apt-get install redis-server``, /usr/bin/redis-server), or any other found on
PATH, is started as a child of the supervisor: on 127.0.0.1, on a free port, with nothing saved to disk
(``--save "" --appendonly no``), its working directory and log under ``<data dir>/redis``. It is stopped
when the supervisor exits; on Linux it also gets SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tableside.config import StartupError

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    prctl.restype = ctypes.c_int

    def call(option: int, arg: int) -> int:
        return int(prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0))

    return call


# Resolved once at import: a preexec_fn runs between fork and exec and should do as little as possible.
_PRCTL = _load_prctl()


def die_with_parent(parent_pid: int) -> None:
    """In a child (between fork and exec, or first thing in a worker): get SIGTERM when the parent dies
    (Linux; elsewhere a no-op), and exit at once when the parent is already gone (it died before the
    request was in place). The signal follows the *thread* that forked, so spawn from the main thread."""
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise StartupError(
            "--workers needs Redis: no redis-server found on PATH (install Debian's with "
            "`apt-get install redis-server`, or pass --redis-url)"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class PrivateRedis:
    proc: subprocess.Popen[bytes]
    port: int
    directory: Path
    binary: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (redis-server shuts down; nothing is saved), then SIGKILL after a bounded wait."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)


def _spawn(binary: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    cmd = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--dir", str(directory),
        "--logfile", str(directory / "redis.log"),
    ]
    parent = os.getpid()
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal reaches the supervisor only; it stops us in order
        preexec_fn=lambda: die_with_parent(parent),
    )


def start_private_redis(data_dir: Path) -> PrivateRedis:
    """Start a private redis-server and return once it answers PING. Raises StartupError (one line) when
    there is no redis-server or it does not come up. Call from the main thread (see die_with_parent)."""
    binary = redis_server_binary()
    directory = Path(data_dir) / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(PORT_ATTEMPTS):
        port = free_port()  # released before redis-server binds it: another process may take it; retry
        proc = _spawn(binary, port, directory)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if ping("127.0.0.1", port):
                return PrivateRedis(proc, port, directory, binary)
            time.sleep(0.05)
        redis = PrivateRedis(proc, port, directory, binary)
        redis.stop()
    raise StartupError(f"the private redis-server ({binary}) did not start; see {directory / 'redis.log'}")
