"""The op log through TableActor, on MemoryStore and on a real PostgresStore: random histories of cart edits
(batched and alone, resends, orders placed, confirmed and refused, members leaving, deactivations), then a
fresh activation - a new actor, as after a crash of the first one (it is never stopped cleanly) - has the
same state as the one in memory, and ``load_group`` answers it too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tableside.actors.base import StopReason
from tableside.actors.directory import ActorDirectory
from tableside.actors.messages import Command, Connect, GetCart
from tableside.actors.table import TableActor, TableContext
from tableside.clock import FakeClock
from tableside.demo import seed_demo
from tableside.menu import MenuCatalog
from tableside.pos.dummy import DummyPosAdapter
from tableside.pos.submitter import RetryPolicy
from tableside.protocol import AddItem, GetSnapshot, Leave, PlaceOrder, RemoveItem, UpdateItem
from tableside.storage import MenuItem, OrderStatus, PostgresStore, Store
from tableside.storage.committer import GroupCommitter
from tests.actors.test_table_actor import FakeSink

RUNNING: list[Node] = []


@pytest.fixture(autouse=True)
async def stop_nodes(store: Store) -> AsyncIterator[None]:
    """Every node a test started is stopped (before the store closes), also when the test failed half-way."""
    yield
    while RUNNING:
        await RUNNING.pop().stop()


class Node:
    """One "process": a directory of table actors over the shared store."""

    def __init__(
        self, store: Store, menu: MenuCatalog, clock: FakeClock, every: int, seed: int, pos_latency_ms: int = 0
    ) -> None:
        RUNNING.append(self)
        self.committer = GroupCommitter(store)
        self.committer.start()
        self.ctx = TableContext(
            store=store,
            commit=self.committer.commit,
            menu=menu,
            pos=DummyPosAdapter(pos_latency_ms, 0.7, clock=clock, rng=random.Random(seed)),
            retry=RetryPolicy(10.0, 3, 2.0),
            clock=clock,
            on_order_confirmed=lambda _rid: None,
            idle_seconds=3600,
            snapshot_every=every,
        )
        self.directory = ActorDirectory(self.ctx)

    def actor(self, group_id: str) -> TableActor:
        actor = self.directory._running(group_id)
        assert actor is not None
        return actor

    async def stop(self, reason: StopReason = StopReason.SHUTDOWN) -> None:
        await self.directory.stop_all(reason)
        await self.committer.stop()  # idempotent: a stopped node may be stopped again


def as_stored(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as it comes back from JSON (tuples are lists)."""
    loaded: dict[str, Any] = json.loads(json.dumps(state))
    return loaded


async def unlocked(ref: Any) -> None:
    """Wait (real time: Postgres) until the POS outcome has been settled and committed."""
    for _ in range(500):
        if not (await ref.ask(GetCart()))["cart_locked"]:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the order never settled")


@pytest.mark.parametrize("seed,every", [(1, 1), (2, 4), (3, 64), (4, 7)])
async def test_a_fresh_activation_after_random_histories_has_the_same_state(
    store: Store, seed: int, every: int
) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    await seed_demo(store, 1, "Demo", 3)
    menu = MenuCatalog(store)
    await menu.load([1])
    items = [item.menu_item_id for item in await store.list_menu(1)][:6]
    table = await store.get_table("T001")
    assert table is not None
    joins = [
        await store.join_table("T001", table.qr_secret, f"tok{i}", f"m{i}", "g-oplog", clock.now() + 3600, clock.now())
        for i in range(3)
    ]
    group_id = joins[0].group_id
    node = Node(store, menu, clock, every, seed)
    ref = node.directory.ref_for(group_id, "T001", 1)
    sinks = {}
    for j in joins:
        sinks[j.member_id] = FakeSink()
        assert await ref.ask(Connect(j.member_id, sinks[j.member_id])) is True
    members = [j.member_id for j in joins]
    sent: list[Command] = []
    orders = 0
    for step in range(120):
        clock._now += rng.random() * 5  # the activity time moves (op records carry it)
        kind = rng.random()
        cart = await ref.ask(GetCart())
        line_ids = [i["line_id"] for i in cart["items"]]
        cmds: list[Command] = []
        for _ in range(rng.choice([1, 1, 2, 5])):  # several at once: one batch, one op record
            m = rng.choice(members)
            rid = f"r{step}-{len(cmds)}" if rng.random() < 0.9 else None
            roll = rng.random()
            if roll < 0.45 or not line_ids:
                msg: Any = AddItem(rid, rng.choice(items), rng.randint(1, 5), rng.choice(["", "no ice", "spicy 🌶"]))
            elif roll < 0.75:
                msg = UpdateItem(rid, rng.choice(line_ids), rng.randint(0, 9))
            elif roll < 0.9:
                msg = RemoveItem(rid, rng.choice(line_ids))
            else:
                msg = GetSnapshot(rid)
            cmds.append(Command(m, sinks[m], msg))
        if sent and rng.random() < 0.1:
            cmds.append(rng.choice(sent))  # a resend: answered from the remembered acks, changes nothing
        if kind < 0.06 and any(i["state"] == "pending" for i in cart["items"]) and not cart["cart_locked"]:
            m = rng.choice(members)
            placed = await ref.ask(Command(m, sinks[m], PlaceOrder(f"po{step}", None, rng.choice(["", "quick please"]))))
            assert placed["type"] == "ack", placed
            orders += 1
            await unlocked(ref)
            continue
        if kind > 0.985 and len(members) > 1:
            m = members.pop()
            await ref.ask(Command(m, sinks[m], Leave(f"bye{step}")))
            continue
        if 0.95 < kind <= 0.985:
            # A clean deactivation (compacts the log), then the next message activates the group again.
            await node.stop(rng.choice([StopReason.IDLE, StopReason.SHUTDOWN]))
            node = Node(store, menu, clock, every, seed + step)
            ref = node.directory.ref_for(group_id, "T001", 1)
            for m in members:
                assert await ref.ask(Connect(m, sinks[m])) is True
            continue
        await asyncio.gather(*(ref.ask(c) for c in cmds), return_exceptions=False)
        sent += [c for c in cmds if c.message.request_id is not None]
    assert orders > 0  # the history had order intents and settlements (snapshots) between the records
    memory = node.actor(group_id)._state
    expected = memory.to_snapshot()
    # load_group: the current state (the last snapshot with the records replayed)
    loaded = await store.load_group(group_id)
    assert loaded is not None and (loaded.revision, loaded.state) == (memory.revision, as_stored(expected))
    # A fresh activation on another "node" (the first never stops cleanly: nothing compacted first).
    other = Node(store, menu, clock, every, seed)
    ref2 = other.directory.ref_for(group_id, "T001", 1)
    assert await ref2.ask(GetCart()) == await ref.ask(GetCart())
    recovered = other.actor(group_id)._state
    assert recovered.revision == memory.revision and recovered.to_snapshot() == expected
    assert recovered.view() == memory.view()
    # A resend to the new activation gets the acknowledged answer, not a second change.
    if sent:
        again = sent[-1]
        answer = await ref2.ask(Command(again.member_id, None, again.message))
        assert answer.get("type") in ("ack", "snapshot", "error") and other.actor(group_id)._state.revision in (
            memory.revision,
            memory.revision + 1,
        )
        if answer["type"] == "ack":
            assert other.actor(group_id)._state.revision == memory.revision


async def test_snapshots_are_written_every_n_changes_and_on_a_clean_stop(store: Store) -> None:
    clock = FakeClock()
    await seed_demo(store, 1, "Demo", 3)
    menu = MenuCatalog(store)
    await menu.load([1])
    item = (await store.list_menu(1))[0].menu_item_id
    table = await store.get_table("T001")
    assert table is not None
    j = await store.join_table("T001", table.qr_secret, "tok", "m1", "g1", clock.now() + 3600, clock.now())
    node = Node(store, menu, clock, 4, 0)
    ref = node.directory.ref_for(j.group_id, "T001", 1)
    sink = FakeSink()
    await ref.ask(Connect(j.member_id, sink))
    # The join may be a snapshot of its own, or only in memory until the next write (an op record then).
    joined = node.actor(j.group_id)._snapshot_revision
    first = None if joined == 0 else joined

    async def log_after_snapshot() -> tuple[int | None, int]:
        activation_view = await store.activate_group(j.group_id, "T001", 1, "probe")
        return (
            None if activation_view.snapshot is None else activation_view.snapshot.revision,
            len(activation_view.ops),
        )

    for i in range(3):
        await ref.ask(Command(j.member_id, sink, AddItem(f"a{i}", item, 1, "")))
    # (probing activates the group: it fences the node, so probe only at the end of each phase)
    assert await log_after_snapshot() == (first, 3)
    node2 = Node(store, menu, clock, 4, 0)
    ref = node2.directory.ref_for(j.group_id, "T001", 1)
    await ref.ask(Connect(j.member_id, sink))
    for i in range(3, 5):
        await ref.ask(Command(j.member_id, sink, AddItem(f"a{i}", item, 1, "")))
    # the 4th change after the snapshot is written as a snapshot (at most N - 1 records), the 5th a record
    assert await log_after_snapshot() == (joined + 4, 1)
    node3 = Node(store, menu, clock, 4, 0)
    ref = node3.directory.ref_for(j.group_id, "T001", 1)
    await ref.ask(Connect(j.member_id, sink))
    await ref.ask(Command(j.member_id, sink, UpdateItem("u", "L1", 3)))
    state = node3.actor(j.group_id)._state.to_snapshot()
    await node3.stop(StopReason.IDLE)  # clean: the log is folded into a snapshot
    assert await log_after_snapshot() == (joined + 6, 0)
    assert (await store.load_group(j.group_id)).state == as_stored(state)  # type: ignore[union-attr]


async def one_member_at_a_table_with_a_line(store: Store, *, qty: int) -> tuple[Node, Any, FakeSink, Any, MenuItem]:
    """A demo restaurant, one member connected at T001 who added ``qty`` of the first menu item; the POS
    answers only when the clock moves (so an order stays pending)."""
    clock = FakeClock()
    await seed_demo(store, 1, "Demo", 3)
    menu = MenuCatalog(store)
    await menu.load([1])
    table = await store.get_table("T001")
    assert table is not None
    j = await store.join_table("T001", table.qr_secret, "tok", "m1", "g1", clock.now() + 3600, clock.now())
    node = Node(store, menu, clock, 64, 0, pos_latency_ms=60_000)  # the POS answers only when the clock moves
    ref = node.directory.ref_for(j.group_id, "T001", 1)
    sink = FakeSink()
    await ref.ask(Connect(j.member_id, sink))
    item = (await store.list_menu(1))[0]
    await ref.ask(Command(j.member_id, sink, AddItem("a1", item.menu_item_id, qty, "")))
    return node, ref, sink, j, item


async def test_an_order_intent_leaves_no_journal_behind(store: Store) -> None:
    """The intent's op record is taken before its commit and ``intent_number`` remembers the ack after it:
    nothing of it may be left in the journal for a later op record."""
    node, ref, sink, j, _ = await one_member_at_a_table_with_a_line(store, qty=1)
    placed = await ref.ask(Command(j.member_id, sink, PlaceOrder("po")))
    assert placed["type"] == "ack", placed
    state = node.actor(j.group_id)._state
    assert state.pending is not None and state.take_ops() == []


class _CountingConn:
    """An asyncpg connection that counts the calls that go to the server (one round trip each)."""

    def __init__(self, conn: Any, calls: list[str]) -> None:
        self._conn, self._calls = conn, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name in ("fetch", "fetchval", "fetchrow", "execute", "executemany", "transaction", "prepare"):
            self._calls.append(name)
        return attr


class _CountingRaw:
    def __init__(self, raw: Any, calls: list[str]) -> None:
        self._raw, self._calls = raw, calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)  # close() and the rest

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._raw.acquire() as conn:
            yield _CountingConn(conn, self._calls)


async def test_an_order_intent_is_one_store_round_trip(store: Store) -> None:
    """place_order's intent is one statement (autocommit): no BEGIN/COMMIT, no lock held across a round trip;
    the state the stores keep then equals the actor's (the order id taken from the record's number)."""
    node, ref, sink, j, item = await one_member_at_a_table_with_a_line(store, qty=2)
    calls: list[str] = []
    if isinstance(store, PostgresStore):
        store._raw = _CountingRaw(store._raw, calls)  # type: ignore[assignment]
    commits_before = node.committer.batches
    placed = await ref.ask(Command(j.member_id, sink, PlaceOrder("po")))
    assert placed["type"] == "ack", placed
    assert node.committer.batches == commits_before + 1
    if isinstance(store, PostgresStore):
        assert calls == ["fetch"]
    state = node.actor(j.group_id)._state
    assert state.pending is not None and state.pending.order_id == f"ORD-1-{state.pending.order_number}"
    assert placed["order_id"] == state.pending.order_id
    order = await store.get_order(state.pending.order_id)
    assert order is not None and order.status == OrderStatus.PROCESSING
    assert order.order_number == state.pending.order_number and order.total == 2 * item.price
    stored = await store.load_group(j.group_id)
    assert stored is not None and stored.state == as_stored(state.to_snapshot())
    # a resend of the request is answered from the replayed window, with the order id
    assert state.answered(j.member_id, "po") == placed
