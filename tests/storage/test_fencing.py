"""Fencing (group epochs) and order numbers taken at intent commit; each test runs on both stores unless
it says Postgres-only (real concurrency between connections)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tableside.storage import (
    FencedWrite,
    GroupSnapshot,
    GroupWrite,
    InvalidWrite,
    MemoryStore,
    OrderRecord,
    OrderStatus,
    PostgresStore,
    RestaurantNotFound,
    StaleWrite,
    Store,
)
from tests.storage.test_store import HOUR, NOW, join, order, seed, snap

NumberOrder = Callable[[int], tuple[dict[str, Any], OrderRecord]]


def numbering(calls: list[int], group: str = "g1", restaurant_id: int = 1, **kw: Any) -> NumberOrder:
    """A number_order that records the numbers it was given and makes ORD-{restaurant}-{n}."""

    def number_order(n: int) -> tuple[dict[str, Any], OrderRecord]:
        calls.append(n)
        rec = order(f"ORD-{restaurant_id}-{n}", group, number=n, restaurant_id=restaurant_id, **kw)
        return {"numbered": n, "group": group}, rec

    return number_order


def intent(
    group: str,
    revision: int,
    expected: int,
    epoch: int,
    calls: list[int],
    restaurant_id: int = 1,
    **kw: Any,
) -> GroupWrite:
    placeholder = GroupSnapshot(group, "T1", restaurant_id, revision, {"placeholder": True})
    return GroupWrite(
        placeholder,
        expected,
        epoch=epoch,
        number_order=numbering(calls, group, restaurant_id, **kw),
    )


async def owner_node(store: Store, group_id: str) -> str | None:
    if isinstance(store, MemoryStore):
        return store.owner_nodes.get(group_id)
    assert isinstance(store, PostgresStore)
    async with store.engine.connect() as conn:
        value = (
            await conn.execute(sa.text("SELECT owner_node FROM group_state WHERE group_id = :g"), {"g": group_id})
        ).scalar()
    return None if value is None else str(value)


# -- activation ---------------------------------------------------------------------------------


async def test_activation_bumps_the_epoch_and_returns_the_stored_snapshot(store: Store) -> None:
    first = await store.activate_group("g1", "T1", 1, "node-a")
    assert first.epoch == 1 and first.snapshot is None
    assert await owner_node(store, "g1") == "node-a"
    assert await store.commit_writes([GroupWrite(snap("g1", 1), 0, epoch=1)]) == [None]
    second = await store.activate_group("g1", "T1", 1, "node-b")
    assert second.epoch == 2 and second.snapshot == snap("g1", 1)
    assert await owner_node(store, "g1") == "node-b"
    # a group written before it was ever activated (epoch 0) is taken over the same way
    assert await store.commit_writes([GroupWrite(snap("g2", 1), 0)]) == [None]
    took = await store.activate_group("g2", "T1", 1, "node-a")
    assert took.epoch == 1 and took.snapshot == snap("g2", 1)


async def test_only_activated_group_loads_as_none_and_is_closed_when_idle(store: Store) -> None:
    await seed(store, "T1")
    joined = await join(store, "T1", "tok", "m1", "g-new")
    activation = await store.activate_group(joined.group_id, "T1", 1, "node-a")
    assert activation.snapshot is None
    assert await store.load_group(joined.group_id) is None
    # the pre-created row's state is {}: the idle sweep still reads it (no last_updated: idle since the join)
    assert await store.close_idle_groups(NOW + HOUR, NOW + 2 * HOUR) == [("T1", joined.group_id)]
    again = await store.activate_group(joined.group_id, "T1", 1, "node-b")
    assert again.epoch == 2 and again.snapshot is None


async def test_a_write_expecting_0_applies_to_a_row_an_activation_created(store: Store) -> None:
    a = await store.activate_group("g1", "T1", 1, "node-a")
    # the right epoch but revision 1 expected: the stored revision is 0
    res = await store.commit_writes([GroupWrite(snap("g1", 2), 1, epoch=a.epoch)])
    assert type(res[0]) is StaleWrite
    assert await store.commit_writes([GroupWrite(snap("g1", 1), 0, epoch=a.epoch)]) == [None]
    assert await store.load_group("g1") == snap("g1", 1)
    # a second "first write" is stale now
    res = await store.commit_writes([GroupWrite(snap("g1", 1, {"other": 1}), 0, epoch=a.epoch)])
    assert type(res[0]) is StaleWrite
    assert await store.load_group("g1") == snap("g1", 1)


# -- fencing ------------------------------------------------------------------------------------


async def test_a_stale_owner_is_fenced_and_changes_nothing(store: Store) -> None:
    old = await store.activate_group("g1", "T1", 1, "node-a")
    placed = order("ORD-1-1", "g1")
    assert await store.commit_writes([GroupWrite(snap("g1", 1), 0, order=placed, epoch=old.epoch)]) == [None]
    new = await store.activate_group("g1", "T1", 1, "node-b")
    assert new.epoch == old.epoch + 1 and new.snapshot == snap("g1", 1)

    confirmed = order("ORD-1-1", "g1", OrderStatus.CONFIRMED, pos_ticket_id="P1", confirmed_at=NOW + 1)
    another = order("ORD-1-2", "g1", number=2)
    res = await store.commit_writes(
        [
            GroupWrite(snap("g1", 2), 1, order=confirmed, epoch=old.epoch),  # the old owner's confirmation
            GroupWrite(snap("g9", 1), 0, epoch=0),  # unrelated: applies
        ]
    )
    assert isinstance(res[0], FencedWrite) and isinstance(res[0], StaleWrite) and res[1] is None
    assert "g1" in str(res[0]) and "epoch 1" in str(res[0]) and "epoch is 2" in str(res[0])
    assert (res[0].group_id, res[0].write_epoch, res[0].stored_epoch) == ("g1", 1, 2)
    res = await store.commit_writes([GroupWrite(snap("g1", 2), 1, order=another, epoch=old.epoch)])
    assert isinstance(res[0], FencedWrite)
    # nothing of the fenced writes is stored: snapshot, confirmation, kitchen_seq, the new order
    assert await store.load_group("g1") == snap("g1", 1)
    kept = await store.get_order("ORD-1-1")
    assert kept is not None and kept.status is OrderStatus.PROCESSING and kept.kitchen_seq is None
    assert await store.get_order("ORD-1-2") is None
    assert await store.list_kitchen_orders(1, 0, 10) == []
    # the new owner writes on from what its activation returned
    assert await store.commit_writes([GroupWrite(snap("g1", 2), 1, order=confirmed, epoch=new.epoch)]) == [None]
    done = await store.get_order("ORD-1-1")
    assert done is not None and done.status is OrderStatus.CONFIRMED and done.kitchen_seq is not None


async def test_wrong_revision_with_the_right_epoch_is_stale_not_fenced(store: Store) -> None:
    a = await store.activate_group("g1", "T1", 1, "node-a")
    assert await store.commit_writes([GroupWrite(snap("g1", 1), 0, epoch=a.epoch)]) == [None]
    res = await store.commit_writes([GroupWrite(snap("g1", 3), 2, epoch=a.epoch)])
    assert type(res[0]) is StaleWrite
    # both wrong: the epoch is what matters (the writer does not own the group any more)
    res = await store.commit_writes([GroupWrite(snap("g1", 3), 2, epoch=a.epoch + 5)])
    assert isinstance(res[0], FencedWrite)
    # a write without an epoch (0) on an activated group is fenced too
    res = await store.commit_writes([GroupWrite(snap("g1", 2), 1)])
    assert isinstance(res[0], FencedWrite)
    assert await store.load_group("g1") == snap("g1", 1)


async def test_a_row_created_by_a_write_takes_the_writes_epoch(store: Store) -> None:
    assert await store.commit_writes([GroupWrite(snap("g1", 1), 0, epoch=7)]) == [None]
    res = await store.commit_writes([GroupWrite(snap("g1", 2), 1, epoch=0)])
    assert isinstance(res[0], FencedWrite) and res[0].stored_epoch == 7
    assert await store.commit_writes([GroupWrite(snap("g1", 2), 1, epoch=7)]) == [None]
    assert (await store.activate_group("g1", "T1", 1, "n")).epoch == 8


# -- order numbers at intent commit -------------------------------------------------------------


async def test_numbered_writes_take_consecutive_numbers_in_batch_order(store: Store) -> None:
    await seed(store)
    assert await store.next_order_number(1) == 1  # the same counter: numbered writes never collide with it
    calls: list[int] = []
    eb = (await store.activate_group("gB", "T1", 1, "n")).epoch
    ea = (await store.activate_group("gA", "T1", 1, "n")).epoch
    res = await store.commit_writes(
        [
            intent("gB", 1, 0, eb, calls),  # submitted first although gA sorts first
            GroupWrite(snap("gC", 1), 0),  # a plain write in the same batch
            intent("gA", 1, 0, ea, calls),
        ]
    )
    assert res == [None, None, None]
    assert calls == [2, 3]
    b = await store.load_group("gB")
    assert b is not None and b.state == {"numbered": 2, "group": "gB"} and b.revision == 1
    a = await store.load_group("gA")
    assert a is not None and a.state == {"numbered": 3, "group": "gA"}
    ob, oa = await store.get_order("ORD-1-2"), await store.get_order("ORD-1-3")
    assert ob is not None and ob.group_id == "gB" and ob.order_number == 2
    assert oa is not None and oa.group_id == "gA" and oa.order_number == 3
    assert await store.next_order_number(1) == 4
    # another restaurant has its own counter
    await seed(store, restaurant_id=2)
    calls2: list[int] = []
    assert await store.commit_writes([intent("gD", 1, 0, 0, calls2, restaurant_id=2)]) == [None]
    assert calls2 == [1]
    assert await store.get_order("ORD-2-1") is not None


async def test_a_refused_numbered_write_consumes_no_number(store: Store) -> None:
    await seed(store)
    calls: list[int] = []
    old = (await store.activate_group("g1", "T1", 1, "node-a")).epoch
    assert await store.commit_writes([intent("g1", 1, 0, old, calls)]) == [None]
    assert calls == [1]
    new = (await store.activate_group("g1", "T1", 1, "node-b")).epoch
    fenced_calls: list[int] = []
    stale_calls: list[int] = []
    res = await store.commit_writes(
        [
            intent("g1", 2, 1, old, fenced_calls),  # the old owner's intent: fenced
            intent("g2", 2, 1, 0, stale_calls),  # expects revision 1 of a group that has none: stale
        ]
    )
    assert isinstance(res[0], FencedWrite) and type(res[1]) is StaleWrite
    assert fenced_calls == [] and stale_calls == []  # number_order is not called for a refused write
    assert await store.get_order("ORD-1-2") is None
    g1 = await store.load_group("g1")
    assert g1 is not None and g1.state == {"numbered": 1, "group": "g1"}
    # the next accepted intent gets the number the refused ones would have had
    res = await store.commit_writes([intent("g1", 2, 1, old, fenced_calls), intent("g1", 2, 1, new, calls)])
    assert isinstance(res[0], FencedWrite) and res[1] is None
    assert calls == [1, 2] and fenced_calls == []
    assert await store.next_order_number(1) == 3


async def test_a_numbered_write_refused_for_its_data_consumes_no_number(store: Store) -> None:
    await seed(store)

    def broken(n: int) -> tuple[dict[str, Any], OrderRecord]:
        raise ValueError("boom")

    def not_json(n: int) -> tuple[dict[str, Any], OrderRecord]:
        return {"bad": {1, 2}}, order(f"ORD-1-{n}", "g2", number=n)

    calls: list[int] = []
    res = await store.commit_writes(
        [
            GroupWrite(snap("g1", 1), 0, number_order=broken),
            GroupWrite(snap("g2", 1), 0, number_order=not_json),
            intent("g3", 1, 0, 0, calls, restaurant_id=99),  # no such restaurant
            intent("g4", 1, 0, 0, calls),
        ]
    )
    assert isinstance(res[0], InvalidWrite) and isinstance(res[1], InvalidWrite)
    assert isinstance(res[2], RestaurantNotFound) and res[3] is None
    assert calls == [1]
    assert await store.load_group("g1") is None and await store.load_group("g2") is None
    assert await store.load_group("g3") is None
    assert await store.next_order_number(1) == 2


async def test_a_group_written_twice_in_one_batch_numbers_after_its_first_write(store: Store) -> None:
    await seed(store)
    calls: list[int] = []
    e = (await store.activate_group("g1", "T1", 1, "n")).epoch
    res = await store.commit_writes(
        [GroupWrite(snap("g1", 1), 0, epoch=e), intent("g1", 2, 1, e, calls), intent("g1", 3, 2, e, calls)]
    )
    assert res == [None, None, None] and calls == [1, 2]
    g = await store.load_group("g1")
    assert g is not None and g.revision == 3 and g.state == {"numbered": 2, "group": "g1"}


# -- Postgres-only: real concurrency ------------------------------------------------------------


@pytest.fixture
def pg(pg_store: PostgresStore) -> PostgresStore:
    """Concurrency between connections is a Postgres matter: these tests run on Postgres only (never
    parametrised over the memory store, so nothing is skipped)."""
    return pg_store


async def test_pg_a_failed_transaction_gives_its_number_back(pg: PostgresStore) -> None:
    await seed(pg)
    calls: list[int] = []

    def too_big(n: int) -> tuple[dict[str, Any], OrderRecord]:
        calls.append(n)
        rec = order(f"ORD-1-{n}", "g1", number=n)
        rec.total = 2**70  # outside BIGINT: fails the whole statement after the number was taken
        return {"numbered": n}, rec

    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises; the point is the rollback
        await pg.commit_writes([GroupWrite(snap("g1", 1), 0, number_order=too_big)])
    assert calls == [1]
    assert await pg.load_group("g1") is None
    calls.clear()
    assert await pg.commit_writes([intent("g1", 1, 0, 0, calls)]) == [None]
    assert calls == [1]


async def test_pg_concurrent_intents_get_dense_numbers_in_commit_order(pg: PostgresStore) -> None:
    await seed(pg)
    n = 20
    epochs = [(await pg.activate_group(f"g{i:02}", "T1", 1, "n")).epoch for i in range(n)]
    calls: list[int] = []
    done = asyncio.Event()
    seen: list[list[int]] = []

    async def observe() -> None:
        # Numbers are taken under the counter's row lock, held to commit: whatever is committed at any
        # moment must be exactly 1..k. Numbers taken before commit (the old block reservation) leave holes.
        async with pg.engine.connect() as conn:
            while not done.is_set():
                got = (await conn.execute(sa.text("SELECT order_number FROM orders ORDER BY 1"))).scalars().all()
                await conn.commit()
                seen.append([int(x) for x in got])
                await asyncio.sleep(0)

    observer = asyncio.create_task(observe())
    try:
        results = await asyncio.gather(
            *(pg.commit_writes([intent(f"g{i:02}", 1, 0, epochs[i], calls)]) for i in range(n))
        )
    finally:
        done.set()
        await observer
    assert all(r == [None] for r in results)
    assert sorted(calls) == list(range(1, n + 1))
    orders = [o for i in range(n) for o in await pg.list_group_orders(f"g{i:02}")]
    assert sorted(o.order_number for o in orders) == list(range(1, n + 1))
    for i in range(n):
        g = await pg.load_group(f"g{i:02}")
        assert g is not None
        (o,) = await pg.list_group_orders(f"g{i:02}")
        assert g.state["numbered"] == o.order_number  # the state was made with the order's own number
    for snapshot in seen:
        assert snapshot == list(range(1, len(snapshot) + 1)), snapshot
    assert await pg.next_order_number(1) == n + 1


async def activation_under_the_intents_lock(pg: PostgresStore, write: GroupWrite) -> tuple[Any, Any]:
    """Commit the numbered ``write`` and, once its number_order runs (group row locked), activate the group."""
    locked = asyncio.Event()
    inner = write.number_order
    assert inner is not None

    def under_lock(n: int) -> tuple[dict[str, Any], OrderRecord]:
        locked.set()
        assert inner is not None
        return inner(n)

    write.number_order = under_lock
    gid = write.snapshot.group_id

    async def activate_when_locked() -> Any:
        await locked.wait()
        return await pg.activate_group(gid, "T1", 1, "node-b")

    res, activation = await asyncio.gather(pg.commit_writes([write]), activate_when_locked())
    return res, activation


@pytest.mark.parametrize("numbered", [False, True])
async def test_pg_an_activation_racing_a_stale_write_never_lets_both_win(pg: PostgresStore, numbered: bool) -> None:
    await seed(pg)
    wins = {"write": 0, "activation": 0}
    for i in range(40):
        gid = f"race{i}"
        old = await pg.activate_group(gid, "T1", 1, "node-a")
        assert await pg.commit_writes([GroupWrite(snap(gid, 1), 0, epoch=old.epoch)]) == [None]
        calls: list[int] = []
        if numbered:
            write = intent(gid, 2, 1, old.epoch, calls)
        else:
            write = GroupWrite(snap(gid, 2, {"by": "old"}), 1, order=order(f"ORD-{gid}", gid), epoch=old.epoch)
        # alternate which one is started first; both are in flight together on separate connections
        if numbered and i % 2:
            # the activation starts while the intent holds the group row (number_order runs under the lock):
            # it must wait for the intent's commit and return it
            res, activation = await activation_under_the_intents_lock(pg, write)
        elif i % 2:
            res, activation = await asyncio.gather(
                pg.commit_writes([write]), pg.activate_group(gid, "T1", 1, "node-b")
            )
        else:
            activation, res = await asyncio.gather(
                pg.activate_group(gid, "T1", 1, "node-b"), pg.commit_writes([write])
            )
        assert activation.epoch == old.epoch + 1
        assert activation.snapshot is not None
        stored = await pg.load_group(gid)
        if res == [None]:
            wins["write"] += 1
            # the write committed first: the new owner starts from it
            assert activation.snapshot.revision == 2 and stored == activation.snapshot
            assert await pg.list_group_orders(gid) != []
        else:
            wins["activation"] += 1
            assert isinstance(res[0], FencedWrite), res
            assert activation.snapshot == snap(gid, 1) and stored == snap(gid, 1)
            assert await pg.list_group_orders(gid) == []
            assert calls == []
    # numbers: exactly one per write that won, no gaps
    if numbered:
        assert wins["write"] >= 20  # every intent that took the lock first won
        assert await pg.next_order_number(1) == wins["write"] + 1
    assert wins["write"] + wins["activation"] == 40
