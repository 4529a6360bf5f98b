"""Helpers shared by scenarios: connecting every member, rates, common figures."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench import hist
from bench.client import Member, describe, now
from bench.proto import Msg
from bench.stats import Stats
from bench.worker import WorkerCtx


async def connect_member(ctx: WorkerCtx, m: Member, retries: int = 1) -> bool:
    """Join (tableside) and open the websocket, recording join / ws / total connect times."""
    st = ctx.stats
    for attempt in range(retries + 1):
        t_start = now()
        st.mark_first("connect_start", t_start)
        try:
            if m.endpoint.kind == "tableside" and m.token is None:
                await m.join()
                st.record("join", now() - t_start)
            t_ws = now()
            await m.connect()
            t_end = now()
            st.record("ws_connect", t_end - t_ws)
            st.record("connect", t_end - t_start)
            st.mark_last("connect_end", t_end)
            st.count("connected")
            return True
        except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
            reason = describe(exc)
            st.count(f"connect_failed:{reason}")
            st.sample("connect_errors", f"{reason}: {exc!r}")
            if attempt < retries:
                await asyncio.sleep(0.2 + random.random() * 0.3)
    st.count("connect_gave_up")
    return False


async def connect_all(ctx: WorkerCtx, members: list[Member] | None = None) -> int:
    """Connect members with bounded concurrency; returns how many connected. Stops (and counts the rest as
    failed) a little before the setup timeout, so a slow server still yields a report."""
    sem = asyncio.Semaphore(ctx.spec.connect_concurrency)
    targets = ctx.members if members is None else members
    done = 0

    async def one(m: Member) -> bool:
        nonlocal done
        async with sem:
            ok = await connect_member(ctx, m)
            done += 1
            return ok

    async def progress() -> None:
        while True:
            await asyncio.sleep(10.0)
            print(
                f"[bench worker {ctx.spec.index}] {ctx.stats.counters['connected']} connected, "
                f"{done}/{len(targets)} attempted",
                file=sys.stderr,
                flush=True,
            )

    reporter = asyncio.ensure_future(progress()) if len(targets) >= 2000 else None
    tasks = [asyncio.ensure_future(one(m)) for m in targets]
    _, pending = (
        await asyncio.wait(tasks, timeout=max(5.0, ctx.spec.setup_timeout - 15.0)) if tasks else ((), ())
    )
    if reporter is not None:
        reporter.cancel()
    for t in pending:
        t.cancel()
    if pending:
        ctx.stats.count("connect_failed:setup_deadline", len(pending))
        await asyncio.wait(pending, timeout=5.0)
    return sum(1 for t in tasks if t.done() and not t.cancelled() and t.result())


async def run_until(coros: Sequence[Awaitable[None]], deadline: float, grace: float = 5.0) -> int:
    """Run the coroutines; cancel what is still running ``grace`` s after ``deadline``. Returns how many
    had to be cancelled."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return 0
    timeout = max(0.0, deadline - now()) + grace
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=2.0)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    return len(pending)


def menu_item(ctx: WorkerCtx, rng: random.Random) -> str:
    return ctx.spec.menu[rng.randrange(len(ctx.spec.menu))][0]


async def settle(members: list[Member], revision: int, timeout: float) -> bool:
    """Wait until every member has seen ``revision``."""
    if not members:
        return True
    try:
        await asyncio.wait_for(asyncio.gather(*(m.wait_revision(revision) for m in members)), timeout)
        return True
    except TimeoutError:
        return False


def reply_kind(reply: Msg) -> str:
    return str(reply.get("type"))


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def hsum(stats: Stats, name: str) -> dict[str, Any]:
    h = stats.hists.get(name)
    return hist.summary(h) if h is not None else {"count": 0}


def errors(stats: Stats, prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in sorted(stats.counters.items()) if k.startswith(prefix)}


def connect_figures(stats: Stats) -> dict[str, Any]:
    c = stats.counters
    out: dict[str, Any] = {
        "connected": c.get("connected", 0),
        "connect_failures": errors(stats, "connect_failed:"),
        "connect_ms": hsum(stats, "connect"),
    }
    if "join" in stats.hists:
        out["join_ms"] = hsum(stats, "join")
    out["ws_connect_ms"] = hsum(stats, "ws_connect")
    start, end = stats.first.get("connect_start"), stats.last.get("connect_end")
    if start is not None and end is not None and end > start:
        out["connect_wall_s"] = round(end - start, 3)
        out["connects_per_s"] = rate(c.get("connected", 0), end - start)
    return out


Hook = Callable[[Member, Msg, float], None]
