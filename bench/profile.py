"""Optional server profiling during the measured window with py-spy (``--profile``): a sampling profile of
the server process, saved as collapsed stacks (``*.folded``, loadable in speedscope or flamegraph.pl), and the
top functions by own and inclusive time put in the result. py-spy attaches with ptrace and costs the server a
little CPU; results measured with ``--profile`` say so."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out: Path, duration: float, rate: int = 100) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy not found (pip install py-spy)")
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "record", "-p", str(pid), "-d", str(max(1, int(duration))), "-r", str(rate), "-f", "raw",
             "-o", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self) -> None:
        """End sampling now (py-spy writes its output on SIGINT)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        self.stop()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            return {"error": (err or b"").decode(errors="replace")[-500:]}
        return summarize(self.out) | {"file": str(self.out)}


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return {"samples": 0}

    def pct(c: collections.Counter[str]) -> list[list[Any]]:
        return [[name, round(100.0 * v / total, 1)] for name, v in c.most_common(top)]

    skip = {
        "<module>",
        "_run_module_as_main",
        "_run_code",
        "main",
        "run",
        "run_forever",
        "_run_once",
        "run_until_complete",
    }
    incl_useful = collections.Counter(
        {k: v for k, v in incl.items() if k.split(".")[-1] not in skip and k not in skip}
    )
    return {"samples": total, "top_own_pct": pct(own), "top_inclusive_pct": pct(incl_useful)}
