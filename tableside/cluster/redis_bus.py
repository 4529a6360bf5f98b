"""``RedisBus``: the cluster bus on Redis (``redis.asyncio``).

Two connections: one subscriber (this node's inbox and the broadcast channel) and one publisher. Every
publish goes through a single drainer that sends what is queued as one pipeline, so messages from this node
arrive in the order they were queued (Redis keeps per-connection order) and a burst costs one round trip.
Lease operations are Lua scripts, atomic on the server."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from tableside.clock import Clock
from tableside.cluster.bus import BusUnavailable, MessageHandler, PublishResult

log = structlog.get_logger("tableside.cluster.redis")

# For each key: ours -> extend (1); free -> take (1); another node's -> 0.
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2]); out[i] = 1
  elseif not v then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2]); out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key); n = n + 1 end
end
return n
"""
_TAKE_OVER = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] or v == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]); return 1
end
return 0
"""

MAX_PIPELINE = 500


class RedisBus:
    def __init__(self, url: str, clock: Clock, *, timeout_s: float = 1.0) -> None:
        self._url = url
        self._clock = clock
        self._timeout = timeout_s
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=0
        )
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._take_over = self._redis.register_script(_TAKE_OVER)
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
        self._command_ok = True
        self._closing = False
        self._on_published: PublishResult | None = None

    @property
    def up(self) -> bool:
        return self._subscribed and self._command_ok

    async def start(
        self,
        channels: Sequence[str],
        on_message: MessageHandler,
        *,
        on_published: PublishResult | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self._on_published = on_published
        ready = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._subscriber(list(channels), on_message, on_reconnect, ready)))
        self._tasks.append(loop.create_task(self._publisher()))
        try:
            await asyncio.wait_for(asyncio.shield(ready), self._timeout * 3)
        except TimeoutError:
            pass  # Redis is down at start-up: the subscriber keeps trying; ``up`` says so meanwhile

    async def close(self) -> None:
        self._closing = True
        await self.flush_quietly()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    async def flush_quietly(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), self._timeout * 2)
        except TimeoutError:
            pass

    # -- pub/sub ------------------------------------------------------------------------------------
    async def _subscriber(
        self,
        channels: list[str],
        on_message: MessageHandler,
        on_reconnect: Callable[[], None] | None,
        ready: asyncio.Future[None],
    ) -> None:
        lost = False
        backoff = 0.05
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                self._subscribed = True
                backoff = 0.05
                if not ready.done():
                    ready.set_result(None)
                if lost:
                    lost = False
                    log.info("redis_subscription_restored")
                    if on_reconnect is not None:
                        on_reconnect()
                probed = float("-inf")
                while True:
                    if not self._command_ok and self._clock.monotonic() - probed >= 1.0:
                        # A command failed (say on a pooled connection that died with the old server) and
                        # this node may have no traffic of its own to run another: ``up`` would stay false
                        # for good. Check at once, then once a second until a command succeeds.
                        probed = self._clock.monotonic()
                        await self._probe()
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    channel = msg["channel"]
                    on_message(channel.decode() if isinstance(channel, bytes) else str(channel), msg["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._subscribed or not lost:
                    log.warning("redis_subscription_lost", error=repr(exc))
                self._subscribed = False
                lost = True
            except Exception as exc:  # a handler bug must not end the node's inbox
                log.error("cluster_message_failed", error=repr(exc))
                continue
            finally:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except Exception:  # noqa: BLE001 - the connection is being dropped anyway
                    pass
            await self._clock.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _probe(self) -> None:
        try:
            await self._command(self._redis.ping())
        except BusUnavailable:
            pass  # still down: ``up`` stays false

    def publish(self, channel: str, data: bytes) -> None:
        self._queue.append((channel, data))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        await self._idle.wait()

    async def _publisher(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_PIPELINE))]
            try:
                if len(batch) == 1:  # the common case at low load: no pipeline object to build
                    results = [await self._redis.publish(*batch[0])]
                else:
                    pipe = self._redis.pipeline(transaction=False)
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    results = await pipe.execute()
                self._command_ok = True
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._command_ok = False
                log.warning("redis_publish_failed", error=repr(exc), messages=len(batch))
                results = [-1] * len(batch)
            if self._on_published is not None:
                for (channel, _), n in zip(batch, results, strict=True):
                    self._on_published(channel, int(n))

    async def receivers(self, channel: str) -> int:
        result: Any = await self._command(self._redis.pubsub_numsub(channel))
        return int(result[0][1]) if result else 0

    # -- leases -------------------------------------------------------------------------------------
    async def _command(self, awaitable: Awaitable[Any]) -> Any:
        try:
            out = await asyncio.wait_for(awaitable, self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._command_ok = False
            raise BusUnavailable(repr(exc)) from exc
        self._command_ok = True
        return out

    async def acquire(self, key: str, node: str, ttl_s: float) -> bool:
        ok = await self._renew_keys([key], node, ttl_s)
        return ok[0]

    async def renew(self, keys: Sequence[str], node: str, ttl_s: float) -> list[bool]:
        if not keys:
            return []
        return await self._renew_keys(keys, node, ttl_s)

    async def _renew_keys(self, keys: Sequence[str], node: str, ttl_s: float) -> list[bool]:
        out = await self._command(self._renew(keys=list(keys), args=[node, int(ttl_s * 1000)]))
        return [bool(x) for x in out]

    async def release(self, keys: Sequence[str], node: str) -> None:
        if keys:
            await self._command(self._release(keys=list(keys), args=[node]))

    async def take_over(self, key: str, dead: str, node: str, ttl_s: float) -> bool:
        out = await self._command(self._take_over(keys=[key], args=[dead, node, int(ttl_s * 1000)]))
        return bool(out)

    async def holders(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        out = await self._command(self._redis.mget(list(keys)))
        return [None if v is None else v.decode() for v in out]
