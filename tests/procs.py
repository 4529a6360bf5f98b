"""tableside and the POS simulator as real child processes, for crash tests (SIGKILL) and the bench."""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tests.client import t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_line(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if marker in line:
                return line
        elif proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"process did not print {marker!r}; output: {''.join(seen)[-2000:]}")


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as resp:
            return json.loads(resp.read())

    def post_json(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")


def start_pos_sim(*args: str) -> Proc:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tableside", "pos-sim", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    _wait_line(proc, "pos-sim listening", t(20))
    return Proc(proc, port)


def start_tableside(database_url: str, *, port: int | None = None, demo: bool = True, **env: str) -> Proc:
    port = port or free_port()
    # Its own data directory (demo-logins.txt, join-urls.txt), never ./var of the checkout.
    if "TABLESIDE_DATA_DIR" not in env:
        env["TABLESIDE_DATA_DIR"] = data_dir = tempfile.mkdtemp(prefix="tableside-test-")
        atexit.register(shutil.rmtree, data_dir, True)
    full_env = {**os.environ, "TABLESIDE_CONFIG_FILE": "/nonexistent.yaml", **env}
    cmd = [sys.executable, "-m", "tableside", "serve", "--port", str(port), "--database-url", database_url]
    if demo:
        cmd.append("--demo")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=full_env)
    _wait_line(proc, "tableside listening on", t(60))
    return Proc(proc, port, env)
