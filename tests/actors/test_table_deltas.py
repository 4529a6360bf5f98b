"""The table actor's cart broadcasts carry both forms (issue 14): v1 sockets get exactly the
``cart_updated`` bytes of today, v2 sockets a ``cart_delta`` from the cart broadcast before, from one frame."""

from __future__ import annotations

from typing import Any

from tableside.actors.messages import Command, Connect, GetCart, MenuChanged
from tableside.protocol import (
    AddItem,
    Codec,
    JsonCodec,
    JsonV2Codec,
    Limits,
    MsgpackCodec,
    MsgpackV2Codec,
    OutboundFrame,
    PlaceOrder,
    RemoveItem,
    UpdateItem,
)
from tableside.protocol import server_messages as sm
from tableside.protocol.delta import apply_delta
from tests.actors import test_table_actor as base
from tests.actors.test_table_actor import settle
from tests.actors.test_table_stops_and_limits import dummy

world = base.world  # the same fixture
LIMITS = Limits()


class FrameSink:
    """Keeps every frame and the bytes its socket would write."""

    _ids = 10_000

    def __init__(self, codec: Codec) -> None:
        FrameSink._ids += 1
        self.connection_id = FrameSink._ids
        self.codec = codec
        self.frames: list[OutboundFrame] = []
        self.wire: list[bytes] = []
        self.messages: list[dict[str, Any]] = []

    def send(self, frame: OutboundFrame) -> None:
        self.frames.append(frame)
        self.wire.append(frame.wire(self.codec))
        self.messages.append(self.codec.decode(frame.encoded(self.codec)))

    def close(self, code: int, reason: str) -> None:
        pass

    def of_type(self, t: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == t]


async def test_one_frame_per_cart_broadcast_v1_bytes_unchanged_v2_deltas_rebuild_the_cart(world: Any) -> None:
    directory = world.make(dummy(world))
    j1, j2 = await world.join(), await world.join()
    ref = directory.ref_for(j1.group_id, j1.table_id, j1.restaurant_id)
    sinks = {name: FrameSink(codec) for name, codec in (("json", JsonCodec(LIMITS)), ("msgpack", MsgpackCodec(LIMITS)),
                                                        ("json2", JsonV2Codec(LIMITS)), ("msgpack2", MsgpackV2Codec(LIMITS)))}
    for sink in sinks.values():
        assert await ref.ask(Connect(j1.member_id, sink)) is True
    # j2's first connection commits (the member list) without a cart broadcast: the sockets above still
    # hold the base of the next delta. (One connected after it would see its first delta as a gap.)
    assert await ref.ask(Connect(j2.member_id, FrameSink(JsonCodec(LIMITS)))) is True
    await ref.ask(Command(j1.member_id, None, AddItem("a1", "gyoza", 2)))
    await ref.ask(Command(j2.member_id, None, AddItem("a2", "miso", 1, "no tofu")))
    await ref.ask(Command(j1.member_id, None, AddItem("a3", "edamame", 1)))
    await ref.ask(Command(j2.member_id, None, UpdateItem("a4", "L1", 5)))
    await ref.ask(Command(j1.member_id, None, RemoveItem("a5", "L3")))
    await world.menu.set_availability("miso", False)
    await ref.ask(MenuChanged(("miso",)))  # a cart change without a commit: revision == base_revision
    await world.menu.set_availability("miso", True)
    await ref.ask(MenuChanged(("miso",)))
    await ref.ask(Command(j1.member_id, None, PlaceOrder("a6", None, "")))
    for _ in range(5):
        await settle()
    final = await ref.ask(GetCart())

    v1_count = len(sinks["json"].of_type("cart_updated"))
    assert v1_count >= 8
    for name in ("json", "msgpack"):
        sink = sinks[name]
        assert sink.of_type("cart_delta") == []
        for frame, data, msg in zip(sink.frames, sink.wire, sink.messages, strict=True):
            if msg["type"] == "cart_updated":
                # The v1 bytes of a broadcast are the bytes of a plain cart_updated of that cart.
                assert data == OutboundFrame(sm.cart_updated(msg["cart"])).wire(sink.codec)
                assert sink.codec.encode(sm.cart_updated(msg["cart"])) == frame.encoded(sink.codec)
        assert sink.of_type("cart_updated")[-1]["cart"] == final
    for name in ("json2", "msgpack2"):
        sink = sinks[name]
        assert sink.of_type("cart_updated") == []
        assert len(sink.of_type("cart_delta")) == v1_count
        cart = None
        for msg in sink.messages:
            if msg["type"] == "welcome":
                cart = msg["cart"]
            elif msg["type"] == "cart_delta":
                assert cart is not None and msg["base_revision"] == cart["revision"], (msg, cart)
                cart = apply_delta(cart, msg["changes"])
                assert cart["revision"] == msg["revision"]
        assert cart == final
        assert any(m["revision"] == m["base_revision"] for m in sink.of_type("cart_delta"))
    # Every cart broadcast is one frame object shared by all four sockets.
    shared = [f for f in sinks["json"].frames if f.message["type"] == "cart_updated"]
    for name in ("msgpack", "json2", "msgpack2"):
        assert [f for f in sinks[name].frames if f.v2 is not None] == shared
    assert all(f.v2 is not None for f in shared)
