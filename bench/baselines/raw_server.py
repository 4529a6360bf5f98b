"""The ceiling baseline: a minimal Tornado websocket fan-out server.

Same URL shape and subprotocols as tableside (``/ws``, ``tableside.v1.json`` / ``tableside.v1.msgpack``),
same message maps (see :mod:`bench.baselines.cart`), but no actors, no storage, no auth: a client names its
table and member in the query string. Each broadcast is encoded once and written to every member.

TCP_NODELAY is set on every websocket (Tornado does not do it by default; with Nagle plus delayed ACKs a
fan-out server stalls with idle CPU). ``--no-nodelay`` keeps Tornado's default, to show that trap."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import msgpack
import tornado.httpserver
import tornado.web
import tornado.websocket

from bench.baselines import cart as cartmod

SUBPROTOCOLS = ("tableside.v1.json", "tableside.v1.msgpack")


class State:
    def __init__(self, nodelay: bool) -> None:
        self.nodelay = nodelay
        self.carts: dict[str, cartmod.Cart] = {}
        self.rooms: dict[str, set[FanoutSocket]] = {}


class FanoutSocket(tornado.websocket.WebSocketHandler):
    state: State
    table_id: str
    member_id: str
    binary: bool

    def initialize(self, state: State) -> None:
        self.state = state

    def check_origin(self, origin: str) -> bool:
        return True

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        for p in subprotocols:
            if p in SUBPROTOCOLS:
                return p
        return None

    def open(self, *args: str, **kwargs: str) -> None:
        if self.state.nodelay:
            self.set_nodelay(True)
        self.binary = self.selected_subprotocol == "tableside.v1.msgpack"
        self.table_id = self.get_argument("table")
        self.member_id = self.get_argument("member")
        cart = self.state.carts.get(self.table_id)
        if cart is None:
            cart = self.state.carts[self.table_id] = cartmod.Cart(self.table_id)
        room = self.state.rooms.setdefault(self.table_id, set())
        room.add(self)
        self._write(cartmod.welcome(cart, self.member_id, sorted(s.member_id for s in room)))

    def on_message(self, message: str | bytes) -> None:
        try:
            if isinstance(message, bytes):
                msg = msgpack.unpackb(message, raw=False)
            else:
                msg = json.loads(message)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self._write({"type": "error", "id": None, "code": "bad_request", "message": "not a map"})
            return
        cart = self.state.carts[self.table_id]
        reply, changed = cartmod.apply(cart, self.member_id, msg)
        self._write(reply)
        if changed:
            self._broadcast({"type": "cart_updated", "cart": cart.snapshot()})

    def on_close(self) -> None:
        room = self.state.rooms.get(self.table_id)
        if room is not None:
            room.discard(self)
            if not room:
                del self.state.rooms[self.table_id]

    def _write(self, msg: dict[str, Any]) -> None:
        try:
            if self.binary:
                self.write_message(msgpack.packb(msg, use_bin_type=True), binary=True)
            else:
                self.write_message(json.dumps(msg, separators=(",", ":")))
        except tornado.websocket.WebSocketClosedError:
            pass

    def _broadcast(self, msg: dict[str, Any]) -> None:
        text: str | None = None
        packed: bytes | None = None
        for sock in list(self.state.rooms.get(self.table_id, ())):
            try:
                if sock.binary:
                    if packed is None:
                        packed = msgpack.packb(msg, use_bin_type=True)
                    sock.write_message(packed, binary=True)
                else:
                    if text is None:
                        text = json.dumps(msg, separators=(",", ":"))
                    sock.write_message(text)
            except tornado.websocket.WebSocketClosedError:
                pass


class MenuHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(cartmod.menu())


class HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"status": "ok"})


def make_app(nodelay: bool = True) -> tornado.web.Application:
    state = State(nodelay)
    return tornado.web.Application(
        [
            (r"/ws", FanoutSocket, {"state": state}),
            (r"/api/menu", MenuHandler),
            (r"/healthz", HealthHandler),
        ],
        websocket_max_message_size=65536,
    )


async def serve(host: str, port: int, nodelay: bool = True) -> None:
    app = make_app(nodelay)
    server = tornado.httpserver.HTTPServer(app)
    server.listen(port, address=host, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"baseline raw listening on http://{host}:{port} nodelay={nodelay}", flush=True)
    await stop.wait()
    server.stop()
