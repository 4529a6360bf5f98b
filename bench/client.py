"""Generator-side model: one :class:`Member` per simulated phone, grouped in :class:`Table` s.

A member joins over HTTP (tableside only), opens its websocket through :mod:`bench.wsclient` from one of
the spreading source addresses, and dispatches every incoming message synchronously: replies resolve the
request's future with the receive timestamp, ``cart_updated`` broadcasts go to the table's hooks. The same
class drives the two baselines; only the URL and (for Socket.IO) the framing differ.

With a v2 codec (``tableside.v2.*``, tableside only) cart changes arrive as ``cart_delta``: the member keeps
its cart by applying each delta whose ``base_revision`` is the revision of the cart it holds, ignores one
that is not newer than that cart, and on a gap (a delta it cannot apply) asks ``get_snapshot``, ignoring
deltas until the answer, which then counts as the receipt of everything up to its revision
(docs/protocol.md, "v2: cart deltas")."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

import aiohttp

from bench import proto
from bench.delta import apply_delta
from bench.proto import Codec, Msg
from bench.wsclient import OP_BINARY, HandshakeError, WsConn, open_ws

TargetKind = Literal["tableside", "raw", "socketio"]
Reply = tuple[Msg, float]

now = time.monotonic

_CART_UPDATED = re.compile(rb'"type":\s*"cart_updated"')
_REVISION = re.compile(rb'"revision":\s*(-?\d+)')


class RequestFailed(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    kind: TargetKind
    base_url: str

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


class HttpPool:
    """One aiohttp session per source address, for the HTTP join."""

    def __init__(self, source_ips: list[str]) -> None:
        self._ips = source_ips
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def session(self, ip: str) -> aiohttp.ClientSession:
        sess = self._sessions.get(ip)
        if sess is None:
            conn = aiohttp.TCPConnector(local_addr=(ip, 0) if ip != "127.0.0.1" else None, limit=0)
            sess = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30))
            self._sessions[ip] = sess
        return sess

    async def close(self) -> None:
        for sess in self._sessions.values():
            await sess.close()
        self._sessions.clear()


class Table:
    """The members of one table group, all in the same worker process (so broadcast latency is measured
    against the sender's clock without cross-process clock games)."""

    def __init__(self, table_id: str, qr: str | None, join_id: str | int | None = None) -> None:
        self.table_id = table_id
        self.join_id = table_id if join_id is None else join_id
        self.qr = qr
        self.members: list[Member] = []
        # scenario hooks; on_cart(member, revision, receive time, frame): frame is False when the cart came
        # from the get_snapshot answer after a v2 gap (it delivers the revisions but is not a broadcast)
        self.on_cart: Callable[[Member, int, float, bool], None] | None = None
        self.on_event: Callable[[Member, Msg, float], None] | None = None


class Member:
    _nonce = secrets.token_hex(3)
    _seq = itertools.count()

    def __init__(
        self,
        table: Table,
        index: int,
        endpoint: Endpoint,
        codec: Codec,
        source_ip: str,
        http: HttpPool | None,
    ) -> None:
        self.table = table
        self.index = index
        self.endpoint = endpoint
        self.codec: Codec = codec
        self.source_ip = source_ip
        self.http = http
        self.key = next(Member._seq)
        self.token: str | None = None
        self.member_id: str = f"m{self.key}"
        self.conn: WsConn | None = None
        self._cart: Msg | None = None
        self._cart_raw: tuple[bool, bytes] | None = None  # a cart_updated frame not parsed yet
        self._cart_rev = -1  # revision of the cart held (v2: a delta applies only on top of it)
        self.revision = -1  # highest revision seen (what wait_revision waits for)
        self.pending: dict[str, asyncio.Future[Reply]] = {}
        self.on_close: Callable[[Member], None] | None = None
        self.broadcasts = 0
        self.broadcast_bytes = 0
        self.deltas = 0  # v2: cart_delta frames (also counted in broadcasts)
        self.resyncs = 0  # v2: get_snapshot sent because of a gap
        # v2: the get_snapshot in flight; deltas are ignored until it answers
        self._resync_id: str | None = None
        self._ids = itertools.count(1)
        self._sio_ids = itertools.count(1)
        self._welcome: asyncio.Future[Msg] | None = None
        self._id_prefix = f"{Member._nonce}{self.key:x}."
        self._rev_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- connection -------------------------------------------------------------------------------
    async def join(self) -> Msg:
        """POST /api/join (tableside only); keeps the member token."""
        assert self.http is not None and self.table.qr is not None
        sess = self.http.session(self.source_ip)
        url = self.endpoint.base_url + "/api/join"
        body = {"table_id": self.table.join_id, "qr": self.table.qr}
        for attempt in range(6):
            async with sess.post(url, json=body) as resp:
                text = await resp.text()
                if resp.status == 201:
                    data = json.loads(text)
                    self.token = str(data["token"])
                    self.member_id = str(data.get("member_id", self.member_id))
                    return dict(data)
                if resp.status in (429, 503) and attempt < 5:
                    await asyncio.sleep(0.2 * (2**attempt))
                    continue
                raise RequestFailed(f"join {self.table.table_id}: HTTP {resp.status} {text[:200]}")
        raise RequestFailed("join: retries exhausted")  # pragma: no cover

    def _path(self) -> str:
        kind = self.endpoint.kind
        if kind == "tableside":
            assert self.token is not None
            return "/ws?token=" + quote(self.token, safe="")
        if kind == "raw":
            return f"/ws?table={quote(self.table.table_id)}&member={quote(self.member_id)}"
        return proto.SIO_PATH

    async def connect(self, timeout: float = 15.0) -> Msg:
        """Open the websocket and wait for ``welcome``; returns it."""
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        self._resync_id = None  # a snapshot asked on the old connection never comes; the welcome replaces it
        subprotocols: tuple[str, ...] = ()
        if self.endpoint.kind != "socketio":
            subprotocols = (proto.SUBPROTOCOL[self.codec],)
        self.conn = await open_ws(
            self.endpoint.host,
            self.endpoint.port,
            self._path(),
            on_message=self._on_frame,
            on_close=self._closed,
            subprotocols=subprotocols,
            source_ip=None if self.source_ip == "127.0.0.1" else self.source_ip,
            timeout=timeout,
            on_created=self._created,
        )
        if subprotocols and self.conn.subprotocol != subprotocols[0]:
            self.conn.abort()
            raise HandshakeError(101, f"server did not select {subprotocols[0]}")
        try:
            welcome = await asyncio.wait_for(self._welcome, timeout)
        except BaseException:
            self.conn.abort()
            raise
        return welcome

    @property
    def name(self) -> str:
        """Unique across generator processes (``key`` is per process): table id / member index."""
        return f"{self.table.table_id}/{self.index}"

    def placement(self) -> tuple[str, str, tuple[str, int] | None]:
        """(name, endpoint URL, the websocket's client-side address) — the parent finds the node serving
        it from the URL (a node per port) or from the kernel's socket table (several nodes on one port)."""
        sock: tuple[str, int] | None = None
        if self.conn is not None and self.conn.transport is not None:
            got = self.conn.transport.get_extra_info("sockname")
            if isinstance(got, tuple) and len(got) >= 2:
                sock = (str(got[0]), int(got[1]))
        return self.name, self.endpoint.base_url, sock

    def _created(self, conn: WsConn) -> None:
        self.conn = conn

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def drop(self) -> None:
        """Abort the TCP connection (RST, no close frame), as a network failure would."""
        if self.conn is not None:
            self.conn.abort()
        self._fail_pending("dropped")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self._fail_pending("closed")

    def _closed(self) -> None:
        self._fail_pending("connection closed by server")
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_exception(ConnectionError("closed before welcome"))
        if self.on_close is not None:
            self.on_close(self)

    def _fail_pending(self, why: str) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(why))

    # -- sending ----------------------------------------------------------------------------------
    def next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):x}"

    def request(self, msg: Msg) -> asyncio.Future[Reply]:
        """Send ``msg`` (an ``id`` is assigned if missing); the future resolves to (reply, receive time)."""
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if not self.connected:
            fut.set_exception(ConnectionError("not connected"))
            return fut
        rid = msg.get("id")
        if rid is None:
            rid = msg["id"] = self.next_id()
        self.pending[str(rid)] = fut
        self.send(msg)
        return fut

    def send(self, msg: Msg) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        if self.endpoint.kind == "socketio":
            binary, payload = proto.sio_event(self.codec, next(self._sio_ids), msg)
        else:
            binary, payload = proto.encode(self.codec, msg)
        if binary:
            assert isinstance(payload, bytes)
            conn.send_binary(payload)
        else:
            assert isinstance(payload, str)
            conn.send_text(payload)

    def wait_revision(self, revision: int) -> asyncio.Future[None]:
        """Resolves once this member has seen a cart with at least ``revision``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.revision >= revision:
            fut.set_result(None)
        else:
            self._rev_waiters.append((revision, fut))
        return fut

    # -- receiving --------------------------------------------------------------------------------
    def _on_frame(self, opcode: int, payload: bytes) -> None:
        t = now()
        binary = opcode == OP_BINARY
        if not binary and _CART_UPDATED.search(payload) is not None:
            # fast path: a JSON cart_updated needs only its revision now; the cart is parsed when the
            # member next looks at it (at most once per own operation instead of once per broadcast)
            revs = _REVISION.findall(payload)
            if len(revs) == 1:
                self.broadcasts += 1
                self.broadcast_bytes += len(payload)
                self._cart_raw = (binary, payload)
                self._cart_rev = int(revs[0])
                self._new_revision(int(revs[0]), t, True)
                return
        if self.endpoint.kind == "socketio":
            kind, data = proto.sio_decode(binary, payload)
            if kind == "event" or kind == "ack":
                if isinstance(data, dict):
                    self._dispatch(data, t, len(payload))
            elif kind == "ping":
                assert self.conn is not None
                self.conn.send_text("3")
            elif kind == "open":
                b, p = proto.sio_connect(self.codec, {"table": self.table.table_id, "member": self.member_id})
                self._send_raw(b, p)
            elif kind == "connect":
                # ask for the welcome (the server answers the hello event's ack with it)
                self.send({"type": "hello"})
            elif kind == "connect_error" and self._welcome is not None and not self._welcome.done():
                self._welcome.set_exception(ConnectionError(f"socket.io connect error: {data!r}"))
            return
        msg = proto.decode(self.codec, binary, payload)
        if msg is not None:
            self._dispatch(msg, t, len(payload))

    def _send_raw(self, binary: bool, payload: bytes | str) -> None:
        assert self.conn is not None
        if binary:
            assert isinstance(payload, bytes)
            self.conn.send_binary(payload)
        else:
            assert isinstance(payload, str)
            self.conn.send_text(payload)

    def _dispatch(self, msg: Msg, t: float, size: int) -> None:
        mtype = msg.get("type")
        if mtype == "cart_updated":
            cart = msg.get("cart")
            if isinstance(cart, dict):
                self.broadcasts += 1
                self.broadcast_bytes += size
                self._set_cart(cart, t, msg)
            return
        if mtype == "cart_delta":
            self._on_delta(msg, t, size)
            return
        if self._resync_id is not None and msg.get("id") == self._resync_id:
            self._resync_done(msg, t)
            return
        if mtype in ("ack", "error", "pong", "snapshot"):
            if mtype == "snapshot" and isinstance(msg.get("cart"), dict):
                self._set_cart(msg["cart"], t, None)
            fut = self.pending.pop(str(msg.get("id")), None)
            if fut is not None and not fut.done():
                fut.set_result((msg, t))
            elif fut is None and self.table.on_event is not None:
                self.table.on_event(self, msg, t)
            return
        if mtype == "welcome":
            self.member_id = str(msg.get("member_id", self.member_id))
            cart = msg.get("cart")
            if isinstance(cart, dict):
                self._set_cart(cart, t, None)
            if self._welcome is not None and not self._welcome.done():
                self._welcome.set_result(msg)
            return
        if self.table.on_event is not None:
            self.table.on_event(self, msg, t)

    def _set_cart(self, cart: Msg, t: float, broadcast: Msg | None) -> None:
        rev = cart.get("revision")
        self._cart = cart
        self._cart_raw = None
        if isinstance(rev, int):
            self._cart_rev = rev
            self._new_revision(rev, t, broadcast is not None)

    # -- v2 ---------------------------------------------------------------------------------------
    def _on_delta(self, msg: Msg, t: float, size: int) -> None:
        self.broadcasts += 1
        self.broadcast_bytes += size
        self.deltas += 1
        rev, base, changes = msg.get("revision"), msg.get("base_revision"), msg.get("changes")
        if not isinstance(rev, int) or not isinstance(base, int) or not isinstance(changes, dict):
            return
        if self._resync_id is not None:
            return  # the snapshot asked for answers with this change in it
        cart = self.cart
        if cart is not None and base == self._cart_rev:
            self._cart = apply_delta(cart, changes)
            self._cart_rev = rev
            self._new_revision(rev, t, True)
        elif cart is not None and rev <= self._cart_rev:
            return  # sent before the snapshot or welcome this member already holds
        else:
            self.resync()

    def resync(self) -> None:
        """A change was missed: ask for the whole cart (deltas are ignored until it arrives)."""
        if self._resync_id is not None or not self.connected:
            return
        self._resync_id = self.next_id()
        self.resyncs += 1
        self.send({"type": "get_snapshot", "id": self._resync_id})

    def _resync_done(self, msg: Msg, t: float) -> None:
        self._resync_id = None
        cart = msg.get("cart")
        if msg.get("type") != "snapshot" or not isinstance(cart, dict):
            # refused (e.g. rate_limited): the next delta is a gap again and asks anew
            if self.table.on_event is not None:
                self.table.on_event(self, msg, t)
            return
        rev = cart.get("revision")
        if isinstance(rev, int) and rev >= self._cart_rev:
            self._cart = cart
            self._cart_raw = None
            self._cart_rev = rev
            # the snapshot is how this member receives every change up to rev: delivered now, not a frame
            if self.table.on_cart is not None:
                self.table.on_cart(self, rev, t, False)
            self._new_revision(rev, t, False)

    def _new_revision(self, rev: int, t: float, broadcast: bool) -> None:
        if broadcast and self.table.on_cart is not None:
            self.table.on_cart(self, rev, t, True)
        if rev > self.revision:
            self.revision = rev
            if self._rev_waiters:
                keep: list[tuple[int, asyncio.Future[None]]] = []
                for want, fut in self._rev_waiters:
                    if rev >= want:
                        if not fut.done():
                            fut.set_result(None)
                    else:
                        keep.append((want, fut))
                self._rev_waiters = keep

    # -- cart helpers -----------------------------------------------------------------------------
    @property
    def cart(self) -> Msg | None:
        """The latest cart this member has seen (parsed on first use after a fast-path broadcast)."""
        raw = self._cart_raw
        if raw is not None:
            self._cart_raw = None
            binary, payload = raw
            if self.endpoint.kind == "socketio":
                _, msg = proto.sio_decode(binary, payload)
            else:
                msg = proto.decode(self.codec, binary, payload)
            cart = msg.get("cart") if isinstance(msg, dict) else None
            if isinstance(cart, dict):
                self._cart = cart
        return self._cart

    def my_lines(self) -> list[Msg]:
        cart = self.cart or {}
        items = cart.get("items") or []
        return [it for it in items if isinstance(it, dict) and it.get("added_by") == self.member_id]

    def pending_lines(self) -> list[Msg]:
        cart = self.cart or {}
        return [
            it
            for it in (cart.get("items") or [])
            if isinstance(it, dict) and it.get("state", "pending") == "pending"
        ]


def error_code(reply: Msg) -> str:
    return str(reply.get("code", "error")) if reply.get("type") == "error" else ""


def describe(exc: BaseException) -> str:
    if isinstance(exc, HandshakeError):
        return f"handshake_{exc.status}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "connection"
    if isinstance(exc, OSError):
        return f"oserror_{exc.errno}"
    if isinstance(exc, RequestFailed):
        text = str(exc)
        return "join_http_" + text.split("HTTP ", 1)[1][:3] if "HTTP " in text else "join"
    return type(exc).__name__
