"""Keep-alive for websockets: one process-wide timer instead of one per connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
import tornado.websocket

log = structlog.get_logger("tableside.ws")


class WatchedSocket(Protocol):
    connection_id: int
    last_heard: float

    def ping(self, data: bytes = b"") -> None:
        """Send a ping; may drop the socket itself (slow consumer, closed stream)."""

    def abort(self, reason: str) -> None:
        """Drop the connection now, without a close handshake; must never raise."""


class KeepAlive:
    """One process-wide timer pings every open socket and drops the ones that stopped answering.

    Replaces tornado's per-connection ping timer (``websocket_ping_interval``), which costs a periodic
    callback per socket: at tens of thousands of idle phones that is most of the difference to a bare
    server. A socket counts as alive while it sends anything (pongs, messages).

    The sweep is shared by every connection, so nothing one socket does may stop it: any failure on a
    socket drops that socket only. The loop itself runs under ``BackgroundTasks`` (restarted if it dies)."""

    def __init__(self, interval_s: float = 20.0, timeout_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.sockets: set[WatchedSocket] = set()

    async def run(self, now: Callable[[], float], sleep: Callable[[float], Awaitable[None]]) -> None:
        while True:
            await sleep(self.interval_s)
            self.sweep(now())

    def sweep(self, now: float) -> None:
        for sock in list(self.sockets):
            if now - sock.last_heard > self.timeout_s:
                log.info("keepalive_timeout", connection_id=sock.connection_id)
                # Silent for a whole timeout: a close handshake would only wait on a peer that is gone,
                # holding the descriptor; drop it now so on_close runs and presence updates.
                self.sockets.discard(sock)
                _abort_quietly(sock, "keepalive timeout")
                continue
            try:
                sock.ping()
            except tornado.websocket.WebSocketClosedError:
                self.sockets.discard(sock)  # closing already; its on_close is on the way
            except Exception as exc:  # one socket's failure must never end the sweep for the others
                log.warning("keepalive_ping_failed", connection_id=sock.connection_id, error=repr(exc))
                self.sockets.discard(sock)
                _abort_quietly(sock, "ping failed")


def _abort_quietly(sock: WatchedSocket, reason: str) -> None:
    try:
        sock.abort(reason)
    except Exception as exc:  # abort is documented never to raise; a broken one must not stop the sweep
        log.warning("keepalive_abort_failed", connection_id=sock.connection_id, error=repr(exc))
