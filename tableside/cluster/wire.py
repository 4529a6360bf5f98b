"""Messages between nodes: plain dicts with a kind ``k``, msgpack-encoded. Pure (no I/O).

To an owner's inbox: ``connect``, ``disconnect``, ``cmd`` (a member's message, or an HTTP ask with ``q``),
``get`` (cart / table info), ``tell`` (close the sitting, kitchen status), ``resync`` (send a forwarding
node's members the whole cart again). To a forwarding node: ``out`` (frames and closes for its sockets, in
order, numbered per stream so a gap is seen; a cart change's v2 form, ``cart_delta``, rides beside its item
under ``d``: ``{item index: delta message}``, which a node that predates v2 ignores) and ``reply``. On the broadcast channel: ``menu``,
``kitchen`` (wake the feeds), ``kitchen_msg`` (a message for every kitchen screen), ``end_sessions`` and
``gone`` (a node left: forget its sockets), ``till`` (a message for one staff user's till sockets), ``customer`` (a message for one customer's
``/ws/me`` sockets)."""

from __future__ import annotations

from typing import Any

import msgpack

CONNECT = "connect"
DISCONNECT = "disconnect"
CMD = "cmd"
GET = "get"
IMPORT = "import"
TELL = "tell"
RESYNC = "resync"
OUT = "out"
REPLY = "reply"
MENU = "menu"
KITCHEN = "kitchen"
KITCHEN_MSG = "kitchen_msg"
END_SESSIONS = "end_sessions"
GONE = "gone"
TILL = "till"
CUSTOMER = "customer"

KINDS = frozenset({CONNECT, DISCONNECT, CMD, GET, IMPORT, TELL, RESYNC, OUT, REPLY, MENU, KITCHEN, KITCHEN_MSG, END_SESSIONS, GONE, TILL,
                   CUSTOMER})

# Items of an ``out`` message: send a frame to connections, or close connections.
FRAME = "f"
CLOSE = "x"

BROADCAST_CHANNEL = "ts:all"


def inbox(node_id: str) -> str:
    return f"ts:node:{node_id}"


def lease_key(group_id: str) -> str:
    return f"ts:lease:{group_id}"


class BadWireMessage(ValueError):
    pass


def encode(message: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(message, use_bin_type=True)
    return out


def decode(data: bytes) -> dict[str, Any]:
    """One inter-node message; ``BadWireMessage`` for anything that is not one (the inbox loop logs and
    goes on: a bad message never stops a node)."""
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types
        raise BadWireMessage(f"undecodable cluster message: {exc!r}") from exc
    if not isinstance(message, dict) or message.get("k") not in KINDS:
        raise BadWireMessage("not a cluster message")
    return message


def group_outbox(items: list[tuple[str, Any, int]]) -> list[list[Any]]:
    """Fold ``(kind, payload, connection)`` entries, in order, into ``out`` items: consecutive sends of the
    same frame become one item listing every connection (the frame is encoded once per node, not once per
    member). ``payload`` is the frame's message dict (or the frame itself: an object with ``message`` and
    ``v2``) for sends and ``(code, reason)`` for closes. The item of a frame with a v2 form has that form
    as a fourth element; ``split_deltas`` moves it out before the message is sent."""
    grouped: list[list[Any]] = []
    last_payload: Any = None
    for kind, payload, conn in items:
        if grouped and kind == FRAME and grouped[-1][0] == FRAME and payload is last_payload:
            grouped[-1][2].append(conn)
            last_payload = payload
            continue
        if kind == FRAME:
            if isinstance(payload, dict):
                grouped.append([FRAME, payload, [conn]])
            else:
                item = [FRAME, payload.message, [conn]]
                if payload.v2 is not None:
                    item.append(payload.v2)
                grouped.append(item)
        else:
            code, reason = payload
            grouped.append([CLOSE, [code, reason], [conn]])
        last_payload = payload
    return grouped


def split_deltas(grouped: list[list[Any]]) -> dict[int, Any]:
    """Take the v2 forms out of ``group_outbox`` items (which keep ``[kind, payload, connections]``, the v1
    shape) into ``{item index: v2 message}`` for the ``out`` message's ``d``."""
    deltas: dict[int, Any] = {}
    for index, item in enumerate(grouped):
        if len(item) > 3:
            deltas[index] = item.pop(3)
    return deltas
