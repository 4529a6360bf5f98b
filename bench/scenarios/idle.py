"""``idle``: open tables × members connections and hold them for the duration.

Reports the connect rate (joins + websocket handshakes + welcomes per second over the connect phase), connect
latency, how many connections the server closed while idle, a final ping round over every connection (how
many answered within 10 s) and, from the parent's psutil samples, the server's RSS growth per connection
(RSS when all were connected and held, minus RSS before the first connection, over the connection count)."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.client import Member, now
from bench.scenarios import Scenario
from bench.scenarios.common import connect_all, connect_figures, hsum
from bench.stats import Stats
from bench.worker import WorkerCtx


class IdleScenario(Scenario):
    name = "idle"
    kinds = ("tableside", "raw", "socketio")
    default_duration = 10.0

    async def setup(self, ctx: WorkerCtx) -> dict[str, Any]:
        ctx.build()

        def closed(m: Member) -> None:
            ctx.stats.count("closed_by_server")

        for m in ctx.members:
            m.on_close = closed
        connected = await connect_all(ctx)
        return {"connected": connected, "errors": ctx.stats.samples.get("connect_errors", [])}

    async def run(self, ctx: WorkerCtx) -> None:
        st = ctx.stats
        # hold until 10 s before the deadline (or at least half the duration), then ping everyone
        ping_at = max(ctx.t0 + (ctx.deadline - ctx.t0) / 2, ctx.deadline - 10.0)
        await asyncio.sleep(max(0.0, ping_at - now()))
        alive = [m for m in ctx.members if m.connected]
        st.count("alive_before_ping", len(alive))

        async def ping(m: Member) -> None:
            t = now()
            msg = {"type": "ping"}
            try:
                reply, t_reply = await asyncio.wait_for(m.request(msg), max(1.0, ctx.deadline - now()))
            except (TimeoutError, ConnectionError):
                st.count("ping_unanswered")
                return
            if reply.get("type") == "pong":
                st.count("pong")
                st.record("ping", t_reply - t)
            else:
                st.count("ping_error")
                st.sample("ping_errors", repr(reply))

        sem = asyncio.Semaphore(1000)

        async def bounded(m: Member) -> None:
            async with sem:
                await ping(m)

        await asyncio.gather(*(bounded(m) for m in alive))

    def figures(self, stats: Stats, run: dict[str, Any]) -> dict[str, Any]:
        c = stats.counters
        out: dict[str, Any] = {
            "connections": connect_figures(stats),
            "requested": run["connections_requested"],
            "closed_by_server_while_idle": c.get("closed_by_server", 0),
            "alive_at_end": c.get("alive_before_ping", 0),
            "pong": c.get("pong", 0),
            "ping_unanswered": c.get("ping_unanswered", 0),
            "ping_ms": hsum(stats, "ping"),
        }
        mem = run.get("server_memory") or {}
        connected = c.get("connected", 0)
        if mem and connected:
            before, held = mem.get("rss_before_bytes"), mem.get("rss_held_bytes")
            if before is not None and held is not None:
                out["server_rss_before_mb"] = round(before / 2**20, 1)
                out["server_rss_held_mb"] = round(held / 2**20, 1)
                out["server_rss_per_connection_kb"] = round((held - before) / connected / 1024, 2)
        return out
