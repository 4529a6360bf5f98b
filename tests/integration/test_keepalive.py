"""Keep-alive: one timer pings every socket; silent ones are dropped, chatty ones kept."""

from __future__ import annotations

import asyncio

from tableside.server.keepalive import KeepAlive
from tests.integration.conftest import Harness


class FakeSocket:
    def __init__(self, cid: int, last_heard: float) -> None:
        self.connection_id = cid
        self.last_heard = last_heard
        self.pings = 0
        self.closed: tuple[int | None, str | None] | None = None

    def ping(self, data: bytes = b"") -> None:
        self.pings += 1

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closed = (code, reason)


def test_sweep_pings_the_living_and_drops_the_silent() -> None:
    keepalive = KeepAlive(interval_s=20, timeout_s=60)
    alive, silent = FakeSocket(1, 100.0), FakeSocket(2, 10.0)
    keepalive.sockets |= {alive, silent}  # type: ignore[arg-type]
    keepalive.sweep(now=100.0 + 30)
    assert alive.pings == 1 and alive.closed is None
    assert silent.closed == (1001, "keepalive timeout") and silent not in keepalive.sockets


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
