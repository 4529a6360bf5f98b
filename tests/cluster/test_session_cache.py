"""The guest-session cache (issue 11): one suite on both caches (in-memory and Redis on the CI Redis).
Reads go through the cache; every change a node makes (store picked, expiry slid, converted) invalidates the
entry for every node; an expired session is never served; a cache that fails is a miss, never an error."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tableside.clock import FakeClock
from tableside.cluster.session_cache import (
    GuestSessions,
    MemorySessionCache,
    RedisSessionCache,
    SessionCache,
    cache_key,
)
from tableside.demo import seed_demo
from tableside.storage.interface import GuestSession
from tableside.storage.memory import MemoryStore
from tests.cluster.test_bus import REDIS_URL, _redis_or_fail

DAY = 24 * 3600.0


@pytest.fixture(params=["memory", "redis"])
async def make_cache(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[FakeClock], SessionCache]]:
    made: list[SessionCache] = []
    shared: dict[int, MemorySessionCache] = {}

    def factory(clock: FakeClock) -> SessionCache:
        cache: SessionCache
        if request.param == "memory":
            cache = shared.setdefault(id(clock), MemorySessionCache(clock))  # one "Redis" per world
        else:
            cache = RedisSessionCache(REDIS_URL)
        made.append(cache)
        return cache

    if request.param == "redis":
        await _redis_or_fail()
    yield factory
    for cache in made:
        await cache.close()


async def world(make_cache: Callable[[FakeClock], SessionCache]) -> tuple[Any, GuestSessions, GuestSessions, str]:
    clock = FakeClock()
    store = MemoryStore()
    await seed_demo(store, 1, "Demo", 2)
    sid = secrets.token_hex(32)
    now = clock.now()
    await store.create_guest_session(GuestSession(sid, now, now + DAY, now))
    # Two nodes, each with its own client of the one shared cache.
    return clock, GuestSessions(store, make_cache(clock)), GuestSessions(store, make_cache(clock)), sid


async def test_a_change_on_one_node_is_seen_at_once_on_another(make_cache: Any) -> None:
    clock, node_a, node_b, sid = await world(make_cache)
    now = clock.now()
    first = await node_b.get(sid, now)
    assert first is not None and first.selected_store_id is None  # now cached
    await node_a.select_store(sid, 1, now)
    seen = await node_b.get(sid, now)
    assert seen is not None and seen.selected_store_id == 1  # invalidated for every node, not stale


async def test_reads_come_from_the_cache_and_an_expired_session_is_never_served(make_cache: Any) -> None:
    clock, node_a, _, sid = await world(make_cache)
    now = clock.now()
    assert (await node_a.get(sid, now)) is not None
    store: Any = node_a._store
    calls = 0
    original = store.get_guest_session

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)

    store.get_guest_session = counting
    for _ in range(5):
        assert (await node_a.get(sid, now)) is not None
    assert calls == 0  # served by the cache
    later = now + DAY + 1
    assert await node_a.get(sid, later) is None  # expired: refused on read even if still cached
    found = await node_a.get(sid, later, include_expired=True)
    assert found is not None and found.expires_at <= later


async def test_sliding_the_expiry_invalidates(make_cache: Any) -> None:
    clock, node_a, node_b, sid = await world(make_cache)
    now = clock.now()
    before = await node_b.get(sid, now)
    assert before is not None
    later = now + 3600
    assert await node_a.touch(sid, later, later + DAY)
    after = await node_b.get(sid, later)
    assert after is not None and after.expires_at == later + DAY


async def test_the_cache_key_is_not_the_session_id() -> None:
    sid = "a" * 64
    assert sid not in cache_key(sid) and cache_key(sid).startswith("ts:gs:")


async def test_a_failing_cache_is_a_miss_not_an_error() -> None:
    clock = FakeClock()
    store = MemoryStore()
    await seed_demo(store, 1, "Demo", 2)
    sid = secrets.token_hex(32)
    await store.create_guest_session(GuestSession(sid, clock.now(), clock.now() + DAY, clock.now()))
    dead = RedisSessionCache("redis://127.0.0.1:1/0", timeout_s=0.2)
    sessions = GuestSessions(store, dead)
    found = await asyncio.wait_for(sessions.get(sid, clock.now()), 5)
    assert found is not None
    await sessions.select_store(sid, 1, clock.now())
    again = await sessions.get(sid, clock.now())
    assert again is not None and again.selected_store_id == 1
    await sessions.close()
