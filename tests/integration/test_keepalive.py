"""Keep-alive: one timer pings every socket; silent ones are dropped, chatty ones kept, and nothing one
socket does (stop reading, fill its buffer) stops the sweep for the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import tornado.websocket

from tableside.clock import FakeClock
from tableside.config import Settings
from tableside.pos.simulator import SimulatorConfig, SimulatorState
from tableside.protocol import OutboundFrame
from tableside.server.app import start_server
from tableside.server.keepalive import KeepAlive
from tableside.server.supervise import BackgroundTasks
from tableside.server.ws import SLOW_CONSUMER_BYTES, GuestSocket
from tableside.storage.postgres import PostgresStore
from tests.client import eventually, raw_websocket, read_until_eof
from tests.integration.conftest import ADMIN_PASSWORD, Harness


class FakeSocket:
    def __init__(self, cid: int, last_heard: float, fail: BaseException | None = None) -> None:
        self.connection_id = cid
        self.last_heard = last_heard
        self.pings = 0
        self.aborted: str | None = None
        self.fail = fail

    def ping(self, data: bytes = b"") -> None:
        if self.fail is not None:
            raise self.fail
        self.pings += 1

    def abort(self, reason: str) -> None:
        self.aborted = reason


def test_sweep_pings_the_living_and_drops_the_silent() -> None:
    keepalive = KeepAlive(interval_s=20, timeout_s=60)
    alive, silent = FakeSocket(1, 100.0), FakeSocket(2, 10.0)
    keepalive.sockets |= {alive, silent}  # type: ignore[arg-type]
    keepalive.sweep(now=100.0 + 30)
    assert alive.pings == 1 and alive.aborted is None
    assert silent.aborted == "keepalive timeout" and silent not in keepalive.sockets


def test_a_socket_whose_ping_fails_is_dropped_and_the_sweep_goes_on() -> None:
    keepalive = KeepAlive(interval_s=20, timeout_s=60)
    broken = FakeSocket(1, 100.0, fail=RuntimeError("buffer full"))
    closing = FakeSocket(2, 100.0, fail=tornado.websocket.WebSocketClosedError())
    others = [FakeSocket(i, 100.0) for i in range(3, 8)]
    keepalive.sockets |= {broken, closing, *others}  # type: ignore[arg-type]
    keepalive.sweep(now=110.0)
    assert broken.aborted == "ping failed" and broken not in keepalive.sockets
    assert closing not in keepalive.sockets  # already closing: forgotten, its on_close is on the way
    assert all(s.pings == 1 for s in others)


async def test_a_supervised_loop_that_raises_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    runs: list[int] = []
    forever = asyncio.Event()

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("boom")
        await forever.wait()

    background = BackgroundTasks(clock, backoff_s=1.0)
    task = background.start("flaky", loop)
    for _ in range(5):
        await asyncio.sleep(0)
    assert runs == [0] and not task.done()  # failed once, waiting out the backoff on the clock
    failures = [r for r in caplog.records if "background_task_failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert "RuntimeError: boom" in failures[0].getMessage()  # with its traceback
    await clock.advance(1.0)
    assert runs == [0, 1] and not task.done()
    caplog.clear()  # the ERROR above was the point of this test
    await background.stop()
    assert task.cancelled()


@pytest.fixture
async def fake_clock_harness(database_url: str) -> AsyncIterator[tuple[Harness, FakeClock]]:
    """A real server on port 0 whose clock (keep-alive timer included) only moves when the test says."""
    settings = Settings(port=0, database_url=database_url, admin_password=ADMIN_PASSWORD,
                        demo={"tables": 2})  # type: ignore[arg-type]
    store = await PostgresStore.connect(database_url)
    await store.truncate_all()
    clock = FakeClock()
    running, _ = await start_server(settings, store, demo=True, clock=clock)
    h = Harness(running, SimulatorState(SimulatorConfig()), f"http://127.0.0.1:{running.port}",
                f"ws://127.0.0.1:{running.port}")
    yield h, clock
    await running.stop()


def _server_side(h: Harness, member_id: str) -> GuestSocket:
    for sock in h.running.services.keepalive.sockets:
        if isinstance(sock, GuestSocket) and sock.token_info.member_id == member_id:
            return sock
    raise AssertionError(f"no server socket for {member_id}")


def _fill_to_the_cap(sock: GuestSocket) -> None:
    """Send frames (as broadcasts do) until the unsent bytes sit exactly at the slow-consumer cap: the
    next frame, however small (a 2-byte ping), no longer fits."""
    stream = sock.ws_connection.stream  # type: ignore[union-attr]
    for _ in range(10_000):
        pending = len(stream._write_buffer)
        room = SLOW_CONSUMER_BYTES - pending
        if room == 0:
            return
        # Large frames first; the last one exactly fills what is left (never a tiny remainder).
        frame = _frame_of_size(room if room <= 60_000 else min(60_000, room - 1_000), sock)
        sock.send(frame)
        assert not stream.closed(), "dropped while filling"
    raise AssertionError("write buffer never reached the cap")


def _frame_of_size(size: int, sock: GuestSocket) -> OutboundFrame:
    """A frame whose wire bytes (header included) are exactly ``size`` long."""
    pad = max(size - 40, 0)
    for _ in range(5):
        frame = OutboundFrame({"type": "noise", "pad": "x" * pad})
        got = len(frame.wire(sock.codec))
        if got == size:
            return frame
        pad = max(pad + size - got, 0)
    raise AssertionError(f"cannot build a {size}-byte frame")


async def test_a_guest_that_stops_reading_cannot_stop_the_keepalive(
    fake_clock_harness: tuple[Harness, FakeClock],
) -> None:
    h, clock = fake_clock_harness
    keepalive = h.running.services.keepalive
    port = h.running.port
    watcher_join, watcher = await h.member("T001")  # a normal phone: answers every ping
    slow_join, dead_join = await h.join("T001"), await h.join("T001")
    # Stops reading with a tiny receive buffer: what the server sends piles up in its write buffer.
    slow = await raw_websocket("127.0.0.1", port, f"/ws?token={slow_join['token']}", rcvbuf=2048)
    # Connected and quiet: never answers a ping (a phone that lost its network).
    dead = await raw_websocket("127.0.0.1", port, f"/ws?token={dead_join['token']}")
    try:
        for joined in (slow_join, dead_join):
            await watcher.wait_type("member_joined", member_id=joined["member_id"])
        watcher_side = _server_side(h, watcher_join["member_id"])
        slow_side = _server_side(h, slow_join["member_id"])
        dead_side = _server_side(h, dead_join["member_id"])
        _fill_to_the_cap(slow_side)

        # Sweep 1: the slow socket cannot take even a ping; it alone is dropped, the others are pinged.
        await clock.advance(keepalive.interval_s)
        await eventually(lambda: watcher_side.last_heard == clock.monotonic(), what="the watcher's pong")
        assert slow_side not in keepalive.sockets
        left = await watcher.wait_type("member_left", member_id=slow_join["member_id"])
        assert {m["member_id"]: m["online"] for m in left["members"]}[slow_join["member_id"]] is False

        # Later sweeps keep pinging, and the silent socket is still reaped when its timeout passes.
        while clock.monotonic() <= keepalive.timeout_s:
            await clock.advance(keepalive.interval_s)
            await eventually(lambda: watcher_side.last_heard == clock.monotonic(), what="the watcher's pong")
        assert dead_side not in keepalive.sockets and watcher_side in keepalive.sockets
        await watcher.wait_type("member_left", member_id=dead_join["member_id"])
        await read_until_eof(dead)  # the server really closed the descriptor
        assert not h.running.background.tasks["keepalive"].done()
    finally:
        slow.close()
        dead.close()
        await watcher.close()


async def test_real_sockets_answer_pings_and_leave_the_set_on_close(harness: Harness) -> None:
    keepalive = harness.running.services.keepalive
    _, phone = await harness.member()
    (sock,) = [s for s in keepalive.sockets]
    before = sock.last_heard
    await asyncio.sleep(0.01)
    keepalive.sweep(harness.running.services.clock.monotonic())  # ping; the client answers with a pong
    for _ in range(100):
        if sock.last_heard > before:
            break
        await asyncio.sleep(0.01)
    assert sock.last_heard > before
    await phone.close()
    for _ in range(100):
        if not keepalive.sockets:
            break
        await asyncio.sleep(0.01)
    assert not keepalive.sockets



async def test_closing_a_socket_whose_buffer_is_full_does_not_raise(
    fake_clock_harness: tuple[Harness, FakeClock],
) -> None:
    """The actor closes sinks on group-full and session-closed; a full buffer must not raise into it."""
    h, clock = fake_clock_harness
    watcher_join, watcher = await h.member("T001")
    slow_join = await h.join("T001")
    slow = await raw_websocket("127.0.0.1", h.running.port, f"/ws?token={slow_join['token']}", rcvbuf=2048)
    try:
        await watcher.wait_type("member_joined", member_id=slow_join["member_id"])
        slow_side = _server_side(h, slow_join["member_id"])
        _fill_to_the_cap(slow_side)
        slow_side.close(1008, "group full")  # the close frame fits in the headroom for control frames
        assert slow_side.ws_connection is None  # closing (tornado gives the peer a few seconds)
        slow_side.send(OutboundFrame({"type": "noise"}))  # after close: ignored, not raised
    finally:
        slow.close()
        await watcher.close()
