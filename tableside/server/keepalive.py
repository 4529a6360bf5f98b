"""Keep-alive for websockets: one process-wide timer instead of one per connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
import tornado.websocket

log = structlog.get_logger("tableside.ws")


class WatchedSocket(Protocol):
    connection_id: int
    last_heard: float

    def ping(self, data: bytes = b"") -> None: ...
    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


class KeepAlive:
    """One process-wide timer pings every open socket and drops the ones that stopped answering.

    Replaces tornado's per-connection ping timer (``websocket_ping_interval``), which costs a periodic
    callback per socket: at tens of thousands of idle phones that is most of the difference to a bare
    server. A socket counts as alive while it sends anything (pongs, messages)."""

    def __init__(self, interval_s: float = 20.0, timeout_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.sockets: set[WatchedSocket] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self, now: Callable[[], float], sleep: Callable[[float], Awaitable[None]]) -> None:
        async def loop() -> None:
            while True:
                await sleep(self.interval_s)
                self.sweep(now())

        self._task = asyncio.get_running_loop().create_task(loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def sweep(self, now: float) -> None:
        for sock in list(self.sockets):
            if now - sock.last_heard > self.timeout_s:
                log.info("keepalive_timeout", connection_id=sock.connection_id)
                sock.close(1001, "keepalive timeout")
                self.sockets.discard(sock)
                continue
            try:
                sock.ping()
            except tornado.websocket.WebSocketClosedError:
                self.sockets.discard(sock)
