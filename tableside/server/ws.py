"""The guest websocket: a thin shell that moves frames between a socket and the table actor.

Decoding, validation and limits live in ``tableside.protocol``; the cart lives in the actor. This handler
authenticates the handshake, rate-limits, turns bad frames into ``error`` replies (the loop never dies),
and is the ``MemberSink`` the actor sends encoded frames through."""

from __future__ import annotations

import functools
import itertools
import json
import sys
from typing import Any
from urllib.parse import urlparse

import structlog
import tornado.http1connection
import tornado.httputil
import tornado.iostream
import tornado.util
import tornado.web
import tornado.websocket

from tableside.actors.base import ActorDead, MailboxFull
from tableside.actors.messages import Command, Connect, Disconnect
from tableside.actors.table import CLOSE_SESSION_ENDED
from tableside.cluster.router import GroupRef, RoutingUnavailable
from tableside.logs import RedactedRequestLogging
from tableside.protocol import (
    ALL_SUBPROTOCOLS,
    Codec,
    ErrorCode,
    KitchenMessage,
    Limits,
    OutboundFrame,
    Ping,
    ProtocolError,
    TokenBucket,
    codec_for_subprotocol,
    read_client_frame,
    read_kitchen_frame,
)
from tableside.protocol import (
    server_messages as sm,
)
from tableside.server.base import GUEST_COOKIE
from tableside.server.services import Services
from tableside.storage.interface import TokenInfo

log = structlog.get_logger("tableside.ws")

_connection_ids = itertools.count(1)

CLOSE_POLICY = 1008
SLOW_CONSUMER_BYTES = 4 << 20  # unsent bytes per connection before it is dropped
# Room above that budget for tornado's own control frames (a pong, a close; at most 127 bytes each).
CONTROL_HEADROOM_BYTES = 4 << 10
CLOSE_TOO_BIG = 1009
# This many rate-limited frames in a row (docs/protocol.md: 50) and the client is abusive, not bursty: close.
RATE_STRIKES_BEFORE_CLOSE = 50


@functools.lru_cache(maxsize=64)
def shared_codec(subprotocol: str | None, limits: Limits) -> Codec:
    """Codecs hold only their limits: one instance per (subprotocol, limits), not one per socket."""
    return codec_for_subprotocol(subprotocol, limits)


# Stand-ins for per-handler state that tornado needs only during the handshake (see ``shed_handshake``):
# shared, never written after the upgrade (nothing renders a template or sets a header on a socket).
_NO_UI = tornado.util.ObjectDict()


class _NoHeaders(tornado.httputil.HTTPHeaders):
    """The shared response headers of upgraded sockets: a header set after the upgrade is a bug (tornado
    disabled set_header there; we no longer do, see ``_detach_stream``), so it raises, not leaks."""

    def __setitem__(self, name: str, value: str) -> None:
        raise RuntimeError("no HTTP headers after a websocket upgrade")

    def add(self, name: str, value: str, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no HTTP headers after a websocket upgrade")


_NO_HEADERS = _NoHeaders()
_NO_ARGUMENTS: dict[str, list[bytes]] = {}
_NO_FILES: dict[str, list[tornado.httputil.HTTPFile]] = {}
_NO_STRINGS: list[str] = []
_NO_KWARGS: dict[str, str] = {}
_NO_CHUNKS: list[bytes] = []
_NO_TRANSFORMS: list[tornado.web.OutputTransform] = []


def _interned(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


def _empty_headers(headers: tornado.httputil.HTTPHeaders) -> None:
    """Free a header block's contents in place (tornado's own ``get`` frame keeps the object for the
    connection's life). The private tables are cleared directly: deleting key by key would leave
    their allocations at full size."""
    parts = [getattr(headers, name, None) for name in ("_as_list", "_combined_cache", "_dict")]
    if isinstance(parts[0], dict):  # tornado 6.x keeps the lines in _as_list (older ones also in _dict)
        for part in parts:
            if isinstance(part, dict):
                part.clear()
    else:  # a tornado without those internals: the public way
        for key in list(headers):
            del headers[key]


@functools.lru_cache(maxsize=16)
def _shared_params(
    ping_interval: float | None, ping_timeout: float | None, max_message_size: int
) -> tornado.websocket._WebSocketParams:
    """Tornado builds these websocket settings anew for every socket; they are only read."""
    return tornado.websocket._WebSocketParams(
        ping_interval=ping_interval, ping_timeout=ping_timeout, max_message_size=max_message_size)


def origin_allowed(origin: str, host: str | None, extra: list[str]) -> bool:
    parsed = urlparse(origin)
    if origin in extra or (parsed.scheme and f"{parsed.scheme}://{parsed.netloc}" in extra):
        return True
    return bool(host) and parsed.netloc.lower() == (host or "").lower()


class _ProtocolTellingTooLarge(tornado.websocket.WebSocketProtocol13):
    """Tornado refuses a message over ``websocket_max_message_size`` from its frame header (nothing is
    buffered) with a bare 1009 close. Say why first, as for any frame over the protocol's limit."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == CLOSE_TOO_BIG and reason is not None and reason.startswith(_TORNADO_TOO_BIG) \
                and not self.server_terminated and isinstance(self.handler, SocketBase):
            limit = self.params.max_message_size
            self.handler.send_message(sm.error(None, ErrorCode.TOO_LARGE, f"message larger than {limit} bytes"))
        super().close(code, reason)


_TORNADO_TOO_BIG = "message too big"  # tornado's close reason for an over-limit (or inflated) message


class SocketBase(RedactedRequestLogging, tornado.websocket.WebSocketHandler):
    """Shared by guest and kitchen sockets: origin check, codec choice, frame sending, keep-alive.

    ``send``, ``close``, ``ping`` and ``abort`` are called for many sockets at once (actor broadcasts, the
    kitchen hub, the keep-alive sweep), so none of them raises: a socket that cannot take a write is
    dropped (``abort``), and its ``on_close`` runs as for any other disconnect."""

    services: Services
    codec: Codec
    last_heard = 0.0

    # Every attribute set on a handler counts: tornado's own come to about 25, and past 30 (CPython's
    # limit for a class's shared instance keys) each socket gets a combined __dict__ of ~1.5 KB instead of
    # a ~0.3 KB values array. So the stream is looked up, not cached, and tornado's disabling of the HTTP
    # methods after the upgrade (seven more attributes) is left out, see ``_detach_stream``.

    @property
    def _stream(self) -> tornado.iostream.IOStream | None:
        stream = getattr(self.ws_connection, "stream", None)
        return stream if isinstance(stream, tornado.iostream.IOStream) else None

    def _detach_stream(self) -> tornado.iostream.IOStream:
        # Tornado replaces write/finish/flush/redirect/set_header/set_status/set_cookie with raisers here.
        # Not needed: after the 101 response ``_finished`` is set, so finish() and write() raise and
        # redirect() raises (headers written); flush() has no connection once ``shed_handshake`` ran.
        connection = self.request.connection
        assert isinstance(connection, tornado.http1connection.HTTP1Connection)
        return connection.detach()

    def heard(self) -> None:
        self.last_heard = self.services.clock.monotonic()

    def watch(self) -> None:
        self.shed_handshake()
        self.heard()
        stream = self._stream
        if stream is not None:
            # Our frames and pings are held to SLOW_CONSUMER_BYTES (see _write); the headroom above it
            # is for tornado's own pong and close frames, which do not expect StreamBufferFullError.
            stream.max_write_buffer_size = SLOW_CONSUMER_BYTES + CONTROL_HEADROOM_BYTES
        self.services.keepalive.sockets.add(self)

    def shed_handshake(self) -> None:
        """Drop what only the HTTP handshake needed, so an idle socket costs little more than its stream.

        At tens of thousands of idle sockets the request (headers, query arguments with the token, the
        HTTP/1 connection objects it links to) and the handler's response headers and template namespace
        are a large share of each connection. After the upgrade tornado uses none of them: the HTTP
        response has finished and frames go through ``ws_connection``. Kept: method, path and remote IP,
        which error logs and ``request_summary`` print."""
        request = self.request
        _empty_headers(request.headers)  # tornado's get() frame holds this object: empty it in place
        request.arguments = request.query_arguments = request.body_arguments = _NO_ARGUMENTS
        request.files = _NO_FILES
        # The same few strings on every socket (or every socket from one address): one copy each.
        request.method = sys.intern(request.method)
        request.version = sys.intern(request.version)
        request.protocol = sys.intern(request.protocol)
        request.host = sys.intern(request.host)
        request.host_name = sys.intern(request.host_name)
        request.remote_ip = _interned(request.remote_ip)
        request.path = sys.intern(request.path)
        request.uri = request.path  # without the query (and the token in it)
        request.query = ""
        request.body = b""
        # The detached HTTP/1 connection and its server loop (finished) are reachable only through these.
        request.connection = None
        request.server_connection = None
        # Empty, per-handler containers of the handshake, swapped for shared empty ones. Nothing writes them
        # after the upgrade: write() and finish() raise once the 101 response finished.
        self.ui = _NO_UI
        self._headers = _NO_HEADERS
        self._write_buffer = _NO_CHUNKS
        self._transforms = _NO_TRANSFORMS
        self.path_args = _NO_STRINGS
        self.path_kwargs = self.open_kwargs = _NO_KWARGS

    def on_pong(self, data: bytes) -> None:
        self.heard()

    def on_ws_connection_close(self, close_code: int | None = None, close_reason: str | None = None) -> None:
        self.services.keepalive.sockets.discard(self)
        super().on_ws_connection_close(close_code, close_reason)

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if type(protocol) is tornado.websocket.WebSocketProtocol13:
            protocol.__class__ = _ProtocolTellingTooLarge
            params = protocol.params
            if params.compression_options is None:  # the same for every socket: one shared object
                protocol.params = _shared_params(params.ping_interval, params.ping_timeout, params.max_message_size)
        return protocol

    def initialize(self, services: Services) -> None:
        self.services = services
        self.connection_id = next(_connection_ids)
        self.codec = shared_codec(None, services.limits)

    def check_origin(self, origin: str) -> bool:
        # Browsers always send Origin: only pages served by us (or configured origins) may connect.
        return origin_allowed(origin, self.request.headers.get("Host"), self.services.settings.allowed_origins)

    def prepare(self) -> None:
        # Tornado refuses a foreign Origin with a plain-text 403; HTTP errors here are JSON (protocol.md).
        # Checked in prepare (a finished response skips get), not in a get override: that coroutine's
        # frame would stay alive for the whole connection.
        origin = self.request.headers.get("Origin") or self.request.headers.get("Sec-Websocket-Origin")
        if origin is not None and not self.check_origin(origin):
            self.refuse(403, "forbidden", "cross-origin websockets are not allowed")

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        for proto in subprotocols:
            if proto in ALL_SUBPROTOCOLS:
                self.codec = shared_codec(proto, self.services.limits)
                return proto
        return None

    def refuse(self, status: int, code: str, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": code, "message": message}))

    def send(self, frame: OutboundFrame) -> None:
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        stream = self._stream
        try:
            if stream is not None and getattr(conn, "_compressor", None) is None:
                # Fastlane: the frame bytes are shared by every member; one buffered write, no per-message
                # task (tornado's write_message wraps each send in a coroutine).
                self._write(stream, frame.wire(self.codec))
                return
            fut = self.write_message(frame.encoded(self.codec), binary=self.codec.binary)
            fut.add_done_callback(_swallow_closed)
        except (tornado.iostream.StreamClosedError, tornado.websocket.WebSocketClosedError):
            pass  # already going away: the read loop sees the close and on_close runs
        except Exception as exc:  # the caller is broadcasting to many sockets: drop this one only
            log.warning("ws_send_failed", connection_id=self.connection_id, error=repr(exc))
            self.abort("send failed")

    def _write(self, stream: tornado.iostream.IOStream, data: bytes) -> None:
        """Write within the slow-consumer budget; a peer that stopped reading is dropped, not buffered for."""
        stream.max_write_buffer_size = SLOW_CONSUMER_BYTES
        try:
            stream.write(data)
        except tornado.iostream.StreamBufferFullError:
            log.warning("slow_consumer_closed", connection_id=self.connection_id, path=self.request.path)
            self.abort("slow consumer")  # no close handshake: the peer is not reading anyway
        finally:
            stream.max_write_buffer_size = SLOW_CONSUMER_BYTES + CONTROL_HEADROOM_BYTES

    def ping(self, data: str | bytes = b"") -> None:
        """Keep-alive ping, under the same budget as frames: a socket at its cap is dropped here.

        Raises ``WebSocketClosedError`` only for a socket that is already closing (the sweep forgets it)."""
        stream = self._stream
        if stream is None:
            super().ping(data)
            return
        stream.max_write_buffer_size = SLOW_CONSUMER_BYTES
        try:
            super().ping(data)
        except tornado.iostream.StreamBufferFullError:
            log.warning("slow_consumer_closed", connection_id=self.connection_id, path=self.request.path)
            self.abort("slow consumer")
        except tornado.iostream.StreamClosedError as exc:
            raise tornado.websocket.WebSocketClosedError() from exc
        finally:
            stream.max_write_buffer_size = SLOW_CONSUMER_BYTES + CONTROL_HEADROOM_BYTES

    def send_message(self, message: dict[str, Any]) -> None:
        self.send(OutboundFrame(message))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        try:
            super().close(code, reason)
        except Exception as exc:  # e.g. no room for the close frame: drop the connection without one
            log.warning("ws_close_failed", connection_id=self.connection_id, error=repr(exc))
            self.abort("close failed")

    def abort(self, reason: str) -> None:
        """Drop the connection now, without a close handshake. Never raises.

        Closing the stream ends tornado's read loop, which calls ``on_close`` (presence, counters)."""
        self.services.keepalive.sockets.discard(self)
        stream = self._stream
        if stream is not None and not stream.closed():
            log.info("ws_aborted", connection_id=self.connection_id, reason=reason)
            stream.close()


def _swallow_closed(fut: Any) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieve, so a socket closed mid-write is not logged as an unhandled error



class SessionSocket(SocketBase):
    """A socket that lives as long as a login session (kitchen screens, tills, customers' ``/ws/me``): it
    takes the small kitchen-shaped frames (``ping`` and what a subclass handles) and is ended with
    ``end_session`` when its session ends (logout, revocation, expiry: on any node)."""

    ended = False
    kind = "this"  # named in the refusal of frames other than ping ("the staff socket takes only ping")

    def end_session(self, reason: str) -> None:
        """Say why (``session_closed``), then close with 4001: the page asks for a login again."""
        if self.ended:
            return
        self.ended = True
        self.send_message(sm.session_closed(reason))
        self.close(CLOSE_SESSION_ENDED, "session closed")

    def read_frame(self, message: str | bytes) -> KitchenMessage | None:
        """The frame's message for the subclass, or None when it was answered here: a bad frame gets an
        ``error`` (the connection stays, except for an oversized frame), a ``ping`` its ``pong``."""
        self.heard()
        try:
            msg = read_kitchen_frame(self.codec, message, self.services.limits)
        except ProtocolError as err:
            self.send_message(sm.error(err.request_id, err.code, err.message))
            if err.fatal:
                self.close(1009, "frame too large")
            return None
        if isinstance(msg, Ping):
            self.send_message(sm.pong(msg.request_id))
            return None
        return msg

    async def on_message(self, message: str | bytes) -> None:
        msg = self.read_frame(message)
        if msg is not None:
            self.send_message(sm.error(msg.request_id, ErrorCode.UNKNOWN_TYPE, f"the {self.kind} socket takes only ping"))

class _Limiter(TokenBucket):
    """A guest socket's rate limiter and its count of rate-limited frames in a row (one object, not two
    handler attributes: see ``share_instance_keys``)."""

    __slots__ = ("strikes",)

    def __init__(self, rate: float, burst: int) -> None:
        super().__init__(rate, burst)
        self.strikes = 0


def share_instance_keys(cls: type, names: tuple[str, ...]) -> None:
    """Register every attribute name a socket will ever get with the class, before any socket exists.

    CPython (3.11+) keeps an instance's attributes in a compact values array (~0.3 KB for ~30 names)
    as long as all of them are among the class's shared keys; an instance that adds a name the shared
    keys lack is converted to a full dict (~1.6 KB). The shared keys are learnt from the first instances
    and stop growing once instances are built interleaved, as concurrent handshakes are, so every socket
    would pay for the full dict. A throwaway instance that sets all the names first avoids that. A name
    missing here costs only memory, never behaviour; the list is checked by a test."""
    probe: object = object.__new__(cls)
    for name in names:
        object.__setattr__(probe, name, None)


class GuestSocket(SocketBase):
    token_info: TokenInfo
    ref: GroupRef | None = None
    # Class-level defaults, set on the instance only once they change: fewer per-socket attributes.
    _bucket: _Limiter | None = None  # the rate limiter, made at the first message
    open_count = 0  # process-wide, bounds connections (limits.max_connections)
    per_member: dict[str, int] = {}  # process-wide, like open_count: open sockets per member (token)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        token = self.get_query_argument("token", None) or self.get_cookie(GUEST_COOKIE)
        info = await self.services.resolve_guest(token)
        if info is None:
            self.refuse(401, "unauthorized", "token unknown, expired or revoked")
            return
        if GuestSocket.open_count >= self.services.settings.limits.max_connections:
            self.refuse(503, "overloaded", "too many connections")
            return
        member = info.member_id  # one guest token is one member
        if GuestSocket.per_member.get(member, 0) >= self.services.settings.http.max_websockets_per_token:
            self.refuse(429, "too_many_connections", "too many open connections for this guest")
            return
        try:
            # Here or on the group's owner node (forwarded); decided before the upgrade so that "cannot
            # route now" is a plain HTTP 503 the client retries.
            ref = await self.services.router.ref_for(info.group_id, info.table_id, info.restaurant_id)
        except RoutingUnavailable as exc:
            self.refuse(503, "unavailable", str(exc))
            return
        self.token_info = info
        self._route = ref
        # Counted from here (no await since the check) until the socket is gone: get() returns only
        # when the upgrade failed or the connection ended.
        GuestSocket.per_member[member] = GuestSocket.per_member.get(member, 0) + 1
        try:
            await super().get(*args, **kwargs)
        finally:
            left = GuestSocket.per_member.get(member, 0) - 1
            if left > 0:
                GuestSocket.per_member[member] = left
            else:
                GuestSocket.per_member.pop(member, None)

    async def open(self, *args: str, **kwargs: str) -> None:
        # Tornado leaves Nagle on: with delayed ACKs small broadcast frames stall. Send at once.
        self.set_nodelay(True)
        self.watch()
        self.services.metrics.connections.inc()
        GuestSocket.open_count += 1
        info = self.token_info
        self.ref = self._route
        try:
            # get() resolved the token just now: the actor need not ask the store again.
            await self.ref.ask(Connect(info.member_id, self, token_checked=True))
        except (ActorDead, MailboxFull):
            self.send_message(sm.error(None, ErrorCode.INTERNAL, "table unavailable, reconnect"))
            self.close(1011, "retry")

    def on_message(self, message: str | bytes) -> None:
        now = self.services.clock.monotonic()
        self.last_heard = now
        bucket = self._bucket
        if bucket is None:  # made at the first message: an idle socket never needs one
            limits = self.services.settings.limits
            bucket = self._bucket = _Limiter(limits.messages_per_second, limits.burst)
        if not bucket.allow(now):
            bucket.strikes += 1
            self.services.metrics.errors.labels(code="rate_limited").inc()
            self.send_message(sm.error(None, ErrorCode.RATE_LIMITED, "slow down"))
            if bucket.strikes >= RATE_STRIKES_BEFORE_CLOSE:
                self.close(CLOSE_POLICY, "rate limit")
            return
        if bucket.strikes:
            bucket.strikes = 0
        try:
            msg = read_client_frame(self.codec, message, self.services.limits)
        except ProtocolError as err:
            self.services.metrics.errors.labels(code=err.code.value).inc()
            self.send_message(sm.error(err.request_id, err.code, err.message))
            if err.fatal:
                self.close(CLOSE_TOO_BIG, "frame too large")
            return
        self.services.metrics.messages.labels(type=type(msg).__name__).inc()
        if isinstance(msg, Ping):
            self.send_message(sm.pong(msg.request_id))
            return
        ref = self.ref
        if ref is None or not ref.alive:
            self.send_message(sm.error(msg.request_id, ErrorCode.INTERNAL, "table restarting, reconnect"))
            self.close(1012, "reconnect")
            return
        try:
            ref.tell(Command(self.token_info.member_id, self, msg))
        except MailboxFull:
            self.send_message(sm.error(msg.request_id, ErrorCode.RATE_LIMITED, "table busy, retry"))

    def on_close(self) -> None:
        if self.ref is None:
            return
        self.services.metrics.connections.dec()
        GuestSocket.open_count -= 1
        if self.ref.alive:
            try:
                self.ref.tell(Disconnect(self.token_info.member_id, self))
            except MailboxFull:
                pass


class NotFoundHandler(tornado.web.RequestHandler):
    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": "not_found", "message": "not found"}))


# Tornado's RequestHandler / WebSocketHandler attributes, then ours, as set over a guest socket's life.
GUEST_SOCKET_ATTRIBUTES = (
    "application", "request", "_headers_written", "_finished", "_auto_finish", "_prepared_future", "ui",
    "_headers", "_write_buffer", "_status_code", "_reason", "services", "connection_id", "codec",
    "ws_connection", "close_code", "close_reason", "_on_close_called", "_transforms", "path_args",
    "path_kwargs", "token_info", "_route", "open_args", "open_kwargs", "last_heard", "ref", "_bucket",
)
share_instance_keys(GuestSocket, GUEST_SOCKET_ATTRIBUTES)
