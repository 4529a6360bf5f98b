"""`tableside serve` on the embedded Postgres (no database URL), as a new user runs it: a quiet start
whose banner says where to go, and Ctrl-C stops the embedded server too (nothing left running for the
data dir)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.client import t
from tests.procs import spawn, wait_listening

pytestmark = pytest.mark.slow


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_the_embedded_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        "TABLESIDE_CONFIG_FILE": "/nonexistent.yaml",
        "TABLESIDE_DATA_DIR": str(data_dir),
        "TABLESIDE_DEMO__TABLES": "2",
    }
    env.pop("TABLESIDE_DATABASE_URL", None)
    proc, output, stderr_path = spawn([sys.executable, "-m", "tableside", "serve", "--demo", "--port", "0"], env)
    try:
        wait_listening(proc, output, stderr_path, t(180))
        pid = postmaster_pid(data_dir)
        assert alive(pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(t(60))
        out = output.text()
        with open(stderr_path) as f:
            err = f.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(stderr_path)
    assert proc.returncode == 0, err
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not alive(pid)
    # The start is quiet: initdb/pg_ctl output, alembic's plugin setup and PostmasterInfo stay at debug.
    for noise in ("initdb", "pg_ctl", "PostmasterInfo", "setup plugin", "Running upgrade"):
        assert noise not in err, err
    assert "join URLs" in out and "/q/T001/" in out and "demo-logins.txt" in out
