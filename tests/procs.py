"""tableside and the POS simulator as real child processes, for crash tests (SIGKILL), CLI tests and the bench.

No flakiness by construction: a child binds port 0 and the test reads the port it got from the line the
child prints once it listens (never a port picked here, released, and hoped to be still free); the child's
stdout is read on a thread, so a wait never misses a line that an earlier read buffered and the pipe never
fills; its stderr goes to a temporary file that failures quote. Every wait is for an event (a line, an
exit) with a deadline scaled by ``TABLESIDE_TEST_TIMEOUT_FACTOR`` (``tests.client.t``), never a sleep."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field
from typing import IO, Any

from tests.client import t

_LISTENING = re.compile(r"listening on http://[^\s/]+:(\d+)")


class OutputReader:
    """Collects a child's stdout lines on a daemon thread; ``wait_for`` blocks until a line contains a
    marker, the stream ends, or the deadline passes."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def wait_for(self, marker: str, timeout: float) -> str | None:
        def found() -> str | None:
            return next((line for line in self.lines if marker in line), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self._eof, timeout)
            return found()

    def text(self, timeout: float = 10.0) -> str:
        """Everything printed; after the child exited, waits for the reader to reach the end."""
        self._thread.join(timeout)
        with self._cond:
            return "".join(self.lines)


def spawn(cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], OutputReader, str]:
    """Start ``cmd`` with stdout read by an ``OutputReader`` and stderr in a temporary file (its path)."""
    fd, stderr_path = tempfile.mkstemp(prefix="tableside-test-", suffix=".stderr")
    with os.fdopen(fd, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert proc.stdout is not None
    return proc, OutputReader(proc.stdout), stderr_path


def wait_listening(proc: subprocess.Popen[str], out: OutputReader, stderr_path: str, timeout: float) -> int:
    """The port from the child's "... listening on http://host:PORT" line; fails (and kills it) if the
    child exits or stays silent."""
    line = out.wait_for("listening on http://", timeout)
    match = _LISTENING.search(line or "")
    if match is None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(t(10))
        raise AssertionError(
            f"{proc.args!r} did not report listening (exit {proc.returncode}); stdout: "
            f"{out.text()[-2000:]!r}; stderr: {_tail(stderr_path)!r}"
        )
    return int(match.group(1))


def _tail(path: str, size: int = 4000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-size:]
    except OSError:
        return ""


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    output: OutputReader | None = None
    stderr_path: str | None = None
    _stderr_kept: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(t(10)) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(t(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(t(5))
        if self.stderr_path is not None:  # keep what it said, drop the file
            self._stderr_kept = self.stderr()
            try:
                os.unlink(self.stderr_path)
            except OSError:
                pass
            self.stderr_path = None

    def stdout(self) -> str:
        """All it printed on stdout (call after it exited for the whole of it)."""
        return self.output.text() if self.output is not None else ""

    def stderr(self) -> str:
        return _tail(self.stderr_path, 1 << 20) if self.stderr_path is not None else self._stderr_kept

    def get_json(self, path: str, timeout: float = 10) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post_json(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")


def start_pos_sim(*args: str) -> Proc:
    proc, out, err = spawn([sys.executable, "-m", "tableside", "pos-sim", "--port", "0", *args])
    return Proc(proc, wait_listening(proc, out, err, t(20)), output=out, stderr_path=err)


def start_tableside(
    database_url: str,
    *,
    port: int | None = None,
    demo: bool = True,
    module: str = "tableside",
    **env: str,
) -> Proc:
    """``python -m tableside serve`` (or another ``module`` with the same CLI, e.g. a fault-injecting
    wrapper) on port 0 unless ``port`` is given; returns once it prints that it listens."""
    # Its own data directory (demo-logins.txt, join-urls.txt), never ./var of the checkout.
    if "TABLESIDE_DATA_DIR" not in env:
        env["TABLESIDE_DATA_DIR"] = data_dir = tempfile.mkdtemp(prefix="tableside-test-")
        atexit.register(shutil.rmtree, data_dir, True)
    full_env = {**os.environ, "TABLESIDE_CONFIG_FILE": "/nonexistent.yaml", **env}
    cmd = [sys.executable, "-m", module, "serve", "--port", str(port or 0), "--database-url", database_url]
    if demo:
        cmd.append("--demo")
    proc, out, err = spawn(cmd, full_env)
    return Proc(proc, wait_listening(proc, out, err, t(60)), env, output=out, stderr_path=err)
