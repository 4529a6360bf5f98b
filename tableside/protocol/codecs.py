"""Wire formats: JSON text frames and msgpack binary frames, negotiated by websocket subprotocol.

``decode`` turns one websocket message into plain Python values (dict/list/str/int/float/bool/None) and
guarantees that those values respect ``Limits``: the only exception it ever raises is ``ProtocolError``,
whatever bytes arrive. Schema checks (which fields a message has) live in ``messages.py``.

Order of checks is cheapest-first: the byte size is bounded before any parsing, the parser refuses
oversized integers and non-finite numbers (JSON: orjson, or json.loads with hooks for what orjson would take
differently, see ``JsonCodec._loads``), and one iterative walk over the result enforces
depth, container sizes, string lengths and value types. The walk is iterative (not recursive) so a
hostile nesting depth can never overflow the stack.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgpack
import orjson

from .errors import ErrorCode, ProtocolError, clip
from .limits import Limits

JSON_SUBPROTOCOL = "tableside.v1.json"
MSGPACK_SUBPROTOCOL = "tableside.v1.msgpack"
SUBPROTOCOLS: tuple[str, str] = (JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL)
# v2: the same messages and encodings, except that cart changes go out as ``cart_delta`` (docs/protocol.md).
JSON_V2_SUBPROTOCOL = "tableside.v2.json"
MSGPACK_V2_SUBPROTOCOL = "tableside.v2.msgpack"
V2_SUBPROTOCOLS: tuple[str, str] = (JSON_V2_SUBPROTOCOL, MSGPACK_V2_SUBPROTOCOL)
ALL_SUBPROTOCOLS: tuple[str, ...] = SUBPROTOCOLS + V2_SUBPROTOCOLS


class Codec(Protocol):
    name: str
    subprotocol: str
    binary: bool  # True: frames are sent as websocket binary messages

    def decode(self, frame: str | bytes) -> Any: ...

    def encode(self, message: Mapping[str, Any]) -> str | bytes: ...


class _Reject(Exception):
    """Internal: a limit violation found while parsing/walking; becomes a ``bad_request``."""


def _bad(message: str, request_id: str | None = None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message, request_id=request_id)


def _too_large(size_hint: str, limits: Limits) -> ProtocolError:
    return ProtocolError(
        ErrorCode.TOO_LARGE,
        f"frame of {size_hint} bytes exceeds the limit of {limits.max_frame_bytes} bytes",
        fatal=True,
    )


def string_problem(value: str) -> str | None:
    """Why ``value`` may not appear in a frame, or None if it is fine.

    NUL characters are refused because they truncate strings in C-based consumers (POS drivers, printers,
    logs). Lone surrogates (only reachable through JSON ``\\ud800`` escapes) are refused because they cannot
    be re-encoded as UTF-8, so echoing them to other members would crash the encoder.
    """
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate"
    return None


def valid_request_id(value: Any, limits: Limits) -> str | None:
    """``value`` if it is an acceptable client request id, else None."""
    if type(value) is str and 1 <= len(value) <= limits.max_id_chars and string_problem(value) is None:
        return value
    return None


def salvage_request_id(obj: Any, limits: Limits) -> str | None:
    """The client's ``id`` from a top-level dict, if it is valid; lets errors still be correlated."""
    if isinstance(obj, dict):
        return valid_request_id(obj.get("id"), limits)
    return None


def check_value(obj: Any, limits: Limits) -> None:
    """Enforce the structural limits on a decoded value; raise ``_Reject`` on the first violation."""
    # Explicit stack of (value, depth): recursion would let depth turn into a stack overflow.
    stack: list[tuple[Any, int]] = [(obj, 1)]
    max_int = limits.max_int
    while stack:
        value, depth = stack.pop()
        kind = type(value)
        if kind is str:
            if len(value) > limits.max_string_chars:
                raise _Reject(f"a string is longer than {limits.max_string_chars} characters")
            problem = string_problem(value)
            if problem is not None:
                raise _Reject(f"a string {problem}")
        elif kind is int:
            if not -max_int <= value <= max_int:
                raise _Reject(f"an integer is outside \u00b1{max_int}")
        elif kind is float:
            if not math.isfinite(value):
                raise _Reject("non-finite numbers (NaN, Infinity) are not allowed")
        elif value is None or kind is bool:
            pass
        elif kind is dict:
            if depth > limits.max_depth:
                raise _Reject(f"nesting deeper than {limits.max_depth} levels")
            if len(value) > limits.max_map_keys:
                raise _Reject(f"an object has more than {limits.max_map_keys} keys")
            for key, item in value.items():
                if type(key) is not str:
                    raise _Reject("object keys must be strings")
                stack.append((key, depth))
                if type(item) in (dict, list):
                    stack.append((item, depth + 1))
                else:
                    stack.append((item, depth))
        elif kind is list:
            if depth > limits.max_depth:
                raise _Reject(f"nesting deeper than {limits.max_depth} levels")
            if len(value) > limits.max_array_len:
                raise _Reject(f"an array has more than {limits.max_array_len} elements")
            for item in value:
                if type(item) in (dict, list):
                    stack.append((item, depth + 1))
                else:
                    stack.append((item, depth))
        elif kind is bytes:
            raise _Reject("binary values are not allowed")
        else:
            # msgpack Timestamp / ExtType and anything else a parser might produce.
            raise _Reject(f"values of type {kind.__name__} are not allowed")


def _validated(obj: Any, limits: Limits) -> Any:
    try:
        check_value(obj, limits)
    except _Reject as exc:
        raise _bad(str(exc), salvage_request_id(obj, limits)) from None
    return obj


class JsonCodec:
    """``tableside.v1.json``: UTF-8 JSON in text frames (binary frames holding UTF-8 JSON are accepted too).

    Duplicate keys: the last occurrence wins (the JSON and msgpack parsers' own behaviour), so both codecs
    agree. Floats are accepted as values; fields that need integers reject them in ``messages.py``.
    """

    name = "json"
    subprotocol = JSON_SUBPROTOCOL
    binary = False
    deltas = False  # v2 (``tableside.v2.json``): cart changes as ``cart_delta``

    __slots__ = ("limits", "_max_int_digits", "_long_digits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        # Python refuses int() of very long digit strings (and it is quadratic below that limit), so the
        # digit count is bounded before conversion.
        self._max_int_digits = len(str(limits.max_int))
        # A run of more digits than the largest allowed integer has: the frame is parsed by json.loads, whose
        # hooks refuse such an integer (orjson would turn one beyond 64 bits into a float and let it pass).
        self._long_digits = re.compile(f"[0-9]{{{self._max_int_digits + 1}}}")

    def _parse_int(self, text: str) -> int:
        digits = len(text) - (1 if text.startswith("-") else 0)
        if digits > self._max_int_digits:
            raise _Reject(f"an integer is outside \u00b1{self.limits.max_int}")
        return int(text)

    @staticmethod
    def _parse_float(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):  # e.g. 1e999 overflows to inf
            raise _Reject("a number is out of range")
        return value

    @staticmethod
    def _parse_constant(text: str) -> Any:
        # The json module calls this only for its non-standard constants NaN, Infinity and -Infinity.
        raise _Reject(f"{text} is not valid JSON")

    def _utf8_size_exceeds(self, frame: str) -> bool:
        limit = self.limits.max_frame_bytes
        n = len(frame)
        if n > limit:  # every character is at least one byte
            return True
        if n * 4 <= limit:  # every character is at most four bytes: no need to encode
            return False
        # surrogatepass: a lone surrogate counts 3 bytes here; it is rejected later, not crashed on.
        return len(frame.encode("utf-8", "surrogatepass")) > limit

    def decode(self, frame: str | bytes) -> Any:
        limits = self.limits
        if isinstance(frame, str):
            if self._utf8_size_exceeds(frame):
                raise _too_large(f"more than {limits.max_frame_bytes}", limits)
            text = frame
        elif isinstance(frame, bytes | bytearray | memoryview):
            if len(frame) > limits.max_frame_bytes:
                raise _too_large(str(len(frame)), limits)
            try:
                text = bytes(frame).decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("frame is not valid UTF-8") from None
        else:
            raise _bad("frame must be text or bytes")
        try:
            obj = self._loads(text)
        except _Reject as exc:
            raise _bad(str(exc)) from None
        except RecursionError:
            # Nesting deep enough to hit the interpreter's recursion limit inside the C scanner.
            raise _bad(f"nesting deeper than {limits.max_depth} levels") from None
        except ValueError as exc:  # JSONDecodeError, and int()/float() edge cases
            raise _bad(f"invalid JSON: {clip(str(exc), 80)}") from None
        except Exception as exc:  # the contract is "only ProtocolError escapes decode"
            raise _bad(f"invalid JSON ({type(exc).__name__})") from None
        return _validated(obj, limits)

    def _loads(self, text: str) -> Any:
        """orjson for the frames it parses exactly as json.loads with our hooks does, json.loads otherwise.

        orjson refuses NaN/Infinity literals, numbers that overflow to infinity, lone-surrogate escapes and
        deep nesting, and lets the last of duplicate keys win, like the hooks and json.loads. It differs on
        integers beyond 64 bits (a float instead of a refusal), which the digit-run check keeps from it. Any
        frame orjson refuses is parsed again by json.loads, so a refusal keeps its exact words."""
        if self._long_digits.search(text) is None:
            try:
                return orjson.loads(text)
            except ValueError:  # orjson.JSONDecodeError
                pass
        return json.loads(
            text,
            parse_int=self._parse_int,
            parse_float=self._parse_float,
            parse_constant=self._parse_constant,
        )

    def encode(self, message: Mapping[str, Any]) -> str:
        if message.get("type") in FAST_JSON_TYPES:
            try:
                return orjson.dumps(message, option=_ORJSON_OPTIONS).decode("utf-8")
            except TypeError:
                pass  # a value orjson does not take the way json.dumps does: json.dumps decides below
        return _dumps(message)

    def encode_bytes(self, message: Mapping[str, Any]) -> bytes:
        """``encode`` as UTF-8 bytes (what a websocket frame carries), without a round trip through str."""
        if message.get("type") in FAST_JSON_TYPES:
            try:
                return orjson.dumps(message, option=_ORJSON_OPTIONS)
            except TypeError:
                pass
        return _dumps(message).encode("utf-8")


def _dumps(message: Mapping[str, Any]) -> str:
    # allow_nan=False: NaN is not JSON and our own decoder would reject it from a peer.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# The messages of the table hot path (acks, errors, carts, deltas, order events) go through orjson, about
# 5-15x faster than json.dumps. orjson's bytes equal json.dumps' (compact, ensure_ascii=False) for every value
# these messages hold: str (escapes, U+2028, astral characters), int within 64 bits, bool, None, dict, list.
# They hold no float - money is integer minor units, times are ISO strings - which matters because orjson
# writes NaN/Infinity as null (json.dumps refuses them) and floats below 1e-4 as 0.00001 / 2.5e-7 (json.dumps:
# 1e-05 / 2.5e-07). Every other message type (kitchen, till, reservations: timestamps as floats) keeps
# json.dumps. Where orjson refuses a value (an int beyond 64 bits, a non-str key, a non-dict mapping, a
# str/int/dict/list subclass, a dataclass or datetime: the passthrough options make it refuse those instead of
# serialising them its own way), json.dumps encodes it as before, or refuses it as before.
# tests/protocol/test_codecs_orjson.py compares both encoders over these message shapes.
FAST_JSON_TYPES: frozenset[str] = frozenset(
    {
        "ack",
        "error",
        "pong",
        "snapshot",
        "welcome",
        "cart_updated",
        "cart_delta",
        "cart_locked",
        "order_confirmed",
        "order_failed",
        "order_status",
        "member_joined",
        "member_left",
        "session_closed",
    }
)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _reject_ext(code: int, data: bytes) -> Any:
    raise _Reject(f"msgpack extension type {code} is not allowed")


class MsgpackCodec:
    """``tableside.v1.msgpack``: msgpack in binary frames. Text frames are refused on this subprotocol."""

    name = "msgpack"
    subprotocol = MSGPACK_SUBPROTOCOL
    binary = True
    deltas = False  # v2 (``tableside.v2.msgpack``): cart changes as ``cart_delta``

    __slots__ = ("limits",)

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def decode(self, frame: str | bytes) -> Any:
        limits = self.limits
        if isinstance(frame, str):
            raise _bad("text frames are not accepted on the msgpack subprotocol")
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise _bad("frame must be bytes")
        if len(frame) > limits.max_frame_bytes:
            raise _too_large(str(len(frame)), limits)
        try:
            obj = msgpack.unpackb(
                frame,
                raw=False,
                use_list=True,
                strict_map_key=True,
                ext_hook=_reject_ext,
                # A UTF-8 character is at most 4 bytes; the exact character count is checked in the walk.
                max_str_len=limits.max_string_chars * 4,
                # bin/ext values are refused by the walk/ext_hook with a clear message; the frame-size
                # bound already caps their length.
                max_bin_len=limits.max_frame_bytes,
                max_ext_len=limits.max_frame_bytes,
                max_array_len=limits.max_array_len,
                max_map_len=limits.max_map_keys,
            )
        except _Reject as exc:
            raise _bad(str(exc)) from None
        except msgpack.ExtraData:
            raise _bad("trailing data after the msgpack object") from None
        except msgpack.StackError:
            raise _bad(f"nesting deeper than {limits.max_depth} levels") from None
        except Exception as exc:  # the contract is "only ProtocolError escapes decode"
            raise _bad(f"invalid msgpack: {clip(str(exc), 80)}") from None
        return _validated(obj, limits)

    def encode(self, message: Mapping[str, Any]) -> bytes:
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        return packed


class JsonV2Codec(JsonCodec):
    """``tableside.v2.json``: the JSON codec of v1; the socket receives cart changes as deltas."""

    subprotocol = JSON_V2_SUBPROTOCOL
    deltas = True
    __slots__ = ()


class MsgpackV2Codec(MsgpackCodec):
    """``tableside.v2.msgpack``: the msgpack codec of v1; the socket receives cart changes as deltas."""

    subprotocol = MSGPACK_V2_SUBPROTOCOL
    deltas = True
    __slots__ = ()


def codec_for_subprotocol(name: str | None, limits: Limits | None = None) -> Codec:
    """The codec for a negotiated subprotocol; no subprotocol (or an unknown one) means JSON (v1)."""
    lim = limits if limits is not None else Limits()
    if name == MSGPACK_SUBPROTOCOL:
        return MsgpackCodec(lim)
    if name == JSON_V2_SUBPROTOCOL:
        return JsonV2Codec(lim)
    if name == MSGPACK_V2_SUBPROTOCOL:
        return MsgpackV2Codec(lim)
    return JsonCodec(lim)


def wants_deltas(codec: Codec) -> bool:
    """True for a v2 codec: the socket gets ``cart_delta`` instead of ``cart_updated``."""
    return bool(getattr(codec, "deltas", False))


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The first of the client's offered subprotocols that we speak (client preference order), else None."""
    for candidate in offered:
        if candidate in ALL_SUBPROTOCOLS:
            return candidate
    return None
