"""The op log in the store (both stores): cart batches as op records after the group's last snapshot, the
snapshot pruning the records it covers, activation = snapshot + records, load_group = the current state,
fencing and the revision check for op records as for snapshots."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tableside.actors.cart import GroupState, op_record
from tableside.storage import (
    FencedWrite,
    GroupSnapshot,
    GroupWrite,
    InvalidWrite,
    OrderStatus,
    PostgresStore,
    StaleWrite,
    Store,
)
from tests.storage.test_store import HOUR, NOW, join, order, seed


class Group:
    """A GroupState written the way TableActor writes it."""

    def __init__(self, gid: str = "g1", epoch: int = 0) -> None:
        self.gid = gid
        self.state = GroupState()
        self.stored = 0
        self.epoch = epoch
        self.t = NOW

    def edit(self, n: int = 1) -> None:
        for i in range(n):
            self.t += 1
            self.state.add_line(f"item{i}", "Miso", 1 + i, 350, "", "m1")
            revision = self.state.touch(self.t)
            self.state.remember("m1", f"r{revision}", {"type": "ack", "id": f"r{revision}", "revision": revision})

    def ops_write(self) -> GroupWrite:
        record = op_record(self.state, self.stored)
        write = GroupWrite(self.snap({}), self.stored, epoch=self.epoch, ops=record)
        self.stored = self.state.revision
        return write

    def snapshot_write(self, **kw: Any) -> GroupWrite:
        self.state.take_ops()
        write = GroupWrite(self.snap(self.state.to_snapshot()), self.stored, epoch=self.epoch, **kw)
        self.stored = self.state.revision
        return write

    def snap(self, state: dict[str, Any]) -> GroupSnapshot:
        return GroupSnapshot(self.gid, "T1", 1, self.state.revision, state)

    def current(self) -> GroupSnapshot:
        return self.snap(self.state.to_snapshot())


async def stored_records(store: Store, gid: str) -> int:
    """How many op records the store keeps for ``gid`` (pruned ones are gone, not just hidden)."""
    if isinstance(store, PostgresStore):
        async with store._raw.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM group_ops WHERE group_id = $1", gid))
    return len(store._group_ops.get(gid, []))  # type: ignore[attr-defined]


async def test_op_records_follow_the_snapshot_and_activation_returns_both(store: Store) -> None:
    g = Group()
    g.edit()
    assert await store.commit_writes([g.snapshot_write()]) == [None]
    first = g.current()
    records = []
    for n in (1, 3, 2):
        g.edit(n)
        w = g.ops_write()
        records.append(w.ops)
        assert await store.commit_writes([w]) == [None]
    # load_group answers the current state (the records replayed), as when every write was a snapshot
    assert await store.load_group("g1") == g.current()
    activation = await store.activate_group("g1", "T1", 1, "node")
    assert activation.snapshot == first
    assert activation.ops == records  # oldest first, exactly as written
    assert await stored_records(store, "g1") == 3


async def test_a_snapshot_write_prunes_the_records_it_covers(store: Store) -> None:
    g = Group()
    g.edit()
    await store.commit_writes([g.snapshot_write()])
    for _ in range(4):
        g.edit()
        assert await store.commit_writes([g.ops_write()]) == [None]
    assert await stored_records(store, "g1") == 4
    # A compaction (deactivation) keeps the revision: expected == new revision.
    assert await store.commit_writes([g.snapshot_write()]) == [None]
    assert await stored_records(store, "g1") == 0
    activation = await store.activate_group("g1", "T1", 1, "node")
    assert activation.snapshot == g.current() and activation.ops == []
    g.epoch = activation.epoch
    g.edit()
    assert await store.commit_writes([g.ops_write()]) == [None]
    assert (await store.activate_group("g1", "T1", 1, "node")).ops[0]["rev"] == g.state.revision
    assert await store.load_group("g1") == g.current()


async def test_op_records_are_fenced_and_revision_checked(store: Store) -> None:
    activation = await store.activate_group("g1", "T1", 1, "node-a")
    a = Group(epoch=activation.epoch)
    a.edit()
    assert await store.commit_writes([a.snapshot_write()]) == [None]
    a.edit()
    assert await store.commit_writes([a.ops_write()]) == [None]
    kept = a.current()
    # A stale expected revision: refused, nothing appended.
    stale = Group(epoch=a.epoch)
    stale.state = GroupState.from_snapshot(kept.revision, kept.state)
    stale.stored = kept.revision - 1
    stale.edit()
    [err] = await store.commit_writes([stale.ops_write()])
    assert type(err) is StaleWrite
    # A newer activation fences the old owner's op records (and snapshots).
    b_epoch = (await store.activate_group("g1", "T1", 1, "node-b")).epoch
    a.edit()
    [fenced] = await store.commit_writes([a.ops_write()])
    assert isinstance(fenced, FencedWrite) and (fenced.write_epoch, fenced.stored_epoch) == (a.epoch, b_epoch)
    a.stored = kept.revision
    [fenced] = await store.commit_writes([a.snapshot_write()])
    assert isinstance(fenced, FencedWrite)
    assert await store.load_group("g1") == kept
    assert await stored_records(store, "g1") == 1


async def test_an_op_record_may_create_the_group(store: Store) -> None:
    g = Group()
    g.edit(2)
    w = g.ops_write()
    assert await store.commit_writes([w]) == [None]
    activation = await store.activate_group("g1", "T1", 1, "node")
    assert activation.snapshot is None and activation.ops == [w.ops]
    assert await store.load_group("g1") == g.current()
    # A second write expecting 0 is refused (the group exists).
    [err] = await store.commit_writes([Group(epoch=activation.epoch).ops_write()])
    assert isinstance(err, StaleWrite)


async def test_op_records_with_nan_or_infinity_are_refused_alone(store: Store) -> None:
    g, other = Group("g1"), Group("g2")
    g.edit()
    other.edit()
    bad = g.ops_write()
    assert bad.ops is not None
    bad.ops["t"] = math.nan
    worse = GroupWrite(g.snap({}), 0, ops={"b": 0, "rev": 1, "t": 1.0, "ops": [["q", "L1", math.inf]]})
    results = await store.commit_writes([bad, worse, other.ops_write()])
    assert isinstance(results[0], InvalidWrite) and isinstance(results[1], InvalidWrite) and results[2] is None
    assert await store.load_group("g1") is None and await store.load_group("g2") == other.current()


async def test_a_group_of_op_records_and_snapshots_in_one_batch(store: Store) -> None:
    """One batch (one statement) mixing op records, snapshots, a new group and an order: each as alone."""
    groups = [Group(f"g{i}") for i in range(6)]
    for g in groups[:4]:
        g.edit()
        await store.commit_writes([g.snapshot_write()])
    writes = []
    for i, g in enumerate(groups):
        g.edit(1 + i % 3)
        writes.append(g.ops_write() if i % 2 else g.snapshot_write())
    writes[2].order = order("ORD-1-1", "g2", OrderStatus.CONFIRMED)
    assert await store.commit_writes(writes) == [None] * 6
    for g in groups:
        assert await store.load_group(g.gid) == g.current()
    assert (await store.get_order("ORD-1-1")) is not None


async def test_a_numbered_write_after_op_records_is_a_snapshot(store: Store) -> None:
    await seed(store, "T1")
    g = Group()
    g.edit()
    await store.commit_writes([g.snapshot_write()])
    g.edit()
    await store.commit_writes([g.ops_write()])
    g.edit()
    g.state.take_ops()

    def number_order(n: int) -> Any:
        g.state.last_order_id = f"ORD-1-{n}"
        return g.state.to_snapshot(), order(f"ORD-1-{n}", "g1", number=n)

    write = GroupWrite(g.snap({}), g.stored, number_order=number_order)
    assert await store.commit_writes([write]) == [None]
    g.stored = g.state.revision
    assert await stored_records(store, "g1") == 0
    assert await store.load_group("g1") == g.current()
    assert (await store.activate_group("g1", "T1", 1, "n")).snapshot == g.current()


async def test_idle_sweep_reads_the_time_of_the_last_op_record(store: Store) -> None:
    await seed(store, "T1")
    joined = await join(store, "T1", "tok", "m1", "g1", now=NOW)
    g = Group(joined.group_id)
    g.t = NOW
    g.edit()
    await store.commit_writes([g.snapshot_write()])  # snapshot's last_updated: NOW + 1
    g.t = NOW + 5 * HOUR
    g.edit()
    await store.commit_writes([g.ops_write()])  # activity at NOW + 5 h, only in the record
    assert await store.close_idle_groups(NOW + 2 * HOUR, NOW + 6 * HOUR) == []
    assert await store.close_idle_groups(NOW + 5 * HOUR + 2, NOW + 6 * HOUR) == [("T1", joined.group_id)]


@pytest.mark.parametrize("every", [1, 3])
async def test_records_replay_in_order_after_many_batches(store: Store, every: int) -> None:
    g = Group()
    g.edit()
    await store.commit_writes([g.snapshot_write()])
    for i in range(12):
        g.edit(1 + i % 2)
        w = g.snapshot_write() if i % (every + 3) == every else g.ops_write()
        assert await store.commit_writes([w]) == [None]
        assert await store.load_group("g1") == g.current()
