"""The slot cache in Redis (docs/reservations.md): ``available_slots:{store}:{date}`` exists after an
availability call and is gone after a booking, a cancellation and an hours change; the answers are the same
as without Redis. A private ``redis-server`` child, so nothing is shared with other tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from tests.cluster.harness import RedisChild
from tests.integration.reservation_support import CHEF, STORE, TOMORROW, iso, start_resv

KEY = f"available_slots:{STORE}:{TOMORROW}"


@pytest.fixture
def redis_child() -> Iterator[RedisChild]:
    child = RedisChild()
    child.start()
    yield child
    child.stop()


async def test_slot_cache_in_redis_is_invalidated(database_url: str, redis_child: RedisChild) -> None:
    h = await start_resv(database_url, redis_url=redis_child.url)
    r = aioredis.Redis.from_url(redis_child.url)
    try:
        assert not await r.exists(KEY)
        first = await h.slots()
        assert await r.exists(KEY), await r.keys("*")
        assert await h.slots() == first  # served from the cache: the same answer
        _, token = await h.customer()
        start = iso(TOMORROW, "11:00")
        code, body = await h.book(token, start)
        assert code == 201, body
        assert not await r.exists(KEY)
        after = await h.slots()
        assert (start, CHEF) not in {(s["start_time"], s["staff_id"]) for s in after}
        assert await r.exists(KEY)
        code, _ = await h.call("POST", f"/api/reservations/{body['reservation_id']}/cancel", token=token)
        assert code == 200
        assert not await r.exists(KEY)
        assert await h.slots() == first
        staff = await h.staff_token()
        hours = {day: [["18:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
        code, _ = await h.call("PUT", f"/api/staff/stores/{STORE}/hours", {"business_hours": hours}, staff)
        assert code == 200
        assert not await r.exists(KEY)
        assert min(s["start_time"] for s in await h.slots()) == iso(TOMORROW, "18:00")
    finally:
        await r.aclose()
        await h.running.stop()


async def test_a_stale_cache_never_lets_a_booking_through(database_url: str, redis_child: RedisChild) -> None:
    h = await start_resv(database_url, redis_url=redis_child.url)
    r = aioredis.Redis.from_url(redis_child.url)
    try:
        await h.slots()
        cached = await r.get(KEY)
        _, a = await h.customer("A")
        _, b = await h.customer("B")
        start = iso(TOMORROW, "12:00")
        code, _ = await h.book(a, start)
        assert code == 201
        await r.set(KEY, cached)  # the entry from before the booking, as if the invalidation was lost
        code, err = await h.book(b, start)
        assert (code, err["error"]) == (409, "slot_taken"), err
    finally:
        await r.aclose()
        await h.running.stop()
