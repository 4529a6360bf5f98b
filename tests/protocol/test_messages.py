from __future__ import annotations

from typing import Any

import pytest

from tableside.protocol import (
    AddItem,
    ClientMessage,
    ErrorCode,
    GetSnapshot,
    JsonCodec,
    Leave,
    Limits,
    MsgpackCodec,
    Ping,
    PlaceOrder,
    ProtocolError,
    RemoveItem,
    SetKitchenStatus,
    UpdateItem,
    client_message_to_wire,
    decode_and_parse,
    parse_client_message,
    parse_kitchen_message,
    read_client_frame,
    read_kitchen_frame,
)

LIMITS = Limits()
CODECS = [JsonCodec(LIMITS), MsgpackCodec(LIMITS)]

ALL_CLIENT: list[ClientMessage] = [
    AddItem("r1", "burger", 1, ""),
    AddItem(None, "m" * 64, 99, "n" * 200),
    AddItem("x" * 64, "café-☕", 5, "line1\nline2\tok"),
    UpdateItem("r2", "l1", 0),
    UpdateItem(None, "l1", 99),
    RemoveItem("r3", "l1"),
    PlaceOrder("r4", 1850, "birthday 🎂"),
    PlaceOrder("r4", None, ""),
    PlaceOrder(None, 0, "i" * 500),
    PlaceOrder("r", 10**12, ""),
    GetSnapshot("r5"),
    GetSnapshot(None),
    Ping("r6"),
    Ping(None),
    Leave("r7"),
    Leave(None),
]


def _err(obj: Any, parse: Any = parse_client_message) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(obj, LIMITS)
    return info.value


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
# Plain ASCII ids: reprs holding non-ASCII or escapes cannot be selected again by node id (mutmut does).
@pytest.mark.parametrize("msg", ALL_CLIENT, ids=[f"{i}-{type(m).__name__}" for i, m in enumerate(ALL_CLIENT)])
def test_client_round_trip(codec: Any, msg: ClientMessage) -> None:
    frame = codec.encode(client_message_to_wire(msg))
    assert read_client_frame(codec, frame, LIMITS) == msg
    assert decode_and_parse(codec, frame, LIMITS) == msg


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize(
    "msg",
    [SetKitchenStatus("k1", "o-1", s) for s in ("new", "preparing", "ready", "served", "recall")]
    + [Ping("k2")],
)
def test_kitchen_round_trip(codec: Any, msg: SetKitchenStatus | Ping) -> None:
    assert read_kitchen_frame(codec, codec.encode(client_message_to_wire(msg)), LIMITS) == msg


def test_defaults_and_nulls_for_optional_fields() -> None:
    assert parse_client_message({"type": "add_item", "menu_item_id": "m", "qty": 1}, LIMITS) == AddItem(
        None, "m", 1, ""
    )
    with_null_note = {"type": "add_item", "menu_item_id": "m", "qty": 1, "note": None}
    assert parse_client_message(with_null_note, LIMITS) == AddItem(None, "m", 1, "")
    assert parse_client_message({"type": "place_order", "total": None}, LIMITS) == PlaceOrder(None, None, "")


def test_unknown_fields_are_ignored() -> None:
    msg = parse_client_message(
        {
            "type": "place_order",
            "id": "r",
            "total": 100,
            "cart_items": [{"menu_item_id": "m", "price": 0}],
            "future": {"nested": [1, 2.5, None]},
        },
        LIMITS,
    )
    assert msg == PlaceOrder("r", 100, "")


def test_field_errors_name_the_field_and_carry_the_id() -> None:
    exc = _err({"type": "add_item", "id": "r9", "menu_item_id": "m", "qty": True})
    assert exc.code is ErrorCode.BAD_REQUEST and exc.request_id == "r9" and "qty" in exc.message
    assert not exc.fatal
    exc = _err({"type": "update_item", "id": "r9", "line_id": 5, "qty": 1})
    assert "line_id" in exc.message and exc.request_id == "r9"
    exc = _err({"type": "place_order", "special_instructions": "x" * 501})
    assert "special_instructions" in exc.message and exc.request_id is None
    exc = _err({"type": "add_item", "menu_item_id": "m", "qty": 1, "note": "\ud800"})
    assert "note" in exc.message


def test_envelope_errors() -> None:
    assert _err(["ping"]).code is ErrorCode.BAD_REQUEST
    exc = _err({"id": "r"})
    assert exc.code is ErrorCode.BAD_REQUEST and exc.request_id == "r"
    exc = _err({"type": "teleport", "id": "r"})
    assert exc.code is ErrorCode.UNKNOWN_TYPE and exc.request_id == "r"
    exc = _err({"type": "t" * 4000})
    assert exc.code is ErrorCode.UNKNOWN_TYPE and len(exc.message) < 80
    exc = _err({"type": "ping", "id": 7})
    assert exc.code is ErrorCode.BAD_REQUEST and exc.request_id is None


def test_kitchen_parser_is_separate() -> None:
    assert _err({"type": "add_item", "menu_item_id": "m", "qty": 1}, parse_kitchen_message).code is (
        ErrorCode.UNKNOWN_TYPE
    )
    assert _err({"type": "set_status", "order_id": "o"}, parse_client_message).code is ErrorCode.UNKNOWN_TYPE
    exc = _err({"type": "set_status", "id": "k", "order_id": "o", "status": "cooking"}, parse_kitchen_message)
    assert exc.code is ErrorCode.BAD_REQUEST and "status" in exc.message and exc.request_id == "k"
    for bad in ({"order_id": "", "status": "new"}, {"order_id": 1, "status": "new"}, {"status": "new"}):
        assert _err({"type": "set_status", **bad}, parse_kitchen_message).code is ErrorCode.BAD_REQUEST
    assert _err({"type": "set_status", "order_id": "o", "status": True}, parse_kitchen_message).code is (
        ErrorCode.BAD_REQUEST
    )


def test_custom_limits_apply() -> None:
    limits = Limits(max_qty=5, max_note_chars=3)
    with pytest.raises(ProtocolError):
        parse_client_message({"type": "add_item", "menu_item_id": "m", "qty": 6}, limits)
    with pytest.raises(ProtocolError):
        parse_client_message({"type": "add_item", "menu_item_id": "m", "qty": 1, "note": "abcd"}, limits)
    assert parse_client_message({"type": "add_item", "menu_item_id": "m", "qty": 5, "note": "abc"}, limits)


def test_messages_are_frozen() -> None:
    msg = Ping("r")
    with pytest.raises(AttributeError):
        msg.request_id = "other"  # type: ignore[misc]


def test_leave_wire_form() -> None:
    assert client_message_to_wire(Leave("bye")) == {"type": "leave", "id": "bye"}
    assert parse_client_message({"type": "leave", "id": "bye", "future": 1}, LIMITS) == Leave("bye")
    assert parse_client_message({"type": "leave"}, LIMITS) == Leave(None)


@pytest.mark.parametrize("parse", [parse_client_message, parse_kitchen_message], ids=["guest", "kitchen"])
def test_unknown_type_names_the_type_and_carries_the_id(parse: Any) -> None:
    exc = _err({"type": "teleport", "id": "r1"}, parse)
    assert exc.code is ErrorCode.UNKNOWN_TYPE and not exc.fatal
    assert exc.request_id == "r1"
    assert exc.message == "unknown message type 'teleport'"
    assert _err({"type": "teleport"}, parse).request_id is None


@pytest.mark.parametrize("parse", [parse_client_message, parse_kitchen_message], ids=["guest", "kitchen"])
def test_unknown_type_quotes_at_most_40_characters_of_the_type(parse: Any) -> None:
    for length in (39, 4000):  # a repr of 41 characters is already cut
        exc = _err({"type": "t" * length, "id": "r2"}, parse)
        assert exc.code is ErrorCode.UNKNOWN_TYPE and exc.request_id == "r2"
        assert exc.message == "unknown message type '" + "t" * 38 + "\u2026"
    exc = _err({"type": "t" * 38}, parse)  # its repr is exactly 40 characters: quoted whole
    assert exc.message == "unknown message type '" + "t" * 38 + "'"


def test_kitchen_ping_and_set_status_carry_the_id() -> None:
    assert parse_kitchen_message({"type": "ping", "id": "k1"}, LIMITS) == Ping("k1")
    assert parse_kitchen_message({"type": "ping"}, LIMITS) == Ping(None)
    assert parse_kitchen_message(
        {"type": "set_status", "id": "k2", "order_id": "ORD-1-7", "status": "ready"}, LIMITS
    ) == SetKitchenStatus("k2", "ORD-1-7", "ready")


@pytest.mark.parametrize("status", ["cooking", "", "READY", "ready ", True, 1, None, ["ready"]])
def test_set_status_refuses_anything_but_the_kitchen_statuses(status: Any) -> None:
    obj: dict[str, Any] = {"type": "set_status", "id": "k3", "order_id": "o1"}
    if status is not None:
        obj["status"] = status
    exc = _err(obj, parse_kitchen_message)
    assert exc.code is ErrorCode.BAD_REQUEST and exc.request_id == "k3"
    # The message lists what is allowed (docs/staff-kitchen-api.md: new/preparing/ready/served, and recall).
    assert exc.message == "status must be one of new, preparing, ready, recall, served"


def test_set_status_checks_the_order_id_first() -> None:
    exc = _err({"type": "set_status", "id": "k4", "order_id": "", "status": "bogus"}, parse_kitchen_message)
    assert exc.message == "order_id must not be empty" and exc.request_id == "k4"
