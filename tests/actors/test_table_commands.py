"""The table actor's commands and broadcasts as docs/protocol.md describes them: cart edits and their errors
(state unchanged), acks only after the commit, messages without ``id``, ``place_order`` from intent to
outcome (order row, POS order, broadcasts), the staff/kitchen/menu messages, and the directory."""

from __future__ import annotations

import asyncio
from typing import Any

from tableside.actors.base import StopReason
from tableside.actors.cart import iso
from tableside.actors.messages import (
    Command,
    Connect,
    Disconnect,
    GetCart,
    GetTableInfo,
    KitchenStatusChanged,
    MenuChanged,
    PosResult,
)
from tableside.pos.interface import Accepted, LookupResult, PosOrder, PosOutcome, Rejected, Unknown
from tableside.protocol import AddItem, GetSnapshot, Leave, Ping, PlaceOrder, RemoveItem, UpdateItem
from tableside.storage.interface import GroupWrite, MenuItem, OrderStatus, Restaurant
from tests.actors import test_table_actor as base
from tests.actors.test_actor_base import stopped
from tests.actors.test_table_actor import FakeSink, ScriptedPos, connect, settle
from tests.actors.test_table_stops_and_limits import GatedPos, dummy

world = base.world  # the same fixture


class RecordingPos(ScriptedPos):
    def __init__(self, answers: list[PosOutcome | None]) -> None:
        super().__init__(answers)
        self.orders: list[PosOrder] = []

    async def submit(self, order: PosOrder, timeout: float) -> PosOutcome:
        self.orders.append(order)
        return await super().submit(order, timeout)


def add(member: Any, sink: Any, rid: str | None, item: str, qty: int = 1, note: str = "") -> Command:
    return Command(member.member_id, sink, AddItem(rid, item, qty, note))


# -- cart edits ------------------------------------------------------------------------------------------


async def test_edits_and_their_errors(world: Any) -> None:
    directory = world.make(dummy(world))
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await world.clock.advance(5)
    ack = await ref.ask(add(a, sink_a, "1", "gyoza", 2, "extra sauce"))
    cart = await ref.ask(GetCart())
    assert ack == {"type": "ack", "id": "1", "revision": cart["revision"]}
    assert cart["last_updated"] == iso(world.clock.now())
    [line] = cart["items"]
    assert line == {
        "line_id": line["line_id"],
        "menu_item_id": "gyoza",
        "name": "Pork Gyoza (6)",
        "qty": 2,
        "unit_price": 680,
        "note": "extra sauce",
        "state": "pending",
        "added_by": a.member_id,
    }
    await ref.ask(add(b, sink_b, "2", "miso"))
    lines = (await ref.ask(GetCart()))["items"]
    assert len({x["line_id"] for x in lines}) == 2  # every add is its own line
    assert (await ref.ask(Command(b.member_id, sink_b, UpdateItem("3", line["line_id"], 5))))["type"] == "ack"
    assert (await ref.ask(GetCart()))["items"][0]["qty"] == 5
    assert (await ref.ask(Command(b.member_id, sink_b, UpdateItem("4", line["line_id"], 0))))["type"] == "ack"
    after = await ref.ask(GetCart())
    assert [x["menu_item_id"] for x in after["items"]] == ["miso"] and after["total"] == 350

    refused = [
        (Command(a.member_id, sink_a, UpdateItem("e1", "L404", 2)), "not_found"),
        (Command(a.member_id, sink_a, RemoveItem("e2", "L404")), "not_found"),
        (add(a, sink_a, "e3", "no-such-item"), "unknown_item"),
    ]
    for command, code in refused:
        answer = await ref.ask(command)
        assert answer["type"] == "error" and answer["code"] == code and answer["id"] == command.message.request_id
        assert sink_a.of_type("error")[-1] == answer
    assert await ref.ask(GetCart()) == after


async def test_unavailable_items_and_items_of_another_restaurant_are_refused(world: Any) -> None:
    await world.store.upsert_restaurant(Restaurant(2, "Elsewhere"))
    await world.store.upsert_menu_item(MenuItem("uni", 2, "Uni", "Sushi", 900, True, 1))
    await world.menu.load([1, 2])
    await world.menu.set_availability("karaage", False)
    directory = world.make(dummy(world))
    a = await world.join()
    ref, sink = await connect(directory, a)
    before = await ref.ask(GetCart())
    unavailable = await ref.ask(add(a, sink, "1", "karaage"))
    assert unavailable["code"] == "item_unavailable"
    other = await ref.ask(add(a, sink, "2", "uni"))
    assert other["code"] == "unknown_item"
    assert await ref.ask(GetCart()) == before and not sink.of_type("cart_updated")


async def test_a_message_without_id_is_applied_and_broadcast_but_not_answered(world: Any) -> None:
    directory = world.make(dummy(world))
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    before = (await ref.ask(GetCart()))["revision"]
    answer = await ref.ask(add(a, sink_a, None, "miso"))
    assert answer == {}
    assert not sink_a.of_type("ack") and not sink_a.of_type("error")
    for sink in (sink_a, sink_b):
        assert sink.of_type("cart_updated")[-1]["cart"]["revision"] == before + 1
    # Refusals of an id-less message are not sent either.
    assert (await ref.ask(add(a, sink_a, None, "nope")))["code"] == "unknown_item"
    assert not sink_a.of_type("error")


async def test_ping_and_get_snapshot_are_answered_without_touching_the_table(world: Any) -> None:
    directory = world.make(dummy(world))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(add(a, sink, "1", "miso"))
    cart = await ref.ask(GetCart())
    updates = len(sink.of_type("cart_updated"))
    assert await ref.ask(Command(a.member_id, sink, Ping("p"))) == {"type": "pong", "id": "p"}
    assert await ref.ask(Command(a.member_id, sink, GetSnapshot("s"))) == {"type": "snapshot", "id": "s", "cart": cart}
    assert sink.messages[-2:] == [{"type": "pong", "id": "p"}, {"type": "snapshot", "id": "s", "cart": cart}]
    assert await ref.ask(GetCart()) == cart and len(sink.of_type("cart_updated")) == updates
    # They do not use up the resend window either: a resend of "p" is answered as a new ping.
    assert await ref.ask(Command(a.member_id, sink, Ping("p"))) == {"type": "pong", "id": "p"}


async def test_an_ack_is_sent_only_once_the_change_is_committed(world: Any) -> None:
    gate = asyncio.Event()
    gate.set()

    async def commit(write: GroupWrite) -> None:
        await gate.wait()
        await world.committer.commit(write)

    directory = world.make(dummy(world), commit=commit)
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    revision = (await ref.ask(GetCart()))["revision"]
    gate.clear()
    asks = [asyncio.ensure_future(ref.ask(add(m, s, f"r{m.member_id}", "miso"))) for m, s in ((a, sink_a), (b, sink_b))]
    await settle()
    assert not any(t.done() for t in asks)
    assert not sink_a.of_type("ack") and not sink_b.of_type("ack") and not sink_a.of_type("cart_updated")
    before = await world.store.load_group(a.group_id)  # None: connecting writes nothing (issue 14)
    assert (0 if before is None else before.revision) == revision
    gate.set()
    await settle()
    acks = [t.result() for t in asks]
    assert sorted(x["revision"] for x in acks) == [revision + 1, revision + 2]  # one revision per change
    stored = await world.store.load_group(a.group_id)
    assert stored.revision == revision + 2 and len(stored.state["lines"]) == 2
    assert sink_a.of_type("ack") == [acks[0]] and sink_b.of_type("ack") == [acks[1]]
    assert sink_b.of_type("cart_updated")[-1]["cart"]["revision"] == revision + 2


# -- membership ------------------------------------------------------------------------------------------


async def test_members_online_joins_and_departures(world: Any) -> None:
    directory = world.make(dummy(world))
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    welcome = sink_a.of_type("welcome")[0]
    assert welcome["member_id"] == a.member_id and welcome["table_id"] == a.table_id
    assert welcome["group_id"] == a.group_id
    assert welcome["members"] == [{"member_id": a.member_id, "name": "Guest 1", "online": True}]
    _, sink_b1 = await connect(directory, b)
    _, sink_b2 = await connect(directory, b)  # a second tab of b: no second member_joined
    joined = sink_a.of_type("member_joined")
    assert [m["member_id"] for m in joined] == [b.member_id]
    assert joined[0]["members"][1] == {"member_id": b.member_id, "name": "Guest 2", "online": True}
    assert not sink_b1.of_type("member_joined")  # not to the joiner
    assert await ref.ask(GetTableInfo()) == {"cart": await ref.ask(GetCart()), "members_online": 2}
    await ref.ask(Disconnect(b.member_id, sink_b1))
    assert not sink_a.of_type("member_left")  # b is still online in the other tab
    await ref.ask(Disconnect(b.member_id, FakeSink()))  # an unknown socket changes nothing
    assert not sink_a.of_type("member_left")
    await ref.ask(Disconnect(b.member_id, sink_b2))
    left = sink_a.of_type("member_left")
    assert len(left) == 1 and left[0]["member_id"] == b.member_id
    assert left[0]["members"][1] == {"member_id": b.member_id, "name": "Guest 2", "online": False}
    assert (await ref.ask(GetTableInfo()))["members_online"] == 1
    # b reconnects: still Guest 2, and the others hear of it.
    await ref.ask(Connect(b.member_id, FakeSink()))
    assert sink_a.of_type("member_joined")[-1]["member_id"] == b.member_id


async def test_leave_is_committed_closes_only_that_members_sockets_and_the_last_one_out_starts_the_idle_timer(
    world: Any,
) -> None:
    directory = world.make(dummy(world), idle_seconds=30)
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    left = await ref.ask(Command(b.member_id, sink_b, Leave("bye")))
    stored = await world.store.load_group(a.group_id)
    assert left == {"type": "ack", "id": "bye", "revision": stored.revision}
    assert [m for m, _ in stored.state["members"]] == [a.member_id]
    assert sink_b.closed is not None and sink_a.closed is None
    assert sink_a.of_type("member_left")[-1]["member_id"] == b.member_id
    again = await ref.ask(Command(b.member_id, None, Leave("bye-again")))
    assert again == {"type": "ack", "id": "bye-again", "revision": stored.revision}  # nothing changed
    assert (await world.store.load_group(a.group_id)).revision == stored.revision
    await world.clock.advance(31)
    assert ref.alive  # a is still connected
    await ref.ask(Command(a.member_id, sink_a, Leave(None)))
    assert sink_a.closed is not None and not sink_a.of_type("ack")
    await world.clock.advance(29)
    assert ref.alive
    await world.clock.advance(2)
    assert await stopped(ref) == StopReason.IDLE


async def test_a_revoked_token_is_refused_at_the_first_connection_with_1008(world: Any) -> None:
    directory = world.make(dummy(world))
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    await world.store.revoke_member(b.group_id, b.member_id)
    sink = FakeSink()
    assert await ref.ask(Connect(b.member_id, sink)) is False
    assert sink.of_type("error")[-1]["code"] == "unauthorized"
    assert sink.closed == (1008, "token expired or revoked")
    assert not sink_a.of_type("member_joined")
    assert (await ref.ask(GetTableInfo()))["members_online"] == 1


# -- place_order -----------------------------------------------------------------------------------------


async def test_place_order_commits_the_intent_then_the_outcome(world: Any) -> None:
    pos = GatedPos()
    directory = world.make(pos)
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await ref.ask(add(a, sink_a, "1", "gyoza", 2, "extra sauce"))
    await ref.ask(add(b, sink_b, "2", "ramen-shoyu", 1))
    placed_at = world.clock.now()
    revision = (await ref.ask(GetCart()))["revision"]
    ack = await ref.ask(Command(b.member_id, sink_b, PlaceOrder("po", 2 * 680 + 1450, "no onions")))
    assert ack == {"type": "ack", "id": "po", "revision": revision + 1, "order_id": "ORD-1-1"}
    locked = sink_a.of_type("cart_locked")
    assert locked == [
        {
            "type": "cart_locked",
            "locked_by_member": b.member_id,
            "order_id": "ORD-1-1",
            "message": "Order being processed by Guest 2",
            "timestamp": iso(placed_at),
        }
    ]
    cart = sink_a.of_type("cart_updated")[-1]["cart"]
    assert cart["cart_locked"] and cart["locked_by_member"] == b.member_id and cart["revision"] == revision + 1
    assert cart["order_processing_status"] == "processing" and cart["pending_order_id"] == "ORD-1-1"
    assert {line["state"] for line in cart["items"]} == {"locked"}
    items = [
        {k: line[k] for k in ("line_id", "menu_item_id", "name", "qty", "unit_price", "note", "added_by")}
        for line in cart["items"]
    ]
    await settle()
    [order] = pos.orders
    assert order == PosOrder(
        order_id="ORD-1-1",
        order_number=1,
        restaurant_id=1,
        table_id=a.table_id,
        items=[{k: i[k] for k in ("menu_item_id", "name", "qty", "unit_price", "note")} for i in items],
        total=2 * 680 + 1450,
        special_instructions="no onions",
    )
    await world.clock.advance(7)  # the POS takes its time (below its 10 s timeout)
    pos.gate.set()
    await settle()
    record = await world.store.get_order("ORD-1-1")
    assert record is not None and record.status == OrderStatus.CONFIRMED
    assert (record.order_number, record.restaurant_id, record.table_id, record.group_id) == (1, 1, a.table_id, a.group_id)
    assert record.items == items and record.total == 2 * 680 + 1450
    assert record.special_instructions == "no onions" and record.placed_by == b.member_id
    assert record.created_at == placed_at and record.pos_ticket_id == "ticket-ORD-1-1"
    assert record.confirmed_at == placed_at + 7
    confirmed = sink_a.of_type("order_confirmed")
    assert confirmed == [
        {
            "type": "order_confirmed",
            "order_id": "ORD-1-1",
            "order_number": 1,
            "message": "Order placed successfully!",
            "total": 2 * 680 + 1450,
            "items": items,
        }
    ]
    after = sink_b.of_type("cart_updated")[-1]["cart"]
    assert after["items"] == [] and not after["cart_locked"] and after["order_processing_status"] == "confirmed"
    assert after["revision"] == revision + 2 and after["pending_order_id"] is None
    assert world.confirmed == [1]
    assert (await world.store.load_group(a.group_id)).state["last_order_id"] == "ORD-1-1"
    # A new line after a confirmed order: the cart is idle again.
    await ref.ask(add(a, sink_a, "3", "miso"))
    assert (await ref.ask(GetCart()))["order_processing_status"] == "idle"


async def test_the_intent_is_durable_before_the_pos_hears_of_it(world: Any) -> None:
    pos = GatedPos()
    directory = world.make(pos)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(add(a, sink, "1", "miso"))
    await ref.ask(Command(a.member_id, sink, PlaceOrder("po", None, "")))
    await settle()
    assert len(pos.orders) == 1
    record = await world.store.get_order("ORD-1-1")
    assert record is not None and record.status == OrderStatus.PROCESSING
    snap = await world.store.load_group(a.group_id)
    assert (snap.group_id, snap.table_id, snap.restaurant_id) == (a.group_id, a.table_id, a.restaurant_id)
    assert snap.state["pending"]["order_id"] == "ORD-1-1"
    assert {line["state"] for line in snap.state["lines"]} == {"locked"}
    # While the POS works the table keeps answering: pings, snapshots, refused edits.
    assert (await ref.ask(Command(a.member_id, sink, Ping("p"))))["type"] == "pong"
    locked = await ref.ask(add(a, sink, "2", "miso"))
    assert locked["code"] == "cart_locked" and locked["message"] == "Order being processed by Guest 1"
    line_id = snap.state["lines"][0]["line_id"]
    assert (await ref.ask(Command(a.member_id, sink, UpdateItem("3", line_id, 4))))["code"] == "cart_locked"
    assert (await ref.ask(Command(a.member_id, sink, RemoveItem("4", line_id))))["code"] == "cart_locked"
    in_progress = await ref.ask(Command(a.member_id, sink, PlaceOrder("5", None, "")))
    assert in_progress["code"] == "order_in_progress" and "ORD-1-1" in in_progress["message"]
    # A resend of the placing request answers the same ack.
    assert (await ref.ask(Command(a.member_id, sink, PlaceOrder("po", None, ""))))["order_id"] == "ORD-1-1"
    pos.gate.set()
    await settle()
    assert sink.of_type("order_confirmed")[-1]["order_id"] == "ORD-1-1"


async def test_place_order_refusals_lock_nothing(world: Any) -> None:
    pos = RecordingPos([])
    directory = world.make(pos)
    a = await world.join()
    ref, sink = await connect(directory, a)
    empty = await ref.ask(Command(a.member_id, sink, PlaceOrder("1", None, "")))
    assert empty["type"] == "error" and empty["code"] == "empty_cart" and empty["id"] == "1"
    await ref.ask(add(a, sink, "2", "karaage", 2))
    await ref.ask(add(a, sink, "3", "miso", 1))
    before = await ref.ask(GetCart())
    mismatch = await ref.ask(Command(a.member_id, sink, PlaceOrder("4", 2 * 790 + 351, "")))
    assert mismatch["code"] == "total_mismatch"
    await world.menu.set_availability("karaage", False)
    unavailable = await ref.ask(Command(a.member_id, sink, PlaceOrder("5", 2 * 790 + 350, "")))
    assert unavailable["code"] == "item_unavailable" and "Chicken Karaage" in unavailable["message"]
    assert (await ref.ask(GetCart()))["items"] == [
        {**line, "unavailable": True} if line["menu_item_id"] == "karaage" else line for line in before["items"]
    ]
    assert (await ref.ask(GetCart()))["revision"] == before["revision"]
    assert pos.orders == [] and await world.store.list_group_orders(a.group_id) == []
    assert not sink.of_type("cart_locked")
    await world.menu.set_availability("karaage", True)
    ok = await ref.ask(Command(a.member_id, sink, PlaceOrder("6", 2 * 790 + 350, "")))
    assert ok["type"] == "ack" and ok["order_id"] == "ORD-1-1"  # the refusals used no order number


async def test_a_refused_order_unlocks_the_lines_for_a_retry_with_a_new_order(world: Any) -> None:
    pos = RecordingPos([Rejected("card declined")])
    directory = world.make(pos)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(add(a, sink, "1", "miso", 2))
    first = await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    await settle()
    failed = sink.of_type("order_failed")
    assert failed == [
        {
            "type": "order_failed",
            "order_id": first["order_id"],
            "error": "card declined",
            "message": failed[0]["message"],
            "allow_retry": True,
        }
    ]
    cart = await ref.ask(GetCart())
    assert not cart["cart_locked"] and cart["order_processing_status"] == "failed" and cart["pending_order_id"] is None
    assert [line["state"] for line in cart["items"]] == ["pending"]
    record = await world.store.get_order(first["order_id"])
    assert record is not None and record.status == OrderStatus.FAILED and record.error == "card declined"
    assert (await world.store.load_group(a.group_id)).state["last_error"] == "card declined"  # kept with the group
    assert sink.of_type("cart_updated")[-1]["cart"] == cart
    # Adding a line after a failure makes the cart idle again; the retry is a new order.
    await ref.ask(add(a, sink, "3", "gyoza"))
    assert (await ref.ask(GetCart()))["order_processing_status"] == "idle"
    second = await ref.ask(Command(a.member_id, sink, PlaceOrder("4", None, "")))
    assert second["order_id"] != first["order_id"]
    assert (await world.store.load_group(a.group_id)).state["last_error"] is None  # a new attempt
    await settle()
    assert sink.of_type("order_confirmed")[-1]["order_id"] == second["order_id"]
    assert [o.total for o in pos.orders] == [700, 700 + 680]


async def test_an_unresolved_order_stays_locked_and_a_retry_resumes_it(world: Any) -> None:
    pos = RecordingPos([Unknown("timeout")] * 4)
    directory = world.make(pos)
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await ref.ask(add(a, sink_a, "1", "miso"))
    placed = await ref.ask(Command(a.member_id, sink_a, PlaceOrder("2", None, "")))
    for _ in range(4):
        await world.clock.advance(10)
        await settle()
    failed = sink_b.of_type("order_failed")[-1]
    assert failed["order_id"] == placed["order_id"] and failed["error"] == "pos_unreachable" and failed["allow_retry"]
    cart = await ref.ask(GetCart())
    assert cart["cart_locked"] and cart["order_processing_status"] == "failed"
    assert (await ref.ask(add(a, sink_a, "3", "miso")))["code"] == "cart_locked"
    # The unresolved intent is stored: a restart resumes it too.
    stored = (await world.store.load_group(a.group_id)).state
    assert stored["pending"]["unresolved"] is True and stored["last_error"] == "timeout"
    revision = cart["revision"]
    resumed = await ref.ask(Command(b.member_id, sink_b, PlaceOrder("4", None, "")))
    assert resumed == {"type": "ack", "id": "4", "revision": revision + 1, "order_id": placed["order_id"]}
    assert sink_a.of_type("cart_locked")[-1]["order_id"] == placed["order_id"]
    processing = sink_a.of_type("cart_updated")[-1]["cart"]
    assert processing["order_processing_status"] == "processing" and processing["revision"] == revision + 1
    # Resuming starts with a lookup; meanwhile a second retry finds the order in progress.
    assert (await ref.ask(Command(a.member_id, sink_a, PlaceOrder("5", None, ""))))["code"] == "order_in_progress"
    await settle()
    assert sink_a.of_type("order_confirmed")[-1]["order_id"] == placed["order_id"]
    assert len(pos.tickets) == 1 and {o.order_id for o in pos.orders} == {placed["order_id"]}
    assert (await ref.ask(Command(b.member_id, sink_b, PlaceOrder("4", None, "")))) == resumed  # a resend


async def test_after_a_restart_an_unresolved_order_is_resumed_once(world: Any) -> None:
    """A restart resumes the open intent by itself; a guest's retry meanwhile finds it in progress and does
    not start a second POS call."""
    directory = world.make(RecordingPos([Unknown("timeout")] * 4))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(add(a, sink, "1", "miso"))
    placed = await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    for _ in range(4):
        await world.clock.advance(10)
        await settle()
    assert sink.of_type("order_failed")[-1]["error"] == "pos_unreachable"
    await directory.stop_all()

    class SlowLookup(RecordingPos):
        def __init__(self) -> None:
            super().__init__([])
            self.lookups = 0
            self.gate = asyncio.Event()

        async def lookup(self, order_id: str, timeout: float) -> LookupResult:
            self.lookups += 1
            await self.gate.wait()
            return await super().lookup(order_id, timeout)

    pos = SlowLookup()
    directory = world.make(pos)
    ref, sink = await connect(directory, a)
    await settle()
    assert pos.lookups == 1  # the restart resumed it: lookup first
    retry = await ref.ask(Command(a.member_id, sink, PlaceOrder("3", None, "")))
    assert retry["code"] == "order_in_progress"
    pos.gate.set()
    await settle()
    assert sink.of_type("order_confirmed")[-1]["order_id"] == placed["order_id"]
    assert pos.lookups == 1 and [o.order_id for o in pos.orders] == [placed["order_id"]]


async def test_a_pos_adapter_bug_still_settles_the_order(world: Any) -> None:
    class BrokenLookup(RecordingPos):
        async def lookup(self, order_id: str, timeout: float) -> LookupResult:
            return None  # type: ignore[return-value]

    pos = BrokenLookup([Unknown("timeout")])
    directory = world.make(pos)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(add(a, sink, "1", "miso"))
    placed = await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    await settle()
    await world.clock.advance(2)  # the backoff before the lookup
    await settle()
    failed = sink.of_type("order_failed")[-1]
    assert failed["order_id"] == placed["order_id"] and failed["error"] == "pos_unreachable"
    assert (await ref.ask(GetCart()))["cart_locked"]
    # What went wrong is kept with the group for staff and the logs, not an empty reason.
    stored = (await world.store.load_group(a.group_id)).state
    assert stored["last_error"].startswith("adapter error: ") and stored["pending"]["unresolved"] is True


async def test_a_late_pos_answer_for_another_order_changes_nothing(world: Any) -> None:
    directory = world.make(ScriptedPos([]))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(add(a, sink, "1", "miso"))
    before = await ref.ask(GetCart())
    count = len(sink.messages)
    await ref.ask(PosResult("ORD-1-99", Accepted("T-99")))
    await ref.ask(PosResult("ORD-1-98", Rejected("no")))
    assert await ref.ask(GetCart()) == before and len(sink.messages) == count
    assert await world.store.get_order("ORD-1-99") is None


async def test_order_numbers_continue_the_counter_with_no_gap_across_a_restart(world: Any) -> None:
    """Numbers are taken at intent commit: they follow the restaurant's counter, and a new activation (a
    restart, another node) goes on at the next number; nothing is reserved in blocks and skipped."""
    await world.store.next_order_number(1, 5)  # numbers 1..5 are gone (taken before)
    directory = world.make(ScriptedPos([]))
    a = await world.join()
    ref, sink = await connect(directory, a)
    ids = []
    for i in range(3):
        await ref.ask(add(a, sink, f"a{i}", "miso"))
        ids.append((await ref.ask(Command(a.member_id, sink, PlaceOrder(f"p{i}", None, ""))))["order_id"])
        await settle()
    assert ids == ["ORD-1-6", "ORD-1-7", "ORD-1-8"]
    await directory.stop_all()
    again = world.make(ScriptedPos([]))
    ref, sink = await connect(again, a)
    await ref.ask(add(a, sink, "b", "miso"))
    answer = await ref.ask(Command(a.member_id, sink, PlaceOrder("p-after", None, "")))
    assert answer["order_id"] == "ORD-1-9"
    await settle()
    assert [o.order_number for o in await world.store.list_group_orders(a.group_id)] == [6, 7, 8, 9]
    await again.stop_all()


# -- staff, kitchen and menu messages ----------------------------------------------------------------------


async def test_menu_changes_are_broadcast_only_to_tables_that_have_the_item(world: Any) -> None:
    directory = world.make(dummy(world))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(add(a, sink, "1", "miso"))
    count = len(sink.of_type("cart_updated"))
    await world.menu.set_availability("gyoza", False)
    await ref.ask(MenuChanged(("gyoza", "edamame")))
    assert len(sink.of_type("cart_updated")) == count
    await world.menu.set_availability("miso", False)
    await ref.ask(MenuChanged(("gyoza", "miso")))
    updated = sink.of_type("cart_updated")
    assert len(updated) == count + 1 and updated[-1]["cart"]["items"][0]["unavailable"] is True


async def test_kitchen_progress_is_told_to_every_member(world: Any) -> None:
    directory = world.make(dummy(world))
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await ref.ask(KitchenStatusChanged("ORD-1-3", "preparing"))
    for sink in (sink_a, sink_b):
        assert sink.of_type("order_status") == [{"type": "order_status", "order_id": "ORD-1-3", "status": "preparing"}]


# -- directory -------------------------------------------------------------------------------------------


async def test_the_directory_hands_out_one_live_actor_per_group(world: Any) -> None:
    directory = world.make(dummy(world), idle_seconds=10)
    a = await world.join()
    other = await world.join("T002")
    assert directory.find(a.group_id) is None and directory.active_count == 0
    assert directory.tell_if_active(a.group_id, GetCart()) is False
    ref = directory.ref_for(a.group_id, a.table_id, a.restaurant_id)
    assert directory.ref_for(a.group_id, a.table_id, a.restaurant_id) is ref
    assert directory.find(a.group_id) is ref and directory.active_count == 1
    ref_other, sink_other = await connect(directory, other)
    _, sink = await connect(directory, a)
    assert directory.active_count == 2
    assert directory.tell_if_active(a.group_id, KitchenStatusChanged("ORD-1-1", "ready")) is True
    directory.broadcast_to_all(KitchenStatusChanged("ORD-1-2", "served"))
    await ref.ask(GetCart())
    await ref_other.ask(GetCart())
    assert [m["order_id"] for m in sink.of_type("order_status")] == ["ORD-1-1", "ORD-1-2"]
    assert [m["order_id"] for m in sink_other.of_type("order_status")] == ["ORD-1-2"]
    # A stopped actor is forgotten; the next use activates a new one from storage.
    await ref_other.ask(Disconnect(other.member_id, sink_other))
    await world.clock.advance(11)
    assert await stopped(ref_other) == StopReason.IDLE
    assert directory.find(other.group_id) is None and directory.active_count == 1
    assert directory.tell_if_active(other.group_id, GetCart()) is False
    directory.broadcast_to_all(KitchenStatusChanged("ORD-1-3", "served"))  # skips the stopped one
    again = directory.ref_for(other.group_id, other.table_id, other.restaurant_id)
    assert again is not ref_other and again.alive and directory.active_count == 2
    await directory.stop_all(StopReason.SHUTDOWN)
    assert not ref.alive and not again.alive and directory.active_count == 0
    assert await ref.wait_stopped() == StopReason.SHUTDOWN


async def test_the_directory_lets_go_of_stopped_actors(world: Any) -> None:
    """A long-running node activates thousands of groups: a stopped actor must not stay in memory."""
    import gc

    from tableside.actors.table import TableActor

    def actors_of(group_id: str) -> list[TableActor]:
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, TableActor) and o.group_id == group_id]

    directory = world.make(dummy(world))
    a = await world.join()
    ref = directory.ref_for(a.group_id, a.table_id, a.restaurant_id)
    await ref.ask(GetCart())
    assert len(actors_of(a.group_id)) == 1
    await directory.stop_all()
    assert await ref.wait_stopped() == StopReason.SHUTDOWN
    del ref
    await settle()
    assert actors_of(a.group_id) == []
