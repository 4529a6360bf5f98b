"""psutil sampling of the server process (CPU %, RSS), its database, the generator processes and the whole
machine, in a background thread of the parent, every ``interval`` seconds."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil


class _Proc:
    def __init__(self, pid: int) -> None:
        self.p = psutil.Process(pid)
        self.p.cpu_percent(None)

    def cpu_rss(self) -> tuple[float, int] | None:
        try:
            with self.p.oneshot():
                return self.p.cpu_percent(None), int(self.p.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None


def postgres_pids() -> list[int]:
    out = []
    for p in psutil.process_iter(["name"]):
        name = p.info.get("name") or ""
        if name.startswith("postgres") or name.startswith("postmaster"):
            out.append(p.pid)
    return out


class Sampler:
    """Series of (t, server_cpu_pct, server_rss, db_cpu_pct, generator_cpu_pct, machine_cpu_pct)."""

    def __init__(
        self,
        server_pid: int | None,
        interval: float = 0.25,
        sample_db: bool = True,
        more_server_pids: list[int] | None = None,
    ) -> None:
        self.interval = interval
        self.server = _Proc(server_pid) if server_pid else None
        # a multi-node target: the other node processes count as "server" too (CPU and RSS summed)
        self.more_servers: list[_Proc] = []
        for pid in more_server_pids or []:
            try:
                self.more_servers.append(_Proc(pid))
            except psutil.Error:
                pass
        self.sample_db = sample_db
        self.db: dict[int, _Proc] = {}
        self.workers: dict[int, _Proc] = {}
        self.series: list[list[float]] = []
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        psutil.cpu_percent(None)
        self._refresh_db()

    def _refresh_db(self) -> None:
        if not self.sample_db:
            return
        for pid in postgres_pids():
            if pid not in self.db:
                try:
                    self.db[pid] = _Proc(pid)
                except psutil.Error:
                    pass

    def refresh(self) -> None:
        """Pick up database processes started since (e.g. an embedded Postgres)."""
        with self._lock:
            self._refresh_db()

    def add_workers(self, pids: list[int]) -> None:
        with self._lock:
            for pid in pids:
                try:
                    self.workers[pid] = _Proc(pid)
                except psutil.Error:
                    pass

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def server_rss(self) -> int | None:
        if self.server is None:
            return None
        try:
            return int(self.server.p.memory_info().rss)
        except psutil.Error:
            return None

    def sample(self) -> None:
        t = time.monotonic()
        srv = self.server.cpu_rss() if self.server else None
        for extra in self.more_servers:
            got = extra.cpu_rss()  # a node killed by failover: None from then on
            if got is not None:
                srv = (got[0] + (srv[0] if srv else 0.0), got[1] + (srv[1] if srv else 0))
        with self._lock:
            db_cpu = sum((r[0] for r in (p.cpu_rss() for p in self.db.values()) if r), 0.0)
            gen_cpu = sum((r[0] for r in (p.cpu_rss() for p in self.workers.values()) if r), 0.0)
        machine = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
        self.series.append(
            [t, srv[0] if srv else -1.0, float(srv[1]) if srv else -1.0, db_cpu, gen_cpu, machine]
        )

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            self.sample()
            n += 1
            if n % 20 == 0:
                with self._lock:
                    self._refresh_db()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Mean / max of each series between two monotonic instants (CPU % where 100 = one core)."""
        rows = [r for r in self.series if start <= r[0] <= end]
        if not rows:
            return {"samples": 0}

        def stat(i: int) -> dict[str, float]:
            vals = [r[i] for r in rows if r[i] >= 0]
            if not vals:
                return {}
            return {"mean": round(sum(vals) / len(vals), 1), "max": round(max(vals), 1)}

        other = [max(0.0, r[5] - max(r[1], 0.0) - r[3] - r[4]) for r in rows]
        rss = [r[2] for r in rows if r[2] >= 0]
        out: dict[str, Any] = {
            "samples": len(rows),
            "server_cpu_pct": stat(1),
            "db_cpu_pct": stat(3),
            "generator_cpu_pct": stat(4),
            "machine_cpu_pct": stat(5),
            "other_cpu_pct": {"mean": round(sum(other) / len(other), 1), "max": round(max(other), 1)},
        }
        if rss:
            out["server_rss_mb"] = {
                "start": round(rss[0] / 2**20, 1),
                "max": round(max(rss) / 2**20, 1),
                "end": round(rss[-1] / 2**20, 1),
            }
        return out

    def timeline(self, origin: float) -> dict[str, Any]:
        """The series relative to ``origin`` (for plots)."""
        return {
            "columns": [
                "t_s",
                "server_cpu_pct",
                "server_rss_mb",
                "db_cpu_pct",
                "generator_cpu_pct",
                "machine_cpu_pct",
            ],
            "rows": [
                [round(r[0] - origin, 3), r[1], round(r[2] / 2**20, 2) if r[2] >= 0 else -1, r[3], r[4], r[5]]
                for r in self.series
            ],
            "marks": {k: round(v - origin, 3) for k, v in self.marks.items()},
        }
