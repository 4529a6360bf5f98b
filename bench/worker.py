"""A load-generator process: one asyncio loop (uvloop when available and wanted) driving a share of the
tables. The parent talks to it over a ``multiprocessing`` pipe:

    parent -> worker: the WorkerSpec (at spawn), ("start", t0, deadline, run_info), ("stop",)
    worker -> parent: ("ready", info), ("done", stats wire), or ("error", traceback)

Setup (join + connect) starts at once; the scenario's measured phase starts at the parent's ``t0`` (a
``time.monotonic`` value, system-wide on Linux) so every process acts at the same instant."""

from __future__ import annotations

import asyncio
import resource
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

from bench.client import Endpoint, HttpPool, Member, Table, TargetKind, now
from bench.proto import Codec
from bench.stats import Stats


@dataclass
class WorkerSpec:
    index: int
    scenario: str
    kind: TargetKind
    urls: list[str]
    codec: Codec
    tables: list[tuple[str | int, str | None]]  # (table_id as the server spells it, qr)
    members: int
    rate_per_member: float  # ops/s per member; 0 = closed loop (next op when the previous is answered)
    duration: float
    warmup: float
    rounds: int
    source_ips: list[str]
    menu: list[tuple[str, int]]  # (menu_item_id, price)
    use_uvloop: bool = True
    connect_concurrency: int = 200
    setup_timeout: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)


class WorkerCtx:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.stats = Stats()
        self.http = HttpPool(spec.source_ips) if spec.kind == "tableside" else None
        self.endpoints = [Endpoint(spec.kind, u.rstrip("/")) for u in spec.urls]
        self.tables: list[Table] = []
        self.members: list[Member] = []
        self.t0 = 0.0
        self.deadline = 0.0
        # what the parent learnt after everyone connected (sent with "start"): e.g. which members sit on
        # the node that owns their table ("owner_local": {member_name: bool}), failover's planned kill time
        self.run_info: dict[str, Any] = {}
        self._ip_i = spec.index

    def next_ip(self) -> str:
        ips = self.spec.source_ips
        ip = ips[self._ip_i % len(ips)]
        self._ip_i += 1
        return ip

    def build(self, endpoint_for: Callable[[int, int], int] | None = None) -> None:
        """Create the Table and Member objects (not connected yet)."""
        for ti, (table_id, qr) in enumerate(self.spec.tables):
            table = Table(str(table_id), qr, join_id=table_id)
            for mi in range(self.spec.members):
                ep = self.endpoints[endpoint_for(ti, mi) if endpoint_for else 0]
                m = Member(table, mi, ep, self.spec.codec, self.next_ip(), self.http)
                table.members.append(m)
                self.members.append(m)
            self.tables.append(table)

    async def close(self) -> None:
        for m in self.members:
            m.close()
        await asyncio.sleep(0.05)
        if self.http is not None:
            await self.http.close()


ScenarioFn = Callable[[WorkerCtx], Awaitable[dict[str, Any]]]


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _recv(conn: Connection, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, conn.poll, timeout)
    if not ready:
        raise TimeoutError("no command from the parent")
    return conn.recv()


async def _main(spec: WorkerSpec, conn: Connection) -> None:
    from bench.scenarios import get_scenario

    scenario = get_scenario(spec.scenario)
    ctx = WorkerCtx(spec)
    try:
        info = await asyncio.wait_for(scenario.setup(ctx), spec.setup_timeout)
        if spec.kind == "tableside" and spec.extra.get("placement"):
            info["placement"] = [m.placement() for m in ctx.members if m.connected]
        conn.send(("ready", info))
        cmd = await _recv(conn, spec.setup_timeout + 60)
        if cmd[0] == "start":
            ctx.t0, ctx.deadline = float(cmd[1]), float(cmd[2])
            ctx.run_info = dict(cmd[3]) if len(cmd) > 3 else {}
            delay = ctx.t0 - now()
            if delay > 0:
                await asyncio.sleep(delay)
            await scenario.run(ctx)
            conn.send(("done", ctx.stats.to_wire()))
            cmd = await _recv(conn, 120)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        await ctx.close()


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Process entry point."""
    _raise_nofile()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if spec.use_uvloop:
        try:
            import uvloop

            loop_factory = cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)
        except ImportError:  # pragma: no cover
            loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_main(spec, conn))
