"""GroupCommitter lanes: order intents (``number_order``) and settles (an order row) are batched apart from
cart writes and never wait behind the cart queue; each group's writes keep their order; stop() drains
every lane. Scripted store (no database) for the scheduling, both real stores for the end-to-end case."""

from __future__ import annotations

import asyncio
from typing import Any

from tableside.storage import GroupCommitter, GroupSnapshot, GroupWrite, OrderRecord, OrderStatus, Store
from tests.storage.test_committer import ScriptedStore, answered, scripted, settle, w
from tests.storage.test_fencing import intent
from tests.storage.test_store import seed


def numbered(group: str, rev: int = 2, expected: int = 1) -> GroupWrite:
    def number_order(n: int) -> tuple[dict[str, Any], OrderRecord]:
        raise AssertionError("a scripted store never numbers")

    return GroupWrite(GroupSnapshot(group, "T1", 1, rev, {"rev": rev}), expected, number_order=number_order)


def settling(group: str) -> GroupWrite:
    order = OrderRecord(f"ORD-{group}", 1, 1, "T1", group, OrderStatus.CONFIRMED, [], 0, "", "m", 1.0)
    return w(group, 3, 2, order)


def ok_all(st: ScriptedStore) -> None:
    for answer, batch in zip(st.answers, st.batches, strict=True):
        if not answer.done():
            answer.set_result([None] * len(batch))


async def test_an_intent_behind_a_long_cart_queue_goes_out_at_once_in_its_own_batch() -> None:
    c, st = scripted(max_batch=10, in_flight=1)
    c.start()
    carts = [asyncio.ensure_future(c.commit(w(f"c{i}", 1, 0))) for i in range(200)]
    await settle()
    assert st.batches == [[f"c{i}" for i in range(10)]]  # the cart lane is busy, 190 writes wait behind it
    order = asyncio.ensure_future(c.commit(numbered("g1")))
    await settle()
    assert st.batches[-1] == ["g1"]  # not behind the 190 cart writes: its own transaction, right away
    st.ok(1)
    assert await answered(order) == [None]
    assert not any(f.done() for f in carts)
    ok_all(st)
    while not all(f.done() for f in carts):
        await settle()
        ok_all(st)
    assert await answered(*carts) == [None] * 200
    await c.stop()


async def test_an_intent_waits_for_at_most_one_batch_and_intents_queued_meanwhile_share_the_next() -> None:
    c, st = scripted()
    c.start()
    first = asyncio.ensure_future(c.commit(numbered("g0")))
    await settle()
    assert st.batches == [["g0"]]
    # While that intent transaction runs (it holds the order counter), cart writes and more intents arrive.
    mixed = []
    for i in range(1, 6):
        mixed.append(asyncio.ensure_future(c.commit(w(f"c{i}", 1, 0))))
        mixed.append(asyncio.ensure_future(c.commit(numbered(f"g{i}"))))
    await settle()
    assert st.batches[1:] == [["c1", "c2", "c3", "c4", "c5"]]  # carts go on their own lane meanwhile
    st.ok(0)
    await settle()
    assert st.batches[2:] == [["g1", "g2", "g3", "g4", "g5"]]  # the next intent batch: intents only
    ok_all(st)
    assert await answered(first, *mixed) == [None] * 11
    await c.stop()


async def test_cart_intent_and_settle_batches_never_mix() -> None:
    c, st = scripted()
    c.start()
    writes = []
    for i in range(30):
        if i % 3 == 0:
            writes.append(numbered(f"n{i}"))
        elif i % 3 == 1:
            writes.append(settling(f"o{i}"))
        else:
            writes.append(w(f"c{i}", 1, 0))
    futs = [asyncio.ensure_future(c.commit(x)) for x in writes]
    while not all(f.done() for f in futs):
        await settle()
        ok_all(st)
    assert await answered(*futs) == [None] * 30
    for batch in st.batches:
        assert len({g[0] for g in batch}) == 1, batch  # one kind per transaction
    await c.stop()


async def test_a_settle_does_not_wait_behind_an_intent_or_the_cart_queue() -> None:
    c, st = scripted(in_flight=1)
    c.start()
    busy = [asyncio.ensure_future(c.commit(numbered("n0"))), asyncio.ensure_future(c.commit(w("c0", 1, 0)))]
    await settle()
    queued = [asyncio.ensure_future(c.commit(w(f"c{i}", 1, 0))) for i in range(1, 50)]
    await settle()
    assert st.batches == [["n0"], ["c0"]]
    done = asyncio.ensure_future(c.commit(settling("o1")))
    await settle()
    assert st.batches[-1] == ["o1"]
    ok_all(st)
    while not all(f.done() for f in queued):
        await settle()
        ok_all(st)
    assert await answered(done, *busy, *queued) == [None] * 52
    await c.stop()


async def test_a_group_s_writes_keep_their_order_across_lanes() -> None:
    # An actor normally has one write outstanding; a caller that queues several for one group must still
    # see them applied in order, so a later intent of a group waits behind that group's queued cart write.
    c, st = scripted(in_flight=1)
    c.start()
    blocker = asyncio.ensure_future(c.commit(w("x", 1, 0)))
    await settle()
    cart = asyncio.ensure_future(c.commit(w("g1", 1, 0)))
    order = asyncio.ensure_future(c.commit(numbered("g1", 2, 1)))
    settle_g2 = asyncio.ensure_future(c.commit(settling("g2")))
    await settle()
    assert st.batches == [["x"], ["g2"]]  # another group's settle goes ahead; g1's intent does not
    st.ok(0)
    await settle()
    assert st.batches[2] == ["g1", "g1"]  # behind its cart write, in submission order, same transaction
    ok_all(st)
    assert await answered(blocker, cart, order, settle_g2) == [None] * 4
    # Once the group has nothing outstanding, its next intent takes the intent lane again.
    again = asyncio.ensure_future(c.commit(numbered("g1", 3, 2)))
    slow = asyncio.ensure_future(c.commit(w("y", 1, 0)))
    await settle()
    assert st.batches[-2:] == [["g1"], ["y"]]
    ok_all(st)
    assert await answered(again, slow) == [None, None]
    await c.stop()


async def test_a_group_behind_an_in_flight_write_stays_in_that_lane() -> None:
    c, st = scripted()
    c.start()
    first = asyncio.ensure_future(c.commit(settling("g1")))
    await settle()
    assert st.batches == [["g1"]]
    then = asyncio.ensure_future(c.commit(numbered("g1", 4, 3)))
    await settle()
    assert len(st.batches) == 1  # the orders lane has one transaction in flight: g1's intent waits there
    st.ok(0)
    await settle()
    assert st.batches == [["g1"], ["g1"]]
    st.ok(1)
    assert await answered(first, then) == [None, None]
    await c.stop()


async def test_stop_drains_every_lane() -> None:
    c, st = scripted(max_batch=5, in_flight=1)
    c.start()
    futs = []
    for i in range(12):
        futs.append(asyncio.ensure_future(c.commit(w(f"c{i}", 1, 0))))
        futs.append(asyncio.ensure_future(c.commit(numbered(f"n{i}"))))
        futs.append(asyncio.ensure_future(c.commit(settling(f"o{i}"))))
    await settle()
    assert c.pending > 0
    stopping = asyncio.ensure_future(c.stop())
    while not stopping.done():
        await settle()
        ok_all(st)
    assert await answered(*futs) == [None] * 36
    assert c.pending == 0 and sorted(g for b in st.batches for g in b) == sorted(
        [f"c{i}" for i in range(12)] + [f"n{i}" for i in range(12)] + [f"o{i}" for i in range(12)]
    )
    assert (c.batches, c.writes) == (len(st.batches), 36)


async def test_a_cancelled_intent_is_not_written_and_frees_its_group() -> None:
    c, st = scripted()
    c.start()
    busy = asyncio.ensure_future(c.commit(numbered("n0")))
    await settle()
    doomed = asyncio.ensure_future(c.commit(numbered("g1")))
    await settle()
    doomed.cancel()
    st.ok(0)
    await settle()
    assert st.batches == [["n0"]]  # the cancelled intent never reached the store
    later = asyncio.ensure_future(c.commit(w("g1", 1, 0)))
    await settle()
    assert st.batches[-1] == ["g1"]  # and g1 is no longer held to the intent lane
    st.ok(1)
    assert await answered(busy, later) == [None, None]
    await c.stop()


async def test_intents_and_cart_writes_through_the_lanes_on_a_real_store(store: Store) -> None:
    await seed(store)
    c = GroupCommitter(store)
    c.start()
    for g in ("g1", "g2", "g3"):
        activation = await store.activate_group(g, "T1", 1, "n")
        assert activation.epoch == 1
    await asyncio.gather(
        *(
            c.commit(GroupWrite(GroupSnapshot(g, "T1", 1, 1, {"r": 1}), 0, epoch=1))
            for g in ("g1", "g2", "g3")
        )
    )
    calls: list[int] = []
    carts = [c.commit(GroupWrite(GroupSnapshot(f"c{i}", "T1", 1, 1, {"r": 1}), 0)) for i in range(20)]
    intents = [c.commit(intent(g, 2, 1, 1, calls)) for g in ("g1", "g2", "g3")]
    await asyncio.gather(*carts, *intents)
    assert sorted(calls) == [calls[0], calls[0] + 1, calls[0] + 2]  # three numbers, no gap
    for g in ("g1", "g2", "g3"):
        stored = await store.load_group(g)
        assert stored is not None and stored.revision == 2 and stored.state["group"] == g
    await c.stop()
