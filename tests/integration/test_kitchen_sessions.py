"""Issue 8: an open kitchen screen lives only as long as the staff session it was opened with.

A logout through the API closes it at once; a session ended in another process (the CLI's `staff passwd`
and `staff remove`, emulated here by a second store connection doing what the CLI does) is noticed by the
periodic re-check on the injected clock, within ``tokens.staff_recheck_s``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

from tableside.auth import StaffAuth
from tableside.clock import FakeClock
from tableside.server.kitchen import KitchenHub
from tableside.storage.interface import StaffRole, StaffUser
from tableside.storage.memory import MemoryStore
from tableside.storage.postgres import PostgresStore
from tests.client import WsClient, t
from tests.integration.conftest import Harness, start_on_clock

KITCHEN_PASSWORD = "kitchen-pass-1"
RECHECK_S = 15.0


class ClockHarness(Harness):
    clock: FakeClock
    database_url: str


@pytest.fixture
async def ch(database_url: str, tmp_path: Path) -> AsyncIterator[ClockHarness]:
    clock = FakeClock()
    h = await start_on_clock(database_url, clock, cls=ClockHarness, data_dir=tmp_path,
                             tokens={"staff_recheck_s": RECHECK_S})
    running = h.running
    await running.services.staff_auth.set_user("kitchen", StaffRole.KITCHEN, KITCHEN_PASSWORD)
    h.clock = clock
    h.database_url = database_url
    yield h
    await running.stop()


async def kitchen_screen(h: Harness, token: str) -> WsClient:
    conn = await tornado.websocket.websocket_connect(f"{h.ws_base}/ws/kitchen?token={token}",
                                                     subprotocols=["tableside.v1.json"])
    screen = WsClient(conn, False)
    await screen.wait_type("kitchen_snapshot")
    return screen


async def assert_closed_by_server(screen: WsClient, reason: str) -> None:
    await screen.wait_type("session_closed", reason=reason)
    await asyncio.wait_for(screen.closed.wait(), t(5))
    assert screen.close_code == 4001


async def assert_open(screen: WsClient) -> None:
    reply = await screen.request({"type": "ping"})
    assert reply["type"] == "pong"
    assert not screen.closed.is_set()


async def as_the_cli(h: ClockHarness) -> tuple[PostgresStore, StaffAuth]:
    """What `tableside staff ...` runs: its own store and StaffAuth, nothing shared with the server."""
    store = await PostgresStore.connect(h.database_url)
    return store, StaffAuth(store, 3600)


async def test_logout_closes_the_kitchen_screens_of_that_session_at_once(ch: ClockHarness) -> None:
    token = await ch.staff_token("kitchen", KITCHEN_PASSWORD)
    other = await ch.staff_token("kitchen", KITCHEN_PASSWORD)  # same user, another device
    screen, twin = await kitchen_screen(ch, token), await kitchen_screen(ch, token)
    elsewhere = await kitchen_screen(ch, other)

    code, _ = await ch.http("POST", "/api/staff/logout", token=token)
    assert code == 204

    # No clock movement: the logout itself closes both screens of that session, and only those.
    await assert_closed_by_server(screen, "logged_out")
    await assert_closed_by_server(twin, "logged_out")
    await assert_open(elsewhere)
    assert len(ch.running.services.kitchen.subscriptions) == 1
    # The token no longer opens a screen.
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await kitchen_screen(ch, token)
    assert refused.value.code == 401
    await elsewhere.close()


@pytest.mark.parametrize("change", ["passwd", "remove"])
async def test_a_session_ended_by_the_cli_closes_the_screen_within_the_recheck_interval(
    ch: ClockHarness, change: str
) -> None:
    kitchen_token = await ch.staff_token("kitchen", KITCHEN_PASSWORD)
    admin_token = await ch.staff_token()
    screen = await kitchen_screen(ch, kitchen_token)
    bystander = await kitchen_screen(ch, admin_token)

    store, auth = await as_the_cli(ch)
    try:
        if change == "passwd":
            assert await auth.set_user("kitchen", StaffRole.KITCHEN, "a new password") == 1
        else:
            assert await auth.remove_user("kitchen")
    finally:
        await store.close()

    # The server process was not told: the screen stays until the next re-check ...
    await ch.clock.advance(RECHECK_S - 1)
    await assert_open(screen)
    # ... which closes it, and only it.
    await ch.clock.advance(1)
    await assert_closed_by_server(screen, "revoked")
    await assert_open(bystander)
    assert len(ch.running.services.kitchen.subscriptions) == 1
    await bystander.close()


class _Screen:
    def __init__(self, connection_id: int) -> None:
        self.connection_id = connection_id
        self.ended: list[str] = []

    def send(self, frame: object) -> None:
        pass

    def end_session(self, reason: str) -> None:
        self.ended.append(reason)


async def test_check_sessions_says_expired_for_a_session_past_its_lifetime() -> None:
    store = MemoryStore()
    await store.upsert_staff(StaffUser("kitchen", StaffRole.KITCHEN, "not-a-hash"))
    await store.create_staff_session("h-live", "kitchen", StaffRole.KITCHEN, 2_000.0)
    await store.create_staff_session("h-old", "kitchen", StaffRole.KITCHEN, 1_000.0)
    hub = KitchenHub(store)
    live, old, unchecked = _Screen(1), _Screen(2), _Screen(3)
    hub.subscribe(live, 1, 0, session="h-live", expires_at=2_000.0)
    hub.subscribe(old, 1, 0, session="h-old", expires_at=1_000.0)
    hub.subscribe(unchecked, 1, 0)

    assert await hub.check_sessions(1_500.0) == 1
    assert (live.ended, old.ended, unchecked.ended) == ([], ["expired"], [])
    assert set(hub.subscriptions) == {1, 3}


class _FlakyKitchenStore(MemoryStore):
    """The kitchen query fails ``failures`` times (the database is away), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    async def list_kitchen_orders(self, restaurant_id: int, after_seq: int, limit: int) -> list:  # type: ignore[type-arg]
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        return await super().list_kitchen_orders(restaurant_id, after_seq, limit)


async def test_the_pump_retries_a_failed_delivery_on_the_injected_clock(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    store = _FlakyKitchenStore(failures=1)
    hub = KitchenHub(store, clock=clock)
    hub.subscribe(_Screen(1), 1, 0)
    pump = asyncio.get_running_loop().create_task(hub.run())
    try:
        hub.notify(1)
        for _ in range(50):
            if clock.sleepers:
                break
            await asyncio.sleep(0)
        assert store.calls == 1 and clock.sleepers == 1  # failed, now waiting on the clock, not spinning
        await clock.advance(0.4)
        assert store.calls == 1
        await clock.advance(0.1)
        for _ in range(50):
            if store.calls == 2:
                break
            await asyncio.sleep(0)
        assert store.calls == 2 and not pump.done()  # retried by itself, and the pump lives on
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    caplog.clear()  # the one expected ERROR (kitchen_pump_failed)
