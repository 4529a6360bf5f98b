"""Encode-once outbound frames.

A cart change is broadcast to every member of a table (and order events to every kitchen screen).
Wrapping the message in one ``OutboundFrame`` shared by all recipients means it is serialised once per
wire format in use rather than once per socket (Phoenix's "fastlane" idea).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from .codecs import Codec, wants_deltas


class OutboundFrame:
    """One server message plus its per-codec encodings, computed lazily and cached by ``codec.name``.

    A cart change carries two forms: ``message`` (v1, ``cart_updated``) and ``v2`` (``cart_delta``), and a
    socket gets the form of its subprotocol (``wants_deltas(codec)``). Each (form, codec) is encoded at
    most once; a frame without ``v2`` gives every socket ``message``.

    The message is shallow-copied on construction; callers must not mutate nested values afterwards, since
    a cached encoding would no longer match.
    """

    __slots__ = ("message", "v2", "_encoded", "_wire")

    def __init__(self, message: Mapping[str, Any], v2: Mapping[str, Any] | None = None) -> None:
        self.message: dict[str, Any] = dict(message)
        self.v2: dict[str, Any] | None = dict(v2) if v2 is not None else None
        self._encoded: dict[str, str | bytes] = {}
        self._wire: dict[str, bytes] = {}

    def _form(self, codec: Codec) -> tuple[str, dict[str, Any]]:
        """The cache key and the message for ``codec``'s sockets."""
        if self.v2 is not None and wants_deltas(codec):
            return codec.name + "/v2", self.v2
        return codec.name, self.message

    def message_for(self, codec: Codec) -> dict[str, Any]:
        return self._form(codec)[1]

    @property
    def type(self) -> str | None:
        value = self.message.get("type")
        return value if isinstance(value, str) else None

    def encoded(self, codec: Codec) -> str | bytes:
        key, message = self._form(codec)
        cached = self._encoded.get(key)
        if cached is None:
            cached = codec.encode(message)
            self._encoded[key] = cached
        return cached

    def wire(self, codec: Codec) -> bytes:
        """The complete server-to-client websocket frame (RFC 6455, unmasked, uncompressed), built once
        per codec: a broadcast to N members is N writes of the same bytes, no per-member framing."""
        key, message = self._form(codec)
        cached = self._wire.get(key)
        if cached is None:
            payload = self._encoded.get(key)
            if payload is None:
                # Straight to bytes where the codec can (JSON: no str in between); not kept in ``_encoded``,
                # so a socket that needs the text form as well (only a compressing one, and none is) encodes again.
                to_bytes = getattr(codec, "encode_bytes", None)
                payload = to_bytes(message) if to_bytes is not None else codec.encode(message)
            data = payload.encode("utf-8") if isinstance(payload, str) else payload
            cached = websocket_frame(data, binary=codec.binary)
            self._wire[key] = cached
        return cached

    def __repr__(self) -> str:
        return f"OutboundFrame(type={self.type!r}, encodings={sorted(self._encoded)!r})"


def websocket_frame(payload: bytes, *, binary: bool) -> bytes:
    """A single final websocket data frame as a server sends it (no mask, no extensions)."""
    first = 0x80 | (0x2 if binary else 0x1)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload
