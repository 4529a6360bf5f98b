"""tableside's wire protocol, sans I/O.

Pure functions and value objects only: no sockets, event loop, database or clock (enforced by
``tests/protocol/test_purity.py``), so every rule here is testable without a network. The server feeds
received websocket messages to ``read_client_frame`` / ``read_kitchen_frame`` and sends
``OutboundFrame(server_messages.xxx(...)).encoded(codec)``.
"""

from __future__ import annotations

from .codecs import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    SUBPROTOCOLS,
    Codec,
    JsonCodec,
    MsgpackCodec,
    codec_for_subprotocol,
    select_subprotocol,
)
from .errors import ErrorCode, ProtocolError
from .frames import OutboundFrame
from .limits import DEFAULT_LIMITS, Limits
from .messages import (
    CLIENT_MESSAGE_TYPES,
    KITCHEN_MESSAGE_TYPES,
    KITCHEN_STATUSES,
    AddItem,
    ClientMessage,
    GetSnapshot,
    KitchenMessage,
    Leave,
    Ping,
    PlaceOrder,
    RemoveItem,
    SetKitchenStatus,
    UpdateItem,
    client_message_to_wire,
    decode_and_parse,
    parse_client_message,
    parse_kitchen_message,
    read_client_frame,
    read_kitchen_frame,
)
from .ratelimit import TokenBucket
from .server_messages import (
    ack,
    cart_locked,
    cart_updated,
    error,
    error_from,
    kitchen_snapshot,
    member_joined,
    member_left,
    order_confirmed,
    order_failed,
    order_placed,
    order_status,
    pong,
    session_closed,
    snapshot,
    welcome,
)

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "DEFAULT_LIMITS",
    "JSON_SUBPROTOCOL",
    "KITCHEN_MESSAGE_TYPES",
    "KITCHEN_STATUSES",
    "MSGPACK_SUBPROTOCOL",
    "SUBPROTOCOLS",
    "AddItem",
    "ClientMessage",
    "Codec",
    "ErrorCode",
    "GetSnapshot",
    "JsonCodec",
    "KitchenMessage",
    "Leave",
    "Limits",
    "MsgpackCodec",
    "OutboundFrame",
    "Ping",
    "PlaceOrder",
    "ProtocolError",
    "RemoveItem",
    "SetKitchenStatus",
    "TokenBucket",
    "UpdateItem",
    "ack",
    "cart_locked",
    "cart_updated",
    "client_message_to_wire",
    "codec_for_subprotocol",
    "decode_and_parse",
    "error",
    "error_from",
    "kitchen_snapshot",
    "member_joined",
    "member_left",
    "order_confirmed",
    "order_failed",
    "order_placed",
    "order_status",
    "parse_client_message",
    "parse_kitchen_message",
    "pong",
    "read_client_frame",
    "read_kitchen_frame",
    "select_subprotocol",
    "session_closed",
    "snapshot",
    "welcome",
]
