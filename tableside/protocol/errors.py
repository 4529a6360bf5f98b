"""Typed protocol failures.

Every problem with an inbound frame surfaces as one ``ProtocolError`` carrying a machine-readable
``ErrorCode``; the server turns it into an ``error`` message (or closes the socket when ``fatal``) without
having to know which layer (size check, codec, schema) rejected the frame.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    UNKNOWN_ITEM = "unknown_item"
    ITEM_UNAVAILABLE = "item_unavailable"
    CART_LOCKED = "cart_locked"
    ORDER_IN_PROGRESS = "order_in_progress"
    EMPTY_CART = "empty_cart"
    TOTAL_MISMATCH = "total_mismatch"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    SESSION_CLOSED = "session_closed"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"


# Error messages go back to the client and into logs; capping what we quote from the input keeps a hostile
# 64 KiB string from being reflected (or logged) over and over.
_CLIP_CHARS = 80


def clip(text: str, limit: int = _CLIP_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when something was cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "\u2026"


class ProtocolError(Exception):
    """A frame or message the protocol rejects.

    ``request_id`` is the client's ``id`` when it could be read validly from a dict frame, so the client can
    correlate the error with its request. ``fatal`` is True only for abuse that should close the connection
    (oversize frames); everything else is answered with an ``error`` message and the connection stays up.
    """

    __slots__ = ("code", "message", "request_id", "fatal")

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        request_id: str | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(code, message)
        self.code: ErrorCode = code
        self.message: str = clip(message, 200)
        self.request_id: str | None = request_id
        self.fatal: bool = fatal

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"ProtocolError(code={self.code.value!r}, message={self.message!r}, "
            f"request_id={self.request_id!r}, fatal={self.fatal!r})"
        )
