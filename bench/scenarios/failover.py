"""``failover``: several nodes serve the same restaurant; SIGKILL one of them under cart load and measure how
long until the guests who were on it are served again, and whether any acknowledged operation was lost.

Only meaningful with more than one node (``--url`` given several times, or a multi-node target). On a single
node it reports ``not applicable: single node`` without generating load.

Members are spread over the nodes (member i of table t on node (t + i) mod n). Each member adds lines with
a unique note and changes their quantities; every acknowledged operation goes into a ledger (note -> last
acked qty). When a connection drops, the member reconnects to the next node with its token and resends the
operation it had in flight under the *same* request id, so it gets that operation's definite answer
(tableside's ids are idempotent). At ``t0 + kill_after`` the parent SIGKILLs the victim node.

Reported: takeover time (kill until the last affected member had an operation acked again), per-member outage,
acked ops, and acked ops lost (ledger entries missing or with another qty in the final snapshots; must be 0)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from bench import cluster
from bench.client import Member, describe, now
from bench.proto import Msg
from bench.scenarios import Scenario
from bench.scenarios.common import connect_all, connect_figures, errors, hsum, menu_item, rate, run_until
from bench.stats import Stats
from bench.worker import WorkerCtx

MAX_LINES_PER_MEMBER = 4
NOT_APPLICABLE = "not applicable: single node"
KILL_MARGIN_S = 0.01


class FailoverScenario(Scenario):
    name = "failover"
    # raw: only to exercise the harness (raw nodes share no state, so lost ops are expected there)
    kinds = ("tableside", "raw")
    default_duration = 20.0

    def __init__(self) -> None:
        self.ledger: dict[str, dict[str, int]] = {}  # table -> note -> last acked qty
        self.lost_at: dict[int, float] = {}
        self._lost_names: set[str] = set()
        self._acked_after_kill: set[str] = set()

    @staticmethod
    def not_applicable(urls: list[str]) -> str | None:
        return NOT_APPLICABLE if len(urls) < 2 else None

    async def setup(self, ctx: WorkerCtx) -> dict[str, Any]:
        n = len(ctx.endpoints)
        ctx.build(lambda ti, mi: (ti + mi) % n)
        connected = await connect_all(ctx)
        for m in ctx.members:
            m.on_close = self._lost
        return {"connected": connected, "errors": ctx.stats.samples.get("connect_errors", [])}

    def _lost(self, m: Member) -> None:
        self.lost_at.setdefault(m.key, now())
        self._lost_names.add(m.name)

    async def _reconnect(self, ctx: WorkerCtx, m: Member) -> bool:
        st = ctx.stats
        backoff = 0.05
        i = ctx.endpoints.index(m.endpoint)
        while now() < ctx.deadline + 5.0:
            i = (i + 1) % len(ctx.endpoints)
            m.endpoint = ctx.endpoints[i]
            try:
                await m.connect(timeout=5.0)
                st.count("reconnected")
                return True
            except Exception as exc:  # noqa: BLE001 - counted, retried on the next node
                st.count("reconnect_failed:" + describe(exc))
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(1.0, backoff * 2)
        return False

    async def _call(self, ctx: WorkerCtx, m: Member, msg: Msg) -> Msg | None:
        """Send until a definite answer: on a lost connection reconnect and resend with the same id."""
        msg.setdefault("id", m.next_id())
        while now() < ctx.deadline + 5.0:
            if not m.connected and not await self._reconnect(ctx, m):
                return None
            try:
                reply, _ = await asyncio.wait_for(m.request(dict(msg)), 10.0)
                return reply
            except (ConnectionError, TimeoutError):
                ctx.stats.count("resent")
                if m.connected:
                    m.drop()
                self._lost(m)
        return None

    async def run(self, ctx: WorkerCtx) -> None:
        await run_until([self._member_loop(ctx, m) for m in ctx.members if m.connected], ctx.deadline, 15.0)
        for name in self._lost_names:
            ctx.stats.put("lost_connection", name, 1.0)
        for m in ctx.members:
            ctx.stats.put("members", m.name, 1.0)
        await self._verify(ctx)

    async def _member_loop(self, ctx: WorkerCtx, m: Member) -> None:
        st = ctx.stats
        rng = random.Random(m.key)
        ledger = self.ledger.setdefault(m.table.table_id, {})
        mine: dict[str, int] = {}  # note -> qty
        seq = 0
        while now() < ctx.deadline:
            if len(mine) < MAX_LINES_PER_MEMBER:
                seq += 1
                note = f"fo-{m.key}-{seq}"
                msg: Msg = {"type": "add_item", "menu_item_id": menu_item(ctx, rng), "qty": 1, "note": note}
                qty = 1
            else:
                note = rng.choice(list(mine))
                line = next((ln for ln in m.my_lines() if ln.get("note") == note), None)
                if line is None:  # not in this member's view of the cart (the verification will say if lost)
                    del mine[note]
                    st.count("own_line_not_seen")
                    continue
                qty = mine[note] % 5 + 1
                msg = {"type": "update_item", "line_id": line["line_id"], "qty": qty}
            t_send = now()
            reply = await self._call(ctx, m, msg)
            if reply is None:
                st.count("gave_up")
                return
            if reply.get("type") == "ack":
                t_ack = now()
                kill_at = ctx.run_info.get("kill_at")
                # the first ack after the kill: an ack received this soon after the planned instant may still
                # come from the victim (frames on the wire), so start counting a little later
                if (
                    kill_at is not None
                    and t_ack >= kill_at + KILL_MARGIN_S
                    and m.name not in self._acked_after_kill
                ):
                    self._acked_after_kill.add(m.name)
                    st.put("first_ack_after_kill", m.name, t_ack)
                mine[note] = qty
                ledger[note] = qty
                st.count("acked")
                st.record("ack", now() - t_send)
                lost = self.lost_at.pop(m.key, None)
                if lost is not None:
                    t = now()
                    st.record("outage", t - lost)
                    st.mark_last("first_ack_after_loss", t)
                    st.count("affected_members")
                rev = reply.get("revision")
                if isinstance(rev, int):
                    try:
                        await asyncio.wait_for(m.wait_revision(rev), 5.0)
                    except TimeoutError:
                        pass
            else:
                st.count("errors:" + str(reply.get("code")))

    async def _verify(self, ctx: WorkerCtx) -> None:
        st = ctx.stats
        for table in ctx.tables:
            ledger = self.ledger.get(table.table_id, {})
            if not ledger:
                continue
            m = table.members[0]
            reply = await self._call(ctx, m, {"type": "get_snapshot"})
            if reply is None or not isinstance(reply.get("cart"), dict):
                st.count("verify_failed")
                st.count("ops_unverified", len(ledger))
                continue
            by_note = {
                str(ln.get("note")): ln for ln in reply["cart"].get("items", []) if isinstance(ln, dict)
            }
            for note, qty in ledger.items():
                line = by_note.get(note)
                if line is None:
                    st.count("acked_lost:missing_line")
                elif int(line.get("qty", -1)) != qty:
                    st.count("acked_lost:wrong_qty")
                else:
                    st.count("verified")

    def figures(self, stats: Stats, run: dict[str, Any]) -> dict[str, Any]:
        fo = run.get("failover") or {}
        if fo.get("not_applicable"):
            return {"applicable": False, "reason": fo["not_applicable"]}
        c = stats.counters
        lost = errors(stats, "acked_lost:")
        kill_t = fo.get("kill_time")
        last = stats.last.get("first_ack_after_loss")
        first_ack = stats.maps.get("first_ack_after_kill", {})
        names = list(stats.maps.get("members", {}))
        # affected: connected to the victim or at a table it owned (from the board just before the kill);
        # plus anyone who lost the connection (the only signal when ownership is unknown, e.g. raw nodes)
        affected = set(stats.maps.get("lost_connection", {}))
        if fo.get("node_id"):
            affected |= cluster.affected_members(
                names, fo.get("_nodes", {}), fo.get("_owners", {}), fo["node_id"]
            )
        unaffected = [n for n in names if n not in affected]
        take = cluster.takeover(first_ack, kill_t, affected) if kill_t is not None else {}
        return {
            "applicable": True,
            "connections": connect_figures(stats),
            "killed": {k: v for k, v in fo.items() if k != "kill_time" and not k.startswith("_")},
            "lease_ttl_s": fo.get("lease_ttl_s"),
            # kill -> each affected member's first ack after the kill
            "takeover_ms": take,
            # the same for members the kill did not touch (their normal next ack), for contrast
            "unaffected_first_ack_ms": cluster.takeover(first_ack, kill_t, unaffected)
            if kill_t is not None
            else {},
            "takeover_s": round(last - kill_t, 3) if kill_t is not None and last is not None else None,
            "affected_members": c.get("affected_members", 0),
            "outage_ms": hsum(stats, "outage"),
            "acked_ops": c.get("acked", 0),
            "acked_ops_per_s": rate(c.get("acked", 0), float(run["window_s"])),
            "ack_ms": hsum(stats, "ack"),
            "acked_ops_lost": sum(lost.values()),
            "acked_ops_lost_by_kind": lost,
            "verified_lines": c.get("verified", 0),
            "unverified": c.get("ops_unverified", 0),
            "resent": c.get("resent", 0),
            "errors": errors(stats, "errors:"),
            "reconnect_failures": errors(stats, "reconnect_failed:"),
        }
