"""One suite for both slot caches (``MemorySlotCache`` and ``RedisSlotCache`` on the shared Redis with a unique
key prefix; an unreachable Redis fails the test, never skips it), the waitlist queues likewise, and
``NoSlotCache``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
import redis.asyncio as aioredis

from tableside.clock import FakeClock
from tableside.reservations import (
    MemorySlotCache,
    MemoryWaitlistQueue,
    NoSlotCache,
    RedisSlotCache,
    RedisWaitlistQueue,
    SlotCache,
    WaitlistQueue,
)
from tableside.reservations.slot_cache import slot_key
from tableside.reservations.waitlist import queue_key
from tests.cluster.test_bus import REDIS_URL, _redis_or_fail

D1, D2 = date(2026, 12, 1), date(2026, 12, 2)
BUSY = [{"staff_id": "s1", "start": 1.0, "end": 2.0}]


class World:
    def __init__(self, clock: FakeClock, cache: SlotCache, queue: WaitlistQueue, client: aioredis.Redis | None,
                 prefix: str) -> None:
        self.clock, self.cache, self.queue, self.client, self.prefix = clock, cache, queue, client, prefix

    async def expire(self, seconds: float) -> None:
        """Time passes (Redis expires by its own clock: there we wait a little for real)."""
        await self.clock.advance(seconds)
        if self.client is not None:
            import asyncio

            await asyncio.sleep(seconds)


@pytest.fixture(params=["memory", "redis"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    clock = FakeClock()
    prefix = f"test:{uuid.uuid4().hex}:"
    if request.param == "memory":
        yield World(clock, MemorySlotCache(clock), MemoryWaitlistQueue(), None, prefix)
        return
    await _redis_or_fail()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield World(clock, RedisSlotCache(client=client, prefix=prefix), RedisWaitlistQueue(client=client,
                                                                                               prefix=prefix),
                    client, prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_put_get_miss(world: World) -> None:
    assert await world.cache.get(1, D1) is None
    await world.cache.put(1, D1, BUSY, 600)
    assert await world.cache.get(1, D1) == BUSY
    assert await world.cache.get(1, D2) is None
    assert await world.cache.get(2, D1) is None
    await world.cache.put(1, D1, [], 600)  # an empty day is an answer too, not a miss
    assert await world.cache.get(1, D1) == []


async def test_invalidate_one_day_or_the_whole_store(world: World) -> None:
    for store in (1, 2):
        for day in (D1, D2):
            await world.cache.put(store, day, BUSY, 600)
    await world.cache.invalidate(1, D1)
    assert await world.cache.get(1, D1) is None and await world.cache.get(1, D2) == BUSY
    await world.cache.put(1, D1, BUSY, 600)
    await world.cache.invalidate(1, None)
    assert await world.cache.get(1, D1) is None and await world.cache.get(1, D2) is None
    assert await world.cache.get(2, D1) == BUSY and await world.cache.get(2, D2) == BUSY
    await world.cache.invalidate(3, None)  # nothing cached: fine


async def test_entries_expire(world: World) -> None:
    await world.cache.put(1, D1, BUSY, 0.2)
    await world.expire(0.3)
    assert await world.cache.get(1, D1) is None


async def test_redis_keys_are_the_documented_names() -> None:
    await _redis_or_fail()
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = f"test:{uuid.uuid4().hex}:"
    world = World(FakeClock(), RedisSlotCache(client=client, prefix=prefix),
                  RedisWaitlistQueue(client=client, prefix=prefix), client, prefix)
    try:
        await _check_key_names(world, client)
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _check_key_names(world: World, client: aioredis.Redis) -> None:
    await world.cache.put(7, D1, BUSY, 600)
    assert await client.exists(world.prefix + "available_slots:7:2026-12-01") == 1
    assert slot_key(7, D1) == "available_slots:7:2026-12-01"
    ttl = await client.ttl(world.prefix + "available_slots:7:2026-12-01")
    assert 590 <= ttl <= 600
    await world.queue.push(7, "m", 1800000000.0, 3)
    assert queue_key(7, "m", 1800000000.0) == "waitlist:7:m:1800000000"
    assert await client.lrange(world.prefix + "waitlist:7:m:1800000000", 0, -1) == [b"3"]


async def test_a_cache_that_is_down_is_a_miss() -> None:
    cache = RedisSlotCache("redis://127.0.0.1:1/0", timeout_s=0.2)
    await cache.put(1, D1, BUSY, 600)
    assert await cache.get(1, D1) is None
    await cache.invalidate(1, None)
    await cache.close()


async def test_no_cache_always_misses() -> None:
    cache = NoSlotCache()
    await cache.put(1, D1, BUSY, 600)
    assert await cache.get(1, D1) is None


async def test_waitlist_queue_order_remove_replace(world: World) -> None:
    q, start = world.queue, 1800000000.0
    assert await q.entries(1, "m", start) is None
    for i in (3, 1, 2):
        await q.push(1, "m", start, i)
    await q.push(1, "m", start, 1)  # again: once, at the end
    assert await q.entries(1, "m", start) == [3, 2, 1]
    await q.replace(1, "m", start, [3, 1, 2])
    assert await q.entries(1, "m", start) == [3, 1, 2]
    await q.remove(1, "m", start, 1)
    assert await q.entries(1, "m", start) == [3, 2]
    assert await q.entries(1, "m", start + 1800) is None
    await q.replace(1, "m", start, [])
    assert await q.entries(1, "m", start) is None
