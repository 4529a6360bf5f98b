"""`tableside serve --workers N` as real processes: N workers on one port, a private redis-server, one
banner; a killed worker comes back; SIGTERM (and the supervisor's death) leaves no worker, redis-server or
postgres process behind; a missing redis-server and a bad --workers are one-line errors."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.client import t
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import spawn

BANNER_DONE = "Stop with Ctrl-C."

@pytest.fixture
def db() -> Iterator[str]:
    url = create_database_sync("ts_workers", migrate=False)
    yield url
    drop_database_sync(url)

def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "TABLESIDE_CONFIG_FILE": "/nonexistent.yaml",
        "TABLESIDE_DATA_DIR": str(data_dir),
        "TABLESIDE_DEMO__TABLES": "2",
        **extra,
    }
    env.pop("TABLESIDE_DATABASE_URL", None)
    env.pop("TABLESIDE_REDIS_URL", None)
    return env

class Run:
    """A `serve --workers N` supervisor, started and waited for until its banner is complete."""

    def __init__(self, args: list[str], env: dict[str, str], timeout: float = 90) -> None:
        cmd = [sys.executable, "-m", "tableside", "serve", "--demo", "--port", "0", *args]
        self.proc, self.out, self.stderr_path = spawn(cmd, env)
        if self.out.wait_for(BANNER_DONE, t(timeout)) is None:
            self.kill()
            raise AssertionError(f"no banner (exit {self.proc.returncode}): {self.out.text()!r} {self.stderr()!r}")
        line = self.out.wait_for("tableside listening on http://", 1)
        assert line is not None
        self.port = int(line.rsplit(":", 1)[1])
        self.children = psutil.Process(self.proc.pid).children()

    def stderr(self) -> str:
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def workers(self) -> list[psutil.Process]:
        return [p for p in psutil.Process(self.proc.pid).children() if "--node-id" in p.cmdline()]

    def redis(self) -> list[psutil.Process]:
        return [p for p in self.children if "redis-server" in p.name()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(t(10))

    def close(self) -> None:
        self.kill()
        os.unlink(self.stderr_path)

def health(port: int) -> int:
    return health_body(port)[0]


def health_body(port: int) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=t(10))  # a fresh connection each time
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()

def listening_pids(port: int) -> set[int]:
    pids = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            pids.add(conn.pid)
    return pids

def assert_all_gone(procs: list[psutil.Process]) -> None:
    _gone, alive = psutil.wait_procs(procs, timeout=t(20))
    assert not alive, [p.pid for p in alive]

def test_workers_share_one_port_and_sigterm_leaves_nothing_behind(tmp_path: Path, db: str) -> None:
    run = Run(["--workers", "3", "--database-url", db], env_for(tmp_path / "var"))
    try:
        out = run.out.text(0)
        assert out.count("tableside listening on") == 1  # one banner, from the supervisor
        assert "3 workers: node ids " in out and "-w0, " in out and "-w2" in out
        assert "redis: private " in out and "redis-server" in out
        assert "/q/T001/" in out and "admin" in out
        workers = run.workers()
        assert len(workers) == 3
        assert len(run.redis()) == 1
        assert {w.pid for w in workers} == listening_pids(run.port)
        answered = []
        for _ in range(40):
            status, body = health_body(run.port)
            assert status == 200 and body["redis"] == "ok"
            answered.append(body["node_id"])
        # The kernel spreads fresh connections over the workers; each answers as its own node of the cluster.
        assert len(set(answered)) >= 2 and all(str(n).endswith(("-w0", "-w1", "-w2")) for n in answered)
        everything = run.children
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(t(30)) == 0, run.stderr()
        assert_all_gone(everything)
        assert not listening_pids(run.port)
    finally:
        run.close()

def test_a_killed_worker_is_restarted(tmp_path: Path, db: str) -> None:
    run = Run(["--workers", "2", "--database-url", db], env_for(tmp_path / "var"))
    try:
        victim = run.workers()[1]
        node_arg = victim.cmdline()[victim.cmdline().index("--node-id") + 1]
        victim.send_signal(signal.SIGKILL)
        victim.wait(t(10))

        def replaced() -> bool:
            now = run.workers()
            return len(now) == 2 and victim.pid not in {w.pid for w in now} and len(listening_pids(run.port)) == 2

        deadline = time.monotonic() + t(30)
        while not replaced():
            assert time.monotonic() < deadline, run.stderr()[-3000:]
            time.sleep(0.1)
        again = [w for w in run.workers() if node_arg in w.cmdline()]
        assert len(again) == 1  # the same node id, a new process
        err = run.stderr()
        assert "worker_exited" in err and "worker_restarted" in err
        for _ in range(10):
            assert health(run.port) == 200
        everything = psutil.Process(run.proc.pid).children()
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(t(30)) == 0
        assert_all_gone(everything)
    finally:
        run.close()

def test_supervisor_killed_takes_its_workers_and_redis_with_it(tmp_path: Path, db: str) -> None:
    run = Run(["--workers", "2", "--database-url", db], env_for(tmp_path / "var"))
    try:
        everything = run.children
        assert len(everything) == 3
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(t(10))
        assert_all_gone(everything)
    finally:
        run.close()

def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tableside", *args], capture_output=True, text=True, timeout=t(60), env=env
    )

def test_missing_redis_server_is_one_clear_line(tmp_path: Path, db: str) -> None:
    done = run_cli("serve", "--workers", "2", "--port", "0", "--database-url", db,
                   env=env_for(tmp_path / "var", PATH=str(tmp_path / "empty-bin")))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no redis-server found on PATH" in lines[0] and "--redis-url" in lines[0]

@pytest.mark.parametrize("count", ["0", "65", "-1"])
def test_workers_out_of_range_is_a_config_error(tmp_path: Path, count: str) -> None:
    done = run_cli("serve", "--workers", count, env=env_for(tmp_path / "var"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"tableside: --workers must be between 1 and 64 (got {count})"]

@pytest.mark.slow
def test_workers_on_the_embedded_postgres_stop_it_too(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    run = Run(["--workers", "2"], env_for(data_dir), timeout=180)
    try:
        pid = int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])
        postgres = psutil.Process(pid)
        assert health(run.port) == 200
        everything = [*run.children, postgres]
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(t(60)) == 0, run.stderr()
        assert_all_gone(everything)
        assert not (data_dir / "postgres" / "postmaster.pid").exists()
    finally:
        run.close()
