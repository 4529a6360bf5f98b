from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tableside.protocol import (
    ErrorCode,
    JsonCodec,
    Limits,
    MsgpackCodec,
    ProtocolError,
    ack,
    cart_locked,
    cart_updated,
    error,
    error_from,
    kitchen_snapshot,
    member_joined,
    member_left,
    order_confirmed,
    order_failed,
    order_placed,
    order_status,
    pong,
    session_closed,
    snapshot,
    welcome,
)

LIMITS = Limits()
CART = {
    "revision": 4,
    "lines": [{"line_id": "l1", "menu_item_id": "burger", "qty": 2, "price": 950}],
    "total": 1900,
}
MEMBERS = [{"member_id": "m1", "name": "Ana"}, {"member_id": "m2", "name": "Bo"}]
ITEMS = [{"name": "Burger", "qty": 2, "price": 950}]

# Built inside the tests (thunks), so coverage-based test selection (mutmut) sees which test calls what.
BUILT: list[tuple[Callable[[], dict[str, Any]], str, list[str]]] = [
    (
        lambda: welcome("m1", "t1", "g1", MEMBERS, CART),
        "welcome",
        ["member_id", "table_id", "group_id", "members", "cart"],
    ),
    (lambda: ack("r1", 5), "ack", ["id", "revision"]),
    (lambda: ack("r1", 5, line_id="l9"), "ack", ["id", "revision", "line_id"]),
    (lambda: ack(None, 5), "ack", ["revision"]),
    (lambda: error("r1", ErrorCode.UNKNOWN_ITEM, "no such item"), "error", ["id", "code", "message"]),
    (lambda: error(None, "internal", "oops"), "error", ["code", "message"]),
    (lambda: pong("r1"), "pong", ["id"]),
    (lambda: pong(None), "pong", []),
    (lambda: snapshot("r1", CART), "snapshot", ["id", "cart"]),
    (lambda: snapshot(None, CART), "snapshot", ["cart"]),
    (lambda: cart_updated(CART), "cart_updated", ["cart"]),
    (lambda: member_joined("m2", MEMBERS), "member_joined", ["member_id", "members"]),
    (lambda: member_left("m2", MEMBERS[:1]), "member_left", ["member_id", "members"]),
    (
        lambda: cart_locked("m1", "o1", "Ana is placing the order", "2024-01-15T10:30:00Z"),
        "cart_locked",
        ["locked_by_member", "order_id", "message", "timestamp"],
    ),
    (
        lambda: order_confirmed("o1", 42, "Order sent to the kitchen", 1900, ITEMS),
        "order_confirmed",
        ["order_id", "order_number", "message", "total", "items"],
    ),
    (
        lambda: order_failed("o1", "pos_unavailable", "Try again", True),
        "order_failed",
        ["order_id", "error", "message", "allow_retry"],
    ),
    (lambda: session_closed("paid"), "session_closed", ["reason"]),
    (lambda: order_status("o1", "ready"), "order_status", ["order_id", "status"]),
    (lambda: kitchen_snapshot([{"order_id": "o1"}], 17), "kitchen_snapshot", ["tickets", "cursor"]),
    (
        lambda: order_placed("o1", 42, "t1", ITEMS, "", 1700000000.5, 17),
        "order_placed",
        ["order_id", "order_number", "table_id", "items", "special_instructions", "placed_at", "seq"],
    ),
]


@pytest.mark.parametrize("build, msg_type, keys", BUILT, ids=[f"{b[1]}-{i}" for i, b in enumerate(BUILT)])
def test_builder_shape(build: Callable[[], dict[str, Any]], msg_type: str, keys: list[str]) -> None:
    message = build()
    assert list(message) == ["type", *keys]
    assert message["type"] == msg_type


@pytest.mark.parametrize("codec", [JsonCodec(LIMITS), MsgpackCodec(LIMITS)], ids=["json", "msgpack"])
@pytest.mark.parametrize("build", [b[0] for b in BUILT], ids=[b[1] for b in BUILT])
def test_builder_round_trip(codec: Any, build: Callable[[], dict[str, Any]]) -> None:
    message = build()
    assert codec.decode(codec.encode(message)) == message


def test_builders_copy_containers() -> None:
    cart = dict(CART)
    members = tuple(MEMBERS)
    msg = welcome("m1", "t1", "g1", members, cart)
    cart["total"] = 0
    assert msg["cart"]["total"] == 1900
    assert isinstance(msg["members"], list)


def test_error_values() -> None:
    msg = error("r", ErrorCode.CART_LOCKED, "locked")
    assert msg["code"] == "cart_locked" and type(msg["code"]) is str
    exc = ProtocolError(ErrorCode.BAD_REQUEST, "qty must be an integer", request_id="r7")
    assert error_from(exc) == {
        "type": "error",
        "id": "r7",
        "code": "bad_request",
        "message": "qty must be an integer",
    }


def test_ack_extras_cannot_override_envelope() -> None:
    with pytest.raises(ValueError, match="^ack extras may not override 'type' or 'id'$"):
        ack("r", 1, type="evil")
    with pytest.raises(ValueError, match="^ack extras may not override 'type' or 'id'$"):
        ack("r", 1, id="evil")


# The wire contract of docs/protocol.md ("Server → client") and docs/staff-kitchen-api.md (kitchen screens):
# every builder puts each argument under its documented key, unchanged.
EXPECTED: list[tuple[Callable[[], dict[str, Any]], dict[str, Any]]] = [
    (
        lambda: welcome("m1", "t1", "g1", MEMBERS, CART),
        {
            "type": "welcome",
            "member_id": "m1",
            "table_id": "t1",
            "group_id": "g1",
            "members": MEMBERS,
            "cart": CART,
        },
    ),
    (lambda: ack("r1", 5), {"type": "ack", "id": "r1", "revision": 5}),
    (lambda: ack(None, 0), {"type": "ack", "revision": 0}),
    (
        lambda: ack("r2", 4, order_id="ORD-1-7"),
        {"type": "ack", "id": "r2", "revision": 4, "order_id": "ORD-1-7"},
    ),
    (lambda: ack("k1", 17, status="ready"), {"type": "ack", "id": "k1", "revision": 17, "status": "ready"}),
    (
        lambda: error("r1", ErrorCode.UNKNOWN_ITEM, "no such item"),
        {"type": "error", "id": "r1", "code": "unknown_item", "message": "no such item"},
    ),
    (lambda: error(None, "internal", "oops"), {"type": "error", "code": "internal", "message": "oops"}),
    (lambda: pong("r1"), {"type": "pong", "id": "r1"}),
    (lambda: pong(None), {"type": "pong"}),
    (lambda: snapshot("r1", CART), {"type": "snapshot", "id": "r1", "cart": CART}),
    (lambda: snapshot(None, CART), {"type": "snapshot", "cart": CART}),
    (lambda: cart_updated(CART), {"type": "cart_updated", "cart": CART}),
    (lambda: member_joined("m2", MEMBERS), {"type": "member_joined", "member_id": "m2", "members": MEMBERS}),
    (
        lambda: member_left("m2", MEMBERS[:1]),
        {"type": "member_left", "member_id": "m2", "members": MEMBERS[:1]},
    ),
    (
        lambda: cart_locked("m1", "o1", "Order being processed by Guest 1", "2026-11-24T18:30:00.123Z"),
        {
            "type": "cart_locked",
            "locked_by_member": "m1",
            "order_id": "o1",
            "message": "Order being processed by Guest 1",
            "timestamp": "2026-11-24T18:30:00.123Z",
        },
    ),
    (
        lambda: order_confirmed("o1", 7, "Order placed successfully!", 1360, ITEMS),
        {
            "type": "order_confirmed",
            "order_id": "o1",
            "order_number": 7,
            "message": "Order placed successfully!",
            "total": 1360,
            "items": ITEMS,
        },
    ),
    (
        lambda: order_failed("o1", "pos_unreachable", "Try again", True),
        {
            "type": "order_failed",
            "order_id": "o1",
            "error": "pos_unreachable",
            "message": "Try again",
            "allow_retry": True,
        },
    ),
    (
        lambda: order_failed("o2", "pos_refused", "Refused", False),
        {
            "type": "order_failed",
            "order_id": "o2",
            "error": "pos_refused",
            "message": "Refused",
            "allow_retry": False,
        },
    ),
    (lambda: session_closed("checked_out"), {"type": "session_closed", "reason": "checked_out"}),
    (
        lambda: order_status("o1", "preparing"),
        {"type": "order_status", "order_id": "o1", "status": "preparing"},
    ),
    (
        lambda: kitchen_snapshot([{"order_id": "o1"}], 17),
        {"type": "kitchen_snapshot", "tickets": [{"order_id": "o1"}], "cursor": 17},
    ),
    (lambda: kitchen_snapshot([], None), {"type": "kitchen_snapshot", "tickets": [], "cursor": None}),
    (
        lambda: order_placed("o1", 42, "t1", ITEMS, "no nuts", 1700000000.5, 17),
        {
            "type": "order_placed",
            "order_id": "o1",
            "order_number": 42,
            "table_id": "t1",
            "items": ITEMS,
            "special_instructions": "no nuts",
            "placed_at": 1700000000.5,
            "seq": 17,
        },
    ),
]


@pytest.mark.parametrize(
    "build, expected", EXPECTED, ids=[f"{e[1]['type']}-{i}" for i, e in enumerate(EXPECTED)]
)
def test_builder_puts_each_argument_under_its_documented_key(
    build: Callable[[], dict[str, Any]], expected: dict[str, Any]
) -> None:
    message = build()
    assert message == expected
    assert list(message)[0] == "type"
