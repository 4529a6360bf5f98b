"""TableActor with the in-memory store, a fake clock and the dummy POS: no network, no real sleeps."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tableside.actors.base import StopReason
from tableside.actors.directory import ActorDirectory
from tableside.actors.messages import CloseSession, Command, Connect, Disconnect, GetCart
from tableside.actors.table import TableContext
from tableside.clock import FakeClock
from tableside.demo import seed_demo
from tableside.menu import MenuCatalog
from tableside.pos.dummy import DummyPosAdapter
from tableside.pos.interface import Accepted, LookupResult, PosOrder, PosOutcome, Unknown
from tableside.pos.submitter import RetryPolicy
from tableside.protocol import AddItem, JsonCodec, Limits, OutboundFrame, PlaceOrder, RemoveItem, UpdateItem
from tableside.storage.committer import GroupCommitter
from tableside.storage.interface import OrderStatus
from tableside.storage.memory import MemoryStore


class FakeSink:
    _ids = 0

    def __init__(self) -> None:
        FakeSink._ids += 1
        self.connection_id = FakeSink._ids
        self.codec = JsonCodec(Limits())
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, frame: OutboundFrame) -> None:
        import json

        message = json.loads(frame.encoded(self.codec))
        if message["type"] in ("error", "cart_locked", "order_confirmed", "order_failed"):
            # docs/protocol.md: these carry a message for the guest
            assert isinstance(message.get("message"), str) and message["message"], message
        self.messages.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of_type(self, t: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == t]


class ScriptedPos:
    """A POS whose answers the test scripts; counts tickets by key like a real idempotent POS."""

    name = "scripted"

    def __init__(self, answers: list[PosOutcome | None]) -> None:
        self.answers = answers
        self.tickets: dict[str, str] = {}
        self.submits = 0

    async def submit(self, order: PosOrder, timeout: float) -> PosOutcome:
        self.submits += 1
        answer = self.answers.pop(0) if self.answers else Accepted("T")
        if isinstance(answer, Accepted):
            self.tickets.setdefault(order.order_id, f"ticket-{order.order_id}")
            return Accepted(self.tickets[order.order_id])
        return answer  # type: ignore[return-value]

    async def lookup(self, order_id: str, timeout: float) -> LookupResult:
        if order_id in self.tickets:
            return LookupResult(True, self.tickets[order_id])
        return LookupResult(False)

    async def close(self) -> None:
        pass


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


@pytest.fixture
async def world() -> Any:
    store = MemoryStore()
    await seed_demo(store, 1, "Demo", 3)
    clock = FakeClock()
    committer = GroupCommitter(store)
    committer.start()
    menu = MenuCatalog(store)
    await menu.load([1])

    class World:
        pass

    w = World()
    w.store, w.clock, w.menu, w.committer = store, clock, menu, committer  # type: ignore[attr-defined]
    w.confirmed = []  # type: ignore[attr-defined]

    def make(pos: Any, **ctx_options: Any) -> ActorDirectory:
        ctx_options.setdefault("commit", committer.commit)
        ctx_options.setdefault("retry", RetryPolicy(10.0, 3, 2.0))
        ctx_options.setdefault("idle_seconds", 60)
        ctx = TableContext(
            store=store,
            menu=menu,
            pos=pos,
            clock=clock,
            on_order_confirmed=w.confirmed.append,  # type: ignore[attr-defined]
            **ctx_options,
        )
        return ActorDirectory(ctx)

    w.make = make  # type: ignore[attr-defined]

    async def join(table_id: str = "T001", ttl: float = 3600, max_members: int | None = None) -> Any:
        table = await store.get_table(table_id)
        assert table is not None
        import secrets

        return await store.join_table(
            table_id, table.qr_secret, secrets.token_hex(8), "m_" + secrets.token_hex(4), "g_" + secrets.token_hex(4),
            clock.now() + ttl, clock.now(), max_members=max_members,
        )

    w.join = join  # type: ignore[attr-defined]
    yield w
    await committer.stop()


async def connect(directory: ActorDirectory, j: Any) -> tuple[Any, FakeSink]:
    ref = directory.ref_for(j.group_id, j.table_id, j.restaurant_id)
    sink = FakeSink()
    assert await ref.ask(Connect(j.member_id, sink)) is True
    return ref, sink


async def test_add_update_remove_broadcast_and_ack(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a, b = await world.join(), await world.join()
    assert a.group_id == b.group_id
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    assert sink_a.of_type("member_joined")[-1]["member_id"] == b.member_id

    await ref.ask(Command(a.member_id, sink_a, AddItem("r1", "gyoza", 2, "extra sauce")))
    ack = sink_a.of_type("ack")[-1]
    assert ack["id"] == "r1"
    cart = sink_b.of_type("cart_updated")[-1]["cart"]
    assert cart["items"][0]["qty"] == 2 and cart["items"][0]["unit_price"] == 680
    assert cart["items"][0]["added_by"] == a.member_id
    assert cart["total"] == 1360 and cart["revision"] == ack["revision"]
    line = cart["items"][0]["line_id"]
    await ref.ask(Command(b.member_id, sink_b, UpdateItem("r2", line, 3)))
    assert sink_a.of_type("cart_updated")[-1]["cart"]["total"] == 2040
    await ref.ask(Command(b.member_id, sink_b, RemoveItem("r3", line)))
    assert sink_a.of_type("cart_updated")[-1]["cart"]["items"] == []
    await ref.ask(Command(b.member_id, sink_b, RemoveItem("r4", line)))
    assert sink_b.of_type("error")[-1]["code"] == "not_found"
    await ref.ask(Command(b.member_id, sink_b, AddItem("r5", "nope", 1, "")))
    assert sink_b.of_type("error")[-1]["code"] == "unknown_item"


async def test_resent_request_id_answers_the_same_and_changes_nothing(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join()
    ref, sink = await connect(directory, a)
    first = await ref.ask(Command(a.member_id, sink, AddItem("same", "miso", 1, "")))
    again = await ref.ask(Command(a.member_id, sink, AddItem("same", "miso", 1, "")))
    assert first == again
    cart = await ref.ask(GetCart())
    assert len(cart["items"]) == 1


async def test_place_order_locks_confirms_and_notifies_kitchen_once(world: Any) -> None:
    pos = DummyPosAdapter(3000, 1.0, clock=world.clock)
    directory = world.make(pos)
    a, b = await world.join(), await world.join()
    ref, sink_a = await connect(directory, a)
    _, sink_b = await connect(directory, b)
    await ref.ask(Command(a.member_id, sink_a, AddItem("1", "ramen-shoyu", 2, "")))
    await ref.ask(Command(b.member_id, sink_b, PlaceOrder("2", 999, "")))
    assert sink_b.of_type("error")[-1]["code"] == "total_mismatch"
    await ref.ask(Command(b.member_id, sink_b, PlaceOrder("3", 2900, "window seat")))
    ack = sink_b.of_type("ack")[-1]
    locked = sink_a.of_type("cart_locked")[-1]
    assert locked["order_id"] == ack["order_id"] == "ORD-1-1"
    assert locked["locked_by_member"] == b.member_id
    # While processing: edits and second orders are refused.
    await ref.ask(Command(a.member_id, sink_a, AddItem("4", "miso", 1, "")))
    assert sink_a.of_type("error")[-1]["code"] == "cart_locked"
    await ref.ask(Command(a.member_id, sink_a, PlaceOrder("5", None, "")))
    assert sink_a.of_type("error")[-1]["code"] == "order_in_progress"
    order = await world.store.get_order("ORD-1-1")
    assert order is not None and order.status == OrderStatus.PROCESSING  # intent durable before POS
    await world.clock.advance(3.0)
    await settle()
    confirmed = [s.of_type("order_confirmed") for s in (sink_a, sink_b)]
    assert confirmed[0] == confirmed[1] and len(confirmed[0]) == 1
    assert confirmed[0][0]["order_id"] == "ORD-1-1" and confirmed[0][0]["total"] == 2900
    assert world.confirmed == [1]
    cart = await ref.ask(GetCart())
    assert cart["items"] == [] and not cart["cart_locked"]
    order = await world.store.get_order("ORD-1-1")
    assert order.status == OrderStatus.CONFIRMED and order.kitchen_seq is not None
    # After the confirmation edits work again.
    await ref.ask(Command(a.member_id, sink_a, AddItem("6", "miso", 1, "")))
    assert sink_a.of_type("ack")[-1]["id"] == "6"


async def test_concurrent_place_orders_give_one_order(world: Any) -> None:
    pos = ScriptedPos([])
    directory = world.make(pos)
    joins = [await world.join() for _ in range(20)]
    sinks = []
    for j in joins:
        ref, sink = await connect(directory, j)
        sinks.append(sink)
    await ref.ask(Command(joins[0].member_id, sinks[0], AddItem("a", "mochi", 1, "")))
    for j, s in zip(joins, sinks, strict=True):
        ref.tell(Command(j.member_id, s, PlaceOrder("po", None, "")))
    await ref.ask(GetCart())
    await settle()
    acks = [m for s in sinks for m in s.of_type("ack") if m["id"] == "po"]
    errors = [m for s in sinks for m in s.of_type("error") if m["id"] == "po"]
    assert len(acks) == 1 and len(errors) == 19
    assert {e["code"] for e in errors} == {"order_in_progress"}
    assert len(pos.tickets) == 1
    ids = {s.of_type("order_confirmed")[0]["order_id"] for s in sinks}
    assert ids == {acks[0]["order_id"]}


async def test_definite_failure_unlocks_for_retry(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 0.0, clock=world.clock, rng=random.Random(1)))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("1", "asahi", 1, "")))
    await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    await world.clock.advance(0.01)
    await settle()
    failed = sink.of_type("order_failed")[-1]
    assert failed["allow_retry"] is True
    cart = await ref.ask(GetCart())
    assert not cart["cart_locked"] and cart["items"][0]["state"] == "pending"
    assert cart["order_processing_status"] == "failed"
    assert (await world.store.get_order(failed["order_id"])).status == OrderStatus.FAILED


async def test_unknown_outcome_retries_same_key_and_guest_retry_resumes(world: Any) -> None:
    # Every submit times out, lookups find nothing: after 1 + 3 attempts the outcome is unknown.
    pos = ScriptedPos([Unknown("timeout")] * 4)
    directory = world.make(pos)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("1", "asahi", 1, "")))
    await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    order_id = sink.of_type("ack")[-1]["order_id"]
    for _ in range(4):
        await world.clock.advance(10)
        await settle()
    assert pos.submits == 4
    assert sink.of_type("order_failed")[-1]["error"] == "pos_unreachable"
    cart = await ref.ask(GetCart())
    assert cart["cart_locked"] and cart["pending_order_id"] == order_id  # intent kept, nothing duplicated
    # The guest retries: the same intent resumes under the same key and this time the POS accepts.
    await ref.ask(Command(a.member_id, sink, PlaceOrder("3", None, "")))
    assert sink.of_type("ack")[-1]["order_id"] == order_id
    await settle()
    assert sink.of_type("order_confirmed")[-1]["order_id"] == order_id
    assert list(pos.tickets) == [order_id]


async def test_restart_recovers_cart_and_resumes_inflight_order(world: Any) -> None:
    pos = ScriptedPos([Unknown("connection lost")])
    directory = world.make(pos)
    a = await world.join()
    ref, sink = await connect(directory, a)
    await ref.ask(Command(a.member_id, sink, AddItem("1", "edamame", 2, "")))
    await ref.ask(Command(a.member_id, sink, PlaceOrder("2", None, "")))
    order_id = sink.of_type("ack")[-1]["order_id"]
    await settle()
    # "Crash": drop the actor without letting it finish, then activate from storage in a new directory.
    await directory.stop_all(StopReason.SHUTDOWN)
    pos2 = ScriptedPos([])
    directory2 = world.make(pos2)
    ref2, sink2 = await connect(directory2, a)
    welcome = sink2.of_type("welcome")[0]
    assert welcome["cart"]["pending_order_id"] == order_id
    await settle()
    assert sink2.of_type("order_confirmed")[-1]["order_id"] == order_id
    assert list(pos2.tickets) == [order_id]
    # The request id acknowledged before the crash still answers the same.
    again = await ref2.ask(Command(a.member_id, sink2, AddItem("1", "edamame", 2, "")))
    assert again["type"] == "ack" and again["revision"] == sink.of_type("ack")[0]["revision"]


async def test_close_session_tells_everyone_and_stops(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join()
    ref, sink = await connect(directory, a)
    await world.store.checkout_table("T001", world.clock.now())
    ref.tell(CloseSession("checked_out"))
    assert await ref.wait_stopped() == StopReason.SESSION_CLOSED
    assert sink.of_type("session_closed")[0]["reason"] == "checked_out"
    assert sink.closed is not None
    # A late activation of the closed group refuses connections.
    ref2, sink2 = directory.ref_for(a.group_id, a.table_id, 1), FakeSink()
    assert await ref2.ask(Connect(a.member_id, sink2)) is False
    assert sink2.of_type("session_closed")


async def test_idle_actor_stops_on_the_fake_clock(world: Any) -> None:
    directory = world.make(DummyPosAdapter(0, 1.0, clock=world.clock))
    a = await world.join()
    ref, sink = await connect(directory, a)
    ref.tell(Disconnect(a.member_id, sink))
    await settle()
    await world.clock.advance(61)
    assert await asyncio.wait_for(ref.wait_stopped(), 1) == StopReason.IDLE
    assert directory.active_count == 0


async def test_a_stale_activation_is_fenced_and_its_members_told_to_reconnect(world: Any) -> None:
    """Two activations of one group (two nodes that both think they own it): the older one's next write is
    refused by the epoch, nothing of it is stored, the fence is counted, and its members are closed with
    the relocation code; the newer one goes on from what was committed."""
    from tableside.actors.table import CLOSE_RELOCATED
    from tableside.metrics import METRICS

    node_a, node_b = world.make(ScriptedPos([]), node_id="a"), world.make(ScriptedPos([]), node_id="b")
    j = await world.join()
    ref_a, sink_a = await connect(node_a, j)
    await ref_a.ask(Command(j.member_id, sink_a, AddItem("1", "miso", 1)))
    ref_b, sink_b = await connect(node_b, j)  # b activates: epoch 2
    fenced = METRICS.fenced_writes._value.get()
    with pytest.raises(Exception, match="fenced"):
        await ref_a.ask(Command(j.member_id, sink_a, AddItem("2", "gyoza", 1)))
    assert await asyncio.wait_for(ref_a.wait_stopped(), 1) == StopReason.STORAGE_CONFLICT
    assert sink_a.closed == (CLOSE_RELOCATED, "reconnect")
    assert METRICS.fenced_writes._value.get() == fenced + 1
    await ref_b.ask(Command(j.member_id, sink_b, AddItem("3", "edamame", 1)))
    snap = await world.store.load_group(j.group_id)
    assert snap is not None
    names = sorted(line["menu_item_id"] for line in snap.state["lines"])
    assert names == ["edamame", "miso"]  # a's refused gyoza is not there
    await node_b.stop_all()
