"""``MemoryBus``: the cluster bus for several nodes in one process (tests). One ``MemoryBroker`` plays
Redis; each node gets its own ``MemoryBus`` on it. Lease expiry follows the injected clock. ``down()`` and
``up_again()`` simulate Redis going away and coming back (empty, as a Redis that keeps nothing on disk)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tableside.clock import Clock
from tableside.cluster.bus import BusUnavailable, MessageHandler, PublishResult


@dataclass
class MemoryBroker:
    clock: Clock
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (node, expires monotonic)
    subscribers: dict[str, list[MemoryBus]] = field(default_factory=dict)
    available: bool = True

    def holder(self, key: str) -> str | None:
        entry = self.leases.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock.monotonic():
            del self.leases[key]
            return None
        return entry[0]

    def set(self, key: str, node: str, ttl_s: float) -> None:
        self.leases[key] = (node, self.clock.monotonic() + ttl_s)

    def down(self) -> None:
        self.available = False
        self.leases.clear()
        for buses in self.subscribers.values():
            for bus in buses:
                bus._subscribed = False

    def up_again(self) -> None:
        self.available = True
        seen: set[int] = set()
        for buses in self.subscribers.values():
            for bus in buses:
                if id(bus) not in seen:
                    seen.add(id(bus))
                    bus._restored()


class MemoryBus:
    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._channels: list[str] = []
        self._on_message: MessageHandler | None = None
        self._on_published: PublishResult | None = None
        self._on_reconnect: Callable[[], None] | None = None
        self._subscribed = False
        self._closed = False

    @property
    def up(self) -> bool:
        return self._broker.available and self._subscribed

    async def _check(self) -> None:
        # A round trip to Redis suspends the caller: yield here too, so races between callers that await
        # the bus (two sockets routed at once) happen in tests as they do against Redis.
        await asyncio.sleep(0)
        if not self._broker.available:
            raise BusUnavailable("memory broker is down")

    async def start(
        self,
        channels: Sequence[str],
        on_message: MessageHandler,
        *,
        on_published: PublishResult | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self._channels = list(channels)
        self._on_message = on_message
        self._on_published = on_published
        self._on_reconnect = on_reconnect
        for channel in self._channels:
            self._broker.subscribers.setdefault(channel, []).append(self)
        self._subscribed = self._broker.available

    def _restored(self) -> None:
        if self._closed:
            return
        self._subscribed = True
        if self._on_reconnect is not None:
            self._on_reconnect()

    async def close(self) -> None:
        self._closed = True
        self._subscribed = False
        for channel in self._channels:
            subs = self._broker.subscribers.get(channel, [])
            if self in subs:
                subs.remove(self)

    def publish(self, channel: str, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        if not self._broker.available:
            if self._on_published is not None:
                loop.call_soon(self._on_published, channel, -1)
            return
        targets = [b for b in self._broker.subscribers.get(channel, []) if b._subscribed]
        for bus in targets:
            loop.call_soon(bus._deliver, channel, data)
        if self._on_published is not None:
            loop.call_soon(self._on_published, channel, len(targets))

    def _deliver(self, channel: str, data: bytes) -> None:
        if self._subscribed and self._on_message is not None:
            self._on_message(channel, data)

    async def flush(self) -> None:
        await asyncio.sleep(0)

    async def receivers(self, channel: str) -> int:
        await self._check()
        return sum(1 for b in self._broker.subscribers.get(channel, []) if b._subscribed)

    async def acquire(self, key: str, node: str, ttl_s: float) -> bool:
        return (await self.renew([key], node, ttl_s))[0]

    async def renew(self, keys: Sequence[str], node: str, ttl_s: float) -> list[bool]:
        await self._check()
        out = []
        for key in keys:
            holder = self._broker.holder(key)
            if holder is None or holder == node:
                self._broker.set(key, node, ttl_s)
                out.append(True)
            else:
                out.append(False)
        return out

    async def release(self, keys: Sequence[str], node: str) -> None:
        await self._check()
        for key in keys:
            if self._broker.holder(key) == node:
                del self._broker.leases[key]

    async def take_over(self, key: str, dead: str, node: str, ttl_s: float) -> bool:
        await self._check()
        holder = self._broker.holder(key)
        if holder is None or holder in (dead, node):
            self._broker.set(key, node, ttl_s)
            return True
        return False

    async def holders(self, keys: Sequence[str]) -> list[str | None]:
        await self._check()
        return [self._broker.holder(k) for k in keys]
