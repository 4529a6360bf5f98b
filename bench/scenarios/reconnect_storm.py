"""``reconnect-storm``: drop every connection at once, reconnect all of them, and time until every member
holds a current snapshot.

Setup: connect everyone; on each table member 0 adds a line and every member waits to see it, which fixes the
table's *current* revision. At ``t0`` every process aborts all its sockets in one loop iteration (TCP RST, no
close frame: what a network failure or a load-balancer restart looks like), then every member reconnects at
once with its existing token (no new join). A member is current when its ``welcome`` (or, if that was older,
a ``get_snapshot`` answer) shows a cart at least at the table's current revision. Failed attempts are retried
with jittered backoff (50 ms doubling to 1 s) until the deadline.

Reported: time from the drop until the last member was current, per-member time to current
(p50/p99/max), attempts, failures by kind, members never current."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from bench.client import Member, describe, now
from bench.scenarios import Scenario
from bench.scenarios.common import connect_all, connect_figures, errors, hsum, menu_item, settle
from bench.stats import Stats
from bench.worker import WorkerCtx


class ReconnectStormScenario(Scenario):
    name = "reconnect-storm"
    default_duration = 30.0

    def __init__(self) -> None:
        self.current: dict[str, int] = {}

    async def setup(self, ctx: WorkerCtx) -> dict[str, Any]:
        ctx.build()
        connected = await connect_all(ctx)
        rng = random.Random(ctx.spec.index)
        for table in ctx.tables:
            members = [m for m in table.members if m.connected]
            if not members:
                continue
            try:
                reply, _ = await asyncio.wait_for(
                    members[0].request({"type": "add_item", "menu_item_id": menu_item(ctx, rng), "qty": 1}),
                    10.0,
                )
            except (TimeoutError, ConnectionError):
                ctx.stats.count("setup_add_failed")
                continue
            if reply.get("type") == "ack":
                await settle(members, int(reply.get("revision", 0)), 10.0)
            else:
                ctx.stats.count("setup_add_error:" + str(reply.get("code")))
            self.current[table.table_id] = max(m.revision for m in members)
        return {"connected": connected, "errors": ctx.stats.samples.get("connect_errors", [])}

    async def run(self, ctx: WorkerCtx) -> None:
        st = ctx.stats
        members = [m for m in ctx.members if m.connected]
        st.count("dropped", len(members))
        t_drop = now()
        for m in members:
            m.drop()
        st.mark_first("drop", t_drop)
        await asyncio.gather(*(self._reconnect(ctx, m, t_drop) for m in members))

    async def _reconnect(self, ctx: WorkerCtx, m: Member, t_drop: float) -> None:
        st = ctx.stats
        want = self.current.get(m.table.table_id, 0)
        backoff = 0.05
        rng = random.Random(m.key)
        while now() < ctx.deadline:
            st.count("attempts")
            try:
                welcome = await m.connect(timeout=max(0.5, min(10.0, ctx.deadline - now())))
                rev = int((welcome.get("cart") or {}).get("revision", -1))
                if rev < want:
                    st.count("stale_welcome")
                    reply, _ = await asyncio.wait_for(m.request({"type": "get_snapshot"}), 10.0)
                    rev = int((reply.get("cart") or {}).get("revision", -1))
                if rev >= want:
                    t = now()
                    st.record("time_to_current", t - t_drop)
                    st.mark_last("all_current", t)
                    st.count("current")
                    return
                st.count("still_stale")
            except Exception as exc:  # noqa: BLE001 - counted by kind, retried
                st.count("reconnect_failed:" + describe(exc))
                st.sample("reconnect_errors", repr(exc))
            await asyncio.sleep(backoff * (0.5 + rng.random()))
            backoff = min(1.0, backoff * 2)
        st.count("never_current")

    def figures(self, stats: Stats, run: dict[str, Any]) -> dict[str, Any]:
        c = stats.counters
        drop = stats.first.get("drop")
        last = stats.last.get("all_current")
        out: dict[str, Any] = {
            "connections": connect_figures(stats),
            "dropped": c.get("dropped", 0),
            "current": c.get("current", 0),
            "never_current": c.get("never_current", 0),
            "attempts": c.get("attempts", 0),
            "stale_welcomes": c.get("stale_welcome", 0),
            "reconnect_failures": errors(stats, "reconnect_failed:"),
            "time_to_current_ms": hsum(stats, "time_to_current"),
            "setup_errors": errors(stats, "setup_add_error:"),
        }
        if drop is not None and last is not None and c.get("current", 0) == c.get("dropped", 0):
            out["all_current_after_s"] = round(last - drop, 3)
        else:
            out["all_current_after_s"] = None
        return out
