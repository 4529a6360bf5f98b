from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from tableside.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    SUBPROTOCOLS,
    Codec,
    ErrorCode,
    JsonCodec,
    Limits,
    MsgpackCodec,
    ProtocolError,
    codec_for_subprotocol,
    select_subprotocol,
)

LIMITS = Limits()
JSON = JsonCodec(LIMITS)
MSGPACK = MsgpackCodec(LIMITS)


def _code(codec: Codec, frame: Any) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame)
    return info.value.code


def test_subprotocol_selection() -> None:
    assert (
        SUBPROTOCOLS
        == (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL)
        == ("tableside.v1.json", "tableside.v1.msgpack")
    )
    assert isinstance(codec_for_subprotocol(None, LIMITS), JsonCodec)
    assert isinstance(codec_for_subprotocol("bogus", LIMITS), JsonCodec)
    assert isinstance(codec_for_subprotocol(JSON_SUBPROTOCOL, LIMITS), JsonCodec)
    msgpack_codec = codec_for_subprotocol(MSGPACK_SUBPROTOCOL, LIMITS)
    assert isinstance(msgpack_codec, MsgpackCodec)
    assert msgpack_codec.binary and not JSON.binary
    assert select_subprotocol(["x", MSGPACK_SUBPROTOCOL, JSON_SUBPROTOCOL]) == MSGPACK_SUBPROTOCOL
    assert select_subprotocol(["x"]) is None


def test_json_encoding_is_compact_and_unicode() -> None:
    out = JSON.encode({"type": "x", "note": "café ☕", "n": [1, 2]})
    assert out == '{"type":"x","note":"café ☕","n":[1,2]}'


def test_json_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        JSON.encode({"x": float("nan")})


def test_msgpack_encoding_uses_bin_type() -> None:
    out = MSGPACK.encode({"type": "x", "blob": b"\x00"})
    assert isinstance(out, bytes)
    assert msgpack.unpackb(out, raw=False) == {"type": "x", "blob": b"\x00"}


def test_json_accepts_utf8_bytes() -> None:
    assert JSON.decode('{"type":"ping","n":"é"}'.encode()) == {"type": "ping", "n": "é"}
    assert JSON.decode(bytearray(b'{"a":1}')) == {"a": 1}  # type: ignore[arg-type]


def test_msgpack_refuses_text_frames() -> None:
    assert _code(MSGPACK, '{"type":"ping"}') is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("frame", [None, 1, ["x"], object()])
def test_wrong_python_frame_types_are_bad_request(frame: Any) -> None:
    assert _code(JSON, frame) is ErrorCode.BAD_REQUEST
    assert _code(MSGPACK, frame) is ErrorCode.BAD_REQUEST


def test_size_limit_is_in_utf8_bytes() -> None:
    small = Limits(max_frame_bytes=100)
    codec = JsonCodec(small)
    fits = '"' + "é" * 49 + '"'  # 51 chars, 100 bytes
    assert codec.decode(fits) == "é" * 49
    assert codec.decode(fits.encode()) == "é" * 49
    over = '"' + "é" * 50 + '"'  # 52 chars, 102 bytes
    with pytest.raises(ProtocolError) as info:
        codec.decode(over)
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.fatal
    with pytest.raises(ProtocolError) as info:
        codec.decode(over.encode())
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.fatal
    # Short strings skip the encode entirely (len * 4 <= limit).
    assert codec.decode('"' + "\U0001f600" * 23 + '"') == "\U0001f600" * 23


def test_msgpack_size_limit() -> None:
    codec = MsgpackCodec(Limits(max_frame_bytes=100))
    ok = msgpack.packb({"type": "ping", "pad": "x" * 80})
    assert len(ok) <= 100 and codec.decode(ok)["pad"] == "x" * 80
    with pytest.raises(ProtocolError) as info:
        codec.decode(msgpack.packb({"type": "ping", "pad": "x" * 100}))
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.fatal


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_depth_limit_is_exact(codec: Codec) -> None:
    def nested(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = [value]
        return value

    frame8 = codec.encode({"x": nested(7)})  # the outer object is level 1
    assert codec.decode(frame8) == {"x": nested(7)}
    frame9 = codec.encode({"x": nested(8)})
    assert _code(codec, frame9) is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_container_and_string_limits_are_exact(codec: Codec) -> None:
    ok = {
        "keys": {f"k{i}": i for i in range(64)},
        "array": list(range(512)),
        "string": "s" * 4096,
        "ints": [10**12, -(10**12)],
        "float": 1.5,
        "misc": [True, False, None],
    }
    assert codec.decode(codec.encode(ok)) == ok
    for bad in (
        {"keys": {f"k{i}": i for i in range(65)}},
        {"array": list(range(513))},
        {"string": "s" * 4097},
        {"int": 10**12 + 1},
        {"int": -(10**12) - 1},
    ):
        assert _code(codec, codec.encode(bad)) is ErrorCode.BAD_REQUEST, bad


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_duplicate_keys_last_wins(codec: Codec) -> None:
    if codec is JSON:
        frame: str | bytes = '{"type":"ping","qty":1,"qty":2}'
    else:
        frame = b"\x83" + b"".join(msgpack.packb(v) for v in ["type", "ping", "qty", 1, "qty", 2])
    assert codec.decode(frame) == {"type": "ping", "qty": 2}


def test_errors_after_parsing_carry_the_request_id() -> None:
    frame = json.dumps({"type": "ping", "id": "abc", "junk": "x" * 5000})
    with pytest.raises(ProtocolError) as info:
        JSON.decode(frame)
    assert info.value.request_id == "abc"
    with pytest.raises(ProtocolError) as info:
        MSGPACK.decode(msgpack.packb({"type": "ping", "id": "abc", "junk": [[[[[[[[[1]]]]]]]]]}))
    assert info.value.request_id == "abc"
    # An invalid id is never reported back.
    with pytest.raises(ProtocolError) as info:
        JSON.decode(json.dumps({"type": "ping", "id": "x" * 65, "junk": "x" * 5000}))
    assert info.value.request_id is None


def test_huge_digit_strings_are_rejected_before_int_conversion() -> None:
    # 10**6 digits is far past CPython's int/str conversion limit; must be a clean bad_request.
    codec = JsonCodec(Limits(max_frame_bytes=2_000_000))
    assert _code(codec, "9" * 1_000_000) is ErrorCode.BAD_REQUEST
    assert codec.decode("-1000000000000") == -(10**12)


def test_deep_nesting_is_cheap() -> None:
    import time

    codec = JsonCodec(Limits(max_frame_bytes=1_000_000))
    started = time.perf_counter()
    assert _code(codec, "[" * 400_000 + "]" * 400_000) is ErrorCode.BAD_REQUEST
    assert _code(JSON, "[[[[" * 100000) is ErrorCode.TOO_LARGE
    assert time.perf_counter() - started < 1.0


def test_protocol_error_repr_and_str() -> None:
    exc = ProtocolError(ErrorCode.TOO_LARGE, "m" * 1000, request_id="r", fatal=True)
    assert len(exc.message) == 200
    assert str(exc).startswith("too_large: ")
    assert "fatal=True" in repr(exc)


def test_limits_validation() -> None:
    with pytest.raises(ValueError):
        Limits(max_depth=0)
    assert Limits(max_qty=10).max_qty == 10


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_non_finite_constants_are_refused(constant: str) -> None:
    # Python's json module accepts these non-standard constants; the protocol does not (docs: "NaN").
    for frame in (f'{{"type":"place_order","id":"r","total":{constant}}}', constant, f"[1,{constant}]"):
        with pytest.raises(ProtocolError) as info:
            JSON.decode(frame)
        assert info.value.code is ErrorCode.BAD_REQUEST and not info.value.fatal
        assert info.value.message == f"{constant} is not valid JSON"


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1.5e400"])
def test_json_numbers_overflowing_to_infinity_are_refused(number: str) -> None:
    with pytest.raises(ProtocolError) as info:
        JSON.decode(f'{{"type":"ping","x":{number}}}')
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert info.value.message == "a number is out of range"


def test_json_finite_floats_are_kept_exactly() -> None:
    assert JSON.decode('{"a":1.5,"b":-0.25,"c":1e300,"d":0.0}') == {
        "a": 1.5,
        "b": -0.25,
        "c": 1e300,
        "d": 0.0,
    }


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_msgpack_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(ProtocolError) as info:
        MSGPACK.decode(msgpack.packb({"type": "ping", "id": "r", "x": value}))
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert info.value.request_id == "r"
    assert info.value.message == "non-finite numbers (NaN, Infinity) are not allowed"


@pytest.mark.parametrize("subprotocol", [None, "bogus", JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL])
def test_codec_for_subprotocol_applies_the_given_limits(subprotocol: str | None) -> None:
    limits = Limits(max_string_chars=3)
    codec = codec_for_subprotocol(subprotocol, limits)
    assert codec.limits is limits  # type: ignore[attr-defined]
    frame = codec.encode({"s": "abcd"})
    if subprotocol == MSGPACK_SUBPROTOCOL:
        assert codec.subprotocol == MSGPACK_SUBPROTOCOL and codec.binary and isinstance(frame, bytes)
    else:  # no subprotocol, or one we do not speak: JSON, the default
        assert codec.subprotocol == JSON_SUBPROTOCOL and not codec.binary and isinstance(frame, str)
    assert _code(codec, frame) is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("subprotocol", [None, JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL])
def test_codec_for_subprotocol_defaults_to_the_default_limits(subprotocol: str | None) -> None:
    codec = codec_for_subprotocol(subprotocol)
    assert codec.limits == Limits()  # type: ignore[attr-defined]
    assert codec.decode(codec.encode({"s": "s" * 4096})) == {"s": "s" * 4096}
    assert _code(codec, codec.encode({"s": "s" * 4097})) is ErrorCode.BAD_REQUEST


def test_select_subprotocol_follows_the_client_preference() -> None:
    assert select_subprotocol([JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL]) == JSON_SUBPROTOCOL
    assert select_subprotocol([MSGPACK_SUBPROTOCOL, JSON_SUBPROTOCOL]) == MSGPACK_SUBPROTOCOL
    assert select_subprotocol(["tableside.v9.json", JSON_SUBPROTOCOL]) == JSON_SUBPROTOCOL
    # v2 (deltas) is spoken too, still in the client's order of preference.
    assert select_subprotocol(["tableside.v2.json", JSON_SUBPROTOCOL]) == "tableside.v2.json"
    assert select_subprotocol([MSGPACK_SUBPROTOCOL, "tableside.v2.msgpack"]) == MSGPACK_SUBPROTOCOL
    assert select_subprotocol([]) is None
    assert select_subprotocol(["tableside.v1", "json"]) is None
