"""The JSON codec encodes the table's hot-path messages with orjson: its bytes must equal what json.dumps
(compact, ensure_ascii=False, allow_nan=False) wrote before, for every value those messages can hold, and
every other message keeps json.dumps (floats, NaN refusal) exactly."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tableside.protocol import JsonCodec, JsonV2Codec, Limits, OutboundFrame, ProtocolError
from tableside.protocol import server_messages as sm
from tableside.protocol.codecs import FAST_JSON_TYPES
from tableside.protocol.errors import ErrorCode

CODEC = JsonCodec(Limits())
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(message: Mapping[str, Any]) -> str:
    """What the codec wrote before orjson."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def assert_same_bytes(message: dict[str, Any]) -> None:
    want = reference(message)
    assert CODEC.encode(message) == want
    assert CODEC.encode_bytes(message) == want.encode("utf-8")
    assert JsonV2Codec(Limits()).encode(message) == want
    wire = OutboundFrame(message).wire(CODEC)
    assert wire.endswith(want.encode("utf-8"))


# Any text a client or the menu can put in a message: every code point but lone surrogates (refused at
# validation), with control characters, quotes, backslashes, U+2028/2029 and astral characters likely.
TEXT = st.text(
    st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from(['"', "\\", "/", "\x00", "\x1f", "\x7f", "\u2028", "\u2029", "\ufeff", "😀", "é"]),
    ),
    max_size=40,
)
# Revisions, quantities, prices, totals, order numbers: ints, also beyond 64 bits (orjson refuses those and
# json.dumps takes over, so the bytes still match).
INT = st.one_of(st.integers(-(2**63), 2**64 - 1), st.integers())
OPT_TEXT = st.none() | TEXT

LINE = st.fixed_dictionaries(
    {
        "line_id": TEXT,
        "menu_item_id": TEXT,
        "name": TEXT,
        "qty": INT,
        "unit_price": INT,
        "note": TEXT,
        "state": st.sampled_from(["pending", "locked"]),
        "added_by": TEXT,
    },
    optional={"unavailable": st.just(True)},
)
CART = st.fixed_dictionaries(
    {
        "items": st.lists(LINE, max_size=6),
        "total": INT,
        "cart_locked": st.booleans(),
        "pending_order_id": OPT_TEXT,
        "order_processing_status": st.sampled_from(["idle", "processing", "confirmed", "failed"]),
        "locked_by_member": OPT_TEXT,
        "revision": INT,
        "last_updated": TEXT,
    }
)
MEMBERS = st.lists(st.fixed_dictionaries({"member_id": TEXT, "name": TEXT, "online": st.booleans()}), max_size=5)
CHANGES = st.fixed_dictionaries(
    {
        "added": st.lists(LINE, max_size=3),
        "changed": st.lists(LINE, max_size=3),
        "removed": st.lists(TEXT, max_size=3),
        "totals": CART.map(lambda c: {k: v for k, v in c.items() if k != "items"}),
    }
)
IMPORTED = st.none() | st.fixed_dictionaries(
    {
        "lines": INT,
        "skipped": st.lists(st.fixed_dictionaries({"menu_item_id": TEXT, "name": TEXT, "reason": TEXT}), max_size=3),
    }
)

MESSAGES = st.one_of(
    st.builds(sm.ack, OPT_TEXT, INT),
    st.builds(lambda rid, rev, oid: sm.ack(rid, rev, order_id=oid), OPT_TEXT, INT, TEXT),
    st.builds(sm.error, OPT_TEXT, st.sampled_from(list(ErrorCode)), TEXT),
    st.builds(sm.pong, OPT_TEXT),
    st.builds(sm.snapshot, OPT_TEXT, CART),
    st.builds(sm.welcome, TEXT, TEXT, TEXT, MEMBERS, CART, IMPORTED),
    st.builds(sm.cart_updated, CART),
    st.builds(sm.cart_delta, INT, INT, CHANGES),
    st.builds(sm.cart_locked, TEXT, TEXT, TEXT, TEXT),
    st.builds(sm.order_confirmed, TEXT, INT | TEXT, TEXT, INT, st.lists(LINE, max_size=4)),
    st.builds(sm.order_failed, TEXT, TEXT, TEXT, st.booleans()),
    st.builds(sm.order_status, TEXT, TEXT),
    st.builds(sm.member_joined, TEXT, MEMBERS),
    st.builds(sm.member_left, TEXT, MEMBERS),
    st.builds(sm.session_closed, TEXT),
)


@SETTINGS
@given(MESSAGES)
def test_hot_path_messages_encode_to_the_same_bytes_as_json_dumps(message: dict[str, Any]) -> None:
    assert message["type"] in FAST_JSON_TYPES
    assert_same_bytes(message)


def test_every_fast_type_is_covered_above() -> None:
    # A type added to FAST_JSON_TYPES must get a builder in MESSAGES (and must hold no float).
    built = {
        "ack", "error", "pong", "snapshot", "welcome", "cart_updated", "cart_delta", "cart_locked",
        "order_confirmed", "order_failed", "order_status", "member_joined", "member_left", "session_closed",
    }  # fmt: skip
    assert built == FAST_JSON_TYPES


@pytest.mark.parametrize(
    "value",
    [1e-05, 2.5e-07, 1e16, 1764547200.123456, 0.1, -0.0, 1e300],
)
def test_other_messages_keep_json_dumps_floats(value: float) -> None:
    # Kitchen, till and reservation messages carry float timestamps: orjson would write 1e-05 as 0.00001.
    message = {"type": "order_placed", "placed_at": value, "nested": [{"t": value}]}
    assert CODEC.encode(message) == reference(message)
    assert OutboundFrame(message).wire(CODEC).endswith(reference(message).encode())


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_still_refused_outside_the_hot_path(value: float) -> None:
    with pytest.raises(ValueError):
        CODEC.encode({"type": "order_placed", "placed_at": value})
    with pytest.raises(ValueError):
        CODEC.encode({"x": value})


@pytest.mark.parametrize(
    "odd",
    [
        {1: "int key"},  # json.dumps turns it into "1"; orjson refuses non-str keys
        {"big": 2**64},  # beyond 64 bits
        {"neg": -(2**63) - 1},
    ],
)
def test_values_orjson_refuses_fall_back_to_json_dumps(odd: dict[Any, Any]) -> None:
    message = sm.ack("r1", 3, extra=odd)
    assert_same_bytes(message)


def test_values_json_dumps_refuses_are_still_refused() -> None:
    import datetime
    from dataclasses import dataclass

    @dataclass
    class Point:
        x: int

    for bad in (datetime.datetime(2026, 1, 1), Point(1), {1, 2}, b"bytes"):
        with pytest.raises(TypeError):
            CODEC.encode(sm.ack("r1", 3, extra=bad))
        with pytest.raises(TypeError):
            CODEC.encode_bytes(sm.ack("r1", 3, extra=bad))


# -- decoding: orjson where it agrees with json.loads and our parse hooks, json.loads elsewhere -------------


class JsonLoadsOnly(JsonCodec):
    """The decoder as it was before orjson: json.loads with the parse hooks, always."""

    __slots__ = ()

    def _loads(self, text: str) -> Any:
        return json.loads(
            text, parse_int=self._parse_int, parse_float=self._parse_float, parse_constant=self._parse_constant
        )


TIGHT = Limits(max_frame_bytes=2048, max_depth=3, max_map_keys=4, max_array_len=5, max_string_chars=16, max_int=1000)
PAIRS = [(JsonCodec(Limits()), JsonLoadsOnly(Limits())), (JsonCodec(TIGHT), JsonLoadsOnly(TIGHT))]


def outcome(codec: JsonCodec, frame: str | bytes) -> tuple[str, Any]:
    try:
        value = codec.decode(frame)
    except ProtocolError as exc:
        return ("refused", (exc.code, exc.message, exc.request_id, exc.fatal))
    # repr keeps 1 and 1.0, -0.0 and 0.0 apart, and the key order.
    return ("value", repr(value))


def assert_same_decoding(frame: str | bytes) -> None:
    for fast, reference_codec in PAIRS:
        assert outcome(fast, frame) == outcome(reference_codec, frame), frame


NUMBER = st.from_regex(r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,4})?\Z")
TOKENS = st.sampled_from(
    [
        "NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1E400", "-0", "-0.0", "01", "1.", ".5", "+1",
        "true", "false", "null", "tru", '"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', '"\\u0000"', '"\x01"',
        "\ufeff{}", "[1,]", "{,}", '{"a":1,"a":2}', '{"id":"x","id":"y"}', "9223372036854775808",
        "18446744073709551616", "-9223372036854775809", "999999999999", "1000000000000", "1000000000001",
        "[" * 9 + "]" * 9, "[" * 2000 + "]" * 2000, "1 2", " {} ", "{}\x00", '"a\\x"',
    ]
)  # fmt: skip
JSONISH = st.recursive(
    st.one_of(NUMBER, TOKENS, st.text(max_size=6).map(lambda s: json.dumps(s, ensure_ascii=False))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(['"type"', '"id"', '"qty"', '"a"']), inner), max_size=6).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=12,
)


@SETTINGS
@given(st.one_of(JSONISH, st.text(max_size=60), NUMBER, TOKENS))
def test_decoding_with_orjson_equals_json_loads(frame: str) -> None:
    assert_same_decoding(frame)
    assert_same_decoding(frame.encode("utf-8", "surrogatepass"))


@SETTINGS
@given(JSONISH, st.data())
def test_decoding_of_mutated_json_equals_json_loads(frame: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(frame)))
    junk = data.draw(st.sampled_from(["", ",", "]", "}", '"', "\\", "e", "-", "0", " ", "\x00", "NaN"]))
    cut = data.draw(st.integers(0, 2))
    assert_same_decoding(frame[:at] + junk + frame[at + cut :])
