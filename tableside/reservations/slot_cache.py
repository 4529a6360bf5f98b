"""The slot cache of availability (docs/reservations.md): ``available_slots:{store}:{date}`` in Redis.

**What is cached.** Per (store, local date) the day's *busy intervals*: every reservation of the store that
holds a slot (not canceled) overlapping the local day widened by 24 hours on each side (so any course,
at most 1440 minutes, is covered), as ``[{"staff_id", "start", "end"}]`` with epoch seconds. That is the one
input of availability that grows with the data (a range query over reservations); the others (the store's
hours and zone, its bookable staff, the course) are single-row or small indexed lookups, and the slots
themselves are a cheap pure computation (``booking.available_slots``) that also depends on *now*, so caching
computed slots would go stale by the minute and would need one entry per (course, staff). One entry per
(store, date) answers every course and staff member of that day.

**Invalidation.** Every booking, cancellation, failed payment, expired hold and offer drops the day's entry
(``invalidate(store, date)``); an hours change drops every date of the store (``invalidate(store, None)``).
The Redis implementation remembers the dates it cached per store in a set ``available_slots:{store}:dates``
(same TTL as the entries) rather than SCANning ``available_slots:{store}:*``: SCAN walks the whole keyspace
(shared with the cluster's leases and buses) in many round trips and can miss keys written meanwhile; the set
costs one SADD per put and makes the store-wide invalidation two commands.

**Safety.** The cache is only ever an answer to *show*; ``ReservationService.book`` validates the start
against a fresh computation and the exclusion constraint decides, so a stale or poisoned entry can never let a
booking through. A Redis that fails is a miss (read) or a logged, TTL-bounded stale entry (invalidate); it
never fails a request. A read that raced a change (it read the database before the change and wrote the cache
after the change's invalidation) can put a just-outdated entry back: also bounded by the TTL, and only ever
shown (the waitlist promotion reads the database, not the cache).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from tableside.clock import Clock

log = structlog.get_logger("tableside.reservations.slot_cache")


def slot_key(store_id: int, day: date, prefix: str = "") -> str:
    return f"{prefix}available_slots:{store_id}:{day.isoformat()}"


def dates_key(store_id: int, prefix: str = "") -> str:
    return f"{prefix}available_slots:{store_id}:dates"


class SlotCache(Protocol):
    async def get(self, store_id: int, day: date) -> list[dict[str, Any]] | None:
        """The cached busy intervals of that day, or None (a miss)."""

    async def put(self, store_id: int, day: date, slots: list[dict[str, Any]], ttl_s: float) -> None: ...

    async def invalidate(self, store_id: int, day: date | None) -> None:
        """Drop one day, or (``day`` None) every cached day of the store."""

    async def close(self) -> None: ...


class NoSlotCache:
    """No cache (no Redis configured): every read is a miss."""

    async def get(self, store_id: int, day: date) -> list[dict[str, Any]] | None:
        return None

    async def put(self, store_id: int, day: date, slots: list[dict[str, Any]], ttl_s: float) -> None:
        return None

    async def invalidate(self, store_id: int, day: date | None) -> None:
        return None

    async def close(self) -> None:
        return None


class MemorySlotCache:
    """The cache within one process (tests; the twin of ``RedisSlotCache``, passing the same suite)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[tuple[int, date], tuple[str, float]] = {}

    async def get(self, store_id: int, day: date) -> list[dict[str, Any]] | None:
        entry = self._entries.get((store_id, day))
        if entry is None:
            return None
        if entry[1] <= self._clock.monotonic():
            del self._entries[(store_id, day)]
            return None
        value: list[dict[str, Any]] = json.loads(entry[0])
        return value

    async def put(self, store_id: int, day: date, slots: list[dict[str, Any]], ttl_s: float) -> None:
        self._entries[(store_id, day)] = (json.dumps(slots), self._clock.monotonic() + ttl_s)

    async def invalidate(self, store_id: int, day: date | None) -> None:
        if day is not None:
            self._entries.pop((store_id, day), None)
            return
        for key in [k for k in self._entries if k[0] == store_id]:
            del self._entries[key]

    async def close(self) -> None:
        self._entries.clear()


class RedisSlotCache:
    """``available_slots:{store}:{date}`` (JSON, with a TTL) and the per-store set of cached dates.

    ``prefix`` goes in front of every key (tests share one Redis); production uses none, so the keys are
    exactly the documented names."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        prefix: str = "",
        timeout_s: float = 1.0,
    ) -> None:
        if client is None:
            if url is None:
                raise ValueError("RedisSlotCache needs a url or a client")
            client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            self._owned = True
        else:
            self._owned = False
        self._redis = client
        self._prefix = prefix

    async def get(self, store_id: int, day: date) -> list[dict[str, Any]] | None:
        try:
            raw = await self._redis.get(slot_key(store_id, day, self._prefix))
        except (RedisError, OSError) as exc:
            log.warning("slot_cache_unavailable", op="get", error=repr(exc))
            return None
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, list) else None

    async def put(self, store_id: int, day: date, slots: list[dict[str, Any]], ttl_s: float) -> None:
        ttl_ms = max(1, int(ttl_s * 1000))
        dkey = dates_key(store_id, self._prefix)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(slot_key(store_id, day, self._prefix), json.dumps(slots), px=ttl_ms)
                pipe.sadd(dkey, day.isoformat())
                pipe.pexpire(dkey, ttl_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("slot_cache_unavailable", op="put", error=repr(exc))

    async def invalidate(self, store_id: int, day: date | None) -> None:
        try:
            if day is not None:
                await self._redis.delete(slot_key(store_id, day, self._prefix))
                return
            dkey = dates_key(store_id, self._prefix)
            members = await self._redis.smembers(dkey)
            keys = [dkey] + [
                f"{self._prefix}available_slots:{store_id}:{m.decode() if isinstance(m, bytes) else m}"
                for m in members
            ]
            await self._redis.delete(*keys)
        except (RedisError, OSError) as exc:
            # Not removed: the entry lives at most its TTL; booking never trusts it anyway.
            log.warning("slot_cache_unavailable", op="invalidate", error=repr(exc))

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()


def build_slot_cache(redis_url: str | None, clock: Clock) -> SlotCache:
    """``RedisSlotCache`` when Redis is configured, else ``NoSlotCache`` (one node needs no cache: the
    answers are the same, only computed every time)."""
    if redis_url:
        return RedisSlotCache(redis_url)
    return NoSlotCache()
