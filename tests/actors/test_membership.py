"""Leaving a table group, and the member cap as the actor sees it (issue 8): the store decides at join
time; the actor never refuses a member whose join was accepted, and forgets members whose token expired."""

from __future__ import annotations

from typing import Any

import pytest

from tableside.actors.cart import GroupState
from tableside.actors.messages import Command, Connect, Disconnect, GetCart
from tableside.actors.table import CLOSE_LEFT
from tableside.pos.dummy import DummyPosAdapter
from tableside.protocol import AddItem, Leave, PlaceOrder
from tableside.storage.interface import GroupFull
from tests.actors import test_table_actor as base
from tests.actors.test_table_actor import FakeSink, connect

world = base.world  # the same fixture


async def test_leave_revokes_the_token_frees_the_place_and_tells_the_others(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock), max_members=2)
    a, b = await world.join(max_members=2), await world.join(max_members=2)
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    _, sink_b2 = await connect(directory, b)  # the same guest in a second tab
    with pytest.raises(GroupFull):
        await world.join(max_members=2)

    answer = await ref.ask(Command(b.member_id, sink_b, Leave("bye")))
    assert answer["type"] == "ack" and answer["id"] == "bye"
    assert sink_b.of_type("ack")[-1]["id"] == "bye"
    for sink in (sink_b, sink_b2):
        assert sink.of_type("session_closed")[-1]["reason"] == "left"
        assert sink.closed == (CLOSE_LEFT, "left the table")
    left = sink_a.of_type("member_left")[-1]
    assert left["member_id"] == b.member_id and [m["member_id"] for m in left["members"]] == [a.member_id]
    assert await world.store.live_members(a.group_id, world.clock.now()) == {a.member_id}

    # The place is free: a new guest joins and connects; names are never reused.
    c = await world.join(max_members=2)
    _, sink_c = await connect(directory, c)
    members = sink_c.of_type("welcome")[0]["members"]
    assert [(m["member_id"], m["name"]) for m in members] == [(a.member_id, "Guest 1"), (c.member_id, "Guest 3")]

    # A frame of the departed member still on its way changes nothing (nothing written, nothing broadcast).
    updates = len(sink_a.of_type("cart_updated"))
    late = await ref.ask(Command(b.member_id, None, AddItem("late", "miso", 1, "")))
    assert len(sink_a.of_type("cart_updated")) == updates
    assert late["type"] == "error" and late["code"] == "forbidden" and late["id"] == "late" and late["message"]
    late = await ref.ask(Command(b.member_id, None, PlaceOrder("late-po", None, "")))
    assert late["type"] == "error" and late["code"] == "forbidden" and late["id"] == "late-po" and late["message"]
    assert (await ref.ask(GetCart()))["items"] == []
    # A third tab whose handshake raced the leave is not let back in (the store says: not live).
    sink_b3 = FakeSink()
    assert await ref.ask(Connect(b.member_id, sink_b3)) is False
    assert sink_b3.of_type("error")[-1]["code"] == "unauthorized" and sink_b3.closed is not None
    # Leaving again is harmless.
    again = await ref.ask(Command(b.member_id, None, Leave(None)))
    assert again["type"] == "ack"


async def test_members_whose_join_was_accepted_are_never_refused_at_connect(world: Any) -> None:
    """The table was locked for the sitting: members never left the actor's list, so once it held
    max_members every new guest's socket was refused although the store had let them join."""
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock), max_members=2)
    a = await world.join(ttl=60, max_members=2)
    b = await world.join(max_members=2)
    _, sink_a = await connect(directory, a)
    ref, sink_b = await connect(directory, b)
    await world.store.revoke_member(a.group_id, a.member_id)  # e.g. expired and cleaned up, or revoked
    sink_a.close(1000, "bye")
    await ref.ask(Disconnect(a.member_id, sink_a))
    await world.clock.advance(61)
    c = await world.join(max_members=2)  # the store counts only b: there is a place
    sink_c = FakeSink()
    assert await ref.ask(Connect(c.member_id, sink_c)) is True
    members = [m["member_id"] for m in sink_c.of_type("welcome")[0]["members"]]
    assert members == [b.member_id, c.member_id]  # the departed member is forgotten
    assert sink_b.of_type("member_left")[-1]["member_id"] == a.member_id


async def test_member_whose_token_expired_but_is_still_connected_stays(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock), max_members=1)
    a = await world.join(ttl=60, max_members=1)
    ref, sink_a = await connect(directory, a)
    await world.clock.advance(61)
    b = await world.join(max_members=1)
    _, sink_b = await connect(directory, b)
    members = [m["member_id"] for m in sink_b.of_type("welcome")[0]["members"]]
    assert members == [a.member_id, b.member_id]
    await ref.ask(Command(a.member_id, sink_a, AddItem("x", "miso", 1, "")))
    assert sink_a.of_type("ack")[-1]["id"] == "x"


# -- connects whose token the handshake checked (issue 14: joins at handshake speed) ------------------------


class CountingStore:
    """The world's store, counting live_members calls (the query a checked connect must not need)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.live_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def live_members(self, group_id: str, now: float) -> set[str]:
        self.live_calls += 1
        result: set[str] = await self.inner.live_members(group_id, now)
        return result


def counting_world(world: Any, **options: Any) -> tuple[Any, CountingStore, list[Any]]:
    store = CountingStore(world.store)
    writes: list[Any] = []

    async def commit(write: Any) -> None:
        writes.append(write)
        await world.committer.commit(write)

    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock), commit=commit, **options)
    directory._ctx.store = store  # the actors' store (activation, reads) with live_members counted
    return directory, store, writes


async def checked(directory: Any, j: Any, sink: FakeSink | None = None) -> tuple[Any, FakeSink]:
    ref = directory.ref_for(j.group_id, j.table_id, j.restaurant_id)
    sink = sink or FakeSink()
    assert await ref.ask(Connect(j.member_id, sink, token_checked=True)) is True
    return ref, sink


async def test_a_checked_connect_is_welcomed_without_a_query_or_a_write(world: Any) -> None:
    directory, store, writes = counting_world(world)
    a, b = await world.join(), await world.join()
    ref, sink_a = await checked(directory, a)
    _, sink_b = await checked(directory, b)
    assert store.live_calls == 0 and writes == []
    members = sink_b.of_type("welcome")[0]["members"]
    assert [(m["member_id"], m["name"]) for m in members] == [(a.member_id, "Guest 1"), (b.member_id, "Guest 2")]
    assert sink_a.of_type("member_joined")[-1]["member_id"] == b.member_id
    # The membership is written with the group's next write (which carries the whole member list).
    await ref.ask(Command(b.member_id, sink_b, AddItem("x", "miso", 1, "")))
    assert len(writes) == 1
    stored = await world.store.load_group(a.group_id)
    assert stored is not None
    members = GroupState.from_snapshot(stored.revision, stored.state).members
    assert members == {a.member_id: "Guest 1", b.member_id: "Guest 2"}


async def test_a_checked_connect_of_a_member_who_left_asks_the_store(world: Any) -> None:
    directory, store, _ = counting_world(world)
    a, b = await world.join(), await world.join()
    ref, _ = await checked(directory, a)
    _, sink_b = await checked(directory, b)
    await ref.ask(Command(b.member_id, sink_b, Leave(None)))
    # b's second tab resolved its token before the leave revoked it: the actor still refuses it
    late = FakeSink()
    assert await ref.ask(Connect(b.member_id, late, token_checked=True)) is False
    assert late.of_type("error")[-1]["code"] == "unauthorized" and late.closed is not None
    assert store.live_calls == 1


async def test_a_checked_connect_at_the_cap_forgets_departed_members(world: Any) -> None:
    directory, store, _ = counting_world(world, max_members=2)
    a = await world.join(ttl=60, max_members=2)
    b = await world.join(max_members=2)
    ref, sink_a = await checked(directory, a)
    _, sink_b = await checked(directory, b)
    await world.store.revoke_member(a.group_id, a.member_id)
    await ref.ask(Disconnect(a.member_id, sink_a))
    c = await world.join(max_members=2)
    _, sink_c = await checked(directory, c)
    assert store.live_calls == 1  # the list was at the cap: the store says who still counts
    assert [m["member_id"] for m in sink_c.of_type("welcome")[0]["members"]] == [b.member_id, c.member_id]
    assert sink_b.of_type("member_left")[-1]["member_id"] == a.member_id


async def test_after_a_crash_before_any_write_members_are_added_again_on_reconnect(world: Any) -> None:
    directory, _, writes = counting_world(world)
    a, b = await world.join(), await world.join()
    await checked(directory, a)
    await checked(directory, b)
    assert writes == []  # nothing of the membership was written when the process dies
    # A new process (the old one crashed): both reconnect with their still valid tokens, welcomed again,
    # numbered in reconnect order.
    directory2, _, _ = counting_world(world)
    ref2, sink_b = await checked(directory2, b)
    _, sink_a = await checked(directory2, a)
    members = sink_a.of_type("welcome")[0]["members"]
    assert [(m["member_id"], m["name"]) for m in members] == [(b.member_id, "Guest 1"), (a.member_id, "Guest 2")]
    await ref2.ask(Command(a.member_id, sink_a, AddItem("x", "miso", 1, "")))
    assert (await ref2.ask(GetCart()))["items"][0]["added_by"] == a.member_id
