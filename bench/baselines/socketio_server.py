"""The peer baseline: python-socketio (on aiohttp, its usual asyncio deployment) with one room per table.

The client emits ``msg`` events carrying tableside's message maps with a Socket.IO ack; the server answers
with the tableside reply as the ack and ``emit('msg', {type: cart_updated, cart}, room=table)`` to the room.
The connect ``auth`` carries the table and member. TCP_NODELAY: aiohttp sets it on every connection; the
connect handler sets it again explicitly so the baseline never depends on that default."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

import socketio
from aiohttp import web

from bench.baselines import cart as cartmod


def make_app(codec: str = "json") -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        serializer="msgpack" if codec == "msgpack" else "default",
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )
    app = web.Application()
    sio.attach(app)
    carts: dict[str, cartmod.Cart] = {}
    sessions: dict[str, tuple[str, str]] = {}
    rooms: dict[str, list[str]] = {}

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        if not isinstance(auth, dict) or "table" not in auth or "member" not in auth:
            return False
        request = environ.get("aiohttp.request")
        transport = getattr(request, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        table, member = str(auth["table"]), str(auth["member"])
        sessions[sid] = (table, member)
        if table not in carts:
            carts[table] = cartmod.Cart(table)
        rooms.setdefault(table, []).append(member)
        await sio.enter_room(sid, table)
        return True

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, *args: Any) -> None:
        table, member = sessions.pop(sid, ("", ""))
        if member in rooms.get(table, []):
            rooms[table].remove(member)

    @sio.on("msg")  # type: ignore[untyped-decorator]
    async def on_msg(sid: str, data: Any) -> dict[str, Any]:
        table, member = sessions[sid]
        cart = carts[table]
        if not isinstance(data, dict):
            return {"type": "error", "id": None, "code": "bad_request", "message": "not a map"}
        if data.get("type") == "hello":
            return cartmod.welcome(cart, member, sorted(rooms.get(table, [])))
        reply, changed = cartmod.apply(cart, member, data)
        if changed:
            await sio.emit("msg", {"type": "cart_updated", "cart": cart.snapshot()}, room=table)
        return reply

    async def menu(_: web.Request) -> web.Response:
        return web.json_response(cartmod.menu())

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/api/menu", menu)
    app.router.add_get("/healthz", health)
    return app


async def serve(host: str, port: int, codec: str = "json") -> None:
    app = make_app(codec)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"baseline socketio listening on http://{host}:{port} codec={codec}", flush=True)
    await stop.wait()
    await runner.cleanup()
