"""``order-race``: all members of a table press "Place order" at the same instant; rounds × tables.

Each round, per table: if the cart has no pending line, member 0 adds one and every member waits until it
has seen that cart; then every member sends ``place_order`` (with the total it sees) in the same loop
iteration, i.e. within microseconds. Exactly one should be acked (the lock winner), the others refused
(``order_in_progress`` / ``cart_locked``); every member must then receive ``order_confirmed`` (or
``order_failed``) with one and the same order id. Rounds repeat back to back until the duration is over (or
``rounds`` per table are done); with a rate, rounds start on a schedule instead (rate = rounds/s over all
tables, each table with a random phase), so the latency is that of the race, not of a saturated server.

Reported: place_order ack latency (winner; the POS simulator runs with 0 ms latency so this excludes POS
latency), refusal latency, time until each member saw ``cart_locked`` and the outcome, and — from the
parent — tickets created at the POS simulator vs expected (orders confirmed to the guests)."""

from __future__ import annotations

import asyncio
import random
import zlib
from typing import Any

from bench.client import Member, Table, now
from bench.proto import Msg
from bench.scenarios import Scenario
from bench.scenarios.common import (
    connect_all,
    connect_figures,
    errors,
    hsum,
    menu_item,
    rate,
    run_until,
    settle,
)
from bench.stats import Stats
from bench.worker import WorkerCtx

ROUND_TIMEOUT = 15.0


class _Round:
    def __init__(self, members: list[Member]) -> None:
        loop = asyncio.get_running_loop()
        self.t_send = 0.0
        self.outcome: dict[int, asyncio.Future[tuple[Msg, float]]] = {
            m.key: loop.create_future() for m in members
        }
        self.locked: dict[int, float] = {}


class OrderRaceScenario(Scenario):
    name = "order-race"
    default_duration = 10.0

    async def setup(self, ctx: WorkerCtx) -> dict[str, Any]:
        ctx.build()
        connected = await connect_all(ctx)
        return {"connected": connected, "errors": ctx.stats.samples.get("connect_errors", [])}

    async def run(self, ctx: WorkerCtx) -> None:
        loops = [self._table_loop(ctx, t) for t in ctx.tables]
        cancelled = await run_until(loops, ctx.deadline, grace=ROUND_TIMEOUT + 2)
        ctx.stats.count("tables_cancelled", cancelled)

    async def _table_loop(self, ctx: WorkerCtx, table: Table) -> None:
        st = ctx.stats
        rng = random.Random(zlib.crc32(table.table_id.encode()))
        current: list[_Round] = []

        def on_event(m: Member, msg: Msg, t: float) -> None:
            if not current:
                return
            rnd = current[0]
            mtype = msg.get("type")
            if mtype == "cart_locked":
                if m.key not in rnd.locked:
                    rnd.locked[m.key] = t
                    st.record("cart_locked_seen", t - rnd.t_send)
            elif mtype in ("order_confirmed", "order_failed"):
                fut = rnd.outcome.get(m.key)
                if fut is not None and not fut.done():
                    fut.set_result((msg, t))

        table.on_event = on_event
        rounds = 0
        per_table = ctx.spec.rate_per_member * ctx.spec.members
        interval = 1.0 / per_table if per_table > 0 else 0.0
        next_t = ctx.t0 + rng.random() * interval
        while now() < ctx.deadline and (ctx.spec.rounds <= 0 or rounds < ctx.spec.rounds):
            if interval:
                wait = next_t - now()
                if wait > 0:
                    await asyncio.sleep(wait)
                    if now() >= ctx.deadline:
                        break
                else:
                    st.count("late_rounds")
                next_t += interval
            members = [m for m in table.members if m.connected]
            if not members:
                st.count("tables_without_members")
                return
            first = members[0]
            if not first.pending_lines():
                try:
                    reply, _ = await asyncio.wait_for(
                        first.request({"type": "add_item", "menu_item_id": menu_item(ctx, rng), "qty": 1}),
                        10.0,
                    )
                except (TimeoutError, ConnectionError):
                    st.count("add_failed")
                    return
                if reply.get("type") != "ack":
                    st.count("add_error:" + str(reply.get("code")))
                    st.sample("add_errors", repr(reply))
                    await asyncio.sleep(0.05)
                    continue
                if not await settle(members, int(reply.get("revision", 0)), 10.0):
                    st.count("settle_timeout")
            rnd = _Round(members)
            current[:] = [rnd]
            rnd.t_send = t_send = now()
            futs = [m.request({"type": "place_order", "total": (m.cart or {}).get("total")}) for m in members]
            st.count("place_order_sent", len(futs))
            done, pending = await asyncio.wait(futs, timeout=ROUND_TIMEOUT)
            acks = 0
            for fut in futs:
                if fut not in done:
                    st.count("place_order_unanswered")
                    continue
                if fut.exception() is not None:
                    st.count("place_order_connection_lost")
                    continue
                reply, t_reply = fut.result()
                if reply.get("type") == "ack":
                    acks += 1
                    st.record("place_order_ack", t_reply - t_send)
                else:
                    st.count("place_order_refused:" + str(reply.get("code")))
                    st.record("place_order_refused", t_reply - t_send)
            for fut in pending:
                fut.cancel()
            st.count("place_order_acked", acks)
            if acks == 0:
                st.count("rounds_without_winner")
                current.clear()
                await asyncio.sleep(0.05)
                continue
            if acks > 1:
                st.count("rounds_with_several_winners")
            outs = list(rnd.outcome.values())
            done_o, pending_o = await asyncio.wait(outs, timeout=ROUND_TIMEOUT)
            order_ids: set[str] = set()
            confirmed = failed = 0
            for fut in done_o:
                msg, t = fut.result()
                st.record("outcome_seen", t - t_send)
                order_ids.add(str(msg.get("order_id")))
                if msg.get("type") == "order_confirmed":
                    confirmed += 1
                else:
                    failed += 1
            if pending_o:
                st.count("members_without_outcome", len(pending_o))
                for fut in pending_o:
                    fut.cancel()
            if len(order_ids) > 1:
                st.count("rounds_order_id_mismatch")
            if confirmed:
                st.count("orders_confirmed")
                st.count("members_saw_confirmed", confirmed)
            elif failed:
                st.count("orders_failed")
            current.clear()
            rounds += 1
            st.count("rounds")
            st.mark_last("last_round_end", now())

    def figures(self, stats: Stats, run: dict[str, Any]) -> dict[str, Any]:
        c = stats.counters
        window_s = float(run["window_s"])
        out: dict[str, Any] = {
            "connections": connect_figures(stats),
            "rounds": c.get("rounds", 0),
            "rounds_per_s": rate(c.get("rounds", 0), window_s),
            "late_rounds": c.get("late_rounds", 0),
            "place_order_sent": c.get("place_order_sent", 0),
            "place_order_acked": c.get("place_order_acked", 0),
            "place_order_refused": errors(stats, "place_order_refused:"),
            "place_order_unanswered": c.get("place_order_unanswered", 0),
            "rounds_without_winner": c.get("rounds_without_winner", 0),
            "rounds_with_several_winners": c.get("rounds_with_several_winners", 0),
            "rounds_order_id_mismatch": c.get("rounds_order_id_mismatch", 0),
            "orders_confirmed": c.get("orders_confirmed", 0),
            "orders_failed": c.get("orders_failed", 0),
            "members_without_outcome": c.get("members_without_outcome", 0),
            "place_order_ack_ms": hsum(stats, "place_order_ack"),
            "place_order_refused_ms": hsum(stats, "place_order_refused"),
            "cart_locked_seen_ms": hsum(stats, "cart_locked_seen"),
            "outcome_seen_ms": hsum(stats, "outcome_seen"),
            "add_errors": errors(stats, "add_error:"),
        }
        pos = run.get("pos")
        if pos is not None:
            out["tickets_created"] = pos.get("tickets_created")
            out["tickets_expected"] = c.get("orders_confirmed", 0)
            out["tickets_match"] = pos.get("tickets_created") == c.get("orders_confirmed", 0)
        else:
            out["tickets_created"] = None
            out["tickets_expected"] = c.get("orders_confirmed", 0)
            out["tickets_match"] = None
        return out
