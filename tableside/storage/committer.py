"""Group commit: many actors' durable steps share one storage transaction.

Each actor awaits ``commit(write)``. A single drainer task takes everything queued (up to ``max_batch``)
and hands it to ``Store.commit_writes`` in one call; while that batch is in flight, new writes queue up and
form the next batch. There is no timer: under light load a write goes out alone immediately, under heavy
load batches grow by themselves, so throughput scales without adding latency.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from tableside.storage.interface import GroupWrite, Store

_Pending = tuple[GroupWrite, "asyncio.Future[None]"]


class CommitterStopped(RuntimeError):
    """``commit`` after ``stop()``."""


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
        self._store = store
        self._max_batch = max_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._observe = observe  # (batch size, seconds) per transaction, for metrics
        # Up to ``in_flight`` transactions at once, so Postgres works on one batch while Python encodes the
        # next. Safe because an actor has at most one write outstanding: concurrent batches never share a
        # group (and the store serialises kitchen_seq assignment itself).
        self._slots = asyncio.Semaphore(in_flight)
        self._inflight: set[asyncio.Task[None]] = set()
        # Metrics: store.commit_writes calls made and writes submitted through them.
        self.batches = 0
        self.writes = 0
        self.failed_batches = 0

    @property
    def pending(self) -> int:
        """Writes queued and not yet taken by the drainer."""
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="group-committer")

    async def stop(self) -> None:
        """Stop accepting writes, commit everything already queued, then end the drainer."""
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
        self._queue.append((write, fut))
        self._wakeup.set()
        await fut

    async def _drain(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    if self._inflight:
                        await asyncio.gather(*self._inflight, return_exceptions=True)
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Take a slot first, then the batch: writes keep piling up while we wait, so the batch
            # that leaves is as large as it can be.
            await self._slots.acquire()
            batch: list[_Pending] = []
            while self._queue and len(batch) < self._max_batch:
                item = self._queue.popleft()
                if not item[1].cancelled():  # nobody waits for it: never written
                    batch.append(item)
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            await self._commit_batch(batch)
        finally:
            self._slots.release()

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.writes += len(batch)
        started = time.perf_counter()
        try:
            results = await self._store.commit_writes([w for w, _ in batch])
            if self._observe is not None:
                self._observe(len(batch), time.perf_counter() - started)
            if len(results) != len(batch):
                raise RuntimeError(f"commit_writes returned {len(results)} results for {len(batch)} writes")
        except asyncio.CancelledError:
            # The drainer itself is being cancelled (loop shutdown): callers must not wait forever.
            for _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter gets the failure; the drainer lives on
            self.failed_batches += 1
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), err in zip(batch, results, strict=True):
            if fut.done():
                continue
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)
