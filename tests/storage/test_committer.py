"""GroupCommitter: batching, error propagation, draining - on both store implementations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from tableside.storage import (
    CommitterStopped,
    GroupCommitter,
    GroupSnapshot,
    GroupWrite,
    OrderRecord,
    OrderStatus,
    StaleWrite,
    StorageError,
    Store,
)


class Recording:
    """Wraps a store, recording the size of every commit_writes call; can be told to fail."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.fail_with: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def commit_writes(self, writes: Sequence[GroupWrite]) -> list[StorageError | None]:
        self.calls.append(len(writes))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return await self.inner.commit_writes(writes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def w(group: str, rev: int, expected: int, order: OrderRecord | None = None) -> GroupWrite:
    return GroupWrite(GroupSnapshot(group, "T1", 1, rev, {"rev": rev}), expected, order)


async def test_concurrent_commits_are_batched(store: Store) -> None:
    rec = Recording(store)
    c = GroupCommitter(rec)
    c.start()
    await asyncio.gather(*(c.commit(w(f"g{i}", 1, 0)) for i in range(200)))
    assert sum(rec.calls) == 200 and len(rec.calls) < 200
    assert c.writes == 200 and c.batches == len(rec.calls)
    for i in (0, 199):
        assert (await store.load_group(f"g{i}")) == GroupSnapshot(f"g{i}", "T1", 1, 1, {"rev": 1})
    await c.stop()


async def test_writes_queue_behind_an_in_flight_batch(store: Store) -> None:
    rec = Recording(store)
    rec.gate = asyncio.Event()
    c = GroupCommitter(rec, max_batch=50)
    c.start()
    first = asyncio.ensure_future(c.commit(w("g0", 1, 0)))
    for _ in range(3):  # the first write goes out alone, immediately (no artificial delay)
        await asyncio.sleep(0)
    assert rec.calls == [1]
    rest = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0))) for i in range(1, 121)]
    await asyncio.sleep(0)
    assert c.pending == 120 and rec.calls == [1]
    rec.gate.set()
    await asyncio.gather(first, *rest)
    assert rec.calls == [1, 50, 50, 20]  # capped at max_batch
    await c.stop()


async def test_stale_write_raises_only_for_its_caller(store: Store) -> None:
    c = GroupCommitter(store)
    c.start()
    await c.commit(w("g1", 1, 0))
    results = await asyncio.gather(c.commit(w("g1", 2, 5)), c.commit(w("g2", 1, 0)), return_exceptions=True)
    assert isinstance(results[0], StaleWrite) and results[1] is None
    await c.stop()


async def test_store_failure_reaches_every_writer_and_drainer_survives(store: Store) -> None:
    rec = Recording(store)
    rec.fail_with = ConnectionError("db down")
    rec.gate = asyncio.Event()
    c = GroupCommitter(rec)
    c.start()
    futs = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0))) for i in range(5)]
    await asyncio.sleep(0)
    rec.gate.set()
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert c.failed_batches >= 1
    rec.fail_with = None
    await c.commit(w("g0", 1, 0))  # the drainer still runs
    assert (await store.load_group("g0")) is not None
    await c.stop()


async def test_stop_drains_pending_writes(store: Store) -> None:
    rec = Recording(store)
    rec.gate = asyncio.Event()
    c = GroupCommitter(rec, max_batch=10)
    c.start()
    order = OrderRecord("ORD-1-1", 1, 1, "T1", "g0", OrderStatus.PROCESSING, [], 0, "", "m", 1.0)
    futs = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0, order if i == 0 else None))) for i in range(35)]
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(c.stop())
    await asyncio.sleep(0)
    rec.gate.set()
    await stopping
    assert all(f.done() and f.exception() is None for f in futs)
    assert (await store.load_group("g34")) is not None and (await store.get_order("ORD-1-1")) is not None
    with pytest.raises(CommitterStopped):
        await c.commit(w("late", 1, 0))


async def test_cancelled_caller_before_batch_is_not_written(store: Store) -> None:
    rec = Recording(store)
    rec.gate = asyncio.Event()
    c = GroupCommitter(rec)
    c.start()
    first = asyncio.ensure_future(c.commit(w("g0", 1, 0)))
    await asyncio.sleep(0)
    doomed = asyncio.ensure_future(c.commit(w("g1", 1, 0)))
    await asyncio.sleep(0)
    doomed.cancel()
    rec.gate.set()
    await first
    await c.stop()
    assert await store.load_group("g1") is None
    assert rec.calls == [1]


async def test_commit_autostarts(store: Store) -> None:
    c = GroupCommitter(store)
    await c.commit(w("g1", 1, 0))
    await c.stop()
    await c.stop()  # idempotent
    with pytest.raises(ValueError):
        GroupCommitter(store, max_batch=0)
