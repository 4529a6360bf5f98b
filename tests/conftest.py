"""Suite-wide: structlog goes through stdlib logging so ``caplog`` sees it, and a test that logged an
ERROR fails (a swallowed exception in an actor, a handler or tornado shows up instead of hiding).

A test run must leave the checkout as it found it: the session fails when files that git tracks, or
untracked files that are not ignored, were created or changed by the run (``git status`` at the start
and at the end; skipped outside a git checkout)."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.procs import Proc, start_pos_sim

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        structlog.processors.KeyValueRenderer(key_order=["event"]),
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=False,
)


# ``store`` (both stores) and ``pg_store`` (Postgres) for the storage and actor suites.
pytest_plugins = ["tests.stores"]


@pytest.fixture
def pos_sim() -> Iterator[Proc]:
    """The POS simulator as its own process (``tableside pos-sim``), answering at once."""
    sim = start_pos_sim("--latency-ms", "0")
    yield sim
    sim.stop()


@pytest.fixture(scope="session", autouse=True)
def server_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Servers the suite starts without choosing a data directory (in-process ones and child processes
    such as the bench harness's) keep their files (demo-logins.txt) in a temporary one, never in ./var of
    the checkout. tests/integration gives each test its own; an explicit setting still wins."""
    data_dir = tmp_path_factory.mktemp("tableside-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TABLESIDE_DATA_DIR", str(data_dir))
        yield data_dir


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- the suite leaves the tree clean ------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
_TREE_AT_START = pytest.StashKey[dict[str, str]]()
# Written on purpose with TABLESIDE_UPDATE_SCREENSHOTS=1 (see README, "What it looks like").
_ON_PURPOSE = ("docs/screenshots/",) if os.environ.get("TABLESIDE_UPDATE_SCREENSHOTS") == "1" else ()


def _tree_state() -> dict[str, str] | None:
    """``{path: status and content digest}`` of every changed, new (not ignored) or deleted file, or None
    outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain=v1", "-z", "--untracked-files=all"],
            capture_output=True, check=True, timeout=60,
        ).stdout.decode("utf-8", "surrogateescape")
    except (OSError, subprocess.SubprocessError):
        return None
    state: dict[str, str] = {}
    entries = iter(out.split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            next(entries, None)  # the rename's source path
        try:
            digest = hashlib.sha256((REPO / path).read_bytes()).hexdigest()
        except OSError:
            digest = "-"  # deleted, or a directory
        state[path] = f"{status} {digest}"
    return state


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller checks
    state = _tree_state()
    if state is not None:
        session.config.stash[_TREE_AT_START] = state


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_TREE_AT_START, None)
    if before is None:
        return
    after = _tree_state() or {}
    changed = sorted(
        path for path in before.keys() | after.keys()
        if before.get(path) != after.get(path) and not path.startswith(_ON_PURPOSE)
    )
    if not changed:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (
        "the test run changed the checkout (tests must write to temporary directories; "
        f"or were these files edited during the run?): {', '.join(changed[:20])}"
    )
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", "the checkout is not clean", red=True, bold=True)
        reporter.write_line(message, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
