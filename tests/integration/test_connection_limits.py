"""Connection limits: slowloris clients are capped per IP and closed by the header timeout while
/healthz keeps answering; the accept loop backs off (one log line per pause) when out of descriptors;
a guest token holds a bounded number of websockets."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpclient

from tableside.clock import FakeClock, SystemClock
from tableside.config import HttpSettings, Settings
from tableside.metrics import Metrics
from tableside.pos.simulator import SimulatorConfig, SimulatorState
from tableside.server.app import start_server
from tableside.server.listener import Listener
from tableside.storage.postgres import PostgresStore
from tests.client import WsClient, eventually, read_until_eof, t
from tests.integration.conftest import ADMIN_PASSWORD, Harness

ATTACKER = "127.0.0.2"  # another loopback address: another client IP, not in the trusted networks
PER_IP = 60
OVER_CAP = 15


@pytest.fixture
async def limited(database_url: str) -> AsyncIterator[Harness]:
    settings = Settings(
        port=0,
        database_url=database_url,
        admin_password=ADMIN_PASSWORD,
        demo={"tables": 2},  # type: ignore[arg-type]
        http={  # type: ignore[arg-type]
            "header_timeout_s": t(1.5),
            "idle_timeout_s": 30,
            "max_connections_per_ip": PER_IP,
            "max_websockets_per_token": 2,
        },
    )
    store = await PostgresStore.connect(database_url)
    await store.truncate_all()
    running, _ = await start_server(settings, store, demo=True, clock=SystemClock())
    h = Harness(running, SimulatorState(SimulatorConfig()), f"http://127.0.0.1:{running.port}",
                f"ws://127.0.0.1:{running.port}")
    yield h
    await running.stop()


async def _partial_request(port: int) -> socket.socket | None:
    """Connect from the attacker's address and send half a request head, then nothing. None: the
    server reset the connection at once (refused at accept, before the client even saw it complete)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((ATTACKER, 0))
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    except (BrokenPipeError, ConnectionResetError):
        sock.close()
        return None
    return sock


async def _refused(sock: socket.socket | None) -> bool:
    return sock is None or await read_until_eof(sock) == 0


async def test_slowloris_is_capped_and_timed_out_while_healthz_answers(limited: Harness) -> None:
    listener = limited.running.listener
    port = limited.running.port
    held = [sock for _ in range(PER_IP) if (sock := await _partial_request(port)) is not None]
    assert len(held) == PER_IP
    await eventually(lambda: listener.per_ip.get(ATTACKER, 0) == PER_IP, what="the partial connections accepted")
    over = [await _partial_request(port) for _ in range(OVER_CAP)]
    try:
        # Over the per-IP cap: closed at accept, before any HTTP.
        for maybe in over:
            assert await _refused(maybe)
        assert listener.refused >= OVER_CAP
        assert listener.per_ip[ATTACKER] == PER_IP
        # The attacker holds all it may; health checks (another, trusted address) still get in.
        code, body = await limited.http("GET", "/healthz")
        assert code == 200 and body["status"] == "ok"
        assert listener.per_ip.get(ATTACKER, 0) == PER_IP  # ...and they were still held meanwhile
        # The header timeout closes every partial connection (EOF, nothing sent back).
        for sock in held:
            assert await read_until_eof(sock, timeout=10) == 0
        await eventually(lambda: ATTACKER not in listener.per_ip, what="the attacker's slots released")
        # Slots are back: the same address may connect again.
        again = await _partial_request(port)
        assert again is not None
        await eventually(lambda: listener.per_ip.get(ATTACKER, 0) == 1, what="a new connection admitted")
        again.close()
    finally:
        for sock in held + [s for s in over if s is not None]:
            sock.close()


async def test_a_guest_token_holds_a_bounded_number_of_websockets(limited: Harness) -> None:
    joined = await limited.join("T001")
    first = await WsClient.connect(limited.ws_base, joined["token"])
    second = await WsClient.connect(limited.ws_base, joined["token"])
    await first.wait_type("welcome")
    await second.wait_type("welcome")
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await WsClient.connect(limited.ws_base, joined["token"])
    assert refused.value.code == 429
    assert refused.value.response is not None
    assert json.loads(refused.value.response.body)["error"] == "too_many_connections"
    await first.close()
    # A slot frees when a socket closes.
    third: WsClient | None = None
    for _ in range(200):
        try:
            third = await WsClient.connect(limited.ws_base, joined["token"])
            break
        except tornado.httpclient.HTTPClientError as exc:
            assert exc.code == 429
            await asyncio.sleep(0.01)
    assert third is not None
    await third.wait_type("welcome")
    await second.close()
    await third.close()


class _FlakyListeningSocket(socket.socket):
    """A real listening socket whose accept() fails with EMFILE the first ``failures`` times."""

    failures = 0
    calls = 0

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()

    @classmethod
    def listening(cls, failures: int = 0, backlog: int = 16) -> _FlakyListeningSocket:
        """Bound to a free loopback port by the kernel (port 0), listening, non-blocking."""
        sock = cls(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        sock.setblocking(False)
        sock.failures = failures
        return sock


class _RecordingServer:
    max_buffer_size = None
    read_chunk_size = None

    def __init__(self) -> None:
        self.streams: list[Any] = []

    def handle_stream(self, stream: Any, address: Any) -> None:
        self.streams.append(stream)


def _paused_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "accept_paused" in r.getMessage()]


async def test_accept_backs_off_when_out_of_descriptors_and_resumes(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    server = _RecordingServer()
    listen = _FlakyListeningSocket.listening(failures=2)
    metrics = Metrics()
    listener = Listener(server, HttpSettings(accept_backoff_s=1.0), clock, metrics=metrics)  # type: ignore[arg-type]
    listener._take_spare = lambda: None  # type: ignore[method-assign]  # no spare: the pause alone is under test
    listener._spare = None
    listener.add_sockets([listen])
    client = socket.create_connection(listen.getsockname())
    try:
        await eventually(lambda: listener.paused, what="the first EMFILE")
        # Paused: the connection still waits in the backlog, but accept is not retried in a busy loop.
        for _ in range(20):
            await asyncio.sleep(0)
        assert listen.calls == 1 and len(_paused_lines(caplog)) == 1
        await clock.advance(1.0)  # resume: EMFILE again, one more line, one more pause
        await eventually(lambda: listen.calls == 2 and listener.paused, what="the second EMFILE")
        assert len(_paused_lines(caplog)) == 2
        await clock.advance(1.0)  # descriptors are back: the waiting connection is served
        await eventually(lambda: len(server.streams) == 1, what="the connection accepted")
        assert not listener.paused and listener.pauses == 2
        assert metrics.registry.get_sample_value("tableside_accept_pauses_total") == 2
        assert len(_paused_lines(caplog)) == 2
        assert all(r.levelno == logging.WARNING for r in _paused_lines(caplog))
    finally:
        client.close()
        for stream in server.streams:
            stream.close()
        listener.stop()


async def test_the_spare_descriptor_serves_a_trusted_client_and_refuses_others() -> None:
    clock = FakeClock()
    server = _RecordingServer()
    listen = _FlakyListeningSocket.listening()
    listener = Listener(server, HttpSettings(accept_backoff_s=1.0), clock)  # type: ignore[arg-type]
    assert listener._spare is not None
    listen.failures = 1  # the first accept fails; the spare is given up and the second one succeeds
    listener.add_sockets([listen])
    trusted = socket.create_connection(listen.getsockname())
    try:
        await eventually(lambda: listener.paused, what="EMFILE")
        assert len(server.streams) == 1 and listener.per_ip == {"127.0.0.1": 1}
        await clock.advance(1.0)
        assert listener._spare is not None  # taken back after the pause
        listen.failures = 1
        stranger = socket.create_connection(listen.getsockname(), source_address=("127.0.0.2", 0))
        await eventually(lambda: listener.pauses == 2, what="EMFILE again")
        assert listener.refused == 1 and len(server.streams) == 1  # closed at once, not served
        stranger.close()
    finally:
        trusted.close()
        for stream in server.streams:
            stream.close()
        listener.stop()


async def test_caps_per_ip_and_in_total_spare_trusted_clients() -> None:
    server = _RecordingServer()
    listen = _FlakyListeningSocket.listening(backlog=64)  # never fails: a plain listening socket
    settings = HttpSettings(max_connections_per_ip=2, reserve_fds=16)
    metrics = Metrics()
    listener = Listener(server, settings, FakeClock(), fd_limit=16 + 3, metrics=metrics)  # type: ignore[arg-type]

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    listener.add_sockets([listen])
    addr = listen.getsockname()

    def connect(source: str) -> socket.socket:
        return socket.create_connection(addr, source_address=(source, 0))

    clients: list[socket.socket] = []
    try:
        clients += [connect("127.0.0.2") for _ in range(3)]  # third over the per-IP cap
        await eventually(lambda: len(server.streams) + listener.refused == 3, what="three accepts")
        assert listener.per_ip == {"127.0.0.2": 2} and listener.refused == 1
        clients += [connect("127.0.0.3") for _ in range(2)]  # the second is over the total (3) cap
        await eventually(lambda: len(server.streams) + listener.refused == 5, what="five accepts")
        assert listener.open_total == 3 and listener.refused == 2
        clients += [connect("127.0.0.1") for _ in range(3)]  # trusted: beyond both caps (the reserve)
        await eventually(lambda: len(server.streams) == 6, what="trusted clients served")
        # The same counts reach /metrics.
        assert sample("tableside_connections_refused_total", reason="per_ip") == 1
        assert sample("tableside_connections_refused_total", reason="total") == 1
        assert sample("tableside_http_connections_open") == 6
        server.streams[0].close()  # a slot is given back when the descriptor closes
        assert listener.per_ip["127.0.0.2"] == 1 and listener.open_total == 5
        assert sample("tableside_http_connections_open") == 5
    finally:
        for c in clients:
            c.close()
        for stream in server.streams:
            stream.close()
        listener.stop()


async def test_keep_alive_requests_get_the_idle_timeout_and_the_first_the_header_timeout(
    limited: Harness,
) -> None:
    http_server = limited.running.http_server
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", limited.running.port))
    try:
        await eventually(lambda: len(http_server._connections) == 1, what="the connection")
        (conn,) = http_server._connections
        assert conn.params is not http_server.conn_params  # per connection, so it can change
        assert conn.params.header_timeout == t(1.5)  # the first request head: the header timeout
        await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = b""
        while b'"ok"' not in response:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), t(5))
            assert chunk, response
            response += chunk
        assert response.startswith(b"HTTP/1.1 200")
        # Kept alive and waiting for the next request: now the (longer) idle timeout applies.
        await eventually(lambda: conn.params.header_timeout == 30, what="the idle timeout")
        assert http_server.conn_params.header_timeout == t(1.5)
    finally:
        sock.close()
