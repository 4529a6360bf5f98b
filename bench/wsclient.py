"""A lean RFC 6455 websocket client on ``asyncio.Protocol``.

The generator shares two cores with the server it measures, so every microsecond the client spends per
frame is taken from the server. This client parses frames inside ``data_received`` and calls one callback
per message: no reader task, no queue, no future per message. It speaks only what the harness needs:
no extensions (no permessage-deflate offered), text and binary messages, fragmentation, ping/pong, close.
Sockets bind to a chosen source address and set TCP_NODELAY.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import socket
import struct
from collections.abc import Callable, Sequence
from typing import cast

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MAX_MESSAGE = 16 * 1024 * 1024

MessageHandler = Callable[[int, bytes], None]
CloseHandler = Callable[[], None]


class HandshakeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"websocket handshake failed: {status} {message}")
        self.status = status


class ProtocolError(Exception):
    pass


def _accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def _mask(payload: bytes, key: int) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    words = (n + 3) // 4
    mask_bytes = key.to_bytes(4, "little") * words
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(mask_bytes[:n], "little")
    return masked.to_bytes(n, "little")


def _retrieve(fut: asyncio.Future[None]) -> None:
    """Mark a handshake failure as seen (whoever waited may have timed out already)."""
    if not fut.cancelled():
        fut.exception()


def encode_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame: always masked (RFC 6455 §5.3)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = random.getrandbits(32)
    return header + key.to_bytes(4, "little") + _mask(payload, key)


class WsConn(asyncio.Protocol):
    """One client websocket. Use :func:`open_ws` to create it."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        subprotocols: Sequence[str],
        headers: dict[str, str] | None,
        on_message: MessageHandler,
        on_close: CloseHandler | None,
    ) -> None:
        self._host = host
        self._port = port
        self._path = path
        self._subprotocols = list(subprotocols)
        self._headers = headers or {}
        self.on_message = on_message
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.subprotocol: str | None = None
        self.closed = False
        self.bytes_in = 0
        self.messages_in = 0
        self._key = base64.b64encode(os.urandom(16))
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._handshake.add_done_callback(_retrieve)
        self._buf = bytearray()
        self._upgraded = False
        self._frag_op = 0
        self._frag: list[bytes] = []

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = self.transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it
        sock = tr.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        lines = [
            f"GET {self._path} HTTP/1.1",
            f"Host: {self._host}:{self._port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if self._subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(self._subprotocols))
        for name, value in self._headers.items():
            lines.append(f"{name}: {value}")
        tr.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail_handshake(HandshakeError(0, "oversized response head"))
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            try:
                self._check_handshake(head)
            except HandshakeError as exc:
                self._fail_handshake(exc)
                return
            self._upgraded = True
            if not self._handshake.done():
                self._handshake.set_result(None)
        try:
            self._parse_frames()
        except ProtocolError:
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(0, f"connection lost: {exc!r}"))
        if not was_closed and self.on_close is not None:
            self.on_close()

    # -- handshake --------------------------------------------------------------------------------
    def _check_handshake(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HandshakeError(0, f"bad status line {lines[0]!r}")
        status = int(parts[1])
        if status != 101:
            raise HandshakeError(status, parts[2] if len(parts) > 2 else "")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != _accept_key(self._key):
            raise HandshakeError(status, "bad Sec-WebSocket-Accept")
        proto = headers.get("sec-websocket-protocol")
        if proto:
            if proto not in self._subprotocols:
                raise HandshakeError(status, f"server chose unrequested subprotocol {proto!r}")
            self.subprotocol = proto

    def _fail_handshake(self, exc: Exception) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- frames -----------------------------------------------------------------------------------
    def _parse_frames(self) -> None:
        buf = self._buf
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hdr = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            if b1 & 0x80:
                raise ProtocolError("server frames must not be masked")
            if length > MAX_MESSAGE:
                raise ProtocolError("frame too large")
            if size - pos < hdr + length:
                break
            payload = bytes(buf[pos + hdr : pos + hdr + length])
            pos += hdr + length
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)
            if self.closed:
                break
        if pos:
            del buf[:pos]

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode >= 0x8:
            if opcode == OP_PING:
                self._write(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                if not self.closed:
                    self._write(OP_CLOSE, payload[:2])
                    self.closed = True
                    if self.transport is not None:
                        self.transport.close()
                    if self.on_close is not None:
                        self.on_close()
            return
        if opcode == OP_CONT:
            if not self._frag_op:
                raise ProtocolError("continuation without a first fragment")
            self._frag.append(payload)
            if fin:
                op, data = self._frag_op, b"".join(self._frag)
                self._frag_op, self._frag = 0, []
                self.messages_in += 1
                self.on_message(op, data)
            return
        if not fin:
            self._frag_op, self._frag = opcode, [payload]
            return
        self.messages_in += 1
        self.on_message(opcode, payload)

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload))

    # -- API ----------------------------------------------------------------------------------------
    async def wait_open(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._handshake), timeout)

    def send_text(self, text: str) -> None:
        self._write(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._write(OP_BINARY, data)

    def close(self) -> None:
        """Polite close: close frame, then the TCP close."""
        if self.closed:
            return
        self._write(OP_CLOSE, struct.pack("!H", 1000))
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection as a network failure would: no close frame, RST."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


async def open_ws(
    host: str,
    port: int,
    path: str,
    *,
    on_message: MessageHandler,
    on_close: CloseHandler | None = None,
    subprotocols: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    source_ip: str | None = None,
    timeout: float = 10.0,
    on_created: Callable[[WsConn], None] | None = None,
) -> WsConn:
    """Connect, perform the opening handshake and return the open connection.

    Raises :class:`HandshakeError` (with the HTTP status) or ``OSError`` / ``TimeoutError``."""
    loop = asyncio.get_running_loop()
    local = (source_ip, 0) if source_ip else None

    def factory() -> WsConn:
        conn = WsConn(host, port, path, subprotocols, headers, on_message, on_close)
        if on_created is not None:  # messages may arrive with the handshake response, before we return
            on_created(conn)
        return conn

    _, proto = await asyncio.wait_for(loop.create_connection(factory, host, port, local_addr=local), timeout)
    try:
        await proto.wait_open(timeout)
    except BaseException:
        proto.abort()
        raise
    return proto
