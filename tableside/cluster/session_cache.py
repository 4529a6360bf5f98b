"""A cache of guest-session lookups, shared by every node through Redis (issue 11: "with Redis configured,
session lookups are cached there and invalidated on every change; Postgres stays the truth and everything
works without Redis").

``GuestSessions`` reads through the cache and invalidates on every change it makes (store picked, expiry
slid, converted at login). A cached entry lives at most ``CACHE_TTL_S`` and never past the session's own
expiry, so a session deleted by the cleanup (which does not know the ids it deletes) is not served from the
cache for long, and an expired one is refused on read anyway. Keys are a hash of the session id, never the
id itself. A cache that fails (Redis down) is a miss: the request goes to Postgres and does not fail."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from tableside.clock import Clock
from tableside.storage.interface import GuestSession, Store

log = structlog.get_logger("tableside.cluster.session_cache")

CACHE_TTL_S = 60.0
_PREFIX = "ts:gs:"


class SessionCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def close(self) -> None: ...


class MemorySessionCache:
    """The cache within one process (tests; one node needs no cache at all)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float]] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self._clock.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (value, self._clock.monotonic() + ttl_s)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def close(self) -> None:
        self._entries.clear()


class RedisSessionCache:
    def __init__(self, url: str, *, timeout_s: float = 0.5) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            log.warning("session_cache_unavailable", op="get", error=repr(exc))
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._redis.set(key, value, px=max(1, int(ttl_s * 1000)))
        except (RedisError, OSError) as exc:
            log.warning("session_cache_unavailable", op="set", error=repr(exc))

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(key)
        except (RedisError, OSError) as exc:
            # Not removed: the entry still dies within CACHE_TTL_S; say so, it is a (short) stale read.
            log.warning("session_cache_unavailable", op="delete", error=repr(exc))

    async def close(self) -> None:
        await self._redis.aclose()


def cache_key(session_id: str) -> str:
    return _PREFIX + hashlib.sha256(session_id.encode()).hexdigest()[:40]


class GuestSessions:
    """Guest-session reads and changes for the server: through ``cache`` when there is one."""

    def __init__(self, store: Store, cache: SessionCache | None) -> None:
        self._store = store
        self._cache = cache

    async def get(self, session_id: str, now: float, *, include_expired: bool = False) -> GuestSession | None:
        found: GuestSession | None
        if self._cache is None:
            return await self._store.get_guest_session(session_id, now, include_expired=include_expired)
        raw = await self._cache.get(cache_key(session_id))
        if raw is not None:
            found = GuestSession(**json.loads(raw))
        else:
            found = await self._store.get_guest_session(session_id, now, include_expired=True)
            if found is not None and found.expires_at > now:
                ttl = min(CACHE_TTL_S, found.expires_at - now)
                await self._cache.set(cache_key(session_id), json.dumps(asdict(found)).encode(), ttl)
        if found is None or (not include_expired and found.expires_at <= now):
            return None
        return found

    async def invalidate(self, session_id: str) -> None:
        if self._cache is not None:
            await self._cache.delete(cache_key(session_id))

    async def touch(self, session_id: str, now: float, expires_at: float) -> bool:
        written = await self._store.touch_guest_session(session_id, now, expires_at)
        if written:
            await self.invalidate(session_id)
        return written

    async def select_store(self, session_id: str, store_id: int, now: float) -> GuestSession:
        try:
            return await self._store.select_guest_store(session_id, store_id, now)
        finally:
            await self.invalidate(session_id)

    async def convert(self, session_id: str, user_id: str, now: float) -> GuestSession | None:
        try:
            return await self._store.convert_guest_session(session_id, user_id, now)
        finally:
            await self.invalidate(session_id)

    async def close(self) -> None:
        if self._cache is not None:
            await self._cache.close()
