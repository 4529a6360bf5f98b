"""The cluster bus contract, run on both implementations: ``MemoryBus`` (several nodes in one process) and
``RedisBus`` against the CI Redis (127.0.0.1:6379; never skipped: a missing Redis fails loudly)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from tableside.clock import FakeClock, SystemClock
from tableside.cluster.bus import Bus
from tableside.cluster.memory_bus import MemoryBroker, MemoryBus
from tableside.cluster.redis_bus import RedisBus

REDIS_URL = os.environ.get("TABLESIDE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

BusFactory = Callable[[], Bus]


async def _redis_or_fail() -> None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis unreachable at {REDIS_URL!r} (set TABLESIDE_TEST_REDIS_URL): {exc!r}", pytrace=False)
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    made: list[Bus] = []
    if request.param == "memory":
        broker = MemoryBroker(FakeClock())

        def factory() -> Bus:
            bus = MemoryBus(broker)
            made.append(bus)
            return bus
    else:
        await _redis_or_fail()

        def factory() -> Bus:
            bus = RedisBus(REDIS_URL, SystemClock(), timeout_s=2.0)
            made.append(bus)
            return bus

    yield factory
    for bus in made:
        await bus.close()


def _names() -> tuple[str, str, str]:
    tag = secrets.token_hex(4)
    return f"ts:test:{tag}:a", f"ts:test:{tag}:b", f"ts:lease:test-{tag}"


async def _eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_messages_arrive_in_publish_order_and_publish_reports_receivers(make_bus: BusFactory) -> None:
    chan_a, chan_b, _ = _names()
    got: list[tuple[str, bytes]] = []
    published: list[tuple[str, int]] = []
    receiver, sender = make_bus(), make_bus()
    await receiver.start([chan_a], lambda c, d: got.append((c, d)))
    await sender.start([chan_b], lambda c, d: None, on_published=lambda c, n: published.append((c, n)))
    for i in range(200):
        sender.publish(chan_a, f"m{i}".encode())
    sender.publish(chan_b + ":nobody", b"x")
    await sender.flush()
    await _eventually(lambda: len(got) == 200)
    assert [d for _, d in got] == [f"m{i}".encode() for i in range(200)]
    assert {c for c, _ in got} == {chan_a}
    await _eventually(lambda: len(published) == 201)
    assert published[:200] == [(chan_a, 1)] * 200
    assert published[200] == (chan_b + ":nobody", 0)  # nobody listens: how a dead node is noticed
    assert await sender.receivers(chan_a) == 1
    assert await sender.receivers(chan_b + ":nobody") == 0


async def test_a_lease_has_one_holder_until_released_or_expired(make_bus: BusFactory) -> None:
    _, _, key = _names()
    a, b = make_bus(), make_bus()
    assert await a.acquire(key, "node-a", 5.0)
    assert await a.acquire(key, "node-a", 5.0)  # holding it already: still ours
    assert not await b.acquire(key, "node-b", 5.0)
    assert await b.holders([key, key + ":free"]) == ["node-a", None]
    assert await b.renew([key], "node-b", 5.0) == [False]  # b cannot renew a's lease
    assert await a.renew([key], "node-a", 5.0) == [True]
    await b.release([key], "node-b")  # not b's: left alone
    assert await a.holders([key]) == ["node-a"]
    await a.release([key], "node-a")
    assert await a.holders([key]) == [None]
    assert await b.acquire(key, "node-b", 5.0)
    await b.release([key], "node-b")


async def test_renew_takes_a_free_lease_back(make_bus: BusFactory) -> None:
    """After Redis lost everything (restart), an owner's renew re-takes its leases."""
    _, _, key = _names()
    a = make_bus()
    assert await a.renew([key], "node-a", 5.0) == [True]
    assert await a.holders([key]) == ["node-a"]
    await a.release([key], "node-a")


async def test_take_over_only_from_the_named_dead_node(make_bus: BusFactory) -> None:
    _, _, key = _names()
    a, c = make_bus(), make_bus()
    assert await a.acquire(key, "node-a", 5.0)
    assert not await c.take_over(key, "node-b", "node-c", 5.0)  # a is not the node we think is dead
    assert await c.take_over(key, "node-a", "node-c", 5.0)
    assert await a.holders([key]) == ["node-c"]
    assert await a.renew([key], "node-a", 5.0) == [False]  # a finds out it lost the group
    await c.release([key], "node-c")


async def test_a_lease_expires_after_its_ttl(make_bus: BusFactory, request: pytest.FixtureRequest) -> None:
    _, _, key = _names()
    a, b = make_bus(), make_bus()
    assert await a.acquire(key, "node-a", 0.2)
    if isinstance(a, MemoryBus):
        await a._broker.clock.advance(0.25)  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(0.3)
    assert await b.holders([key]) == [None]
    assert await b.acquire(key, "node-b", 5.0)
    await b.release([key], "node-b")
