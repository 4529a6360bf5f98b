"""GroupCommitter: batching, error propagation, draining - on both store implementations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from tableside.storage import (
    CommitterStopped,
    GroupCommitter,
    GroupSnapshot,
    GroupWrite,
    MemoryStore,
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


# -- the committer's own promises, on a scripted store (no database needed) --------------------------------


class ScriptedStore:
    """``commit_writes`` that records each batch's groups and waits for the test to answer it."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.answers: list[asyncio.Future[list[StorageError | None]]] = []
        self.open = 0  # calls in progress
        self.most_open = 0

    async def commit_writes(self, writes: Sequence[GroupWrite]) -> list[StorageError | None]:
        self.batches.append([wr.snapshot.group_id for wr in writes])
        answer: asyncio.Future[list[StorageError | None]] = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            return await answer
        finally:
            self.open -= 1

    def ok(self, i: int) -> None:
        self.answers[i].set_result([None] * len(self.batches[i]))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def answered(*futs: asyncio.Future[None]) -> list[Any]:
    """The waiters' outcomes, once the loop has settled; every one must have been answered by then (a
    waiter left hanging fails here at once instead of at the test timeout)."""
    await settle()
    assert all(f.done() for f in futs), "a waiter was never answered"
    return list(await asyncio.gather(*futs, return_exceptions=True))


def scripted(**kw: Any) -> tuple[GroupCommitter, ScriptedStore]:
    """A committer on a ScriptedStore, with the defaults except what ``kw`` sets."""
    st = ScriptedStore()
    return GroupCommitter(st, **kw), st  # type: ignore[arg-type]


async def test_default_batch_cap_is_1000_and_max_batch_1_is_allowed() -> None:
    c, st = scripted()
    c.start()
    first = asyncio.ensure_future(c.commit(w("g0", 1, 0)))
    await settle()
    rest = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0))) for i in range(1, 1501)]
    await settle()
    assert [len(b) for b in st.batches] == [1, 1000, 500]  # two more transactions may start at once
    for i in range(3):
        st.ok(i)
    assert await answered(first, *rest) == [None] * 1501
    assert (c.batches, c.writes, c.failed_batches) == (3, 1501, 0)
    await c.stop()
    one, st1 = scripted(max_batch=1)
    one.start()
    futs = [asyncio.ensure_future(one.commit(w(f"g{i}", 1, 0))) for i in range(3)]
    await settle()
    assert st1.batches == [["g0"], ["g1"], ["g2"]]
    for i in range(3):
        st1.ok(i)
    assert await answered(*futs) == [None] * len(futs)
    await one.stop()
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitter(MemoryStore(), max_batch=0)


@pytest.mark.parametrize("in_flight", [None, 1, 2])
async def test_at_most_in_flight_transactions_at_once(in_flight: int | None) -> None:
    c, st = scripted(max_batch=1, **({} if in_flight is None else {"in_flight": in_flight}))
    limit = 4 if in_flight is None else in_flight
    c.start()
    futs = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0))) for i in range(10)]
    await settle()
    assert len(st.batches) == limit and c.pending == 10 - limit
    st.ok(0)  # one finishes: exactly one more starts, in queue order
    await settle()
    assert len(st.batches) == limit + 1 and st.batches[-1] == [f"g{limit}"]
    assert futs[0].done() and not futs[1].done()
    for i in range(1, 10):
        await settle()
        st.ok(i)
    assert await answered(*futs) == [None] * len(futs)
    assert st.most_open == limit
    assert [b[0] for b in st.batches] == [f"g{i}" for i in range(10)]  # first come, first committed
    await c.stop()


async def test_each_waiter_gets_its_own_result_in_order() -> None:
    c, st = scripted()
    c.start()
    stale = StaleWrite("g1")
    futs = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0))) for i in range(4)]
    await settle()
    assert st.batches == [["g0", "g1", "g2", "g3"]]
    st.answers[0].set_result([None, stale, None, None])
    results = await answered(*futs)
    assert results == [None, stale, None, None]
    assert (c.batches, c.writes, c.failed_batches) == (1, 4, 0)
    await c.stop()


async def test_a_caller_cancelled_after_its_write_was_taken_leaves_the_others_alone() -> None:
    c, st = scripted()
    c.start()
    futs = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0))) for i in range(3)]
    await settle()
    assert st.batches == [["g0", "g1", "g2"]]  # already taken: it will be written
    futs[0].cancel()
    st.answers[0].set_result([None, None, StaleWrite("g2")])
    results = await answered(*futs)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1] is None and isinstance(results[2], StaleWrite)
    await c.stop()


async def test_a_failed_transaction_fails_every_waiter_of_that_batch_only() -> None:
    c, st = scripted()
    c.start()
    a = [asyncio.ensure_future(c.commit(w(f"a{i}", 1, 0))) for i in range(3)]
    await settle()
    b = [asyncio.ensure_future(c.commit(w(f"b{i}", 1, 0))) for i in range(2)]
    await settle()
    assert st.batches == [["a0", "a1", "a2"], ["b0", "b1"]]
    down = ConnectionError("db down")
    st.answers[0].set_exception(down)
    st.answers[1].set_exception(OSError("again"))
    results = await answered(*a, *b)
    assert results[:3] == [down, down, down]
    assert all(isinstance(r, OSError) and str(r) == "again" for r in results[3:])
    assert (c.batches, c.writes, c.failed_batches) == (2, 5, 2)
    later = asyncio.ensure_future(c.commit(w("c0", 1, 0)))  # the drainer lives on
    await settle()
    st.ok(2)
    assert await answered(later) == [None]
    assert c.failed_batches == 2
    await c.stop()


async def test_a_store_answering_the_wrong_number_of_results_fails_the_batch() -> None:
    c, st = scripted()
    c.start()
    futs = [asyncio.ensure_future(c.commit(w(f"g{i}", 1, 0))) for i in range(3)]
    await settle()
    st.answers[0].set_result([None, None])
    results = await answered(*futs)
    for r in results:
        assert isinstance(r, RuntimeError) and "2 results for 3 writes" in str(r)
    assert c.failed_batches == 1
    await c.stop()


async def test_observe_gets_batch_size_and_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([10.0, 20.0, 10.5, 21.0])  # both start before either ends
    monkeypatch.setattr("tableside.storage.committer.time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    seen: list[tuple[int, float]] = []
    c, st = scripted(observe=lambda n, s: seen.append((n, s)))
    c.start()
    first = [asyncio.ensure_future(c.commit(w(f"a{i}", 1, 0))) for i in range(3)]
    await settle()
    second = asyncio.ensure_future(c.commit(w("b0", 1, 0)))
    await settle()
    st.ok(0)
    assert await answered(*first) == [None] * 3
    st.ok(1)
    assert await answered(second) == [None]
    assert seen == [(3, 0.5), (1, 1.0)]
    await c.stop()


async def test_stop_waits_for_transactions_in_flight() -> None:
    c, st = scripted()
    c.start()
    fut = asyncio.ensure_future(c.commit(w("g0", 1, 0)))
    await settle()
    assert c.pending == 0 and len(st.batches) == 1
    stopping = asyncio.ensure_future(c.stop())
    await settle()
    assert not stopping.done()  # the batch has not been answered yet
    (late,) = await answered(asyncio.ensure_future(c.commit(w("late", 1, 0))))
    assert isinstance(late, CommitterStopped) and "stopped" in str(late)
    st.ok(0)
    await answered(stopping)
    assert fut.done() and fut.result() is None
    assert st.batches == [["g0"]]


async def test_stop_survives_a_transaction_cancelled_under_it() -> None:
    # At loop shutdown the store call may be cancelled: its waiters are cancelled too (never left
    # hanging), and stop() still finishes normally.
    c, st = scripted()
    c.start()
    fut = asyncio.ensure_future(c.commit(w("g0", 1, 0)))
    await settle()
    stopping = asyncio.ensure_future(c.stop())
    await settle()
    st.answers[0].cancel()
    await settle()
    assert fut.cancelled()
    assert await answered(stopping) == [None]


async def test_after_a_batch_of_only_cancelled_writes_the_drainer_goes_on() -> None:
    c, st = scripted()
    c.start()
    first = asyncio.ensure_future(c.commit(w("g0", 1, 0)))
    await settle()
    doomed = [asyncio.ensure_future(c.commit(w(f"x{i}", 1, 0))) for i in range(2)]
    await asyncio.sleep(0)
    st.ok(0)
    for d in doomed:
        d.cancel()
    assert await answered(first) == [None]
    later = asyncio.ensure_future(c.commit(w("g1", 1, 0)))
    await settle()
    assert st.batches == [["g0"], ["g1"]]  # the cancelled writes never reached the store
    st.ok(1)
    assert await answered(later) == [None]
    await c.stop()


async def test_restart_after_stop() -> None:
    c, st = scripted()
    fut = asyncio.ensure_future(c.commit(w("g0", 1, 0)))  # the first commit starts the drainer
    await settle()
    assert st.batches == [["g0"]]
    c.start()  # already running: the same drainer
    st.ok(0)
    assert await answered(fut) == [None]
    await c.stop()
    (refused,) = await answered(asyncio.ensure_future(c.commit(w("g1", 1, 0))))
    assert isinstance(refused, CommitterStopped)
    c.start()  # started again: takes writes again
    fut = asyncio.ensure_future(c.commit(w("g1", 1, 0)))
    await settle()
    st.ok(1)
    assert await answered(fut) == [None]
    await c.stop()
    assert st.batches == [["g0"], ["g1"]]
    never = GroupCommitter(ScriptedStore())  # type: ignore[arg-type]
    await never.stop()  # never started: nothing to wait for
