"""Order numbers reserved from the store in blocks, so placing an order costs no extra round trip.

Numbers stay unique and never reused (a block is durable once reserved); after a restart the unused rest of
a block is skipped, which leaves a gap, never a duplicate. The next block is fetched in the background
when the current one is half used, so no order waits for a reservation in steady state."""

from __future__ import annotations

import asyncio
from collections import deque

from tableside.storage.interface import Store

BLOCK = 64


class OrderNumbers:
    def __init__(self, store: Store, block: int = BLOCK) -> None:
        self._store = store
        self._block = block
        self._ready: dict[int, deque[int]] = {}
        self._lock = asyncio.Lock()
        self._refill: dict[int, asyncio.Task[None]] = {}

    async def next(self, restaurant_id: int) -> int:
        ready = self._ready.setdefault(restaurant_id, deque())
        if not ready:
            await self._reserve(restaurant_id)
        n = ready.popleft()
        if len(ready) < self._block // 2 and restaurant_id not in self._refill:
            task = asyncio.get_running_loop().create_task(self._reserve(restaurant_id))
            self._refill[restaurant_id] = task
            task.add_done_callback(lambda _t: self._refill.pop(restaurant_id, None))
        return n

    async def _reserve(self, restaurant_id: int) -> None:
        async with self._lock:  # one reservation at a time
            ready = self._ready[restaurant_id]
            if len(ready) >= self._block // 2:
                return
            first = await self._store.next_order_number(restaurant_id, self._block)
            # Blocks are increasing, so appending keeps numbers handed out in increasing order.
            ready.extend(range(first, first + self._block))
