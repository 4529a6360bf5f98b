"""Malformed-frame corpus for the guest protocol.

Each case is one websocket message and the error code the full pipeline (``read_client_frame``: codec
decode, then ``parse_client_message``) must answer with, under default ``Limits``. The server's integration
test replays the same cases over a real websocket, so:

* ``str`` frames are sent as text messages, ``bytes`` frames as binary messages (invalid UTF-8 on the JSON
  subprotocol therefore travels in a binary message, where the JSON codec still tries to decode it);
* ``too_large`` cases are fatal: the server closes the connection after the error (see ``fatal``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

CodecName = Literal["json", "msgpack"]

BAD = "bad_request"
UNKNOWN = "unknown_type"
TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class MalformedCase:
    codec: CodecName
    frame: str | bytes
    expected_code: str
    note: str

    @property
    def fatal(self) -> bool:
        """Whether the server must close the connection after answering this frame."""
        return self.expected_code == TOO_LARGE


# A valid message of every guest type; field cases below replace or delete one field of these.
VALID: dict[str, dict[str, Any]] = {
    "add_item": {"type": "add_item", "id": "r1", "menu_item_id": "burger", "qty": 2, "note": "no onions"},
    "update_item": {"type": "update_item", "id": "r2", "line_id": "l-1", "qty": 3},
    "remove_item": {"type": "remove_item", "id": "r3", "line_id": "l-1"},
    "place_order": {"type": "place_order", "id": "r4", "total": 1850, "special_instructions": "birthday"},
    "get_snapshot": {"type": "get_snapshot", "id": "r5"},
    "ping": {"type": "ping", "id": "r6"},
}

_MISSING = object()  # sentinel: delete the field

_WRONG_STRINGS: list[tuple[Any, str]] = [
    (1, "int"),
    (1.5, "float"),
    (True, "bool"),
    ([], "array"),
    ({}, "object"),
    (["x"], "array of string"),
]
_REF_BAD: list[tuple[Any, str]] = [
    *_WRONG_STRINGS,
    (_MISSING, "missing"),
    (None, "null"),
    ("", "empty"),
    ("x" * 65, "65 chars"),
    ("a\x00b", "NUL"),
]
_QTY_COMMON_BAD: list[tuple[Any, str]] = [
    (_MISSING, "missing"),
    (None, "null"),
    ("2", "string"),
    (2.0, "float 2.0"),
    (1.5, "float 1.5"),
    (True, "bool true"),
    (-1, "negative"),
    (100, "100"),
    (10**6, "million"),
    (10**13, "beyond max_int"),
    (-(10**13), "beyond -max_int"),
    ([2], "array"),
    ({"n": 2}, "object"),
]
_OPT_TEXT_WRONG: list[tuple[Any, str]] = [*_WRONG_STRINGS, ("a\x00b", "NUL")]

FIELD_CASES: dict[str, dict[str, list[tuple[Any, str]]]] = {
    "add_item": {
        "menu_item_id": _REF_BAD,
        "qty": [*_QTY_COMMON_BAD, (0, "zero"), (False, "bool false")],
        "note": [*_OPT_TEXT_WRONG, ("x" * 201, "201 chars")],
    },
    "update_item": {
        "line_id": _REF_BAD,
        "qty": [*_QTY_COMMON_BAD, (False, "bool false")],
    },
    "remove_item": {"line_id": _REF_BAD},
    "place_order": {
        "total": [
            ("1850", "string"),
            (1850.0, "float"),
            (18.5, "fractional"),
            (True, "bool"),
            (-1, "negative"),
            (10**12 + 1, "beyond max_int"),
            ([1850], "array"),
            ({"v": 1}, "object"),
        ],
        "special_instructions": [*_OPT_TEXT_WRONG, ("x" * 501, "501 chars")],
    },
}

_BAD_IDS: list[tuple[Any, str]] = [
    (1, "int"),
    (1.5, "float"),
    (True, "bool"),
    (None, "null"),
    ("", "empty"),
    ("x" * 65, "65 chars"),
    ([], "array"),
    ({}, "object"),
    ("a\x00", "NUL"),
]


def _json(obj: Any) -> str:
    # ensure_ascii keeps lone surrogates as \\udXXX escapes so the frame is sendable as websocket text.
    return json.dumps(obj)


def _mp(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _both(obj: Any, code: str, note: str) -> list[MalformedCase]:
    return [
        MalformedCase("json", _json(obj), code, note),
        MalformedCase("msgpack", _mp(obj), code, note),
    ]


def _with(msg_type: str, field: str, value: Any) -> dict[str, Any]:
    msg = dict(VALID[msg_type])
    if value is _MISSING:
        del msg[field]
    else:
        msg[field] = value
    return msg


def _nested(depth: int) -> Any:
    """``depth`` nested arrays around a 0."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _structured_cases() -> list[MalformedCase]:
    cases: list[MalformedCase] = []
    for msg_type, fields in FIELD_CASES.items():
        for field, values in fields.items():
            for value, label in values:
                cases += _both(_with(msg_type, field, value), BAD, f"{msg_type}.{field}: {label}")
    for msg_type in VALID:
        for value, label in _BAD_IDS:
            cases += _both(_with(msg_type, "id", value), BAD, f"{msg_type}.id: {label}")
    # The envelope.
    for value, label in [
        (None, "null"),
        (1, "int"),
        (True, "bool"),
        ([], "array"),
        ({}, "object"),
        (1.5, "float"),
    ]:
        cases += _both({"type": value, "id": "r"}, BAD, f"type: {label}")
    cases += _both({"id": "r", "qty": 1}, BAD, "type missing")
    cases += _both({}, BAD, "empty object")
    for value, label in [
        ("unknown", "unknown name"),
        ("", "empty"),
        ("ADD_ITEM", "wrong case"),
        ("add_item ", "trailing space"),
        ("set_status", "kitchen-only type"),
        ("welcome", "server message type"),
        ("x" * 4000, "long name (within string limit)"),
    ]:
        cases += _both({"type": value, "id": "r"}, UNKNOWN, f"type: {label}")
    cases += _both({"type": "x" * 4097, "id": "r"}, BAD, "type longer than max_string_chars")
    for value, label in [
        ([VALID["ping"]], "array"),
        (1, "number"),
        (1.5, "float"),
        ("ping", "string"),
        (None, "null"),
        (True, "bool"),
        ([], "empty array"),
    ]:
        cases += _both(value, BAD, f"top level {label}")
    # Unknown fields are ignored, but still bounded by the codec limits.
    bounded: list[tuple[Any, str]] = [
        (_nested(8), "nesting depth 9 in an extra field"),
        (_nested(50), "nesting depth 51"),
        ({str(i): i for i in range(65)}, "65 keys in an extra object"),
        (list(range(513)), "513-element array"),
        ("x" * 4097, "4097-char string"),
        ("a\x00b", "NUL in an extra string"),
        (10**12 + 1, "integer beyond max_int"),
        (-(10**12) - 1, "integer beyond -max_int"),
        (2**63, "2**63"),
        ([{"k": "x" * 4097}], "long string inside a list"),
    ]
    for value, label in bounded:
        cases += _both({"type": "ping", "id": "r", "extra": value}, BAD, f"extra field: {label}")
    many = {"type": "ping", "id": "r", **{f"k{i}": i for i in range(70)}}
    cases += _both(many, BAD, "top-level object with 72 keys")
    cases += _both({"type": "ping", "id": "r", "x" * 4097: 1}, BAD, "4097-char key")
    cases += _both({"type": "ping", "id": "r", "a\x00": 1}, BAD, "NUL in a key")
    return cases


def _json_text_cases() -> list[MalformedCase]:
    deep_ok_prefix = '{"type":"ping","id":"r","x":'
    texts: list[tuple[str, str, str]] = [
        ("", BAD, "empty text frame"),
        ("   ", BAD, "whitespace only"),
        ('{"type":"ping"} x', BAD, "trailing garbage"),
        ('{"type":"ping"}{"type":"ping"}', BAD, "two objects"),
        ('{"type":"ping"', BAD, "truncated object"),
        ('{"type":"ping",}', BAD, "trailing comma"),
        ("{'type':'ping'}", BAD, "single quotes"),
        ("{type:'ping'}", BAD, "unquoted keys"),
        ('{"type":"ping"} // c', BAD, "comment"),
        ("\ufeff" + '{"type":"ping"}', BAD, "byte-order mark"),
        ('{"type":"ping","x":NaN}', BAD, "NaN"),
        ('{"type":"ping","x":Infinity}', BAD, "Infinity"),
        ('{"type":"ping","x":-Infinity}', BAD, "-Infinity"),
        ('{"type":"add_item","menu_item_id":"m","qty":NaN}', BAD, "NaN qty"),
        ('{"type":"ping","x":1e999}', BAD, "float overflow to inf"),
        ('{"type":"ping","x":-1e999}', BAD, "float overflow to -inf"),
        ('{"type":"ping","x":' + "9" * 5000 + "}", BAD, "5000-digit integer (int() str limit)"),
        ('{"type":"ping","x":-' + "9" * 100 + "}", BAD, "100-digit negative integer"),
        ('{"type":"add_item","menu_item_id":"m","qty":1' + "0" * 40 + "}", BAD, "40-digit qty"),
        ('{"type":"add_item","menu_item_id":"m","qty":2e0}', BAD, "qty in exponent form is a float"),
        ('{"type":"add_item","menu_item_id":"m","qty":2.0}', BAD, "qty 2.0"),
        ('{"type":"ping","x":"\\ud800"}', BAD, "lone high surrogate escape"),
        ('{"type":"ping","x":"\\udc00"}', BAD, "lone low surrogate escape"),
        ('{"type":"add_item","menu_item_id":"\\ud83d","qty":1}', BAD, "lone surrogate in menu_item_id"),
        ('{"type":"ping","id":"\\ud800"}', BAD, "lone surrogate in id"),
        ('{"type":"ping","x":"\\u0000"}', BAD, "NUL escape"),
        ('{"type":"ping","x":"a\tb"}', BAD, "raw control character in a string"),
        ('{"type":"ping","x":"a\x00b"}', BAD, "raw NUL in a string"),
        ('{"type":"ping","x":01}', BAD, "leading zero"),
        ('{"type":"ping","x":0x10}', BAD, "hex literal"),
        ('{"type":"ping","x":.5}', BAD, "bare fraction"),
        ('{"type":"ping","x":True}', BAD, "Python True"),
        ('{"type":"ping","x":undefined}', BAD, "undefined"),
        ('{"type":"ping","x":"\\x41"}', BAD, "invalid escape"),
        ('{"type":"ping","x":"abc}', BAD, "unterminated string"),
        ("[" * 30000 + "]" * 30000, BAD, "30000-deep arrays (recursion bound)"),
        ('{"a":' * 5000 + "1" + "}" * 5000, BAD, "5000-deep objects"),
        ("[" * 9 + "]" * 9, BAD, "top-level array depth 9"),
        (deep_ok_prefix + "[" * 8 + "]" * 8 + "}", BAD, "extra field nested to depth 9"),
        ("[" * 1000, BAD, "unclosed deep arrays"),
        ("null", BAD, "null"),
        ('"ping"', BAD, "bare string"),
        ("42", BAD, "bare number"),
        ('{"type":"ping","id":"' + "x" * 65 + '"}', BAD, "65-char id"),
        ("x" * 65537, TOO_LARGE, "65537 ASCII characters"),
        ('{"type":"ping","pad":"' + "x" * 70000 + '"}', TOO_LARGE, "70 KB text frame"),
        ("[" * 100000 + "]" * 100000, TOO_LARGE, "100000-deep arrays (size check comes first)"),
        ('{"type":"ping","pad":"' + "\u00e9" * 33000 + '"}', TOO_LARGE, "33000 two-byte chars = 66 KB UTF-8"),
        (
            '{"type":"ping","pad":"' + "\u20ac" * 22000 + '"}',
            TOO_LARGE,
            "22000 three-byte chars = 66 KB UTF-8",
        ),
    ]
    return [MalformedCase("json", text, code, note) for text, code, note in texts]


def _json_binary_cases() -> list[MalformedCase]:
    frames: list[tuple[bytes, str, str]] = [
        (b"\xff\xfe", BAD, "invalid UTF-8 bytes"),
        (b'{"type":"ping","x":"\xff"}', BAD, "invalid UTF-8 inside a string"),
        (b'{"type":"ping","x":"\xc0\xaf"}', BAD, "overlong UTF-8 encoding"),
        (b'{"type":"ping","x":"\xed\xa0\x80"}', BAD, "UTF-8-encoded surrogate"),
        (b'{"type":"ping","x":"\xe2\x82"}', BAD, "truncated UTF-8 sequence"),
        (b'{"type":"ping","x":"\xf8\x88\x80\x80\x80"}', BAD, "5-byte UTF-8 sequence"),
        (b"", BAD, "empty binary frame"),
        (_mp(VALID["ping"]), BAD, "a msgpack frame on the JSON subprotocol"),
        (b'{"type":"ping"}\x00', BAD, "trailing NUL byte"),
        (b'{"type":"ping","pad":"' + b"x" * 70000 + b'"}', TOO_LARGE, "70 KB binary frame"),
        (b"\xff" * 65537, TOO_LARGE, "oversize invalid UTF-8 (size check comes first)"),
    ]
    return [MalformedCase("json", frame, code, note) for frame, code, note in frames]


def _msgpack_cases() -> list[MalformedCase]:
    ping = _mp(VALID["ping"])
    add = _mp(VALID["add_item"])

    def ping_with(extra_key: bytes, extra_value: bytes) -> bytes:
        # fixmap of 3: the ping's two pairs plus one hand-encoded pair.
        body = _mp("type") + _mp("ping") + _mp("id") + _mp("r")
        return b"\x83" + body + extra_key + extra_value

    frames: list[tuple[str | bytes, str, str]] = [
        ('{"type":"ping","id":"r"}', BAD, "text frame on the msgpack subprotocol"),
        ("", BAD, "empty text frame on msgpack"),
        (b"", BAD, "empty binary frame"),
        (ping[:-1], BAD, "truncated by one byte"),
        (add[: len(add) // 2], BAD, "truncated in the middle"),
        (b"\x83", BAD, "map header only"),
        (b"\xdb\x00\x00\x10\x00abc", BAD, "str32 header claiming 1 MiB"),
        (b"\xdd\xff\xff\xff\xff", BAD, "array32 header claiming 4G elements"),
        (b"\xdf\xff\xff\xff\xff", BAD, "map32 header claiming 4G pairs"),
        (ping + b"\xc0", BAD, "trailing nil"),
        (ping + ping, BAD, "two messages in one frame"),
        (b"\xc1", BAD, "never-used byte 0xc1"),
        (b"\x81\xc1\xc0", BAD, "0xc1 as a key"),
        (ping_with(_mp("x"), _mp(msgpack.ExtType(5, b"abc"))), BAD, "ext type 5"),
        (ping_with(_mp("x"), b"\xd6\xff\x00\x00\x00\x01"), BAD, "timestamp ext -1"),
        (ping_with(_mp("x"), b"\xd4\x9cz"), BAD, "negative ext type"),
        (_mp(msgpack.ExtType(1, b"x")), BAD, "top-level ext"),
        (ping_with(_mp("x"), _mp(b"\x00\x01")), BAD, "bin value in an extra field"),
        (ping_with(_mp("x"), _mp(b"")), BAD, "empty bin value"),
        (_mp({"type": "add_item", "id": "r", "menu_item_id": b"burger", "qty": 1}), BAD, "bin menu_item_id"),
        (_mp({b"type": "ping"}), BAD, "bin key"),
        (_mp({"type": b"ping"}), BAD, "bin type value"),
        (ping_with(_mp(1), _mp(1)), BAD, "int key"),
        (ping_with(_mp(None), _mp(1)), BAD, "nil key"),
        (ping_with(_mp(True), _mp(1)), BAD, "bool key"),
        (ping_with(_mp(1.5), _mp(1)), BAD, "float key"),
        (ping_with(_mp([1]), _mp(1)), BAD, "array key"),
        (ping_with(_mp("x"), b"\xa3\xff\xfe\xfd"), BAD, "invalid UTF-8 in a str"),
        (ping_with(_mp("x"), b"\xa3\xed\xa0\x80"), BAD, "UTF-8-encoded surrogate in a str"),
        (ping_with(_mp("x"), _mp(float("nan"))), BAD, "NaN float"),
        (ping_with(_mp("x"), _mp(float("inf"))), BAD, "Infinity float"),
        (ping_with(_mp("x"), _mp(float("-inf"))), BAD, "-Infinity float"),
        (ping_with(_mp("x"), _mp(2**64 - 1)), BAD, "uint64 max"),
        (ping_with(_mp("x"), _mp(-(2**63))), BAD, "int64 min"),
        (ping_with(_mp("x"), b"\xca\x7f\xc0\x00\x00"), BAD, "float32 NaN"),
        (_mp({"type": "add_item", "id": "r", "menu_item_id": "m", "qty": 2**64 - 1}), BAD, "uint64 qty"),
        (ping_with(_mp("x"), _mp("y" * 5000)), BAD, "5000-char str (over max_str_len bytes bound)"),
        (ping_with(_mp("x"), _mp("\u20ac" * 4097)), BAD, "4097 three-byte chars"),
        (b"\x91" * 30000 + b"\xc0", BAD, "30000-deep arrays"),
        (b"\x81\xa1k" * 2000 + b"\xc0", BAD, "2000-deep maps"),
        (b"\x91" * 9 + b"\xc0", BAD, "array depth 9"),
        (b"\x91" * 2000, BAD, "2000 array headers, no content"),
        (ping_with(_mp("x"), b"\xdc\x02\x01" + b"\xc0" * 513), BAD, "array16 of 513 (max_array_len)"),
        (_mp(ping), BAD, "msgpack bin wrapping a valid message"),
        (_mp(json.dumps(VALID["ping"])), BAD, "msgpack str holding JSON"),
        (_json(VALID["ping"]).encode(), BAD, "JSON bytes on the msgpack subprotocol"),
        (b"\x82" + _mp("type") + _mp("ping") + _mp("pad") + _mp(b"x" * 70000), TOO_LARGE, "70 KB frame"),
        (b"\xc0" * 65537, TOO_LARGE, "65537 bytes of nils (size check comes first)"),
        (b"\x91" * 100000 + b"\xc0", TOO_LARGE, "100000-deep arrays"),
        ("x" * 70000, BAD, "oversize text frame on msgpack (refused as text before measuring)"),
    ]
    return [MalformedCase("msgpack", frame, code, note) for frame, code, note in frames]


def malformed_frames() -> list[MalformedCase]:
    """Every malformed case, both codecs; order is stable across calls."""
    return _structured_cases() + _json_text_cases() + _json_binary_cases() + _msgpack_cases()


def valid_frames() -> list[tuple[CodecName, str | bytes, str]]:
    """The baseline messages the field cases are derived from, for sanity checks: (codec, frame, type)."""
    out: list[tuple[CodecName, str | bytes, str]] = []
    for msg_type, msg in VALID.items():
        out.append(("json", _json(msg), msg_type))
        out.append(("msgpack", _mp(msg), msg_type))
    return out
