"""Wire encodings the generator speaks: tableside v1 (JSON text or msgpack binary maps, also spoken by the
raw-Tornado baseline), tableside v2 (the same encodings; cart changes arrive as ``cart_delta`` instead of
``cart_updated``, tableside only) and Socket.IO v5 over Engine.IO v4 websockets (JSON or msgpack packets) for
the python-socketio baseline. Payload maps are identical for all three targets; only the framing differs."""

from __future__ import annotations

import json
from typing import Any, Literal

import msgpack

Codec = Literal["json", "msgpack", "json-v2", "msgpack-v2"]
WireCodec = Literal["json", "msgpack"]  # the encoding alone, what the baselines speak
Msg = dict[str, Any]

CODECS: tuple[Codec, ...] = ("json", "msgpack", "json-v2", "msgpack-v2")
SUBPROTOCOL: dict[Codec, str] = {
    "json": "tableside.v1.json",
    "msgpack": "tableside.v1.msgpack",
    "json-v2": "tableside.v2.json",
    "msgpack-v2": "tableside.v2.msgpack",
}


def is_v2(codec: str) -> bool:
    """Cart changes as ``cart_delta`` (tableside.v2.*)?"""
    return codec.endswith("-v2")


def v1_codec(codec: str) -> WireCodec:
    """The v1 codec with the same encoding: what a target without v2 (the baselines) is run with."""
    return "msgpack" if codec.startswith("msgpack") else "json"


def frame_kind(codec: str) -> str:
    """The message type cart changes arrive as with this codec."""
    return "cart_delta" if is_v2(codec) else "cart_updated"


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


def dump_json(msg: Any) -> str:
    return _dumps(msg)


def encode(codec: Codec, msg: Msg) -> tuple[bool, bytes | str]:
    """(binary?, frame payload) for one tableside message."""
    if v1_codec(codec) == "json":
        return False, _dumps(msg)
    return True, msgpack.packb(msg, use_bin_type=True)


def decode(codec: Codec, binary: bool, payload: bytes) -> Msg | None:
    """One tableside message from a frame payload; None if it is not a map."""
    try:
        obj = msgpack.unpackb(payload, raw=False) if binary else _loads(payload)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


# -- Socket.IO (EIO4 websocket transport) -------------------------------------------------------------
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
SIO_EVENT = "msg"

SioKind = Literal["open", "ping", "connect", "connect_error", "event", "ack", "close", "other"]


def sio_connect(codec: Codec, auth: Msg) -> tuple[bool, bytes | str]:
    if v1_codec(codec) == "json":
        return False, "40" + _dumps(auth)
    return True, msgpack.packb({"type": 0, "data": auth, "nsp": "/"}, use_bin_type=True)


def sio_event(codec: Codec, ack_id: int, msg: Msg) -> tuple[bool, bytes | str]:
    if v1_codec(codec) == "json":
        return False, f"42{ack_id}" + _dumps([SIO_EVENT, msg])
    return True, msgpack.packb(
        {"type": 2, "data": [SIO_EVENT, msg], "nsp": "/", "id": ack_id}, use_bin_type=True
    )


def sio_decode(binary: bool, payload: bytes) -> tuple[SioKind, Any]:
    """Classify one Engine.IO frame; for events and acks the second item is the tableside message map."""
    if binary:
        try:
            pkt = msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return "other", None
        if not isinstance(pkt, dict):
            return "other", None
        return _sio_packet(pkt.get("type"), pkt.get("data"))
    text = payload.decode("utf-8", "replace")
    if not text:
        return "other", None
    eio = text[0]
    if eio == "0":
        return "open", text[1:]
    if eio == "2":
        return "ping", text[1:]
    if eio == "1":
        return "close", None
    if eio != "4" or len(text) < 2:
        return "other", None
    sio_type = int(text[1]) if text[1].isdigit() else -1
    rest = text[2:]
    if rest.startswith("/"):
        _, _, rest = rest.partition(",")
    i = 0
    while i < len(rest) and rest[i].isdigit():
        i += 1
    body = rest[i:]
    data = _loads(body) if body else None
    return _sio_packet(sio_type, data)


def _sio_packet(sio_type: Any, data: Any) -> tuple[SioKind, Any]:
    if sio_type == 0:
        return "connect", data
    if sio_type == 4:
        return "connect_error", data
    if sio_type == 1:
        return "close", data
    if sio_type == 2 and isinstance(data, list) and len(data) >= 2 and data[0] == SIO_EVENT:
        return "event", data[1]
    if sio_type == 3 and isinstance(data, list) and data:
        return "ack", data[0]
    return "other", data
