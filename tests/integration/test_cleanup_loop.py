"""The fail-safe cleanup loop itself (docs/staff-kitchen-api.md, "Fail-safe cleanup"), not only the function
it calls: the server's own background loop, run every ``cleanup_interval_s`` on the injected clock, closes
sittings idle longer than ``group_idle_hours`` (and only those), deletes their tokens, tells the phones
``session_closed {reason: "expired"}``, deletes expired staff sessions and logs ``event: cleanup``. And
running it on several nodes at once closes each sitting once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import pytest

from tableside.clock import FakeClock
from tableside.config import Settings
from tableside.server.app import start_server
from tableside.server.maintenance import run_cleanup
from tableside.storage.interface import TableStatus
from tableside.storage.postgres import PostgresStore
from tests.client import eventually
from tests.integration.conftest import ADMIN_PASSWORD, Harness

INTERVAL_S = 1800.0
IDLE_HOURS = 2.0


@dataclasses.dataclass
class LoopHarness:
    h: Harness
    clock: FakeClock
    caplog: pytest.LogCaptureFixture

    def runs(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records
                if r.name == "tableside.maintenance" and r.getMessage().startswith("event='cleanup' ")]

    async def tick(self) -> str:
        """One interval on the fake clock: the loop wakes once; wait for its run to finish (its log line)."""
        before = len(self.runs())
        await self.clock.advance(INTERVAL_S)
        await eventually(lambda: len(self.runs()) > before, what="a cleanup run")
        return self.runs()[-1]

    async def status(self, table_id: str) -> TableStatus:
        table = await self.h.running.services.store.get_table(table_id)
        assert table is not None
        return table.status


@pytest.fixture
async def lh(database_url: str, caplog: pytest.LogCaptureFixture) -> AsyncIterator[LoopHarness]:
    caplog.set_level(logging.INFO, logger="tableside.maintenance")
    clock = FakeClock()
    settings = Settings(
        port=0, database_url=database_url, admin_password=ADMIN_PASSWORD,
        demo={"tables": 3},  # type: ignore[arg-type]
        group_idle_hours=IDLE_HOURS, cleanup_interval_s=INTERVAL_S,
        tokens={"staff_ttl_hours": IDLE_HOURS},  # type: ignore[arg-type]
        pos={"adapter": "dummy", "latency_ms": 0, "success_rate": 1.0},  # type: ignore[arg-type]
    )
    store = await PostgresStore.connect(database_url)
    await store.truncate_all()
    running, _ = await start_server(settings, store, demo=True, clock=clock)
    running.services.keepalive.timeout_s = 1e9  # hours pass on the fake clock; the phones are alive
    h = Harness(running, None, f"http://127.0.0.1:{running.port}", f"ws://127.0.0.1:{running.port}")  # type: ignore[arg-type]
    yield LoopHarness(h, clock, caplog)
    await running.stop()


async def test_the_loop_closes_only_sittings_idle_past_group_idle_hours(lh: LoopHarness) -> None:
    h = lh.h
    staff = await h.staff_token()
    joined_a, a = await h.member("T001")
    _, b = await h.member("T002")
    await lh.tick()
    await lh.tick()  # 1 h: nobody idle long enough
    assert await lh.status("T001") == await lh.status("T002") == TableStatus.OCCUPIED
    assert (await b.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1}))["type"] == "ack"  # B active at 1 h
    await lh.tick()  # 1.5 h
    assert await lh.status("T001") == TableStatus.OCCUPIED
    assert (await h.http("GET", "/api/cart", token=joined_a["token"]))[0] == 200
    await lh.tick()  # 2 h
    run = await lh.tick()  # 2.5 h: T001 idle 2.5 h (closed), T002 idle 1.5 h (kept)
    closed = await a.wait_type("session_closed")
    assert closed["reason"] == "expired"
    await asyncio.wait_for(a.closed.wait(), 5)
    table = await h.running.services.store.get_table("T001")
    assert table is not None and table.status == TableStatus.VACANT and table.current_group_id is None
    code, body = await h.http("GET", "/api/cart", token=joined_a["token"])  # its tokens are deleted
    assert code == 401 and body["error"] == "unauthorized"
    assert await lh.status("T002") == TableStatus.OCCUPIED and b.of_type("session_closed") == []
    assert "idle_groups_closed=1" in run or "idle_groups_closed=1" in lh.runs()[-2], lh.runs()[-2:]
    # The staff session (ttl = 2 h here) expired and a run deleted it.
    assert any("expired_staff_sessions=1" in line for line in lh.runs()), lh.runs()
    assert (await h.http("GET", "/api/staff/board", token=staff))[0] == 401
    # The vacant table opens a new sitting on the next join.
    assert (await h.join("T001"))["group_id"] != joined_a["group_id"]
    await lh.tick()  # 3 h: T002 idle 2 h, not longer
    await lh.tick()  # 3.5 h
    assert (await b.wait_type("session_closed"))["reason"] == "expired"
    assert await lh.status("T002") == TableStatus.VACANT


async def test_every_node_cleaning_at_once_closes_each_sitting_once(lh: LoopHarness, database_url: str) -> None:
    h = lh.h
    _, a = await h.member("T001")
    await h.join("T002")
    services = h.running.services
    later = FakeClock(start=lh.clock.now() + (IDLE_HOURS + 1) * 3600)  # a later time, without waking the loop
    other_store = await PostgresStore.connect(database_url)
    nodes = [dataclasses.replace(services, clock=later),
             dataclasses.replace(services, clock=later, store=other_store)]
    try:
        reports = await asyncio.gather(*(run_cleanup(n) for n in nodes * 4))
    finally:
        await other_store.close()
    assert sum(r.extra["idle_groups_closed"] for r in reports) == 2
    await asyncio.wait_for(a.closed.wait(), 5)
    assert [m["reason"] for m in a.of_type("session_closed")] == ["expired"]
    assert await lh.status("T001") == await lh.status("T002") == TableStatus.VACANT
