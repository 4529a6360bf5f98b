"""What an ``error`` tells the client (docs/protocol.md, "Error codes").

The code is the machine-readable part; the message is the human part, and it has to say which field or
which bound the frame broke, with the bound's value, so a client developer can fix the request without
reading the server. These cases pin that for every rule the codecs and parsers enforce (default
``Limits``), for both wire formats where the rule is codec-independent."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from tableside.protocol import (
    ErrorCode,
    JsonCodec,
    Limits,
    MsgpackCodec,
    ProtocolError,
    parse_client_message,
    read_client_frame,
)

LIMITS = Limits()
JSON = JsonCodec(LIMITS)
MSGPACK = MsgpackCodec(LIMITS)
CODECS = [JSON, MSGPACK]


def _rejected(codec: JsonCodec | MsgpackCodec, frame: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        read_client_frame(codec, frame, LIMITS)
    return info.value


def _refused(obj: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(obj, LIMITS)
    return info.value


# --- bounds enforced on the decoded value, whatever the message type (codec walk) -----------------------

WALK_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("long string", {"x": "s" * 4097}, "a string is longer than 4096 characters"),
    ("long key", {"k" * 4097: 1}, "a string is longer than 4096 characters"),
    ("NUL", {"x": "a\x00b"}, "a string contains a NUL character"),
    ("NUL key", {"a\x00": 1}, "a string contains a NUL character"),
    ("big int", {"x": 10**12 + 1}, "an integer is outside \u00b11000000000000"),
    ("small int", {"x": -(10**12) - 1}, "an integer is outside \u00b11000000000000"),
    ("deep", {"x": [[[[[[[[1]]]]]]]]}, "nesting deeper than 8 levels"),
    (
        "deep objects",
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
        "nesting deeper than 8 levels",
    ),
]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("value, message", [c[1:] for c in WALK_CASES], ids=[c[0] for c in WALK_CASES])
def test_walk_errors_name_the_bound(
    codec: JsonCodec | MsgpackCodec, value: dict[str, Any], message: str
) -> None:
    exc = _rejected(codec, codec.encode({"type": "ping", "id": "r1", **value}))
    assert (exc.code, exc.message, exc.request_id, exc.fatal) == (ErrorCode.BAD_REQUEST, message, "r1", False)


def test_json_walk_errors_for_counts_name_the_bound() -> None:
    # msgpack's own parser already refuses these counts (before building the value); JSON's parser cannot.
    for value, message in (
        ({f"k{i}": i for i in range(65)}, "an object has more than 64 keys"),
        (list(range(513)), "an array has more than 512 elements"),
    ):
        exc = _rejected(JSON, json.dumps({"type": "ping", "id": "r1", "x": value}))
        assert (exc.code, exc.message, exc.request_id) == (ErrorCode.BAD_REQUEST, message, "r1")


def test_json_lone_surrogate_is_named() -> None:
    exc = _rejected(JSON, '{"type":"ping","id":"r1","x":"\\ud800"}')
    assert (exc.code, exc.message, exc.request_id) == (
        ErrorCode.BAD_REQUEST,
        "a string contains a lone surrogate",
        "r1",
    )


@pytest.mark.parametrize(
    "value, message",
    [
        (b"\x00\x01", "binary values are not allowed"),
        (msgpack.Timestamp(1, 0), "values of type Timestamp are not allowed"),
        (msgpack.ExtType(5, b"x"), "msgpack extension type 5 is not allowed"),
    ],
    ids=["bin", "timestamp", "ext"],
)
def test_msgpack_binary_and_extension_values_are_named(value: Any, message: str) -> None:
    # docs: "In msgpack, binary values and extension types are rejected".
    exc = _rejected(MSGPACK, msgpack.packb({"type": "ping", "x": value}, use_bin_type=True))
    assert (exc.code, exc.message) == (ErrorCode.BAD_REQUEST, message)


def test_msgpack_non_string_keys_are_refused() -> None:
    exc = _rejected(MSGPACK, msgpack.packb({"type": "ping", 1: "x"}))
    assert exc.code is ErrorCode.BAD_REQUEST and "map key" in exc.message


# --- frame-level errors -------------------------------------------------------------------------------------


def test_oversize_frames_state_the_size_and_the_limit() -> None:
    big = json.dumps({"type": "ping", "pad": "x" * 70_000})
    exc = _rejected(JSON, big)  # text: the size is only bounded, never computed in full
    assert (exc.code, exc.fatal) == (ErrorCode.TOO_LARGE, True)
    assert exc.message == "frame of more than 65536 bytes exceeds the limit of 65536 bytes"
    exc = _rejected(JSON, big.encode())
    assert (exc.code, exc.fatal) == (ErrorCode.TOO_LARGE, True)
    assert exc.message == f"frame of {len(big)} bytes exceeds the limit of 65536 bytes"
    packed = msgpack.packb({"type": "ping", "pad": "x" * 70_000})
    exc = _rejected(MSGPACK, packed)
    assert (exc.code, exc.fatal) == (ErrorCode.TOO_LARGE, True)
    assert exc.message == f"frame of {len(packed)} bytes exceeds the limit of 65536 bytes"


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    limits = Limits(max_frame_bytes=100)
    text = '{"type":"ping","p":"' + "x" * 78 + '"}'
    assert len(text) == 100
    assert JsonCodec(limits).decode(text)["p"] == "x" * 78
    assert JsonCodec(limits).decode(text.encode())["p"] == "x" * 78
    packed = msgpack.packb({"type": "ping", "p": "x" * 85})
    assert len(packed) == 100
    assert MsgpackCodec(limits).decode(packed)["p"] == "x" * 85
    with pytest.raises(ProtocolError) as info:
        MsgpackCodec(limits).decode(packed + b"\x00")
    assert info.value.code is ErrorCode.TOO_LARGE


def test_wrong_frame_kinds_are_named() -> None:
    assert (
        _rejected(MSGPACK, '{"type":"ping"}').message
        == "text frames are not accepted on the msgpack subprotocol"
    )
    assert _rejected(MSGPACK, None).message == "frame must be bytes"
    assert _rejected(JSON, None).message == "frame must be text or bytes"
    assert _rejected(JSON, b'{"type":"ping","x":"\xff"}').message == "frame is not valid UTF-8"


def test_json_syntax_errors_say_where() -> None:
    exc = _rejected(JSON, '{"type":"ping",}')
    assert exc.code is ErrorCode.BAD_REQUEST
    assert exc.message.startswith("invalid JSON: ") and "line 1 column 16" in exc.message


def test_json_nesting_beyond_the_parsers_recursion_is_named() -> None:
    codec = JsonCodec(Limits(max_frame_bytes=1_000_000))
    with pytest.raises(ProtocolError) as info:
        codec.decode("[" * 400_000 + "]" * 400_000)
    assert (info.value.code, info.value.message) == (ErrorCode.BAD_REQUEST, "nesting deeper than 8 levels")


def test_json_huge_integers_are_named_before_conversion() -> None:
    codec = JsonCodec(Limits(max_frame_bytes=2_000_000))
    for text in ("9" * 1_000_000, "-" + "9" * 1_000_000, "10000000000000"):
        with pytest.raises(ProtocolError) as info:
            codec.decode(text)
        assert info.value.message == "an integer is outside \u00b11000000000000"


def test_msgpack_malformed_input_is_explained() -> None:
    exc = _rejected(MSGPACK, b"\x92\x01")  # an array of two with one element
    assert exc.code is ErrorCode.BAD_REQUEST
    assert exc.message == "invalid msgpack: Unpack failed: incomplete input"
    exc = _rejected(MSGPACK, msgpack.packb({"type": "ping"}) + b"\x01")
    assert (exc.code, exc.message) == (ErrorCode.BAD_REQUEST, "trailing data after the msgpack object")
    exc = _rejected(MSGPACK, b"\x91" * 5000 + b"\x01")  # deeper than msgpack's own stack
    assert (exc.code, exc.message) == (ErrorCode.BAD_REQUEST, "nesting deeper than 8 levels")


# --- message schema (parse) ---------------------------------------------------------------------------------

ADD = {"type": "add_item", "id": "r1", "menu_item_id": "burger", "qty": 2}
UPDATE = {"type": "update_item", "id": "r1", "line_id": "l1", "qty": 2}
REMOVE = {"type": "remove_item", "id": "r1", "line_id": "l1"}
PLACE = {"type": "place_order", "id": "r1"}
DROP = object()

FIELD_CASES: list[tuple[dict[str, Any], str, Any, str]] = [
    (ADD, "menu_item_id", DROP, "menu_item_id is required"),
    (ADD, "menu_item_id", None, "menu_item_id is required"),
    (ADD, "menu_item_id", 5, "menu_item_id must be a string"),
    (ADD, "menu_item_id", "", "menu_item_id must not be empty"),
    (ADD, "menu_item_id", "m" * 65, "menu_item_id must be at most 64 characters"),
    (ADD, "menu_item_id", "m\x00", "menu_item_id contains a NUL character"),
    (ADD, "menu_item_id", "m\ud800", "menu_item_id contains a lone surrogate"),
    (ADD, "qty", DROP, "qty is required"),
    (ADD, "qty", 0, "qty must be an integer between 1 and 99"),
    (ADD, "qty", 100, "qty must be an integer between 1 and 99"),
    (ADD, "qty", True, "qty must be an integer between 1 and 99"),
    (ADD, "qty", 1.0, "qty must be an integer between 1 and 99"),
    (ADD, "qty", "2", "qty must be an integer between 1 and 99"),
    (ADD, "note", 7, "note must be a string"),
    (ADD, "note", "n" * 201, "note must be at most 200 characters"),
    (ADD, "note", "\x00", "note contains a NUL character"),
    (UPDATE, "line_id", DROP, "line_id is required"),
    (UPDATE, "line_id", "", "line_id must not be empty"),
    (UPDATE, "line_id", "l" * 65, "line_id must be at most 64 characters"),
    (UPDATE, "qty", DROP, "qty is required"),
    (UPDATE, "qty", -1, "qty must be an integer between 0 and 99"),
    (UPDATE, "qty", 100, "qty must be an integer between 0 and 99"),
    (REMOVE, "line_id", DROP, "line_id is required"),
    (REMOVE, "line_id", ["l1"], "line_id must be a string"),
    (PLACE, "total", -1, "total must be an integer between 0 and 1000000000000"),
    (PLACE, "total", 10**12 + 1, "total must be an integer between 0 and 1000000000000"),
    (PLACE, "total", 12.5, "total must be an integer between 0 and 1000000000000"),
    (PLACE, "total", False, "total must be an integer between 0 and 1000000000000"),
    (PLACE, "special_instructions", 1, "special_instructions must be a string"),
    (PLACE, "special_instructions", "i" * 501, "special_instructions must be at most 500 characters"),
]


@pytest.mark.parametrize(
    "base, field, value, message",
    FIELD_CASES,
    ids=[f"{b['type']}-{f}-{i}" for i, (b, f, _, _) in enumerate(FIELD_CASES)],
)
def test_field_errors_name_the_field_and_the_rule(
    base: dict[str, Any], field: str, value: Any, message: str
) -> None:
    obj = dict(base)
    if value is DROP:
        del obj[field]
    else:
        obj[field] = value
    exc = _refused(obj)
    assert (exc.code, exc.message, exc.request_id, exc.fatal) == (ErrorCode.BAD_REQUEST, message, "r1", False)
    del obj["id"]
    assert _refused(obj).request_id is None  # no id, nothing to correlate with


def test_field_rules_follow_custom_limits() -> None:
    limits = Limits(max_qty=5, max_ref_chars=3, max_note_chars=4, max_instructions_chars=6, max_int=1000)
    for obj, message in (
        ({**ADD, "menu_item_id": "abc", "qty": 6}, "qty must be an integer between 1 and 5"),
        ({**UPDATE, "qty": 6}, "qty must be an integer between 0 and 5"),
        ({**ADD, "menu_item_id": "abcd"}, "menu_item_id must be at most 3 characters"),
        ({**ADD, "menu_item_id": "abc", "note": "abcde"}, "note must be at most 4 characters"),
        ({**PLACE, "special_instructions": "abcdefg"}, "special_instructions must be at most 6 characters"),
        ({**PLACE, "total": 1001}, "total must be an integer between 0 and 1000"),
        ({**ADD, "id": "x" * 65}, "id must be a string of 1 to 64 characters"),
    ):
        with pytest.raises(ProtocolError) as info:
            parse_client_message(obj, limits)
        assert info.value.message == message
    assert parse_client_message({**ADD, "qty": 5, "menu_item_id": "abc", "note": "abcd"}, limits)
    assert parse_client_message({**PLACE, "total": 1000, "special_instructions": "abcdef"}, limits)


@pytest.mark.parametrize(
    "obj, message",
    [
        (["ping"], "a message must be an object"),
        ("ping", "a message must be an object"),
        ({"type": "ping", "id": ""}, "id must be a string of 1 to 64 characters"),
        ({"type": "ping", "id": "x" * 65}, "id must be a string of 1 to 64 characters"),
        ({"type": "ping", "id": 7}, "id must be a string of 1 to 64 characters"),
        ({"type": "ping", "id": None}, "id must be a string of 1 to 64 characters"),
        ({"type": "ping", "id": "a\x00"}, "id must be a string of 1 to 64 characters"),
    ],
)
def test_envelope_errors_are_named_and_carry_no_id(obj: Any, message: str) -> None:
    exc = _refused(obj)
    assert (exc.code, exc.message, exc.request_id) == (ErrorCode.BAD_REQUEST, message, None)


@pytest.mark.parametrize("msg_type", [None, 1, ["ping"], {"t": 1}])
def test_type_must_be_a_string(msg_type: Any) -> None:
    obj: dict[str, Any] = {"id": "r1"} if msg_type is None else {"id": "r1", "type": msg_type}
    exc = _refused(obj)
    assert (exc.code, exc.message, exc.request_id) == (ErrorCode.BAD_REQUEST, "type must be a string", "r1")


def test_ids_of_one_and_of_the_maximum_length_are_echoed() -> None:
    assert parse_client_message({"type": "ping", "id": "a"}, LIMITS).request_id == "a"
    assert parse_client_message({"type": "ping", "id": "é" * 64}, LIMITS).request_id == "é" * 64


def test_optional_strings_may_be_empty() -> None:
    msg = parse_client_message({**ADD, "note": ""}, LIMITS)
    assert msg == parse_client_message(ADD, LIMITS)
    place = parse_client_message({**PLACE, "special_instructions": "", "total": 0}, LIMITS)
    assert place == parse_client_message({**PLACE, "total": 0}, LIMITS)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_objects_nested_exactly_to_the_depth_limit_are_accepted(codec: JsonCodec | MsgpackCodec) -> None:
    value = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}  # 8 levels, counting the outer object
    assert codec.decode(codec.encode(value)) == value
