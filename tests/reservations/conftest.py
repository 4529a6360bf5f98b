"""The reservation service's world: a store in Asia/Tokyo (11:30-14:30 and 17:00-22:00, closed on Wednesdays),
a chef and a sommelier, a 60- and a 90-minute course, three customers, a fake clock at 2026-12-01 09:00 JST
(a Tuesday) and the dummy payments (answers in 1.5 s).

``env`` runs a test twice: on the memory stores with ``MemorySlotCache``/``MemoryWaitlistQueue``, and on
Postgres with the Redis cache and queue (127.0.0.1:6379, a unique key prefix; unreachable Redis fails).
``menv`` is the memory world only (fast). ``make_env(...)`` builds one with other settings."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from tableside.clock import FakeClock
from tableside.config import PaymentSettings, ReservationSettings
from tableside.payments import DummyPayments
from tableside.reservations import (
    MemorySlotCache,
    MemoryWaitlistQueue,
    RedisSlotCache,
    RedisWaitlistQueue,
    ReservationService,
    SlotCache,
    WaitlistQueue,
)
from tableside.storage import MemoryStore, PostgresStore, Restaurant, Store
from tableside.storage.interface import User
from tableside.storage.reservations import BookableStaff, Course, HistoryStore, ReservationStore
from tableside.storage.reservations_memory import MemoryHistory, MemoryReservations
from tableside.storage.reservations_postgres import PostgresHistory, PostgresReservations
from tests.cluster.test_bus import REDIS_URL, _redis_or_fail
from tests.pg import create_database_sync, drop_database_sync

TZ = "Asia/Tokyo"
JST = ZoneInfo(TZ)
START = datetime(2026, 12, 1, 9, 0, tzinfo=JST).timestamp()  # Tuesday 09:00 JST
CHEF = "00000000-0000-4000-8000-00000000c4ef"
SOMM = "00000000-0000-4000-8000-00000000501e"
SHORT = "00000000-0000-4000-8000-0000000000c1"  # 60 minutes, 5000
LONG = "00000000-0000-4000-8000-0000000000c2"  # 90 minutes, 8000
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS: dict[str, Any] = {d: [["11:30", "14:30"], ["17:00", "22:00"]] for d in DAYS}
HOURS["wed"] = []
HOURS["closed_dates"] = []


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=JST)  # type: ignore[misc]


@dataclass
class Env:
    kind: str
    store: Store
    res: ReservationStore
    hist: HistoryStore
    clock: FakeClock
    payments: DummyPayments
    cache: SlotCache
    queue: WaitlistQueue
    svc: ReservationService
    users: list[str]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def tick(self, seconds: float) -> None:
        """Let the background tasks reach their clock sleeps (a task just created has not run yet: on the
        memory stores nothing else yields), then advance the fake clock."""
        for _ in range(20):
            await asyncio.sleep(0)
        await self.clock.advance(seconds)

    async def settle(self, seconds: float = 2.0) -> None:
        """Let the payments run: advance the fake clock and wait for the payment tasks."""
        await self.tick(seconds)
        await self.svc.drain_payments()


async def _seed(store: Store, res: ReservationStore, n_users: int = 4) -> list[str]:
    await store.upsert_restaurant(Restaurant(1, "Sushi Kanda", business_hours=HOURS, timezone=TZ))
    await store.upsert_restaurant(Restaurant(2, "Other", timezone="UTC"))
    await res.upsert_bookable_staff(BookableStaff(CHEF, 1, "Kenji", "chef", True, START))
    await res.upsert_bookable_staff(BookableStaff(SOMM, 1, "Aiko", "sommelier", True, START))
    await res.upsert_course(Course(SHORT, 1, "Omakase", 5000, 60, True, 0))
    await res.upsert_course(Course(LONG, 1, "Kaiseki", 8000, 90, True, 1))
    users = []
    for i in range(n_users):
        uid = str(uuid.uuid4())
        await store.create_user(User(uid, f"U{i}", f"u{i}-{uid[:6]}@example.com", None, None, "h", START, START))
        users.append(uid)
    return users


@pytest.fixture(scope="session")
def res_pg_url() -> Iterator[str]:
    url = create_database_sync("tableside_rs")
    try:
        yield url
    finally:
        drop_database_sync(url)


EnvFactory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(res_pg_url: str) -> AsyncIterator[EnvFactory]:
    closers: list[Callable[[], Awaitable[None]]] = []

    async def factory(
        kind: str = "memory",
        *,
        success_rate: float = 1.0,
        latency_ms: int = 1500,
        cache: SlotCache | None = None,
        **settings: Any,
    ) -> Env:
        clock = FakeClock(START)
        payments = DummyPayments(latency_ms, success_rate, clock=clock, rng=random.Random(7))
        queue: WaitlistQueue
        if kind == "memory":
            mem = MemoryStore()
            store: Store = mem
            res: ReservationStore = MemoryReservations(mem)
            hist: HistoryStore = MemoryHistory(mem)
            cache = cache if cache is not None else MemorySlotCache(clock)
            queue = MemoryWaitlistQueue()
        else:
            await _redis_or_fail()
            pg = await PostgresStore.connect(res_pg_url)
            await pg.truncate_all()
            closers.append(pg.close)
            store, res, hist = pg, PostgresReservations(pg.engine), PostgresHistory(pg.engine)
            prefix = f"test:{uuid.uuid4().hex}:"
            client = aioredis.Redis.from_url(REDIS_URL)

            async def cleanup() -> None:
                keys = [k async for k in client.scan_iter(match=prefix + "*")]
                if keys:
                    await client.delete(*keys)
                await client.aclose()

            closers.append(cleanup)
            cache = cache if cache is not None else RedisSlotCache(client=client, prefix=prefix)
            queue = RedisWaitlistQueue(client=client, prefix=prefix)
        users = await _seed(store, res)
        events: list[tuple[str, dict[str, Any]]] = []
        svc = ReservationService(
            store, res, hist, payments, cache, queue, clock,
            ReservationSettings(**settings), PaymentSettings(latency_ms=latency_ms, timeout_s=10, lookup_interval_s=2),
            lambda uid, msg: events.append((uid, msg)),
        )
        closers.insert(0, svc.close)
        return Env(kind, store, res, hist, clock, payments, cache, queue, svc, users, events)

    yield factory
    for close in closers:
        await close()


@pytest.fixture(params=["memory", "postgres+redis"])
async def env(request: pytest.FixtureRequest, make_env: EnvFactory) -> Env:
    return await make_env(request.param)


@pytest.fixture
async def menv(make_env: EnvFactory) -> Env:
    return await make_env("memory")
