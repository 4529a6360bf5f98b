"""Property tests: decoding never raises anything but ProtocolError; valid messages round-trip."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tableside.protocol import (
    AddItem,
    ClientMessage,
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
    read_client_frame,
    read_kitchen_frame,
)
from tableside.protocol.messages import CLIENT_MESSAGE_TYPES, KITCHEN_STATUSES

LIMITS = Limits()
# Small limits make the generated structures actually cross the boundaries.
TIGHT = Limits(
    max_frame_bytes=2048, max_depth=3, max_map_keys=4, max_array_len=5, max_string_chars=16, max_int=1000
)
CODECS: list[JsonCodec | MsgpackCodec] = [
    JsonCodec(LIMITS),
    MsgpackCodec(LIMITS),
    JsonCodec(TIGHT),
    MsgpackCodec(TIGHT),
]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Structure generation dominates the runtime; fewer examples keep the suite fast, CI can raise them with a
# hypothesis profile.
FUZZ_STRUCTURED = settings(FUZZ, max_examples=120)


def _only_protocol_errors(frame: str | bytes) -> None:
    for codec in CODECS:
        for reader in (read_client_frame, read_kitchen_frame):
            try:
                reader(codec, frame, codec.limits)
            except ProtocolError as exc:
                assert len(exc.message) <= 200
                assert exc.fatal == (exc.code == "too_large")


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(frame: bytes) -> None:
    _only_protocol_errors(frame)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(frame: str) -> None:
    _only_protocol_errors(frame)


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)

_msgpack_scalars = (
    _json_scalars
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=10)
    | st.builds(msgpack.ExtType, st.integers(min_value=0, max_value=127), st.binary(max_size=8))
)
_msgpack_keys = st.text(max_size=8) | st.integers(-5, 5) | st.binary(max_size=4) | st.none() | st.booleans()
msgpack_values = st.recursive(
    _msgpack_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(_msgpack_keys, children, max_size=6),
    max_leaves=40,
)

# Nearly-valid messages: a real type with random field values, to exercise the field checks.
_field_names = st.sampled_from(
    [
        "id",
        "menu_item_id",
        "qty",
        "note",
        "line_id",
        "total",
        "special_instructions",
        "order_id",
        "status",
        "extra",
    ]
)
near_messages = st.builds(
    lambda t, fields: {"type": t, **fields},
    st.sampled_from(sorted(CLIENT_MESSAGE_TYPES | {"set_status"})),
    st.dictionaries(_field_names, json_values, max_size=6),
)


@FUZZ_STRUCTURED
@given(json_values | near_messages)
def test_arbitrary_json_values(value: Any) -> None:
    _only_protocol_errors(json.dumps(value))
    _only_protocol_errors(json.dumps(value).encode())


@FUZZ_STRUCTURED
@given(msgpack_values | near_messages)
def test_arbitrary_msgpack_structures(value: Any) -> None:
    try:
        frame = msgpack.packb(value, use_bin_type=True)
    except (ValueError, TypeError, OverflowError, UnicodeEncodeError):
        return  # the packer itself refuses (e.g. lone surrogates); nothing to send
    _only_protocol_errors(frame)


@FUZZ_STRUCTURED
@given(near_messages, st.data())
def test_mutated_valid_frames(message: dict[str, Any], data: st.DataObject) -> None:
    frame = bytearray(msgpack.packb(message, use_bin_type=True))
    if frame:
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(frame) - 1))
            frame[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    _only_protocol_errors(bytes(frame[:cut]))
    _only_protocol_errors(bytes(frame))


# Valid messages: no NUL, no surrogates (the protocol refuses both).
_safe_text = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
_ids = st.none() | st.text(_safe_text, min_size=1, max_size=LIMITS.max_id_chars)
_refs = st.text(_safe_text, min_size=1, max_size=LIMITS.max_ref_chars)

valid_client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.builds(
        AddItem,
        _ids,
        _refs,
        st.integers(1, LIMITS.max_qty),
        st.text(_safe_text, max_size=LIMITS.max_note_chars),
    ),
    st.builds(UpdateItem, _ids, _refs, st.integers(0, LIMITS.max_qty)),
    st.builds(RemoveItem, _ids, _refs),
    st.builds(
        PlaceOrder,
        _ids,
        st.none() | st.integers(0, LIMITS.max_int),
        st.text(_safe_text, max_size=LIMITS.max_instructions_chars),
    ),
    st.builds(GetSnapshot, _ids),
    st.builds(Ping, _ids),
    st.builds(Leave, _ids),
)


@settings(max_examples=300, deadline=None)
@given(valid_client_messages)
def test_valid_messages_round_trip(msg: ClientMessage) -> None:
    for codec in CODECS[:2]:
        assert read_client_frame(codec, codec.encode(client_message_to_wire(msg)), LIMITS) == msg


@settings(max_examples=100, deadline=None)
@given(_ids, _refs, st.sampled_from(sorted(KITCHEN_STATUSES)))
def test_valid_kitchen_messages_round_trip(request_id: str | None, order_id: str, status: str) -> None:
    msg = SetKitchenStatus(request_id, order_id, status)
    for codec in CODECS[:2]:
        assert read_kitchen_frame(codec, codec.encode(client_message_to_wire(msg)), LIMITS) == msg
