"""Issue 9: a table actor's stop reasons (``STORAGE_CONFLICT``, ``FAILED``, ``START_FAILED``, ``SHUTDOWN``,
``IDLE``, ``SESSION_CLOSED``) with what each means for the members' sockets and for waiting callers, and the
documented bounds: 100 cart lines, 50 members, a 10 000-message mailbox (docs/architecture.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tableside.actors.base import ActorDead, MailboxFull, StopReason
from tableside.actors.messages import CloseSession, Command, Connect, Disconnect, GetCart
from tableside.actors.table import CLOSE_RELOCATED, CLOSE_SESSION_ENDED
from tableside.pos.dummy import DummyPosAdapter
from tableside.pos.interface import Accepted, PosOrder, PosOutcome
from tableside.protocol import AddItem, Leave, PlaceOrder, RemoveItem
from tableside.storage.interface import GroupWrite, OrderStatus, StaleWrite
from tests.actors import test_table_actor as base
from tests.actors.test_actor_base import expect_error_logs, stopped
from tests.actors.test_table_actor import FakeSink, ScriptedPos, connect, settle

world = base.world  # the same fixture


def dummy(world: Any) -> DummyPosAdapter:
    return DummyPosAdapter(0, 1.0, clock=world.clock)


class GatedPos(ScriptedPos):
    """Submits wait until the test opens the gate (the clock's timeouts are long enough not to fire)."""

    def __init__(self) -> None:
        super().__init__([])
        self.gate = asyncio.Event()
        self.orders: list[PosOrder] = []

    async def submit(self, order: PosOrder, timeout: float) -> PosOutcome:
        self.orders.append(order)
        await self.gate.wait()
        return await super().submit(order, timeout)


# -- stop reasons ------------------------------------------------------------------------------------------


async def test_a_stale_write_stops_the_actor_with_storage_conflict(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Two activations of one group (e.g. two nodes): the one whose write is stale stops with STORAGE_CONFLICT
    (not FAILED), tells its members to reconnect, and what the other one committed stays."""
    here, there = world.make(dummy(world)), world.make(dummy(world))
    a = await world.join()
    ref_here, sink_here = await connect(here, a)
    ref_there, sink_there = await connect(there, a)
    await ref_there.ask(Command(a.member_id, sink_there, AddItem("there", "miso", 1, "")))
    with pytest.raises(StaleWrite):
        await ref_here.ask(Command(a.member_id, sink_here, AddItem("here", "gyoza", 1, "")))
    queued = asyncio.ensure_future(ref_here.ask(GetCart()))
    assert await stopped(ref_here) == StopReason.STORAGE_CONFLICT
    with pytest.raises(ActorDead) as dead:
        await queued
    assert dead.value.reason == StopReason.STORAGE_CONFLICT
    assert sink_here.closed == (CLOSE_RELOCATED, "reconnect")
    assert not sink_here.of_type("ack")  # the refused change was never acknowledged nor broadcast
    assert all(m["cart"]["items"] == [] for m in sink_here.of_type("cart_updated"))
    assert here.find(a.group_id) is None and here.active_count == 0
    assert sink_there.closed is None and ref_there.alive
    snap = await world.store.load_group(a.group_id)
    assert [line["menu_item_id"] for line in snap.state["lines"]] == ["miso"]
    # The members reconnect to the owner, which has the committed cart.
    assert [i["menu_item_id"] for i in (await ref_there.ask(GetCart()))["items"]] == ["miso"]
    # Expected in a cluster, so a warning that names the actor, not an error.
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("event='actor_failed'") and a.group_id in w for w in warned), warned
    expect_error_logs(caplog)


async def test_an_unexpected_error_stops_the_actor_with_failed_and_drops_uncommitted_state(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[Exception] = []

    async def commit(write: GroupWrite) -> None:
        if failures:
            raise failures.pop()
        await world.committer.commit(write)

    directory = world.make(dummy(world), commit=commit)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("kept", "miso", 1, "")))
    failures.append(RuntimeError("disk on fire"))
    with pytest.raises(RuntimeError):
        await ref.ask(Command(a.member_id, sink, AddItem("lost", "gyoza", 1, "")))
    assert await stopped(ref) == StopReason.FAILED
    assert sink.closed == (CLOSE_RELOCATED, "reconnect")
    assert [m["id"] for m in sink.of_type("ack")] == ["kept"]
    with pytest.raises(ActorDead):
        await ref.ask(GetCart())
    assert directory.find(a.group_id) is None
    # The next activation starts from the last committed snapshot, without the change that failed.
    ref2, sink2 = await connect(directory, a)
    assert ref2 is not ref and [i["menu_item_id"] for i in sink2.of_type("welcome")[0]["cart"]["items"]] == ["miso"]
    again = await ref2.ask(Command(a.member_id, sink2, AddItem("lost", "gyoza", 1, "")))
    assert again["type"] == "ack"  # never acknowledged, so a resend is a new operation
    expect_error_logs(caplog, "table_actor_error", "actor_failed", error=repr(RuntimeError("disk on fire")), message="Command")


async def test_a_failed_activation_stops_with_start_failed_and_the_next_one_starts_afresh(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    directory = world.make(dummy(world))
    a = await world.join()
    real_activate = world.store.activate_group
    calls = 0

    async def activate_group(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database restarting")
        return await real_activate(*args)

    world.store.activate_group = activate_group
    ref = directory.ref_for(a.group_id, a.table_id, a.restaurant_id)
    sink = FakeSink()
    with pytest.raises(ActorDead) as dead:
        await ref.ask(Connect(a.member_id, sink))
    assert dead.value.reason == StopReason.START_FAILED
    assert await stopped(ref) == StopReason.START_FAILED
    assert sink.messages == [] and directory.find(a.group_id) is None and directory.active_count == 0
    expect_error_logs(caplog, "actor_start_failed", actor=f"table:{a.table_id}:{a.group_id}")
    ref2, sink2 = await connect(directory, a)
    assert ref2.alive and sink2.of_type("welcome")


async def test_shutdown_tells_members_to_reconnect(world: Any) -> None:
    directory = world.make(dummy(world))
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await directory.stop_all()
    assert await ref.wait_stopped() == StopReason.SHUTDOWN
    assert sink_a.closed == (CLOSE_RELOCATED, "reconnect")
    assert sink_b.closed == (CLOSE_RELOCATED, "reconnect")
    assert not sink_a.of_type("session_closed")  # the sitting goes on; they reconnect


async def test_a_stopped_actor_leaves_its_pos_call_to_the_next_activation(world: Any) -> None:
    """The intent is durable: on stop the POS call in flight is cancelled, and the next activation resumes it
    by key, so two activations never talk to the POS about one order at once."""
    pos = GatedPos()
    directory = world.make(pos)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("1", "miso", 1, "")))
    placed = await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    await settle()
    assert len(pos.orders) == 1
    await directory.stop_all()
    pos.gate.set()
    await settle()
    assert pos.submits == 0 and pos.tickets == {}  # the old call never went on
    ref2, sink2 = await connect(directory, a)
    await settle()
    assert sink2.of_type("order_confirmed")[-1]["order_id"] == placed["order_id"]
    assert list(pos.tickets) == [placed["order_id"]]


async def test_closing_the_session_with_an_order_in_flight_waits_for_the_pos_then_stops(world: Any) -> None:
    pos = GatedPos()
    writes: list[object] = []

    async def counting_commit(write: Any) -> None:
        writes.append(write)
        await world.committer.commit(write)

    directory = world.make(pos, commit=counting_commit)
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await ref.ask(Command(a.member_id, sink_a, AddItem("1", "miso", 1, "")))
    placed = await ref.ask(Command(a.member_id, sink_a, PlaceOrder("2", None, "")))
    await settle()
    assert len(pos.orders) == 1
    await world.store.reset_table(a.table_id, world.clock.now())
    await ref.ask(CloseSession("table_reset"))
    for sink in (sink_a, sink_b):
        assert sink.of_type("session_closed") == [{"type": "session_closed", "reason": "table_reset"}]
        assert sink.closed == (CLOSE_SESSION_ENDED, "session closed")
    assert ref.alive  # stays until the POS answers so the order settles
    late = [AddItem("3", "miso", 1, ""), PlaceOrder("4", None, ""), Leave("5"), RemoveItem("6", "L1")]
    written = len(writes)
    for message in late:
        closed = await ref.ask(Command(b.member_id, None, message))
        assert closed["type"] == "error" and closed["code"] == "session_closed"
        assert closed["id"] == message.request_id and isinstance(closed["message"], str) and closed["message"]
    await settle()
    assert len(writes) == written  # a refused command changes nothing, so nothing is written
    pos.gate.set()
    assert await stopped(ref) == StopReason.SESSION_CLOSED
    order = await world.store.get_order(placed["order_id"])
    assert order is not None and order.status == OrderStatus.CONFIRMED
    assert not sink_a.of_type("order_confirmed")  # nobody is connected any more


async def test_closing_the_session_of_an_idle_cart_stops_at_once(world: Any) -> None:
    directory = world.make(dummy(world))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await world.store.checkout_table(a.table_id, world.clock.now())
    ref.tell(CloseSession("checked_out"))
    assert await stopped(ref) == StopReason.SESSION_CLOSED
    assert sink.closed == (CLOSE_SESSION_ENDED, "session closed")


@pytest.mark.parametrize("how", ["checked_out", "reset", "removed", "new_sitting"])
async def test_an_activation_after_the_sitting_ended_refuses_members(world: Any, how: str) -> None:
    """Activation checks that the table still points at the group and is occupied (a closed sitting stays
    closed): checked out (paid, still pointing at the group), reset, table removed, or a new sitting."""
    directory = world.make(dummy(world))
    a = await world.join()
    ref, _ = await connect(directory, a)
    await directory.stop_all()
    if how == "checked_out":
        await world.store.checkout_table(a.table_id, world.clock.now())
    elif how == "reset":
        await world.store.reset_table(a.table_id, world.clock.now())
    elif how == "removed":
        await world.store.remove_table(a.table_id)
    else:
        await world.store.reset_table(a.table_id, world.clock.now())
        assert (await world.join()).group_id != a.group_id
    ref2 = directory.ref_for(a.group_id, a.table_id, a.restaurant_id)
    sink = FakeSink()
    assert await ref2.ask(Connect(a.member_id, sink)) is False
    assert sink.of_type("session_closed") == [{"type": "session_closed", "reason": "checked_out"}]
    assert sink.closed == (CLOSE_SESSION_ENDED, "session closed")
    assert (await ref2.ask(Command(a.member_id, None, AddItem("x", "miso", 1, ""))))["code"] == "session_closed"


async def test_an_activation_of_the_current_sitting_accepts_members(world: Any) -> None:
    directory = world.make(dummy(world))
    a = await world.join()
    await connect(directory, a)
    await directory.stop_all()
    _, sink = await connect(directory, a)  # asserts Connect answered True
    assert sink.of_type("welcome") and sink.closed is None


# -- idle deactivation on the fake clock --------------------------------------------------------------------


async def test_an_activation_nobody_connects_to_stops_when_idle(world: Any) -> None:
    directory = world.make(dummy(world), idle_seconds=30)
    a = await world.join()
    ref = directory.ref_for(a.group_id, a.table_id, a.restaurant_id)
    await settle()
    await world.clock.advance(29)
    assert ref.alive
    await world.clock.advance(2)
    assert await stopped(ref) == StopReason.IDLE
    assert directory.find(a.group_id) is None


async def test_idle_timer_stops_while_someone_is_connected_and_restarts_when_the_last_one_leaves(world: Any) -> None:
    directory = world.make(dummy(world), idle_seconds=30)
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await ref.ask(Disconnect(a.member_id, sink_a))
    await world.clock.advance(31)
    assert ref.alive  # b is still here
    await ref.ask(Disconnect(b.member_id, sink_b))
    await world.clock.advance(20)
    _, sink_a2 = await connect(directory, a)  # back before the idle period ended
    await world.clock.advance(31)
    assert ref.alive
    await ref.ask(Disconnect(a.member_id, sink_a2))
    await world.clock.advance(29)
    assert ref.alive
    await world.clock.advance(2)
    assert await stopped(ref) == StopReason.IDLE


async def test_an_actor_with_a_pos_call_in_flight_is_not_idle(world: Any) -> None:
    pos = GatedPos()
    directory = world.make(pos, idle_seconds=4)  # two idle periods stay below the POS timeout (10 s)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("1", "miso", 1, "")))
    placed = await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    await ref.ask(Disconnect(a.member_id, sink))
    await world.clock.advance(4.5)
    await world.clock.advance(4.5)
    assert ref.alive and pos.submits == 0  # the POS has not answered: the order must settle first
    pos.gate.set()
    await settle()
    order = await world.store.get_order(placed["order_id"])
    assert order is not None and order.status == OrderStatus.CONFIRMED
    await world.clock.advance(4.5)
    assert await stopped(ref) == StopReason.IDLE


# -- bounds ---------------------------------------------------------------------------------------------------


async def test_the_cart_holds_at_most_100_lines(world: Any) -> None:
    directory = world.make(dummy(world))  # the default context: 100 lines
    a = await world.join()
    ref, sink = await connect(directory, a)
    for i in range(100):
        assert (await ref.ask(Command(a.member_id, sink, AddItem(f"a{i}", "miso", 1, ""))))["type"] == "ack"
    before = await ref.ask(GetCart())
    broadcasts = len(sink.of_type("cart_updated"))
    full = await ref.ask(Command(a.member_id, sink, AddItem("a100", "gyoza", 1, "")))
    assert full["type"] == "error" and full["code"] == "bad_request" and full["id"] == "a100"
    assert await ref.ask(GetCart()) == before and len(before["items"]) == 100
    assert len(sink.of_type("cart_updated")) == broadcasts  # nothing changed, nothing broadcast
    # Room again once a line is removed.
    await ref.ask(Command(a.member_id, sink, RemoveItem("rm", before["items"][0]["line_id"])))
    assert (await ref.ask(Command(a.member_id, sink, AddItem("a101", "gyoza", 1, ""))))["type"] == "ack"
    assert len((await ref.ask(GetCart()))["items"]) == 100


async def test_a_smaller_configured_cart_cap_is_exact(world: Any) -> None:
    directory = world.make(dummy(world), max_cart_lines=2)
    a = await world.join()
    ref, sink = await connect(directory, a)
    answers = [await ref.ask(Command(a.member_id, sink, AddItem(f"a{i}", "miso", 1, ""))) for i in range(3)]
    assert [x["type"] for x in answers] == ["ack", "ack", "error"] and answers[2]["code"] == "bad_request"


async def test_at_the_50_member_cap_departed_members_make_room(world: Any) -> None:
    """The store caps joins at 50 live members; the actor keeps its members list in step: when a new member
    arrives at a full list, offline members whose token is no longer live are dropped (with member_left)."""
    directory = world.make(dummy(world))  # the default context: 50 members
    joins = [await world.join(max_members=50) for _ in range(50)]
    sinks = [(await connect(directory, j))[1] for j in joins]
    ref = directory.find(joins[0].group_id)
    assert ref is not None
    gone = joins[7]
    await world.store.revoke_member(gone.group_id, gone.member_id)
    await ref.ask(Disconnect(gone.member_id, sinks[7]))
    newcomer = await world.join(max_members=50)
    _, sink = await connect(directory, newcomer)
    members = [m["member_id"] for m in sink.of_type("welcome")[0]["members"]]
    assert len(members) == 50 and gone.member_id not in members and members[-1] == newcomer.member_id
    assert sinks[0].of_type("member_left")[-1]["member_id"] == gone.member_id


async def test_below_the_member_cap_departed_members_stay_listed(world: Any) -> None:
    directory = world.make(dummy(world), max_members=3)
    a, b = await world.join(max_members=3), await world.join(max_members=3)
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await world.store.revoke_member(a.group_id, b.member_id)
    await ref.ask(Disconnect(b.member_id, sink_b))
    c = await world.join(max_members=3)
    _, sink_c = await connect(directory, c)
    members = [(m["member_id"], m["online"]) for m in sink_c.of_type("welcome")[0]["members"]]
    assert members == [(a.member_id, True), (b.member_id, False), (c.member_id, True)]


async def test_a_table_actors_mailbox_is_bounded_at_10_000(world: Any) -> None:
    directory = world.make(dummy(world))
    a = await world.join()
    ref, _ = await connect(directory, a)
    for _ in range(10_000):
        ref.tell(GetCart())  # the actor cannot run in between: nothing awaits here
    with pytest.raises(MailboxFull):
        ref.tell(GetCart())
    with pytest.raises(MailboxFull):
        await ref.ask(GetCart())
    await settle()
    assert (await ref.ask(GetCart()))["items"] == [] and ref.alive


async def test_a_resent_request_is_answered_from_the_window_without_a_second_commit(world: Any) -> None:
    writes: list[GroupWrite] = []

    async def commit(write: GroupWrite) -> None:
        writes.append(write)
        await world.committer.commit(write)

    directory = world.make(ScriptedPos([Accepted("T")]), commit=commit)
    a = await world.join()
    ref, sink = await connect(directory, a)
    first = await ref.ask(Command(a.member_id, sink, AddItem("x", "miso", 1, "")))
    count = len(writes)
    assert await ref.ask(Command(a.member_id, sink, AddItem("x", "miso", 1, ""))) == first
    assert len(writes) == count


async def test_an_idle_check_that_raced_a_reconnect_does_not_stop_the_table(world: Any) -> None:
    """The idle timer fired while the actor was busy and a member's reconnect was already queued: the check
    finds someone connected and lets go; the idle period starts again at the next departure."""
    gate = asyncio.Event()
    gate.set()

    async def commit(write: GroupWrite) -> None:
        await gate.wait()
        await world.committer.commit(write)

    directory = world.make(dummy(world), commit=commit, idle_seconds=30)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Disconnect(a.member_id, sink))
    await world.clock.advance(10)
    gate.clear()
    ref.tell(Command(a.member_id, None, AddItem("slow", "miso", 1, "")))  # the actor waits for its commit
    await settle()
    back = FakeSink()
    reconnect = asyncio.ensure_future(ref.ask(Connect(a.member_id, back)))
    await settle()
    await world.clock.advance(21)  # the idle check is queued behind the reconnect
    gate.set()
    await settle()
    assert reconnect.result() is True and ref.alive
    await world.clock.advance(100)
    assert ref.alive  # connected: never idle
    await ref.ask(Disconnect(a.member_id, back))
    await world.clock.advance(29)
    assert ref.alive
    await world.clock.advance(2)
    assert await stopped(ref) == StopReason.IDLE
