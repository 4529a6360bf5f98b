"""``ProtocolError`` and the clipping of quoted input (errors.py): an error message goes back to the client
and into logs, so it is bounded however long the offending input was."""

from __future__ import annotations

import pytest

from tableside.protocol import ErrorCode, ProtocolError
from tableside.protocol.errors import clip


def test_clip_keeps_short_text_unchanged() -> None:
    assert clip("") == ""
    assert clip("x" * 80) == "x" * 80  # the default limit is 80 characters
    assert clip("abc", 3) == "abc"


@pytest.mark.parametrize("limit", [1, 2, 3, 16, 40, 80, 200])
def test_clip_cuts_to_exactly_the_limit_with_an_ellipsis(limit: int) -> None:
    text = "abcdefghij" * 30
    clipped = clip(text, limit)
    assert len(clipped) == limit
    assert clipped == text[: limit - 1] + "\u2026"
    # One character over the limit is already cut.
    assert clip(text[: limit + 1], limit) == clipped


def test_clip_default_limit_is_80() -> None:
    assert clip("y" * 81) == "y" * 79 + "\u2026"


def test_protocol_error_fields() -> None:
    exc = ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type 'x'", request_id="r1")
    assert exc.code is ErrorCode.UNKNOWN_TYPE
    assert exc.message == "unknown message type 'x'"
    assert exc.request_id == "r1"
    assert exc.fatal is False  # only abuse (size) is fatal, and only when said so
    assert str(exc) == "unknown_type: unknown message type 'x'"
    # The repr (what logs show) names every field and its value.
    for part in (
        "code='unknown_type'",
        "message=\"unknown message type 'x'\"",
        "request_id='r1'",
        "fatal=False",
    ):
        assert part in repr(exc)
    bare = ProtocolError(ErrorCode.BAD_REQUEST, "m")
    assert bare.request_id is None and bare.fatal is False
    fatal = ProtocolError(ErrorCode.TOO_LARGE, "big", fatal=True)
    assert fatal.fatal is True and fatal.request_id is None


def test_protocol_error_message_is_clipped_to_200_characters() -> None:
    exact = ProtocolError(ErrorCode.BAD_REQUEST, "m" * 200)
    assert exact.message == "m" * 200
    long = ProtocolError(ErrorCode.BAD_REQUEST, "m" * 5000, request_id="r")
    assert long.message == "m" * 199 + "\u2026"
    assert str(long) == "bad_request: " + "m" * 199 + "\u2026"
