"""A small real-websocket test client: reads in the background, waits for messages by predicate."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Callable
from typing import Any

import msgpack
import tornado.httpclient
import tornado.websocket

# Slow CI machines stretch waits by this factor instead of every test hard-coding generous timeouts.
TIMEOUT_FACTOR = float(os.environ.get("TABLESIDE_TEST_TIMEOUT_FACTOR", "1"))


def t(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


class WsClient:
    def __init__(self, conn: tornado.websocket.WebSocketClientConnection, binary: bool) -> None:
        self.conn = conn
        self.binary = binary
        self.messages: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._seq = 0

    @classmethod
    async def connect(
        cls, base_ws: str, token: str | None = None, *, msgpack_codec: bool = False, headers: dict[str, str] | None = None,
        v2: bool = False,
    ) -> WsClient:
        """``v2``: negotiate ``tableside.v2.*`` (cart changes as ``cart_delta``) instead of v1."""
        url = f"{base_ws}/ws" + (f"?token={token}" if token else "")
        proto = "tableside.v1.msgpack" if msgpack_codec else "tableside.v1.json"
        if v2:
            proto = proto.replace(".v1.", ".v2.")
        req = tornado.httpclient.HTTPRequest(url, headers=headers or {})
        conn = await tornado.websocket.websocket_connect(req, subprotocols=[proto])
        return cls(conn, msgpack_codec)

    async def _read(self) -> None:
        while True:
            raw = await self.conn.read_message()
            if raw is None:
                self.close_code = self.conn.close_code
                self.closed.set()
                self._changed.set()
                return
            msg = msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else json.loads(raw)
            self.messages.append(msg)
            self._changed.set()

    def next_id(self) -> str:
        self._seq += 1
        return f"c{id(self) % 10000}-{self._seq}"

    async def send(self, message: dict[str, Any]) -> None:
        if self.binary:
            await self.conn.write_message(msgpack.packb(message, use_bin_type=True), binary=True)
        else:
            await self.conn.write_message(json.dumps(message))

    async def send_raw(self, frame: str | bytes) -> None:
        await self.conn.write_message(frame, binary=isinstance(frame, bytes))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0, start: int = 0
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + t(timeout)
        index = start
        while True:
            while index < len(self.messages):
                if predicate(self.messages[index]):
                    return self.messages[index]
                index += 1
            if self.closed.is_set():
                raise AssertionError(f"socket closed ({self.close_code}) while waiting; got {self.messages[-5:]}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting; last messages {self.messages[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_type(self, type_: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda m: m.get("type") == type_ and all(m.get(k) == v for k, v in fields.items()), timeout
        )

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send with a fresh id and return its ack/error/pong/snapshot."""
        rid = self.next_id()
        await self.send({**message, "id": rid})
        return await self.wait_for(lambda m: m.get("id") == rid, timeout)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == type_]

    async def close(self) -> None:
        self.conn.close()
        self._reader.cancel()


async def raw_websocket(
    host: str,
    port: int,
    path: str,
    *,
    rcvbuf: int | None = None,
    source: str | None = None,
    subprotocol: str = "tableside.v1.json",
) -> socket.socket:
    """A websocket peer that completes the handshake and then does nothing at all: never reads, never
    answers a ping. ``rcvbuf`` (set before connecting) keeps the kernel from soaking up what the server
    sends, so the server's own write buffer fills; ``source`` picks the local address (another loopback
    address counts as another client IP)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    await loop.sock_connect(sock, (host, port))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:  # one byte at a time: nothing after the response head is consumed
        byte = await asyncio.wait_for(loop.sock_recv(sock, 1), t(5))
        if not byte:
            raise AssertionError(f"closed during the handshake: {head!r}")
        head += byte
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        sock.close()
        raise AssertionError(f"handshake refused: {head!r}")
    return sock


async def read_until_eof(sock: socket.socket, timeout: float = 5.0) -> int:
    """Read (and discard) everything until the server closes the connection; returns the byte count."""
    loop = asyncio.get_running_loop()
    total = 0
    async with asyncio.timeout(t(timeout)):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return total
            if not chunk:
                return total
            total += len(chunk)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for a condition that real I/O will make true (polling; the deadline is only a safety net)."""
    deadline = asyncio.get_running_loop().time() + t(timeout)
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def kitchen_screen(base_ws: str, staff_token: str, since: int | None = None) -> WsClient:
    """A kitchen display on ``/ws/kitchen`` (JSON), returned once its ``kitchen_snapshot`` arrived."""
    query = f"?token={staff_token}" + (f"&since={since}" if since is not None else "")
    conn = await tornado.websocket.websocket_connect(f"{base_ws}/ws/kitchen{query}", subprotocols=["tableside.v1.json"])
    screen = WsClient(conn, False)
    await screen.wait_type("kitchen_snapshot", timeout=10)
    return screen


async def staff_socket(base_ws: str, staff_token: str, till_id: str | None = None) -> WsClient:
    """A till's staff websocket on ``/ws/staff`` (JSON), returned once its ``staff_welcome`` arrived."""
    query = f"?token={staff_token}" + (f"&till_id={till_id}" if till_id is not None else "")
    conn = await tornado.websocket.websocket_connect(f"{base_ws}/ws/staff{query}", subprotocols=["tableside.v1.json"])
    sock = WsClient(conn, False)
    await sock.wait_type("staff_welcome", timeout=10)
    return sock
