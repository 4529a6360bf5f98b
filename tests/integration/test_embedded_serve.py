"""`tableside serve` on the embedded Postgres (no database URL), as a new user runs it: a quiet start
whose banner says where to go, and Ctrl-C stops the embedded server too (nothing left running for the
data dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client import t
from tests.procs import _wait_line, free_port

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
    port = free_port()
    env = {
        **os.environ,
        "TABLESIDE_CONFIG_FILE": "/nonexistent.yaml",
        "TABLESIDE_DATA_DIR": str(data_dir),
        "TABLESIDE_DEMO__TABLES": "2",
    }
    env.pop("TABLESIDE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tableside", "serve", "--demo", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        try:
            _wait_line(proc, "tableside listening on", t(180))
        except AssertionError:
            proc.wait(t(10))
            raise AssertionError(proc.stderr.read() if proc.stderr else "") from None
        pid = postmaster_pid(data_dir)
        assert alive(pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(t(60))
        # Through the text wrappers: _wait_line's readline may have buffered the rest of the banner.
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not alive(pid)
    # The start is quiet: initdb/pg_ctl output, alembic's plugin setup and PostmasterInfo stay at debug.
    for noise in ("initdb", "pg_ctl", "PostmasterInfo", "setup plugin", "Running upgrade"):
        assert noise not in err, err
    assert "join URLs" in out and "/q/T001/" in out and "demo-logins.txt" in out
