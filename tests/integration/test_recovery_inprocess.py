"""Start-up recovery on its own, in-process: a server stops while an order's POS call is in flight (the
intent stays ``processing``); a new server starts on the same database and, with no guest connecting,
settles the order: confirmed, one submit then only a lookup at the POS, the kitchen feed gets it once.

The subprocess kill -9 version is in test_crash.py; this one is cheap enough to run everywhere (and is
what catches a start-up that forgets ``reconcile_open_orders``: a reconnecting phone would hide it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from tableside.clock import SystemClock
from tableside.config import Settings
from tableside.pos.http import HttpPosAdapter
from tableside.pos.simulator import LoggedRequest, SimulatorConfig, SimulatorState, make_app
from tableside.server.app import RunningServer, start_server
from tableside.storage.interface import OrderStatus
from tableside.storage.postgres import PostgresStore
from tests.client import WsClient, t
from tests.exactly_once import assert_submitted_once, calls_for
from tests.pg import create_database, drop_database

ADMIN = "recovery-admin-pw"


@dataclass
class World:
    database_url: str
    sim: SimulatorState
    sim_url: str

    async def start(self) -> RunningServer:
        settings = Settings(
            port=0,
            database_url=self.database_url,
            admin_password=ADMIN,
            demo={"tables": 3},
            pos={"adapter": "http", "url": self.sim_url, "timeout_s": 60, "backoff_s": 0.1},
        )
        store = await PostgresStore.connect(self.database_url)
        clock = SystemClock()
        running, _ = await start_server(settings, store, demo=True, clock=clock, pos=HttpPosAdapter(self.sim_url, clock))
        return running

    async def wait_sim(self, match: Any) -> None:
        assert await self.sim.wait_for_request(match, t(30)), self.sim.request_log()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    url = await create_database("ts_recover")
    sim = SimulatorState(SimulatorConfig())
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_app(sim))
    server.add_sockets(sockets)
    yield World(url, sim, f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
    sim.release_hung()
    server.stop()
    await server.close_all_connections()
    await drop_database(url)


async def call(running: RunningServer, path: str, body: Any = None, token: str | None = None) -> Any:
    client = tornado.httpclient.AsyncHTTPClient()
    resp = await client.fetch(
        f"http://127.0.0.1:{running.port}{path}",
        method="GET" if body is None else "POST",
        body=None if body is None else json.dumps(body),
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    return json.loads(resp.body)


async def guest_phone(running: RunningServer, table_id: str) -> WsClient:
    table = await running.services.store.get_table(table_id)
    assert table is not None
    joined = await call(running, "/api/join", {"table_id": table_id, "qr": table.qr_secret})
    phone = await WsClient.connect(f"ws://127.0.0.1:{running.port}", joined["token"])
    await phone.wait_type("welcome")
    return phone


async def kitchen_screen(running: RunningServer, since: int) -> WsClient:
    token = (await call(running, "/api/staff/login", {"username": "admin", "password": ADMIN}))["token"]
    conn = await tornado.websocket.websocket_connect(
        f"ws://127.0.0.1:{running.port}/ws/kitchen?token={token}&since={since}", subprotocols=["tableside.v1.json"]
    )
    screen = WsClient(conn, False)
    await screen.wait_type("kitchen_snapshot")
    return screen


async def test_restart_settles_a_processing_order_with_no_client(world: World) -> None:
    first = await world.start()
    phone = await guest_phone(first, "T002")
    await phone.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
    world.sim.control({"timeout_next": 1, "hang_ms": 600_000})  # ticket made, reply held
    placed = await phone.request({"type": "place_order"})
    order_id = placed["order_id"]

    def in_flight(r: LoggedRequest) -> bool:
        return r.key == order_id and r.kind == "submit" and r.outcome == "created" and r.status is None

    await world.wait_sim(in_flight)
    await phone.close()
    await first.stop()  # the POS call is abandoned; the intent stays in the database

    second = await world.start()  # nobody connects to the table from here on
    try:
        screen = await kitchen_screen(second, since=0)
        await screen.wait_type("order_placed", timeout=30, order_id=order_id)
        order = await second.services.store.get_order(order_id)
        assert order is not None and order.status == OrderStatus.CONFIRMED and order.kitchen_seq is not None
        assert order.pos_ticket_id == world.sim.tickets[order_id].ticket_id
        log = world.sim.request_log()
        assert_submitted_once(log, order_id)
        assert [c["kind"] for c in calls_for(log, order_id)] == ["submit", "lookup"]
        assert list(world.sim.tickets) == [order_id]
        # Once on the kitchen feed: a later order comes after it with nothing repeated in between.
        phone2 = await guest_phone(second, "T003")
        await phone2.request({"type": "add_item", "menu_item_id": "miso", "qty": 1})
        later = (await phone2.request({"type": "place_order"}))["order_id"]
        await screen.wait_type("order_placed", timeout=30, order_id=later)
        assert [m["order_id"] for m in screen.of_type("order_placed")] == [order_id, later]
        assert_submitted_once(world.sim.request_log(), later)
        await screen.close()
        await phone2.close()
    finally:
        await second.stop()
