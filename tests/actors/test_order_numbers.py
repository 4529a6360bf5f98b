"""Order numbers reserved in blocks (``tableside/actors/order_numbers.py``): unique and increasing per
restaurant, one reservation at a time, and the next block fetched in the background when half the current one
is used, so in steady state no order waits for the store."""

from __future__ import annotations

import asyncio

from tableside.actors.order_numbers import OrderNumbers
from tests.actors.test_table_actor import settle


class BlockStore:
    """Just ``next_order_number``: hands out consecutive blocks per restaurant; can be held shut."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}
        self.calls: list[tuple[int, int]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def next_order_number(self, restaurant_id: int, count: int = 1) -> int:
        self.calls.append((restaurant_id, count))
        await self.open.wait()
        first = self.next.get(restaurant_id, 1)
        self.next[restaurant_id] = first + count
        return first


async def test_numbers_come_in_order_and_the_next_block_is_fetched_when_half_is_used() -> None:
    store = BlockStore()
    numbers = OrderNumbers(store, block=4)  # type: ignore[arg-type]
    assert [await numbers.next(1), await numbers.next(1)] == [1, 2]
    await settle()
    assert store.calls == [(1, 4)]  # two of four left: no refill yet
    assert await numbers.next(1) == 3  # one left: the next block is fetched in the background
    await settle()
    assert store.calls == [(1, 4), (1, 4)]
    assert [await numbers.next(1) for _ in range(3)] == [4, 5, 6]
    await settle()
    assert store.calls == [(1, 4), (1, 4)]  # 7 and 8 left: half a block, enough
    assert await numbers.next(1) == 7
    await settle()
    assert store.calls == [(1, 4), (1, 4), (1, 4)]
    assert [await numbers.next(1) for _ in range(5)] == [8, 9, 10, 11, 12]


async def test_in_steady_state_no_order_waits_for_the_store() -> None:
    store = BlockStore()
    numbers = OrderNumbers(store, block=4)  # type: ignore[arg-type]
    assert await numbers.next(1) == 1
    store.open.clear()  # the store is slow from now on
    assert await numbers.next(1) == 2
    assert await numbers.next(1) == 3  # starts the background refill, which now hangs
    await settle()
    fourth = asyncio.ensure_future(numbers.next(1))
    await settle()
    assert fourth.done() and fourth.result() == 4  # still served from the block in hand
    fifth = asyncio.ensure_future(numbers.next(1))
    sixth = asyncio.ensure_future(numbers.next(1))
    await settle()
    assert not fifth.done()  # the block is used up: this one waits for the refill in flight...
    store.open.set()
    await settle()
    assert (fifth.result(), sixth.result()) == (5, 6)
    assert store.calls == [(1, 4), (1, 4)]  # ...and no second reservation was made for it


async def test_restaurants_have_their_own_numbers() -> None:
    store = BlockStore()
    numbers = OrderNumbers(store, block=64)  # type: ignore[arg-type]
    assert await numbers.next(1) == 1
    assert await numbers.next(2) == 1
    assert await numbers.next(1) == 2
    await settle()
    assert store.calls == [(1, 64), (2, 64)]
    got = [await numbers.next(2) for _ in range(40)]
    assert got == list(range(2, 42))
    await settle()
    assert store.calls == [(1, 64), (2, 64), (2, 64)]
