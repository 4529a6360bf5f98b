"""Promises of docs/protocol.md kept by the table actor (issue 9): the cart line cap, a token that expired
before the member's first connection, what does (not) use up the resend window, ``update_item`` to 0 and
``session_closed`` after the sitting closed. Uses the ``world``
fixture of test_table_actor (in-memory store, fake clock, no network)."""

from __future__ import annotations

from typing import Any

from tableside.actors.cart import ACKED_PER_MEMBER
from tableside.actors.messages import CloseSession, Command, Connect, GetCart
from tableside.actors.table import TableContext
from tableside.pos.dummy import DummyPosAdapter
from tableside.protocol import AddItem, GetSnapshot, Ping, PlaceOrder, RemoveItem, UpdateItem
from tests.actors import test_table_actor as base
from tests.actors.test_table_actor import FakeSink, connect

world = base.world  # the same fixture


def test_the_documented_cart_line_cap_is_100() -> None:
    assert TableContext.__dataclass_fields__["max_cart_lines"].default == 100


async def test_a_full_cart_refuses_add_item_with_bad_request_and_changes_nothing(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock), max_cart_lines=3)
    a = await world.join()
    ref, sink = await connect(directory, a)
    for i in range(3):
        assert (await ref.ask(Command(a.member_id, sink, AddItem(f"a{i}", "miso", 1, ""))))["type"] == "ack"
    before = await ref.ask(GetCart())
    refused = await ref.ask(Command(a.member_id, sink, AddItem("a3", "gyoza", 1, "")))
    assert refused["type"] == "error" and refused["code"] == "bad_request" and refused["id"] == "a3"
    assert "full" in refused["message"]
    assert await ref.ask(GetCart()) == before  # same lines, same revision
    # A place frees up when a line goes.
    await ref.ask(Command(a.member_id, sink, RemoveItem("r", before["items"][0]["line_id"])))
    assert (await ref.ask(Command(a.member_id, sink, AddItem("a4", "gyoza", 1, ""))))["type"] == "ack"


async def test_a_token_expired_before_the_first_connection_gets_unauthorized_and_close_1008(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join()
    _, sink_a = await connect(directory, a)
    late = await world.join(ttl=60)  # the join was accepted...
    await world.clock.advance(61)  # ...but the token expired before the socket reached the table
    ref = directory.ref_for(late.group_id, late.table_id, late.restaurant_id)
    sink = FakeSink()
    assert await ref.ask(Connect(late.member_id, sink)) is False
    assert [(m["type"], m["code"]) for m in sink.messages] == [("error", "unauthorized")]
    assert sink.closed is not None and sink.closed[0] == 1008
    assert sink_a.of_type("member_joined") == []


async def test_errors_pongs_and_snapshots_do_not_use_up_the_resend_window(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join()
    ref, sink = await connect(directory, a)
    first = await ref.ask(Command(a.member_id, sink, AddItem("first", "miso", 1, "")))
    assert first["type"] == "ack"
    for i in range(ACKED_PER_MEMBER + 10):
        assert (await ref.ask(Command(a.member_id, sink, AddItem(f"bad{i}", "caviar", 1, ""))))["type"] == "error"
        assert (await ref.ask(Command(a.member_id, sink, Ping(f"p{i}"))))["type"] == "pong"
        assert (await ref.ask(Command(a.member_id, sink, GetSnapshot(f"s{i}"))))["type"] == "snapshot"
    before = await ref.ask(GetCart())
    assert await ref.ask(Command(a.member_id, sink, AddItem("first", "miso", 1, ""))) == first
    assert await ref.ask(GetCart()) == before


async def test_the_window_is_per_member_and_long_ids_are_compared_exactly(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    # Another member's id is another operation.
    assert (await ref.ask(Command(a.member_id, sink_a, AddItem("same", "miso", 1, ""))))["type"] == "ack"
    assert (await ref.ask(Command(b.member_id, sink_b, AddItem("same", "miso", 1, ""))))["type"] == "ack"
    # Ids longer than 12 characters that differ only at the end are different ids.
    long_a, long_b = "x" * 40 + "a", "x" * 40 + "b"
    first = await ref.ask(Command(a.member_id, sink_a, AddItem(long_a, "gyoza", 1, "")))
    second = await ref.ask(Command(a.member_id, sink_a, AddItem(long_b, "gyoza", 1, "")))
    assert second["revision"] == first["revision"] + 1
    assert await ref.ask(Command(a.member_id, sink_a, AddItem(long_a, "gyoza", 1, ""))) == first
    assert len((await ref.ask(GetCart()))["items"]) == 4


async def test_update_item_to_zero_removes_the_line_and_a_closed_sitting_answers_session_closed(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("add", "miso", 1, "")))
    line_id = (await ref.ask(GetCart()))["items"][0]["line_id"]
    assert (await ref.ask(Command(a.member_id, sink, UpdateItem("zero", line_id, 0))))["type"] == "ack"
    assert (await ref.ask(GetCart()))["items"] == []
    await ref.ask(Command(a.member_id, sink, AddItem("again", "miso", 1, "")))
    await world.store.checkout_table("T001", world.clock.now())
    ref.tell(CloseSession("checked_out"))
    late = ref.ask(Command(a.member_id, None, PlaceOrder("late-po", None, "")))
    answer = await late
    assert answer["type"] == "error" and answer["code"] == "session_closed" and answer["id"] == "late-po"
