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
