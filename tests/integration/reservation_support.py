"""An in-process server for the reservation API tests (docs/reservations.md) on a fresh copy of the test
database and a ``FakeClock``: store 1 in Asia/Tokyo with a lunch break, two bookable staff (a chef and a
sommelier) and two courses (60 and 90 minutes), customers made straight in the store (no argon2 per
customer), and a client for ``/ws/me``."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import tornado.httpclient
import tornado.websocket

from tableside.auth import token_hash
from tableside.clock import FakeClock
from tableside.storage.interface import Restaurant, User
from tableside.storage.reservations import BookableStaff, Course
from tableside.storage.reservations_postgres import PostgresReservations
from tests.client import WsClient
from tests.integration.conftest import Harness, start_on_clock

STORE = 1
TZ = "Asia/Tokyo"
# 2026-12-01 09:00 in Tokyo (a Tuesday): "tomorrow" is Wednesday 2026-12-02.
START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC).timestamp()
TODAY = "2026-12-01"
TOMORROW = "2026-12-02"
HOURS: dict[str, Any] = {day: [["11:00", "14:00"], ["17:00", "21:00"]] for day in
                         ("mon", "tue", "wed", "thu", "fri", "sat")}
HOURS["sun"] = []
HOURS["closed_dates"] = []
CHEF = "11111111-1111-4111-8111-111111111111"
SOMM = "22222222-2222-4222-8222-222222222222"
SHORT = "33333333-3333-4333-8333-333333333333"  # 60 minutes, 5000
LONG = "44444444-4444-4444-8444-444444444444"  # 90 minutes, 9000
OTHER_STORE_COURSE = "55555555-5555-4555-8555-555555555555"


@dataclass
class Resv(Harness):
    clock: FakeClock = field(default_factory=FakeClock)

    @property
    def services(self) -> Any:
        return self.running.services

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None,
                   client: tornado.httpclient.AsyncHTTPClient | None = None) -> tuple[int, Any]:
        hdrs = {"Authorization": f"Bearer {token}"} if token else {}
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        if method in ("POST", "PUT") and data is None:
            data = b""
        resp = await (client or tornado.httpclient.AsyncHTTPClient()).fetch(
            f"{self.base}{path}", method=method, body=data, headers=hdrs, raise_error=False,
            follow_redirects=False, allow_nonstandard_methods=True,
        )
        try:
            parsed = json.loads(resp.body) if resp.body else None
        except ValueError:
            parsed = resp.body.decode()
        return resp.code, parsed

    async def customer(self, name: str = "Hanako") -> tuple[str, str]:
        """A customer account and a session token, straight in the store: (user_id, token)."""
        store = self.services.store
        now = self.clock.now()
        user_id = str(uuid.uuid4())
        await store.create_user(User(user_id, name, f"{user_id[:8]}@example.com", None, None, "x", now, now))
        token = secrets.token_urlsafe(24)
        await store.create_user_session(token_hash(token), user_id, now + 86400 * 30, now)
        return user_id, token

    async def slots(self, date: str = TOMORROW, menu_id: str = SHORT, staff_id: str | None = None,
                    store: int = STORE) -> list[dict[str, Any]]:
        path = f"/api/stores/{store}/availability?date={date}&menu_id={menu_id}"
        if staff_id:
            path += f"&staff_id={staff_id}"
        code, body = await self.call("GET", path)
        assert code == 200, body
        return list(body["slots"])

    async def book(self, token: str, start: str, *, staff_id: str = CHEF, menu_id: str = SHORT,
                   party_size: int = 2, notes: str = "",
                   client: tornado.httpclient.AsyncHTTPClient | None = None) -> tuple[int, Any]:
        return await self.call("POST", "/api/reservations", {
            "store_id": STORE, "menu_id": menu_id, "staff_id": staff_id, "start_time": start,
            "party_size": party_size, "notes": notes,
        }, token, client)

    async def me_socket(self, token: str) -> WsClient:
        conn = await tornado.websocket.websocket_connect(
            f"{self.ws_base}/ws/me?token={token}", subprotocols=["tableside.v1.json"])
        client = WsClient(conn, False)
        await client.wait_type("customer_welcome", timeout=10)
        return client

    async def run_for(self, seconds: float) -> None:
        """Move the fake clock forward ``seconds`` in steps of the sweep interval, letting the sweep loop (and
        its database work) run at each step, as it would in real time."""
        step = float(self.services.settings.reservations.sweep_interval_s)
        moved = 0.0
        while moved < seconds:
            await self.clock.advance(min(step, seconds - moved))
            moved += step
            await asyncio.sleep(0.02)

    async def settle(self, rounds: int = 20) -> None:
        """Let background work (the dummy payment, latency 0) run: a few zero advances of the fake clock."""
        for _ in range(rounds):
            await self.clock.advance(0)

    async def status_of(self, reservation_id: str, token: str) -> str:
        code, body = await self.call("GET", f"/api/reservations/{reservation_id}", token=token)
        assert code == 200, body
        return str(body["status"])

    async def wait_status(self, reservation_id: str, token: str, status: str, tries: int = 200) -> dict[str, Any]:
        body: Any = None
        for _ in range(tries):
            code, body = await self.call("GET", f"/api/reservations/{reservation_id}", token=token)
            assert code == 200, body
            if body["status"] == status:
                return dict(body)
            await self.clock.advance(0.05)
        raise AssertionError(f"reservation never became {status}: {body}")


async def seed_booking(pg_engine: Any, services: Any) -> None:
    store = services.store
    before = await store.get_restaurant(STORE)
    assert before is not None
    await store.upsert_restaurant(Restaurant(STORE, before.name, before.address, before.phone, HOURS, TZ))
    resv = PostgresReservations(pg_engine)
    # The demo's own bookable staff and courses (tableside serve --demo) step aside: these tests name theirs.
    for staff in await resv.list_bookable_staff(STORE):
        await resv.upsert_bookable_staff(replace(staff, bookable=False))
    for course in await resv.list_courses(STORE):
        await resv.upsert_course(replace(course, bookable=False))
    await resv.upsert_bookable_staff(BookableStaff(CHEF, STORE, "Kenji", "chef"))
    await resv.upsert_bookable_staff(BookableStaff(SOMM, STORE, "Aiko", "sommelier"))
    await resv.upsert_course(Course(SHORT, STORE, "Lunch omakase", 5000, 60, sort_order=0))
    await resv.upsert_course(Course(LONG, STORE, "Dinner omakase", 9000, 90, sort_order=1))
    await resv.upsert_course(Course(OTHER_STORE_COURSE, STORE + 1, "Antipasti", 3000, 60))


async def start_resv(database_url: str, *, success_rate: float = 1.0, **settings: Any) -> Resv:
    clock = FakeClock(start=START)
    merged: dict[str, Any] = {
        "payments": {"adapter": "dummy", "latency_ms": 0, "success_rate": success_rate},
        "limits": {"register_per_minute_per_ip": 1000},
    }
    merged.update(settings)
    h = await start_on_clock(database_url, clock, cls=Resv, **merged)
    h.clock = clock
    await seed_booking(h.services.store.engine, h.services)
    await h.services.reservations.cache.invalidate(STORE, None)
    return h


def iso(day: str, hhmm: str) -> str:
    """A start time in Tokyo: ``iso("2026-12-02", "11:00")`` → ``2026-12-02T11:00:00+09:00``."""
    return f"{day}T{hhmm}:00+09:00"
