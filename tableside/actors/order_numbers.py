"""Order numbers reserved from the store in blocks, so placing an order costs no extra round trip.

Numbers stay unique and never reused (a block is durable once reserved); after a restart the unused rest of
a block is skipped, which leaves a gap, never a duplicate."""

from __future__ import annotations

import asyncio

from tableside.storage.interface import Store

BLOCK = 16


class OrderNumbers:
    def __init__(self, store: Store, block: int = BLOCK) -> None:
        self._store = store
        self._block = block
        self._next: dict[int, int] = {}
        self._end: dict[int, int] = {}
        self._lock = asyncio.Lock()

    def _take(self, restaurant_id: int) -> int | None:
        n = self._next.get(restaurant_id)
        if n is None or n >= self._end[restaurant_id]:
            return None
        self._next[restaurant_id] = n + 1
        return n

    async def next(self, restaurant_id: int) -> int:
        n = self._take(restaurant_id)
        if n is not None:
            return n
        async with self._lock:  # one reservation at a time; others take from the fresh block
            n = self._take(restaurant_id)
            if n is not None:
                return n
            first = await self._store.next_order_number(restaurant_id, self._block)
            self._next[restaurant_id] = first + 1
            self._end[restaurant_id] = first + self._block
            return first
