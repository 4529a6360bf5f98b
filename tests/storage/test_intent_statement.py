"""Order intents as one statement (``GroupWrite.intent_number``): the store numbers the intent's op record and
order row itself. Each test runs on both stores unless it says Postgres-only (connections racing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

import tableside.actors.cart  # noqa: F401 - registers the op-record replay load_group uses
from tableside.storage import (
    FencedWrite,
    GroupSnapshot,
    GroupWrite,
    PostgresStore,
    RestaurantNotFound,
    StaleWrite,
    Store,
)
from tests.storage.test_store import NOW, order, seed


def intent(
    group: str, revision: int, expected: int, epoch: int, calls: list[int], restaurant_id: int = 1, total: int = 500
) -> GroupWrite:
    """An intent on top of ``expected``: a line added (on a fresh group), the order placed, the ack journaled."""
    ops: list[list[Any]] = []
    if expected == 0:
        ops.append(["a", "M1", "Soup", 1, total, "", "mem"])
    fields = {"placed_by": "mem", "special_instructions": "", "total": total, "started_at": NOW}
    ops += [["o", f"ORD-{restaurant_id}-", fields, ["L1"]], ["k", "mem", "key-" + group, revision, None]]
    record = {"b": expected, "rev": revision, "t": NOW, "n": None, "ops": ops}
    template = order(f"ORD-{restaurant_id}-", group, number=0, restaurant_id=restaurant_id)
    template.total = total
    return GroupWrite(
        GroupSnapshot(group, "T1", restaurant_id, revision, {}),
        expected,
        order=template,
        epoch=epoch,
        ops=record,
        intent_number=calls.append,
    )


async def test_intents_are_numbered_in_batch_order_and_replay_with_their_number(store: Store) -> None:
    await seed(store)
    calls: list[int] = []
    writes = [intent(f"g{i}", 1, 0, 0, calls) for i in range(3)]
    assert await store.commit_writes(writes) == [None, None, None]
    assert calls == [1, 2, 3]  # told after the commit, in submission order
    for i, n in enumerate(calls):
        (o,) = await store.list_group_orders(f"g{i}")
        assert (o.order_id, o.order_number, o.total, str(o.status)) == (f"ORD-1-{n}", n, 500, "processing")
        g = await store.load_group(f"g{i}")
        assert g is not None and g.revision == 1
        assert g.state["pending"]["order_id"] == f"ORD-1-{n}" and g.state["pending"]["order_number"] == n
        assert g.state["status"] == "processing" and g.state["lines"][0]["state"] == "locked"
        assert g.state["acks"]  # the ack's window entry carries the order id (compact form)
        assert f"ORD-1-{n}" in str(g.state["acks"])
    assert await store.next_order_number(1) == 4


async def test_a_refused_intent_consumes_no_number(store: Store) -> None:
    await seed(store)
    epoch = (await store.activate_group("g1", "T1", 1, "n")).epoch
    calls: list[int] = []
    stale, fenced = intent("g1", 6, 5, epoch, calls), intent("g1", 1, 0, epoch + 1, calls)
    unknown = intent("g2", 1, 0, 0, calls, restaurant_id=99)
    results = await store.commit_writes([stale])
    results += await store.commit_writes([fenced])
    results += await store.commit_writes([unknown])
    assert [type(r) for r in results] == [StaleWrite, FencedWrite, RestaurantNotFound]
    assert calls == []
    assert await store.list_group_orders("g1") == [] and await store.load_group("g1") is None
    # the next intent that applies takes number 1: nothing was consumed
    assert await store.commit_writes([intent("g1", 1, 0, epoch, calls)]) == [None]
    assert calls == [1]


async def test_an_intent_follows_the_groups_earlier_records(store: Store) -> None:
    await seed(store)
    epoch = (await store.activate_group("g1", "T1", 1, "n")).epoch
    cart = {"b": 0, "rev": 1, "t": NOW, "ops": [["a", "M1", "Soup", 2, 300, "", "mem"]]}
    assert await store.commit_writes([GroupWrite(GroupSnapshot("g1", "T1", 1, 1, {}), 0, epoch=epoch, ops=cart)]) == [
        None
    ]
    calls: list[int] = []
    w = intent("g1", 2, 1, epoch, calls, total=600)
    assert await store.commit_writes([w]) == [None]
    g = await store.load_group("g1")
    assert g is not None and g.revision == 2 and g.state["pending"]["total"] == 600
    assert g.state["lines"][0]["qty"] == 2 and g.state["lines"][0]["state"] == "locked"
    assert (await store.activate_group("g1", "T1", 1, "n2")).ops[-1]["n"] == calls[0] == 1


@pytest.fixture
async def pgs(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores (two processes' pools) over one database: Postgres only."""
    a = await PostgresStore.connect(pg_url)
    await a.truncate_all()
    b = await PostgresStore.connect(pg_url)
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


async def test_pg_racing_intents_of_two_processes_get_gap_free_numbers_in_commit_order(
    pgs: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pgs
    await seed(a)
    n = 24
    epochs = [(await a.activate_group(f"g{i:02}", "T1", 1, "n")).epoch for i in range(n)]
    calls: list[int] = []
    done = asyncio.Event()
    seen: list[list[int]] = []

    async def observe() -> None:
        # whatever is committed at any moment is exactly 1..k: a number becomes visible only with the ones
        # before it, never after a later one
        async with a.engine.connect() as conn:
            while not done.is_set():
                got = (await conn.execute(sa.text("SELECT order_number FROM orders ORDER BY 1"))).scalars().all()
                await conn.commit()
                seen.append([int(x) for x in got])
                await asyncio.sleep(0)

    observer = asyncio.create_task(observe())
    try:
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).commit_writes([intent(f"g{i:02}", 1, 0, epochs[i], calls)])
                for i in range(0, n - 4)
            ),
            # and a batch of several intents of the restaurant in one statement
            b.commit_writes([intent(f"g{i:02}", 1, 0, epochs[i], calls) for i in range(n - 4, n)]),
            # a stale one in the race takes nothing
            a.commit_writes([intent("g00", 9, 8, epochs[0], calls)]),
        )
    finally:
        done.set()
        await observer
    flat = [r for rs in results for r in rs]
    assert flat.count(None) == n and isinstance(flat[-1], StaleWrite)
    assert sorted(calls) == list(range(1, n + 1))
    orders = [o for i in range(n) for o in await a.list_group_orders(f"g{i:02}")]
    assert sorted(o.order_number for o in orders) == list(range(1, n + 1))
    for i in range(n):
        g = await b.load_group(f"g{i:02}")
        (o,) = await a.list_group_orders(f"g{i:02}")
        assert g is not None and g.state["pending"]["order_id"] == o.order_id == f"ORD-1-{o.order_number}"
    for snapshot in seen:
        assert snapshot == list(range(1, len(snapshot) + 1)), snapshot
    assert await a.next_order_number(1) == n + 1


async def test_pg_a_failed_intent_statement_gives_its_number_back(pgs: tuple[PostgresStore, PostgresStore]) -> None:
    a, _ = pgs
    await seed(a)
    calls: list[int] = []
    w = intent("g1", 1, 0, 0, calls)
    assert w.order is not None
    w.order.total = 2**70  # outside BIGINT: the statement fails as a whole
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises; the point is the rollback
        await a.commit_writes([w])
    assert calls == [] and await a.load_group("g1") is None
    assert await a.commit_writes([intent("g1", 1, 0, 0, calls)]) == [None]
    assert calls == [1]


async def test_pg_two_processes_numbering_two_restaurants_in_opposite_orders(
    pgs: tuple[PostgresStore, PostgresStore],
) -> None:
    """Batches of intents of two restaurants, submitted in opposite orders by two processes: each restaurant's
    numbers stay dense and every intent applies (the counters are locked in one order: no deadlock)."""
    a, b = pgs
    await seed(a)
    await seed(a, restaurant_id=2)
    calls: list[int] = []
    rounds = 6

    def batch(k: int, first: int) -> list[GroupWrite]:
        rids = [first, 3 - first]
        return [intent(f"g{k}-{rid}", 1, 0, 0, calls, restaurant_id=rid) for rid in rids]

    # even rounds from process a with restaurant 1 first, odd rounds from process b with restaurant 2 first
    results = await asyncio.gather(*((a if k % 2 == 0 else b).commit_writes(batch(k, 1 + k % 2)) for k in range(rounds)))
    assert all(r == [None, None] for r in results)
    for rid in (1, 2):
        numbers: list[int] = []
        for k in range(rounds):
            numbers += [o.order_number for o in await a.list_group_orders(f"g{k}-{rid}")]
        assert sorted(numbers) == list(range(1, rounds + 1))
