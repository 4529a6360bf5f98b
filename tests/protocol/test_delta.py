"""v2 cart deltas: the pure diff/apply pair, and the dual frame that carries both forms of a cart change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tableside.actors.cart import CartLine, GroupState, LineState
from tableside.protocol import (
    JsonCodec,
    JsonV2Codec,
    Limits,
    MsgpackCodec,
    MsgpackV2Codec,
    OutboundFrame,
    codec_for_subprotocol,
    wants_deltas,
)
from tableside.protocol import server_messages as sm
from tableside.protocol.delta import apply_delta, cart_delta

LIMITS = Limits()


def line(n: int, qty: int = 1, **extra: Any) -> dict[str, Any]:
    out = {"line_id": f"L{n}", "menu_item_id": f"m{n % 4}", "name": f"Item {n % 4}", "qty": qty,
           "unit_price": 100 * (n % 4 + 1), "note": "", "state": "pending", "added_by": "u1"}
    out.update(extra)
    return out


def cart(items: list[dict[str, Any]], revision: int = 1, **summary: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"items": items, "total": sum(i["qty"] * i["unit_price"] for i in items),
                           "cart_locked": False, "pending_order_id": None, "order_processing_status": "idle",
                           "locked_by_member": None, "revision": revision, "last_updated": "2026-01-01T00:00:00Z"}
    out.update(summary)
    return out


def test_a_delta_names_added_changed_removed_lines_and_the_totals() -> None:
    before = cart([line(1), line(2), line(3)], revision=4)
    after = cart([line(1), line(3, qty=5), line(4)], revision=5, cart_locked=True)
    delta = cart_delta(before, after)
    assert delta["added"] == [line(4)]
    assert delta["changed"] == [line(3, qty=5)]
    assert delta["removed"] == ["L2"]
    assert delta["totals"] == {k: v for k, v in after.items() if k != "items"}
    assert apply_delta(before, delta) == after
    assert before == cart([line(1), line(2), line(3)], revision=4)  # not modified


def test_a_key_that_goes_away_goes_away() -> None:
    before = cart([line(1, unavailable=True)])
    after = cart([line(1)])
    delta = cart_delta(before, after)
    assert delta["changed"] == [line(1)]
    assert "unavailable" not in apply_delta(before, delta)["items"][0]


def test_no_change_is_an_empty_delta() -> None:
    c = cart([line(1), line(2)])
    delta = cart_delta(c, c)
    assert delta["added"] == delta["changed"] == delta["removed"] == []
    assert apply_delta(c, delta) == c


@st.composite
def cart_pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two carts of one table's history: b keeps some of a's lines (some changed), drops others and adds
    new lines at the end (line numbers only grow, as in ``TableActor._new_line``)."""
    n = draw(st.integers(0, 12))
    a_lines = [line(i, qty=draw(st.integers(1, 99)), note=draw(st.sampled_from(["", "no onion"])),
                    state=draw(st.sampled_from(["pending", "locked"])))
               for i in sorted(draw(st.sets(st.integers(1, 40), min_size=n, max_size=n)))]
    for item in a_lines:
        if draw(st.booleans()):
            item["unavailable"] = True
    b_lines: list[dict[str, Any]] = []
    for item in a_lines:
        fate = draw(st.sampled_from(["keep", "change", "drop"]))
        if fate == "keep":
            b_lines.append(dict(item))
        elif fate == "change":
            changed = dict(item, qty=draw(st.integers(1, 99)), state=draw(st.sampled_from(["pending", "locked"])))
            if draw(st.booleans()):
                changed.pop("unavailable", None)
            b_lines.append(changed)
    first_new = max([int(i["line_id"][1:]) for i in a_lines], default=0) + 1
    for k in range(draw(st.integers(0, 5))):
        b_lines.append(line(first_new + k, qty=draw(st.integers(1, 99))))
    a_rev = draw(st.integers(0, 1000))
    a = cart(a_lines, revision=a_rev)
    b = cart(b_lines, revision=a_rev + draw(st.integers(0, 5)), cart_locked=draw(st.booleans()),
             order_processing_status=draw(st.sampled_from(["idle", "processing", "confirmed", "failed"])),
             last_updated=draw(st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"])))
    return a, b


@settings(max_examples=300, deadline=None)
@given(cart_pairs())
def test_apply_of_the_delta_rebuilds_the_cart(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = pair
    delta = cart_delta(a, b)
    assert apply_delta(a, delta) == b
    # Both codecs carry the delta message unchanged.
    msg = sm.cart_delta(b["revision"], a["revision"], delta)
    for codec in (JsonV2Codec(LIMITS), MsgpackV2Codec(LIMITS)):
        assert codec.decode(codec.encode(msg)) == msg


def test_deltas_of_real_group_states() -> None:
    state = GroupState(revision=3)
    for n in range(1, 6):
        state.lines[f"L{n}"] = CartLine(f"L{n}", "gyoza", "Gyoza", n, 680, "", "m1")
    before = state.view()
    state.lines["L2"].qty = 9
    del state.lines["L4"]
    state.lines["L6"] = CartLine("L6", "miso", "Miso", 1, 350, "", "m2")
    state.lines["L1"].state = LineState.LOCKED
    state.revision = 4
    after = state.view(frozenset({"miso"}))
    delta = cart_delta(before, after)
    assert [x["line_id"] for x in delta["changed"]] == ["L1", "L2"]
    assert delta["removed"] == ["L4"] and [x["line_id"] for x in delta["added"]] == ["L6"]
    assert apply_delta(before, delta) == after


class CountingCodec:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.subprotocol = inner.subprotocol
        self.binary = inner.binary
        self.deltas = inner.deltas
        self.encodes = 0

    def decode(self, frame: str | bytes) -> Any:
        return self.inner.decode(frame)

    def encode(self, message: Mapping[str, Any]) -> str | bytes:
        self.encodes += 1
        encoded: str | bytes = self.inner.encode(message)
        return encoded


def test_v2_codecs_are_v1_codecs_that_want_deltas() -> None:
    assert isinstance(codec_for_subprotocol("tableside.v2.json", LIMITS), JsonV2Codec)
    assert isinstance(codec_for_subprotocol("tableside.v2.msgpack", LIMITS), MsgpackV2Codec)
    assert [wants_deltas(codec_for_subprotocol(p, LIMITS)) for p in
            ("tableside.v1.json", "tableside.v1.msgpack", "tableside.v2.json", "tableside.v2.msgpack", None)] == [
        False, False, True, True, False]
    assert codec_for_subprotocol("tableside.v2.msgpack", LIMITS).binary


def test_one_broadcast_frame_encodes_each_form_once_per_codec() -> None:
    before = cart([line(1), line(2)], revision=1)
    after = cart([line(1, qty=3)], revision=2)
    full = sm.cart_updated(after)
    frame = OutboundFrame(full, sm.cart_delta(2, 1, cart_delta(before, after)))
    codecs = [CountingCodec(c) for c in (JsonCodec(LIMITS), MsgpackCodec(LIMITS), JsonV2Codec(LIMITS),
                                         MsgpackV2Codec(LIMITS))]
    sent = {c.subprotocol: [frame.wire(c) for _ in range(20)] for c in codecs * 3}
    assert [c.encodes for c in codecs] == [1, 1, 1, 1]
    assert all(len({id(x) for x in frames}) == 1 for frames in sent.values())
    # v1 sockets get exactly the bytes a plain cart_updated frame of that cart gets (byte-compatible).
    for v1 in (JsonCodec(LIMITS), MsgpackCodec(LIMITS)):
        assert frame.encoded(v1) == v1.encode(sm.cart_updated(after))
        assert frame.wire(v1) == OutboundFrame(sm.cart_updated(after)).wire(v1)
    v2 = JsonV2Codec(LIMITS)
    decoded = v2.decode(frame.encoded(v2))
    assert decoded["type"] == "cart_delta" and decoded["revision"] == 2 and decoded["base_revision"] == 1
    assert apply_delta(before, decoded["changes"]) == after


def test_a_frame_without_a_delta_is_the_same_for_v1_and_v2() -> None:
    frame = OutboundFrame(sm.member_left("u1", []))
    v1, v2 = CountingCodec(JsonCodec(LIMITS)), CountingCodec(JsonV2Codec(LIMITS))
    assert frame.encoded(v1) is frame.encoded(v2)
    assert v1.encodes + v2.encodes == 1
