"""Client -> server messages: typed, validated, immutable.

``parse_client_message`` (guests) and ``parse_kitchen_message`` (kitchen screens) turn a decoded frame
into a dataclass or raise ``ProtocolError``. Rules:

* the frame must be an object with a string ``type``; an unrecognised type is ``unknown_type``;
* ``id`` is optional; when present it must be a string of 1..``max_id_chars`` characters, and it is echoed
  in the reply (``ack`` / ``error`` / ``pong`` / ``snapshot``) so the client can correlate;
* known fields are strictly typed (``true`` is not an integer, ``1.0`` is not a quantity);
* optional fields may be missing or ``null``;
* unknown extra fields are ignored (forward compatibility: newer clients may send more), but they were
  already bounded by the codec limits (size, depth, string length, numbers) before parsing;
* strings are not stripped or normalised; NUL characters and lone surrogates are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .codecs import Codec, string_problem, valid_request_id
from .errors import ErrorCode, ProtocolError, clip
from .limits import Limits


@dataclass(frozen=True, slots=True)
class AddItem:
    request_id: str | None
    menu_item_id: str
    qty: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class UpdateItem:
    request_id: str | None
    line_id: str
    qty: int  # 0 removes the line


@dataclass(frozen=True, slots=True)
class RemoveItem:
    request_id: str | None
    line_id: str


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """The client's view of the total is only a consistency check (``total_mismatch``); the server prices
    the order from its own cart and menu, so fields such as ``cart_items`` are ignored."""

    request_id: str | None
    total: int | None = None
    special_instructions: str = ""


@dataclass(frozen=True, slots=True)
class GetSnapshot:
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Leave:
    """The member leaves the table group for good: their token is revoked, they leave the members list and
    their place in the group is free for somebody else."""

    request_id: str | None


@dataclass(frozen=True, slots=True)
class SetKitchenStatus:
    request_id: str | None
    order_id: str
    status: str  # one of KITCHEN_STATUSES


ClientMessage = AddItem | UpdateItem | RemoveItem | PlaceOrder | GetSnapshot | Ping | Leave
KitchenMessage = SetKitchenStatus | Ping

KITCHEN_STATUSES: Final[frozenset[str]] = frozenset({"new", "preparing", "ready", "served", "recall"})

# Wire names, one place so parser, serialiser and tests cannot drift apart.
ADD_ITEM: Final = "add_item"
UPDATE_ITEM: Final = "update_item"
REMOVE_ITEM: Final = "remove_item"
PLACE_ORDER: Final = "place_order"
GET_SNAPSHOT: Final = "get_snapshot"
PING: Final = "ping"
LEAVE: Final = "leave"
SET_STATUS: Final = "set_status"

CLIENT_MESSAGE_TYPES: Final[frozenset[str]] = frozenset(
    {ADD_ITEM, UPDATE_ITEM, REMOVE_ITEM, PLACE_ORDER, GET_SNAPSHOT, PING, LEAVE}
)
KITCHEN_MESSAGE_TYPES: Final[frozenset[str]] = frozenset({SET_STATUS, PING})


class _Fields:
    """Typed accessors over one message object; every failure names the field and carries the request id."""

    __slots__ = ("obj", "limits", "request_id")

    def __init__(self, obj: Mapping[str, Any], limits: Limits, request_id: str | None) -> None:
        self.obj = obj
        self.limits = limits
        self.request_id = request_id

    def fail(self, message: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_REQUEST, message, request_id=self.request_id)

    def string(self, name: str, *, max_chars: int, required: bool, allow_empty: bool) -> str:
        value = self.obj.get(name)
        if value is None:
            if required:
                raise self.fail(f"{name} is required")
            return ""
        if type(value) is not str:
            raise self.fail(f"{name} must be a string")
        if not allow_empty and not value:
            raise self.fail(f"{name} must not be empty")
        if len(value) > max_chars:
            raise self.fail(f"{name} must be at most {max_chars} characters")
        problem = string_problem(value)
        if problem is not None:
            raise self.fail(f"{name} {problem}")
        return value

    def ref(self, name: str) -> str:
        return self.string(name, max_chars=self.limits.max_ref_chars, required=True, allow_empty=False)

    def _int(self, name: str, value: Any, low: int, high: int) -> int:
        # type() rather than isinstance(): bool is an int subclass and true must not mean 1.
        if type(value) is not int or not low <= value <= high:
            raise self.fail(f"{name} must be an integer between {low} and {high}")
        return int(value)

    def required_int(self, name: str, *, low: int, high: int) -> int:
        value = self.obj.get(name)
        if value is None:
            raise self.fail(f"{name} is required")
        return self._int(name, value, low, high)

    def optional_int(self, name: str, *, low: int, high: int) -> int | None:
        value = self.obj.get(name)
        if value is None:
            return None
        return self._int(name, value, low, high)


def _parse_add_item(f: _Fields) -> AddItem:
    menu_item_id = f.ref("menu_item_id")
    return AddItem(
        request_id=f.request_id,
        menu_item_id=menu_item_id,
        qty=f.required_int("qty", low=1, high=f.limits.max_qty),
        note=f.string("note", max_chars=f.limits.max_note_chars, required=False, allow_empty=True),
    )


def _parse_update_item(f: _Fields) -> UpdateItem:
    line_id = f.ref("line_id")
    qty = f.required_int("qty", low=0, high=f.limits.max_qty)
    return UpdateItem(request_id=f.request_id, line_id=line_id, qty=qty)


def _parse_remove_item(f: _Fields) -> RemoveItem:
    return RemoveItem(request_id=f.request_id, line_id=f.ref("line_id"))


def _parse_place_order(f: _Fields) -> PlaceOrder:
    return PlaceOrder(
        request_id=f.request_id,
        total=f.optional_int("total", low=0, high=f.limits.max_int),
        special_instructions=f.string(
            "special_instructions",
            max_chars=f.limits.max_instructions_chars,
            required=False,
            allow_empty=True,
        ),
    )


def _parse_get_snapshot(f: _Fields) -> GetSnapshot:
    return GetSnapshot(request_id=f.request_id)


def _parse_ping(f: _Fields) -> Ping:
    return Ping(request_id=f.request_id)


def _parse_leave(f: _Fields) -> Leave:
    return Leave(request_id=f.request_id)


def _parse_set_status(f: _Fields) -> SetKitchenStatus:
    order_id = f.ref("order_id")
    status = f.obj.get("status")
    if type(status) is not str or status not in KITCHEN_STATUSES:
        raise f.fail(f"status must be one of {', '.join(sorted(KITCHEN_STATUSES))}")
    return SetKitchenStatus(request_id=f.request_id, order_id=order_id, status=status)


_CLIENT_PARSERS: Final[dict[str, Callable[[_Fields], ClientMessage]]] = {
    ADD_ITEM: _parse_add_item,
    UPDATE_ITEM: _parse_update_item,
    REMOVE_ITEM: _parse_remove_item,
    PLACE_ORDER: _parse_place_order,
    GET_SNAPSHOT: _parse_get_snapshot,
    PING: _parse_ping,
    LEAVE: _parse_leave,
}

_KITCHEN_PARSERS: Final[dict[str, Callable[[_Fields], KitchenMessage]]] = {
    SET_STATUS: _parse_set_status,
    PING: _parse_ping,
}


def _envelope(obj: Any, limits: Limits) -> tuple[_Fields, str]:
    """Check the parts every message shares (object, ``id``, ``type``)."""
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a message must be an object")
    request_id: str | None = None
    if "id" in obj:
        request_id = valid_request_id(obj["id"], limits)
        if request_id is None:
            # The id itself is unusable, so the error cannot carry it.
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"id must be a string of 1 to {limits.max_id_chars} characters"
            )
    msg_type = obj.get("type")
    if type(msg_type) is not str:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "type must be a string", request_id=request_id)
    return _Fields(obj, limits, request_id), msg_type


def _unknown_type(msg_type: str, request_id: str | None) -> ProtocolError:
    return ProtocolError(
        ErrorCode.UNKNOWN_TYPE, f"unknown message type {clip(repr(msg_type), 40)}", request_id=request_id
    )


def parse_client_message(obj: Any, limits: Limits) -> ClientMessage:
    """A guest message from a decoded frame; raises ``ProtocolError`` on anything invalid."""
    fields, msg_type = _envelope(obj, limits)
    parser = _CLIENT_PARSERS.get(msg_type)
    if parser is None:
        raise _unknown_type(msg_type, fields.request_id)
    return parser(fields)


def parse_kitchen_message(obj: Any, limits: Limits) -> KitchenMessage:
    """A kitchen-screen message (``set_status`` or ``ping``); raises ``ProtocolError`` on anything invalid."""
    fields, msg_type = _envelope(obj, limits)
    parser = _KITCHEN_PARSERS.get(msg_type)
    if parser is None:
        raise _unknown_type(msg_type, fields.request_id)
    return parser(fields)


def read_client_frame(codec: Codec, frame: str | bytes, limits: Limits) -> ClientMessage:
    """Decode one websocket message and parse it as a guest message: the server's single entry point.

    Only ``ProtocolError`` escapes, whatever the frame holds.
    """
    return parse_client_message(codec.decode(frame), limits)


# The name used in the protocol test corpus; same function.
decode_and_parse = read_client_frame


def read_kitchen_frame(codec: Codec, frame: str | bytes, limits: Limits) -> KitchenMessage:
    """Decode one websocket message and parse it as a kitchen-screen message."""
    return parse_kitchen_message(codec.decode(frame), limits)


def _with_id(msg_type: str, request_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": msg_type}
    if request_id is not None:
        out["id"] = request_id
    return out


def client_message_to_wire(msg: ClientMessage | KitchenMessage) -> dict[str, Any]:
    """The wire dict for a client message (for test and load-generator clients; the inverse of parsing)."""
    if isinstance(msg, AddItem):
        out = _with_id(ADD_ITEM, msg.request_id)
        out.update(menu_item_id=msg.menu_item_id, qty=msg.qty)
        if msg.note:
            out["note"] = msg.note
        return out
    if isinstance(msg, UpdateItem):
        out = _with_id(UPDATE_ITEM, msg.request_id)
        out.update(line_id=msg.line_id, qty=msg.qty)
        return out
    if isinstance(msg, RemoveItem):
        out = _with_id(REMOVE_ITEM, msg.request_id)
        out["line_id"] = msg.line_id
        return out
    if isinstance(msg, PlaceOrder):
        out = _with_id(PLACE_ORDER, msg.request_id)
        if msg.total is not None:
            out["total"] = msg.total
        if msg.special_instructions:
            out["special_instructions"] = msg.special_instructions
        return out
    if isinstance(msg, GetSnapshot):
        return _with_id(GET_SNAPSHOT, msg.request_id)
    if isinstance(msg, Ping):
        return _with_id(PING, msg.request_id)
    if isinstance(msg, Leave):
        return _with_id(LEAVE, msg.request_id)
    out = _with_id(SET_STATUS, msg.request_id)
    out.update(order_id=msg.order_id, status=msg.status)
    return out
