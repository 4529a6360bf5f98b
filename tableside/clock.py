"""The one source of time. Everything that reads time or waits takes a ``Clock`` so tests can drive
timeouts with ``FakeClock.advance`` instead of sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps and expiry)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for rates and timeouts)."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when a test calls ``advance``; sleepers wake in deadline order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passed, and let them run."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now += deadline - self._mono
            self._mono = deadline
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._now += target - self._mono
        self._mono = target
        for _ in range(5):
            await asyncio.sleep(0)


async def run_with_timeout(clock: Clock, awaitable: Awaitable[T], seconds: float) -> T:
    """Await ``awaitable`` but give up after ``seconds`` on ``clock`` (so a FakeClock drives timeouts).

    Raises ``TimeoutError`` and cancels the work when the clock wins."""
    work: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        waiters: set[asyncio.Future[Any]] = {work, timer}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        timer.cancel()
        raise
    if work.done():
        timer.cancel()
        return work.result()
    work.cancel()
    raise TimeoutError(f"timed out after {seconds}s")
