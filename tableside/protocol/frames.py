"""Encode-once outbound frames.

A cart change is broadcast to every member of a table (and order events to every kitchen screen).
Wrapping the message in one ``OutboundFrame`` shared by all recipients means it is serialised once per
wire format in use rather than once per socket (Phoenix's "fastlane" idea).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .codecs import Codec


class OutboundFrame:
    """One server message plus its per-codec encodings, computed lazily and cached by ``codec.name``.

    The message is shallow-copied on construction; callers must not mutate nested values afterwards, since
    a cached encoding would no longer match.
    """

    __slots__ = ("message", "_encoded")

    def __init__(self, message: Mapping[str, Any]) -> None:
        self.message: dict[str, Any] = dict(message)
        self._encoded: dict[str, str | bytes] = {}

    @property
    def type(self) -> str | None:
        value = self.message.get("type")
        return value if isinstance(value, str) else None

    def encoded(self, codec: Codec) -> str | bytes:
        cached = self._encoded.get(codec.name)
        if cached is None:
            cached = codec.encode(self.message)
            self._encoded[codec.name] = cached
        return cached

    def __repr__(self) -> str:
        return f"OutboundFrame(type={self.type!r}, encodings={sorted(self._encoded)!r})"
