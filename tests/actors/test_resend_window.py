"""The resend window (docs/protocol.md): the last 128 acknowledged request ids of each member answer a
resend with the original ``ack`` and change nothing, also across an actor restart; an older id is a new
operation. Uses the ``world`` fixture of test_table_actor (in-memory store, fake clock)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from tableside.actors.base import StopReason
from tableside.actors.cart import ACKED_PER_MEMBER, GroupState, ack_key
from tableside.actors.messages import Command, GetCart
from tableside.pos.dummy import DummyPosAdapter
from tableside.protocol import AddItem, PlaceOrder, UpdateItem
from tests.actors import test_table_actor as base
from tests.actors.test_table_actor import ScriptedPos, connect, settle

world = base.world  # the same fixture


def test_window_is_the_documented_128() -> None:
    assert ACKED_PER_MEMBER == 128


@pytest.mark.parametrize(("others", "remembered"), [(127, True), (128, False), (129, False)])
def test_group_state_window_boundary(others: int, remembered: bool) -> None:
    state = GroupState()
    state.remember("m1", "first", {"type": "ack", "id": "first", "revision": 1})
    for i in range(others):
        state.remember("m1", f"op-{i}", {"type": "ack", "id": f"op-{i}", "revision": 2 + i})
    state.remember("m2", "x", {"type": "ack", "id": "x", "revision": 500})  # another member's ids do not count
    expected = {"type": "ack", "id": "first", "revision": 1} if remembered else None
    assert state.answered("m1", "first") == expected
    again = GroupState.from_snapshot(state.revision, state.to_snapshot())
    assert again.answered("m1", "first") == expected
    assert again.answered("m1", f"op-{others - 1}") == {"type": "ack", "id": f"op-{others - 1}", "revision": others + 1}


def test_stored_window_is_compact_and_round_trips_long_ids_and_order_ids() -> None:
    state = GroupState()
    long_id = "req-" + "x" * 60
    state.remember("m1", long_id, {"type": "ack", "id": long_id, "revision": 1000})
    state.remember("m1", "po", {"type": "ack", "id": "po", "revision": 1001, "order_id": "ORD-1-7"})
    for i in range(200):
        state.remember("m1", f"{i}", {"type": "ack", "id": f"{i}", "revision": 1002 + i})
    acks = state.to_snapshot()["acks"]["m1"]
    assert len(acks) == 2 * ACKED_PER_MEMBER
    # oldest kept first (absolute revision), then one-character deltas
    assert acks[:4] == ["72", 1074, "73", 1]
    state2 = GroupState()
    state2.remember("m1", long_id, {"type": "ack", "id": long_id, "revision": 1000})
    state2.remember("m1", "po", {"type": "ack", "id": "po", "revision": 1001, "order_id": "ORD-1-7"})
    wire = state2.to_snapshot()["acks"]["m1"]
    assert wire == [ack_key(long_id), 1000, "po", [1, "ORD-1-7"]] and len(ack_key(long_id)) == 13
    again = GroupState.from_snapshot(0, state2.to_snapshot())
    assert again.answered("m1", long_id) == {"type": "ack", "id": long_id, "revision": 1000}
    assert again.answered("m1", "po") == {"type": "ack", "id": "po", "revision": 1001, "order_id": "ORD-1-7"}
    assert again.answered("m1", "~" + long_id[:5]) is None


def test_snapshots_in_the_old_form_still_answer_resends() -> None:
    """Snapshots already in databases stored ``acked`` as ``[[request_id, [revision, order_id?]], ...]``."""
    long_id = "r" * 64
    old = {
        "v": 1,
        "members": [["m1", "Guest 1"], ["m2", "Guest 2"]],
        "acked": {"m1": [["a1", [3]], [long_id, [4]], ["po", [5, "ORD-1-2"]]]},
    }
    state = GroupState.from_snapshot(5, old)
    assert state.answered("m1", "a1") == {"type": "ack", "id": "a1", "revision": 3}
    assert state.answered("m1", long_id) == {"type": "ack", "id": long_id, "revision": 4}
    assert state.answered("m1", "po") == {"type": "ack", "id": "po", "revision": 5, "order_id": "ORD-1-2"}
    assert state.acked["m1"] == OrderedDict([("a1", [3]), (ack_key(long_id), [4]), ("po", [5, "ORD-1-2"])])
    # A new member after an old snapshot is named after the ones already there.
    assert state.add_member("m3") == "Guest 3"
    rewritten = state.to_snapshot()
    assert "acked" not in rewritten and GroupState.from_snapshot(5, rewritten).answered("m1", "a1") is not None


async def _other_ops(ref: Any, member_id: str, sink: Any, line_id: str, count: int) -> None:
    for i in range(count):
        answer = await ref.ask(Command(member_id, sink, UpdateItem(f"op-{i}", line_id, 1 + i % 2)))
        assert answer["type"] == "ack", answer


@pytest.mark.parametrize("restart", [False, True], ids=["live", "after-restart"])
@pytest.mark.parametrize(("others", "duplicate"), [(127, True), (128, False), (129, False)])
async def test_resent_add_item_within_and_past_the_window(world: Any, others: int, duplicate: bool, restart: bool) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join()
    ref, sink = await connect(directory, a)
    first = await ref.ask(Command(a.member_id, sink, AddItem("first", "miso", 1, "")))
    assert first["type"] == "ack"
    line_id = (await ref.ask(GetCart()))["items"][0]["line_id"]
    await _other_ops(ref, a.member_id, sink, line_id, others)
    if restart:
        await directory.stop_all(StopReason.SHUTDOWN)
        directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
        ref, sink = await connect(directory, a)
    before = await ref.ask(GetCart())
    again = await ref.ask(Command(a.member_id, sink, AddItem("first", "miso", 1, "")))
    after = await ref.ask(GetCart())
    if duplicate:
        assert again == first
        assert after == before  # nothing changed: same lines, same revision
    else:
        # Past the window the id is forgotten: the resend is a new operation (documented).
        assert again["type"] == "ack" and again["revision"] == before["revision"] + 1
        assert len(after["items"]) == 2


@pytest.mark.parametrize("restart", [False, True], ids=["live", "after-restart"])
async def test_resent_place_order_within_the_window_places_no_second_order(world: Any, restart: bool) -> None:
    directory = world.make(ScriptedPos([]))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("add", "miso", 1, "")))
    placed = await ref.ask(Command(a.member_id, sink, PlaceOrder("po", None, "")))
    assert placed["type"] == "ack"
    await settle()
    assert sink.of_type("order_confirmed")[-1]["order_id"] == placed["order_id"]
    # Something new in the cart, then 127 other operations of this member.
    await ref.ask(Command(a.member_id, sink, AddItem("add-2", "gyoza", 1, "")))
    line_id = (await ref.ask(GetCart()))["items"][0]["line_id"]
    await _other_ops(ref, a.member_id, sink, line_id, ACKED_PER_MEMBER - 2)
    if restart:
        await directory.stop_all(StopReason.SHUTDOWN)
        directory = world.make(ScriptedPos([]))
        ref, sink = await connect(directory, a)
    before = await ref.ask(GetCart())
    again = await ref.ask(Command(a.member_id, sink, PlaceOrder("po", None, "")))
    await settle()
    assert again == placed
    assert await ref.ask(GetCart()) == before  # still pending, not locked, not ordered
    orders = await world.store.list_group_orders(a.group_id)
    assert [o.order_id for o in orders] == [placed["order_id"]]
