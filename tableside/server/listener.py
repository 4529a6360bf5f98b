"""Accepting connections under limits, so slow or abusive clients cannot exhaust the process.

Tornado's defaults hold a connection that sent half a request head for an hour, accept without any cap,
and on EMFILE its accept handler raises on every readiness event (a traceback per attempt, a busy loop).
Here:

* ``LimitedHTTPServer``: the request head of a new connection must arrive within ``header_timeout_s``;
  a keep-alive connection waits at most ``idle_timeout_s`` for its next request; bodies ``body_timeout_s``.
* ``Listener`` (instead of ``HTTPServer.add_sockets``) counts open connections per client IP and in
  total, from accept until the descriptor is closed (websockets included). Over the per-IP cap, or past
  ``RLIMIT_NOFILE - reserve_fds`` in total, an untrusted connection is closed at once. Trusted networks
  (health checks, staff, a local proxy) skip the per-IP cap and may use the reserve, so ``/healthz``
  answers while an attacker holds everything the caps allow.
* If accept still fails for lack of descriptors (something else used them), the listener stops
  accepting for ``accept_backoff_s`` and logs one line per pause; before pausing it spends one spare
  descriptor kept for this moment to take one connection off the backlog: served if trusted, else closed
  so that client is refused promptly instead of waiting in the backlog.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import resource
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any

import structlog
import tornado.httpserver
import tornado.httputil
import tornado.iostream
from tornado.http1connection import HTTP1ConnectionParameters
from tornado.ioloop import IOLoop

from tableside.clock import Clock
from tableside.config import HttpSettings
from tableside.metrics import METRICS, Metrics

log = structlog.get_logger("tableside.listener")

# Out of descriptors or kernel memory: retrying at once cannot succeed.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# Accepts per readiness event, so a flood of connections cannot starve the rest of the loop.
_ACCEPT_BATCH = 128


class _ConnectionParams(HTTP1ConnectionParameters):
    """One per connection (tornado shares one object): counts requests so only the first gets the
    header timeout and later keep-alive waits get the idle timeout."""

    requests = 0


class LimitedHTTPServer(tornado.httpserver.HTTPServer):
    """``idle_connection_timeout`` (tornado's name for its header timeout) applies to the first request;
    ``idle_timeout_s`` replaces it for the following requests of a keep-alive connection."""

    idle_timeout_s: float | None = None

    def initialize(self, *args: Any, idle_timeout_s: float | None = None, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.idle_timeout_s = idle_timeout_s

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        shared = self.conn_params
        params = _ConnectionParams()
        vars(params).update(vars(shared))
        self.conn_params = params  # read once, by the connection built in super().handle_stream
        try:
            super().handle_stream(stream, address)
        finally:
            self.conn_params = shared

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        # Called before each request's head is read; the params are read when that read starts.
        params = getattr(server_conn, "params", None)
        if isinstance(params, _ConnectionParams):
            if params.requests and self.idle_timeout_s is not None:
                params.header_timeout = self.idle_timeout_s
            params.requests += 1
        return super().start_request(server_conn, request_conn)


class _CountedStream(tornado.iostream.IOStream):
    """Gives its slot back when its descriptor is closed, however that happens (also after a websocket
    upgrade detached it from the HTTP connection)."""

    def __init__(self, sock: socket.socket, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self._release: Callable[[], None] | None = release

    def close_fd(self) -> None:
        try:
            super().close_fd()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class _Release:
    """Gives one connection's slot back: a slotted callable, lighter than a closure per connection."""

    __slots__ = ("listener", "ip")

    def __init__(self, listener: Listener, ip: str) -> None:
        self.listener = listener
        self.ip = ip

    def __call__(self) -> None:
        self.listener._release(self.ip)


def descriptor_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Listener:
    def __init__(
        self,
        server: tornado.httpserver.HTTPServer,
        settings: HttpSettings,
        clock: Clock,
        *,
        fd_limit: int | None = None,
        metrics: Metrics = METRICS,
    ) -> None:
        self.metrics = metrics
        self.server = server
        self.settings = settings
        self.clock = clock
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_networks]
        limit = descriptor_limit() if fd_limit is None else fd_limit
        self.max_untrusted = max(limit - settings.reserve_fds, 1)
        self.per_ip: dict[str, int] = {}
        self.open_total = 0
        self.refused = 0  # closed at accept because of a cap
        self.pauses = 0  # accept pauses for lack of descriptors
        self._sockets: list[socket.socket] = []
        self._watching = False
        self._resume: asyncio.Task[None] | None = None
        self._spare: int | None = None
        self._last_refusal_log = -1e18
        self._take_spare()

    # -- lifecycle --------------------------------------------------------------------------------
    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        self._sockets.extend(sockets)
        self._watch()

    def stop(self) -> None:
        self._unwatch()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    @property
    def paused(self) -> bool:
        return self._resume is not None

    def _watch(self) -> None:
        if self._watching:
            return
        loop = IOLoop.current()
        for sock in self._sockets:
            loop.add_handler(sock, self._on_readable, IOLoop.READ)
        self._watching = True

    def _unwatch(self) -> None:
        if not self._watching:
            return
        loop = IOLoop.current()
        for sock in self._sockets:
            loop.remove_handler(sock)
        self._watching = False

    # -- accepting --------------------------------------------------------------------------------
    def _on_readable(self, sock: socket.socket, events: int) -> None:
        for _ in range(_ACCEPT_BATCH):
            if not self._watching:
                return
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return  # backlog empty
            except ConnectionAbortedError:
                continue  # gone while in the backlog
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._out_of_descriptors(sock, exc)
                else:
                    log.warning("accept_failed", error=repr(exc))
                return
            self._admit(conn, address, spare_in_use=False)

    def _admit(self, conn: socket.socket, address: Any, *, spare_in_use: bool) -> None:
        ip, trusted = self._classify(address)
        reason = None
        if not trusted:
            if spare_in_use:
                reason = "reserve"
            elif self.per_ip.get(ip, 0) >= self.settings.max_connections_per_ip:
                reason = "per_ip"
            elif self.open_total >= self.max_untrusted:
                reason = "total"
        if reason is not None:
            self.refused += 1
            self.metrics.connections_refused.labels(reason=reason).inc()
            _close_now(conn)
            now = self.clock.monotonic()
            if now - self._last_refusal_log >= self.settings.accept_backoff_s:  # one line per interval
                self._last_refusal_log = now
                log.warning(
                    "connections_refused", ip=ip, refused_total=self.refused, open=self.open_total,
                    open_from_ip=self.per_ip.get(ip, 0),
                )
            return
        self.open_total += 1
        self.metrics.open_connections.inc()
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        try:
            stream = _CountedStream(
                conn,
                _Release(self, ip),
                max_buffer_size=self.server.max_buffer_size,
                read_chunk_size=self.server.read_chunk_size,
            )
        except Exception:
            self._release(ip)
            conn.close()
            raise
        try:
            self.server.handle_stream(stream, address)
        except Exception as exc:  # one bad connection must not stop the accept loop
            log.warning("connection_setup_failed", ip=ip, error=repr(exc))
            stream.close()

    def _release(self, ip: str) -> None:
        self.open_total -= 1
        self.metrics.open_connections.dec()
        left = self.per_ip.get(ip, 0) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)

    def _classify(self, address: Any) -> tuple[str, bool]:
        """The key the per-IP cap counts under, and whether the client is trusted.

        IPv4-mapped IPv6 addresses count as IPv4; other IPv6 clients count per /64, since one subscriber
        usually holds a whole /64 and could otherwise open the cap's worth from every address in it."""
        raw = str(address[0]) if isinstance(address, tuple) and address else ""
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(raw.split("%", 1)[0])
        except ValueError:
            return raw, False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        trusted = any(addr in net for net in self.trusted)
        if isinstance(addr, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((addr, 64), strict=False)), trusted
        return str(addr), trusted

    def _out_of_descriptors(self, sock: socket.socket, exc: OSError) -> None:
        self.pauses += 1
        self.metrics.accept_pauses.inc()
        self._unwatch()
        served = self._use_spare(sock)
        log.warning(
            "accept_paused", error=os.strerror(exc.errno or 0), pause_s=self.settings.accept_backoff_s,
            open=self.open_total, spare_used=served,
        )
        self._resume = asyncio.get_running_loop().create_task(self._resume_later())

    def _use_spare(self, sock: socket.socket) -> str:
        """Give up the spare descriptor to take one connection off the backlog."""
        if self._spare is None:
            return "none"
        os.close(self._spare)
        self._spare = None
        try:
            conn, address = sock.accept()
        except OSError:
            return "nothing_waiting"
        self._admit(conn, address, spare_in_use=True)
        return "served" if self._classify(address)[1] else "refused"

    async def _resume_later(self) -> None:
        try:
            await self.clock.sleep(self.settings.accept_backoff_s)
        finally:
            self._resume = None
        self._take_spare()
        if self._sockets:
            self._watch()

    def _take_spare(self) -> None:
        if self._spare is None:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self._spare = None  # still exhausted: retried after the next pause


def _close_now(conn: socket.socket) -> None:
    # RST instead of FIN: the kernel frees the connection at once instead of keeping it in TIME_WAIT/
    # FIN_WAIT for a client that may never answer.
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()
