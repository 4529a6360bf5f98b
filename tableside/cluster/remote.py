"""The two ends of forwarding.

On the owner, ``RemoteSink`` stands for one socket on another node: the actor sends it frames like any
local member, and the sink queues them in the owner's ``Outbox``, which sends one ``out`` message per
(node, group) per loop turn with each frame once and the list of connections it is for.

On a forwarding node, ``RemoteGroup`` is the ref its sockets hold instead of an actor ref: it forwards the
members' messages to the owner and hands the owner's frames to the local sockets, decoding each frame once
for all of them (each socket's codec then encodes it once per wire format, as for a local broadcast)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import structlog

from tableside.actors.base import ActorDead, StopReason
from tableside.actors.messages import (
    Command,
    Connect,
    Disconnect,
    GetCart,
    GetTableInfo,
    ImportLines,
    MemberSink,
    TableMessage,
)
from tableside.cluster import wire
from tableside.metrics import METRICS
from tableside.protocol import OutboundFrame, client_message_to_wire

log = structlog.get_logger("tableside.cluster")

# Owner-side ids of remote sockets: negative, so they never collide with this node's own connection ids.
_remote_ids = itertools.count(-1, -1)

# Close code for "the group moved: reconnect" (the same code the actor uses; see actors/table.py).
CLOSE_RELOCATED = 4002


class RemoteUnavailable(ActorDead):
    """The owner could not be reached (no answer in time, Redis down, the owner gone)."""

    def __init__(self, group_id: str, why: str) -> None:
        super().__init__(f"group {group_id} via {why}", StopReason.RELOCATED)
        self.why = why


class Outbox:
    """Owner side: frames for other nodes' sockets, batched per (node, group) and sent once per loop turn."""

    def __init__(self, publish: Callable[[str, dict[str, Any]], None]) -> None:
        self._publish = publish
        # Keyed by (node, incarnation, group): a restarted node (same id, new process) is a new peer.
        self._pending: dict[tuple[str, str, str], list[tuple[str, Any, int]]] = {}
        self._seq: dict[tuple[str, str, str], int] = {}
        self._streams: dict[str, str] = {}  # group -> stream id (new per activation)
        self._scheduled = False

    def new_stream(self, group_id: str, stream: str) -> None:
        self._streams[group_id] = stream
        for key in [k for k in self._seq if k[2] == group_id]:
            del self._seq[key]

    def forget_group(self, group_id: str) -> None:
        self._streams.pop(group_id, None)
        for key in [k for k in self._seq if k[2] == group_id]:
            del self._seq[key]

    def put(self, node: str, incarnation: str, group_id: str, kind: str, payload: Any, conn: int) -> None:
        self._pending.setdefault((node, incarnation, group_id), []).append((kind, payload, conn))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for (node, incarnation, group_id), items in pending.items():
            seq = self._seq.get((node, incarnation, group_id), 0) + 1
            self._seq[(node, incarnation, group_id)] = seq
            grouped = wire.group_outbox(items)
            deltas = wire.split_deltas(grouped)
            out: dict[str, Any] = {
                "k": wire.OUT,
                "x": incarnation,  # the process it is for: a restarted node drops the old one's frames
                "g": group_id,
                "e": self._streams.get(group_id, ""),
                "s": seq,
                "i": grouped,
            }
            if deltas:
                out["d"] = deltas  # v2 forms of cart changes, by item index (wire.py)
            self._publish(wire.inbox(node), out)


class RemoteSink:
    """One socket on another node, as the owner's actor sees it (a ``MemberSink``)."""

    __slots__ = ("connection_id", "node", "incarnation", "remote_conn", "group_id", "member_id", "_outbox", "closed")

    def __init__(
        self, outbox: Outbox, node: str, incarnation: str, remote_conn: int, group_id: str, member_id: str
    ) -> None:
        self.connection_id = next(_remote_ids)
        self.node = node
        self.incarnation = incarnation
        self.remote_conn = remote_conn
        self.group_id = group_id
        self.member_id = member_id
        self._outbox = outbox
        self.closed = False

    def send(self, frame: OutboundFrame) -> None:
        if not self.closed:
            # The frame is the payload: the same frame to several sockets folds into one item (see Outbox),
            # carrying the v1 message and, for a cart change, its v2 form.
            self._outbox.put(self.node, self.incarnation, self.group_id, wire.FRAME, frame, self.remote_conn)

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._outbox.put(self.node, self.incarnation, self.group_id, wire.CLOSE, (code, reason), self.remote_conn)


class RemoteGroup:
    """A forwarding node's ref to a group owned elsewhere (``GroupRef``: ``alive``, ``tell``, ``ask``)."""

    def __init__(
        self,
        router: Any,  # ClusterRouter (typed loosely to avoid an import cycle)
        group_id: str,
        table_id: str,
        restaurant_id: int,
        owner: str,
        created: float = 0.0,
    ) -> None:
        self._router = router
        self.created = created  # monotonic; a remote group with no socket is forgotten after a while
        self.group_id = group_id
        self.table_id = table_id
        self.restaurant_id = restaurant_id
        self.owner = owner
        self.sockets: dict[int, MemberSink] = {}
        self.closed = False
        self._stream = ""
        self._next_seq = 1

    @property
    def alive(self) -> bool:
        return not self.closed

    @property
    def name(self) -> str:
        return f"remote:{self.table_id}:{self.group_id}@{self.owner}"

    def _base(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "k": kind,
            "g": self.group_id,
            "t": self.table_id,
            "r": self.restaurant_id,
            "n": self._router.node_id,
            "x": self._router.incarnation,
            **fields,
        }

    def _send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise RemoteUnavailable(self.group_id, f"{self.owner} (relocated)")
        self._router.publish(wire.inbox(self.owner), message)

    def tell(self, message: TableMessage) -> None:
        match message:
            case Connect():
                self.sockets[message.sink.connection_id] = message.sink
                self._send(self._base(wire.CONNECT, c=message.sink.connection_id, m=message.member_id))
            case Disconnect():
                if self.sockets.pop(message.sink.connection_id, None) is not None:
                    if not self.closed:
                        self._send(self._base(wire.DISCONNECT, c=message.sink.connection_id, m=message.member_id))
                    if not self.sockets:
                        self._router.forget_remote(self)
            case Command() if message.sink is not None:
                msg = client_message_to_wire(message.message)
                self._send(self._base(wire.CMD, c=message.sink.connection_id, m=message.member_id, msg=msg))
            case _:
                raise TypeError(f"cannot forward {type(message).__name__} without an answer: use ask")

    async def ask(self, message: TableMessage) -> Any:
        match message:
            case Connect():
                self.tell(message)
                return True
            case Command() if message.sink is None:
                msg = client_message_to_wire(message.message)
                return await self._router.ask_remote(self, self._base(wire.CMD, c=None, m=message.member_id, msg=msg))
            case GetCart():
                return await self._router.ask_remote(self, self._base(wire.GET, what="cart"))
            case GetTableInfo():
                return await self._router.ask_remote(self, self._base(wire.GET, what="info"))
            case ImportLines():
                lines = [[line.menu_item_id, line.qty, line.note] for line in message.lines]
                return await self._router.ask_remote(
                    self, self._base(wire.IMPORT, m=message.member_id, lines=lines, key=message.key)
                )
            case _:
                self.tell(message)
                return None

    def deliver(self, message: dict[str, Any]) -> None:
        """An ``out`` message from the owner: frames and closes for our sockets, in order."""
        stream, seq = message.get("e", ""), message.get("s", 0)
        if stream != self._stream:
            self._stream, self._next_seq = stream, seq  # a new activation of the group: a new stream
        if seq != self._next_seq:
            METRICS.relay_gaps.inc()
            log.warning("relay_gap", group_id=self.group_id, expected=self._next_seq, got=seq)
            # Something was lost between the owner and us: the members' carts may be wrong. Ask the owner
            # to send them the whole cart again rather than show a cart that misses a change.
            self._router.publish(wire.inbox(self.owner), self._base(wire.RESYNC, c=list(self.sockets)))
        self._next_seq = seq + 1
        deltas = message.get("d") or {}
        for index, item in enumerate(message.get("i", ())):
            kind, payload, conns = item
            if kind == wire.FRAME:
                # Decoded once; each codec encodes each form once for all sockets (v2 sockets: the delta).
                frame = OutboundFrame(payload, deltas.get(index))
                for conn in conns:
                    sock = self.sockets.get(conn)
                    if sock is not None:
                        sock.send(frame)
                        METRICS.relayed_frames.inc()
            elif kind == wire.CLOSE:
                code, reason = payload
                for conn in conns:
                    sock = self.sockets.pop(conn, None)
                    if sock is not None:
                        sock.close(int(code), str(reason))
        if not self.sockets:
            self._router.forget_remote(self)

    def close_all(self, reason: str) -> None:
        """The owner changed or vanished: every socket reconnects and is routed again."""
        self.closed = True
        sockets, self.sockets = self.sockets, {}
        for sock in sockets.values():
            sock.close(CLOSE_RELOCATED, reason)
