"""The in-process dummy POS: latency on the injected clock, a seeded success rate, dedupe by key."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tableside.clock import FakeClock
from tableside.pos import (
    Accepted,
    DummyPosAdapter,
    HttpPosAdapter,
    LookupResult,
    Rejected,
    RetryPolicy,
    Unknown,
    build_pos_adapter,
    submit_exactly_once,
)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_latency_is_spent_on_the_clock(clock: FakeClock, make_order: Any) -> None:
    pos = DummyPosAdapter(clock=clock, rng=random.Random(0), success_rate=1.0)  # default 3000 ms
    task = asyncio.ensure_future(pos.submit(make_order(), timeout=10))
    await settle()
    await clock.advance(2.999)
    assert not task.done()
    await clock.advance(0.001)
    assert isinstance(task.result(), Accepted)


async def test_success_rate_with_seeded_rng(clock: FakeClock, make_order: Any) -> None:
    pos = DummyPosAdapter(0, 0.9, clock=clock, rng=random.Random(1234))
    outcomes = [await pos.submit(make_order(f"k{i}"), timeout=10) for i in range(1000)]
    accepted = sum(isinstance(o, Accepted) for o in outcomes)
    assert 860 <= accepted <= 940
    assert all(isinstance(o, Accepted | Rejected) for o in outcomes)
    # The same seed gives the same sequence: tests that use the dummy are reproducible.
    again = DummyPosAdapter(0, 0.9, clock=clock, rng=random.Random(1234))
    replay = [await again.submit(make_order(f"k{i}"), timeout=10) for i in range(1000)]
    assert [type(o) for o in replay] == [type(o) for o in outcomes]


async def test_same_key_same_ticket(clock: FakeClock, make_order: Any) -> None:
    pos = DummyPosAdapter(0, 1.0, clock=clock)
    first = await pos.submit(make_order("a"), timeout=10)
    second = await pos.submit(make_order("a"), timeout=10)
    other = await pos.submit(make_order("b"), timeout=10)
    assert first == second
    assert isinstance(other, Accepted) and other != first
    assert len(pos.tickets) == 2
    assert pos.submissions == 3


async def test_rejected_key_stays_rejected(clock: FakeClock, make_order: Any) -> None:
    pos = DummyPosAdapter(0, 0.0, clock=clock)
    assert isinstance(await pos.submit(make_order("a"), timeout=10), Rejected)
    pos.success_rate = 1.0
    assert isinstance(await pos.submit(make_order("a"), timeout=10), Rejected)
    assert pos.tickets == {}


async def test_lookup(clock: FakeClock, make_order: Any) -> None:
    pos = DummyPosAdapter(0, 1.0, clock=clock)
    outcome = await pos.submit(make_order("a"), timeout=10)
    assert isinstance(outcome, Accepted)
    assert await pos.lookup("a", timeout=10) == LookupResult(found=True, ticket_id=outcome.ticket_id)
    assert await pos.lookup("zzz", timeout=10) == LookupResult(found=False)


async def test_lost_reply_is_recovered_by_the_submitter(clock: FakeClock, make_order: Any) -> None:
    pos = DummyPosAdapter(1000, 1.0, clock=clock)
    pos.fail_next_unknown(1, create_ticket=True)
    assert isinstance(await _drive(clock, pos.submit(make_order("x"), timeout=10)), Unknown)
    pos.fail_next_unknown(1, create_ticket=True)
    outcome = await _drive(clock, submit_exactly_once(pos, make_order("y"), RetryPolicy(), clock))
    assert outcome == Accepted(pos.tickets["y"])
    assert pos.submissions == 2  # one for "x", one for "y": "y" was found by lookup, not resubmitted
    assert len(pos.tickets) == 2


async def _drive(clock: FakeClock, coro: Any) -> Any:
    task = asyncio.ensure_future(coro)
    await settle()
    while not task.done():
        await clock.advance(0.5)
    return task.result()


def test_factory(clock: FakeClock) -> None:
    dummy = build_pos_adapter("dummy", clock=clock, latency_ms=5, success_rate=0.5, url=None)
    assert isinstance(dummy, DummyPosAdapter)
    assert (dummy.latency_ms, dummy.success_rate) == (5, 0.5)
    with pytest.raises(ValueError, match="url"):
        build_pos_adapter("http", clock=clock, latency_ms=0, success_rate=1.0, url=None)
    with pytest.raises(ValueError, match="unknown POS adapter"):
        build_pos_adapter("carrier-pigeon", clock=clock, latency_ms=0, success_rate=1.0, url=None)
    with pytest.raises(ValueError):
        DummyPosAdapter(0, 1.5, clock=clock)


async def test_factory_http(clock: FakeClock) -> None:
    http = build_pos_adapter("http", clock=clock, latency_ms=0, success_rate=1.0, url="http://127.0.0.1:1/")
    assert isinstance(http, HttpPosAdapter)
    await http.close()
