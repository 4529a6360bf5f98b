"""Group commit: many actors' durable steps share one storage transaction.

Each actor awaits ``commit(write)``. A single drainer task takes everything queued (up to ``max_batch``)
and hands it to ``Store.commit_writes`` in one call; while that batch is in flight, new writes queue up and
form the next batch. There is no timer: under light load a write goes out alone immediately, under heavy
load batches grow by themselves, so throughput scales without adding latency.

Writes travel in three lanes, each batched on its own, so a cheap cart write never rides in an order's
longer transaction and an order never waits behind a queue of cart writes:

* ``intents`` (``intent_number`` or ``number_order`` set): the order intent a ``place_order`` ack waits for.
  Its statement updates the restaurant's order counter, so two intent statements would only queue on that
  row anyway: one in flight at a time, every intent queued meanwhile goes in the next one (an intent waits
  at most for one batch, never behind cart writes or other tables' commits).
* ``orders`` (an order row to write: a settle): one in flight (confirmations take the kitchen lock).
* ``cart`` (everything else): up to ``in_flight`` transactions at once.

The two order lanes have their own slots beside the cart lane's, so a saturated cart lane never holds them
up. A write never changes lanes past an earlier write of its group that is still queued or in flight: it
joins that write's lane, behind it (an actor has at most one write outstanding anyway, so this only matters
to callers that queue several).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tableside.storage.interface import GroupWrite, StorageError, Store

_Pending = tuple[GroupWrite, "asyncio.Future[None]"]


async def settle_batch(
    futures: Sequence[asyncio.Future[Any]], call: Awaitable[Sequence[Any]], what: str, items: str
) -> bool:
    """Await a batch's store call and give each waiter its own outcome, in order: a ``StorageError`` in the
    results is raised to its waiter, anything else is its result. If the call raises, every waiter gets
    that exception (False: the drainer lives on); if the drainer itself is cancelled (loop shutdown), the
    waiters are cancelled, so none waits forever. A waiter that gave up meanwhile is skipped."""
    try:
        results = await call
        if len(results) != len(futures):
            raise RuntimeError(f"{what} returned {len(results)} results for {len(futures)} {items}")
    except asyncio.CancelledError:
        for fut in futures:
            if not fut.done():
                fut.cancel()
        raise
    except Exception as exc:  # noqa: BLE001 - every waiter gets the failure; the drainer lives on
        for fut in futures:
            if not fut.done():
                fut.set_exception(exc)
        return False
    for fut, result in zip(futures, results, strict=True):
        if fut.done():
            continue
        if isinstance(result, StorageError):
            fut.set_exception(result)
        else:
            fut.set_result(result)
    return True


class CommitterStopped(RuntimeError):
    """``commit`` after ``stop()``."""


@dataclass(slots=True, eq=False)
class _Lane:
    name: str
    limit: int  # transactions of this lane in flight at once
    queue: collections.deque[_Pending] = field(default_factory=collections.deque)
    busy: int = 0


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        max_batch: int = 1000,
        *,
        in_flight: int = 4,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if in_flight < 1:
            raise ValueError("in_flight must be >= 1")
        self._store = store
        self._max_batch = max_batch
        # Up to ``in_flight`` cart transactions at once, so Postgres works on one batch while Python encodes
        # the next. Safe because an actor has at most one write outstanding: concurrent batches never share
        # a group (and the store serialises kitchen_seq assignment itself).
        self._intents = _Lane("intents", 1)
        self._orders = _Lane("orders", 1)
        self._cart = _Lane("cart", in_flight)
        self._lanes = (self._intents, self._orders, self._cart)  # the order the drainer serves them in
        # group_id -> (lane, writes of the group queued or in flight there): keeps each group's writes in
        # submission order when they would otherwise go to different lanes.
        self._groups: dict[str, tuple[_Lane, int]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._observe = observe  # (batch size, seconds) per transaction, for metrics
        self._inflight: set[asyncio.Task[None]] = set()
        # Metrics: store.commit_writes calls made and writes submitted through them.
        self.batches = 0
        self.writes = 0
        self.failed_batches = 0

    @property
    def pending(self) -> int:
        """Writes queued and not yet taken by the drainer."""
        return sum(len(lane.queue) for lane in self._lanes)

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="group-committer")

    async def stop(self) -> None:
        """Stop accepting writes, commit everything already queued (every lane), then end the drainer."""
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def commit(self, write: GroupWrite) -> None:
        """Durably apply ``write``; raises StaleWrite when refused, or whatever the store raised.

        If the caller is cancelled before the drainer takes the write, the write is dropped; after that its
        outcome is decided (and durable if applied) but no longer reported to the cancelled caller."""
        if self._stopping:
            raise CommitterStopped("group committer is stopped")
        if self._task is None:
            self.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group = write.snapshot.group_id
        earlier = self._groups.get(group)
        if earlier is not None:
            lane, count = earlier[0], earlier[1] + 1
        elif write.number_order is not None or write.intent_number is not None:
            lane, count = self._intents, 1
        elif write.order is not None:
            lane, count = self._orders, 1
        else:
            lane, count = self._cart, 1
        self._groups[group] = (lane, count)
        lane.queue.append((write, fut))
        self._wakeup.set()
        await fut

    def _release_group(self, write: GroupWrite) -> None:
        group = write.snapshot.group_id
        entry = self._groups.get(group)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._groups[group]
        else:
            self._groups[group] = (entry[0], entry[1] - 1)

    async def _drain(self) -> None:
        while True:
            launched = False
            for lane in self._lanes:
                # Take a slot first, then the batch: writes keep piling up while a lane's slots are all
                # busy, so the batch that leaves is as large as it can be.
                if lane.queue and lane.busy < lane.limit:
                    launched = self._launch(lane) or launched
            if launched:
                continue
            if self._stopping and not any(lane.queue for lane in self._lanes):
                if self._inflight:
                    await asyncio.gather(*self._inflight, return_exceptions=True)
                return
            self._wakeup.clear()
            await self._wakeup.wait()  # a new write, or a finished batch freed a slot

    def _launch(self, lane: _Lane) -> bool:
        """Start one batch of ``lane``'s queue; False if every write taken had been cancelled."""
        batch: list[_Pending] = []
        queue = lane.queue
        while queue and len(batch) < self._max_batch:
            item = queue.popleft()
            if item[1].cancelled():  # nobody waits for it: never written
                self._release_group(item[0])
            else:
                batch.append(item)
        if not batch:
            return False
        lane.busy += 1
        task = asyncio.get_running_loop().create_task(self._run_batch(lane, batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return True

    async def _run_batch(self, lane: _Lane, batch: list[_Pending]) -> None:
        try:
            await self._commit_batch(batch)
        finally:
            lane.busy -= 1
            for write, _ in batch:
                self._release_group(write)
            self._wakeup.set()

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.writes += len(batch)
        started = time.perf_counter()

        async def commit() -> list[StorageError | None]:
            results = await self._store.commit_writes([w for w, _ in batch])
            if self._observe is not None:
                self._observe(len(batch), time.perf_counter() - started)
            return results

        if not await settle_batch([fut for _, fut in batch], commit(), "commit_writes", "writes"):
            self.failed_batches += 1
