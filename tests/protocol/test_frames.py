from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tableside.protocol import (
    JsonCodec,
    Limits,
    MsgpackCodec,
    OutboundFrame,
    cart_updated,
)


class CountingCodec:
    """Wraps a real codec and counts encode calls."""

    def __init__(self, inner: JsonCodec | MsgpackCodec) -> None:
        self.inner = inner
        self.name = inner.name
        self.subprotocol = inner.subprotocol
        self.binary = inner.binary
        self.encodes = 0

    def decode(self, frame: str | bytes) -> Any:
        return self.inner.decode(frame)

    def encode(self, message: Mapping[str, Any]) -> str | bytes:
        self.encodes += 1
        return self.inner.encode(message)


def test_encodes_once_per_codec_for_a_broadcast() -> None:
    limits = Limits()
    json_codec = CountingCodec(JsonCodec(limits))
    msgpack_codec = CountingCodec(MsgpackCodec(limits))
    frame = OutboundFrame(cart_updated({"revision": 3, "lines": [{"line_id": "l1", "qty": 2}]}))
    # 50 members, alternating wire formats.
    sent = [frame.encoded(json_codec if i % 2 else msgpack_codec) for i in range(50)]
    assert json_codec.encodes == 1
    assert msgpack_codec.encodes == 1
    assert isinstance(sent[1], str) and isinstance(sent[0], bytes)
    assert all(s is sent[i % 2] for i, s in enumerate(sent))
    assert json_codec.decode(sent[1]) == frame.message
    assert msgpack_codec.decode(sent[0]) == frame.message


def test_cache_is_keyed_by_codec_name_not_instance() -> None:
    limits = Limits()
    first, second = CountingCodec(JsonCodec(limits)), CountingCodec(JsonCodec(limits))
    frame = OutboundFrame({"type": "pong"})
    assert frame.encoded(first) == frame.encoded(second) == '{"type":"pong"}'
    assert first.encodes + second.encodes == 1


def test_message_is_copied_and_type_exposed() -> None:
    source = {"type": "session_closed", "reason": "paid"}
    frame = OutboundFrame(source)
    source["reason"] = "changed"
    assert frame.message["reason"] == "paid"
    assert frame.type == "session_closed"
    assert "session_closed" in repr(frame)


def test_wire_frame_is_a_valid_unmasked_websocket_frame_built_once() -> None:
    import struct

    from tableside.protocol import JsonCodec, Limits, MsgpackCodec, OutboundFrame
    from tableside.protocol.frames import websocket_frame

    for size in (0, 10, 125, 126, 65535, 65536):
        payload = b"x" * size
        wire = websocket_frame(payload, binary=True)
        assert wire[0] == 0x82
        n = wire[1]
        assert n & 0x80 == 0  # never masked
        if n < 126:
            assert n == size and wire[2:] == payload
        elif n == 126:
            assert struct.unpack("!H", wire[2:4])[0] == size and wire[4:] == payload
        else:
            assert struct.unpack("!Q", wire[2:10])[0] == size and wire[10:] == payload
    frame = OutboundFrame({"type": "pong", "id": "é"})
    text = frame.wire(JsonCodec(Limits()))
    assert text[0] == 0x81 and text[2:].decode() == frame.encoded(JsonCodec(Limits()))
    assert frame.wire(JsonCodec(Limits())) is text
    assert frame.wire(MsgpackCodec(Limits()))[0] == 0x82


def test_wire_frame_uses_the_minimal_length_encoding() -> None:
    # RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length".
    from tableside.protocol.frames import websocket_frame

    for size, header in (
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ):
        payload = b"y" * size
        assert websocket_frame(payload, binary=False) == header + payload
