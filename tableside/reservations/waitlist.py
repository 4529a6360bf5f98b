"""The live waitlist queue of a slot: the Redis list ``waitlist:{store}:{menu}:{start}`` of entry ids, oldest
first (``start`` is the slot's start in epoch seconds, an integer), next to the durable ``waitlist`` rows.

The rows (``ReservationStore.add_waitlist``, ``waiting_for``...) are the truth: the service writes a row first
and then the queue, and whenever the queue is missing or does not hold exactly the open rows' ids it is
rebuilt from ``waiting_for`` (``ReservationService._queue``). A Redis that fails only costs that rebuild."""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger("tableside.reservations.waitlist")


def queue_key(store_id: int, menu_id: str, start: float, prefix: str = "") -> str:
    return f"{prefix}waitlist:{store_id}:{menu_id}:{int(start)}"


class WaitlistQueue(Protocol):
    async def push(self, store_id: int, menu_id: str, start: float, entry_id: int) -> None: ...
    async def remove(self, store_id: int, menu_id: str, start: float, entry_id: int) -> None: ...
    async def entries(self, store_id: int, menu_id: str, start: float) -> list[int] | None:
        """The queued ids, oldest first; None when the queue is missing (or cannot be read)."""

    async def replace(self, store_id: int, menu_id: str, start: float, entry_ids: list[int]) -> None:
        """Rebuild the queue (an empty list deletes it)."""

    async def close(self) -> None: ...


class MemoryWaitlistQueue:
    def __init__(self) -> None:
        self._queues: dict[str, list[int]] = {}

    async def push(self, store_id: int, menu_id: str, start: float, entry_id: int) -> None:
        q = self._queues.setdefault(queue_key(store_id, menu_id, start), [])
        q[:] = [e for e in q if e != entry_id] + [entry_id]  # as Redis's LREM + RPUSH

    async def remove(self, store_id: int, menu_id: str, start: float, entry_id: int) -> None:
        key = queue_key(store_id, menu_id, start)
        q = self._queues.get(key)
        if q is None:
            return
        q[:] = [e for e in q if e != entry_id]
        if not q:
            del self._queues[key]

    async def entries(self, store_id: int, menu_id: str, start: float) -> list[int] | None:
        q = self._queues.get(queue_key(store_id, menu_id, start))
        return list(q) if q else None

    async def replace(self, store_id: int, menu_id: str, start: float, entry_ids: list[int]) -> None:
        key = queue_key(store_id, menu_id, start)
        if entry_ids:
            self._queues[key] = list(dict.fromkeys(entry_ids))
        else:
            self._queues.pop(key, None)

    def forget_all(self) -> None:
        """Tests: Redis lost the queues."""
        self._queues.clear()

    async def close(self) -> None:
        self._queues.clear()


class RedisWaitlistQueue:
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
                raise ValueError("RedisWaitlistQueue needs a url or a client")
            client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            self._owned = True
        else:
            self._owned = False
        self._redis = client
        self._prefix = prefix

    def _key(self, store_id: int, menu_id: str, start: float) -> str:
        return queue_key(store_id, menu_id, start, self._prefix)

    async def push(self, store_id: int, menu_id: str, start: float, entry_id: int) -> None:
        key = self._key(store_id, menu_id, start)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lrem(key, 0, str(entry_id))
                pipe.rpush(key, str(entry_id))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("waitlist_queue_unavailable", op="push", error=repr(exc))

    async def remove(self, store_id: int, menu_id: str, start: float, entry_id: int) -> None:
        try:
            await self._redis.lrem(self._key(store_id, menu_id, start), 0, str(entry_id))
        except (RedisError, OSError) as exc:
            log.warning("waitlist_queue_unavailable", op="remove", error=repr(exc))

    async def entries(self, store_id: int, menu_id: str, start: float) -> list[int] | None:
        try:
            raw = await self._redis.lrange(self._key(store_id, menu_id, start), 0, -1)
        except (RedisError, OSError) as exc:
            log.warning("waitlist_queue_unavailable", op="entries", error=repr(exc))
            return None
        if not raw:
            return None
        out: list[int] = []
        for item in raw:
            try:
                out.append(int(item))
            except ValueError:
                return None
        return out

    async def replace(self, store_id: int, menu_id: str, start: float, entry_ids: list[int]) -> None:
        key = self._key(store_id, menu_id, start)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if entry_ids:
                    pipe.rpush(key, *[str(e) for e in dict.fromkeys(entry_ids)])
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("waitlist_queue_unavailable", op="replace", error=repr(exc))

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()


def build_waitlist_queue(redis_url: str | None) -> WaitlistQueue:
    """``RedisWaitlistQueue`` when Redis is configured, else the in-process ``MemoryWaitlistQueue`` (the rows
    are the truth either way)."""
    if redis_url:
        return RedisWaitlistQueue(redis_url)
    return MemoryWaitlistQueue()
