"""The slot cache in the service: invalidated on booking, cancellation, failed payment, hold expiry and hours
change (with Redis and without, the same answers), a stale or poisoned cache never lets a booking through,
and a zone with daylight saving."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tableside.reservations import BookingRefused, NoSlotCache
from tableside.storage.interface import InvalidStoreData
from tableside.storage.reservations import BookableStaff, Course, ReservationStatus, SlotTaken
from tests.reservations.conftest import CHEF, HOURS, SHORT, SOMM, Env, EnvFactory, jst

DAY = date(2026, 12, 1)


def starts(env_slots: list[Any], staff: str | None = None) -> list[str]:
    return [s.start.strftime("%H:%M") for s in env_slots if staff is None or s.staff_id == staff]


async def test_book_cancel_and_expiry_invalidate_the_day(env: Env) -> None:
    await env.svc.availability(1, DAY, SHORT)
    assert await env.cache.get(1, DAY) == []
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    assert await env.cache.get(1, DAY) is None
    assert "18:00" not in starts((await env.svc.availability(1, DAY, SHORT)).slots, CHEF)
    cached = await env.cache.get(1, DAY)
    assert cached is not None and [c["staff_id"] for c in cached] == [CHEF]
    await env.svc.cancel(r.reservation_id)
    assert await env.cache.get(1, DAY) is None
    assert "18:00" in starts((await env.svc.availability(1, DAY, SHORT)).slots, CHEF)
    # a hold that runs out (the payment never answers)
    env.payments.latency_ms = 3_600_000
    await env.svc.book(env.users[0], 1, SHORT, SOMM, jst(2026, 12, 1, 19, 0))
    assert "19:00" not in starts((await env.svc.availability(1, DAY, SHORT)).slots, SOMM)
    await env.tick(601)
    await env.svc.sweep()
    assert await env.cache.get(1, DAY) is None
    assert "19:00" in starts((await env.svc.availability(1, DAY, SHORT)).slots, SOMM)


async def test_a_booking_near_midnight_invalidates_the_neighbouring_days(env: Env) -> None:
    late: dict[str, Any] = {d: [["17:00", "24:00"]] for d in HOURS if d != "closed_dates"}
    late["closed_dates"] = []
    await env.svc.set_hours(1, late)
    nxt = date(2026, 12, 2)
    await env.svc.availability(1, DAY, SHORT)
    await env.svc.availability(1, nxt, SHORT)
    await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 23, 0))
    assert await env.cache.get(1, DAY) is None and await env.cache.get(1, nxt) is None


async def test_hours_change_drops_every_cached_day_of_the_store(env: Env) -> None:
    before = await env.svc.availability(1, DAY, SHORT, CHEF)
    await env.svc.availability(1, date(2026, 12, 3), SHORT, CHEF)
    assert starts(before.slots)[0] == "11:30"
    hours = {d: [["10:00", "12:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    store = await env.svc.set_hours(1, hours, "Europe/London")
    assert store.timezone == "Europe/London" and store.business_hours["tue"] == [["10:00", "12:00"]]
    assert await env.cache.get(1, DAY) is None and await env.cache.get(1, date(2026, 12, 3)) is None
    after = await env.svc.availability(1, DAY, SHORT, CHEF)
    assert after.timezone == "Europe/London"
    assert [s.start.isoformat() for s in after.slots] == ["2026-12-01T10:00:00+00:00", "2026-12-01T10:30:00+00:00",
                                                         "2026-12-01T11:00:00+00:00"]
    with pytest.raises(InvalidStoreData):
        await env.svc.set_hours(1, {"mon": [["12:00", "11:00"]]})
    with pytest.raises(InvalidStoreData):
        await env.svc.set_hours(1, hours, "Mars/Olympus")


async def test_a_stale_or_poisoned_cache_never_lets_a_booking_through(env: Env) -> None:
    await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    await env.cache.put(1, DAY, [], 600)  # poisoned: says the day is empty
    assert "18:00" in starts((await env.svc.availability(1, DAY, SHORT)).slots, CHEF)  # the stale answer
    with pytest.raises(SlotTaken):
        await env.svc.book(env.users[1], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    with pytest.raises(SlotTaken):
        await env.svc.book(env.users[1], 1, SHORT, CHEF, jst(2026, 12, 1, 17, 30))
    # garbage in the cache: skipped, never an error; still the database decides
    await env.cache.put(1, DAY, [{"nonsense": True}, {"staff_id": CHEF, "start": "x", "end": None}], 600)
    await env.svc.availability(1, DAY, SHORT)
    with pytest.raises(SlotTaken):
        await env.svc.book(env.users[1], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    # a cache that says everything is busy does not refuse a free slot either
    busy_all = [{"staff_id": s, "start": jst(2026, 12, 1, 0, 0).timestamp(),
                 "end": jst(2026, 12, 2, 0, 0).timestamp()} for s in (CHEF, SOMM)]
    await env.cache.put(1, DAY, busy_all, 600)
    assert (await env.svc.availability(1, DAY, SHORT)).slots == []
    r, _ = await env.svc.book(env.users[1], 1, SHORT, SOMM, jst(2026, 12, 1, 18, 0))
    assert r.status == ReservationStatus.PENDING
    # a start off the grid is refused however the cache looks
    with pytest.raises(BookingRefused):
        await env.svc.book(env.users[1], 1, SHORT, SOMM, jst(2026, 12, 1, 19, 10))


async def _scenario(env: Env) -> list[Any]:
    """Availability answers along a sequence of changes."""
    answers: list[Any] = []

    async def look() -> None:
        for menu in (SHORT,):
            answers.append((await env.svc.availability(1, DAY, menu)).json())

    await look()
    r1, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    await look()
    await env.settle()
    await look()
    r2, _ = await env.svc.book(env.users[1], 1, SHORT, SOMM, jst(2026, 12, 1, 12, 0))
    await look()
    await env.svc.cancel(r1.reservation_id)
    await look()
    await env.svc.set_hours(1, {d: [["12:00", "15:00"]] for d in ("tue", "thu")})
    await look()
    await env.svc.cancel(r2.reservation_id)
    await look()
    return answers


async def test_the_same_answers_with_and_without_a_cache(make_env: EnvFactory) -> None:
    runs = []
    for kind, cache in (("memory", None), ("memory", NoSlotCache()), ("postgres+redis", None),
                        ("postgres+redis", NoSlotCache())):
        env = await make_env(kind, cache=cache)
        runs.append(await _scenario(env))
    assert runs[0] == runs[1] == runs[2] == runs[3]
    assert runs[0][0] != runs[0][1]  # the answers did change along the way


async def test_a_zone_with_daylight_saving(env: Env) -> None:
    await env.res.upsert_bookable_staff(BookableStaff("00000000-0000-4000-8000-0000000000a1", 2, "Ana", "chef"))
    await env.res.upsert_course(Course("00000000-0000-4000-8000-0000000000a2", 2, "Brunch", 3000, 60))
    staff, menu = "00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000a2"
    await env.svc.set_hours(2, {"sun": [["00:00", "04:00"]]}, "America/New_York")
    spring = date(2027, 3, 14)  # 02:00 EST -> 03:00 EDT: the window is three hours long
    a = await env.svc.availability(2, spring, menu)
    assert [s.start.isoformat() for s in a.slots] == [
        "2027-03-14T00:00:00-05:00", "2027-03-14T00:30:00-05:00", "2027-03-14T01:00:00-05:00",
        "2027-03-14T01:30:00-05:00", "2027-03-14T03:00:00-04:00"]
    r, _ = await env.svc.book(env.users[0], 2, menu, staff, a.slots[3].start)
    assert r.end_time - r.start_time == 3600
    b = await env.svc.availability(2, spring, menu)
    # 01:30 EST + 60 minutes is 03:30 EDT: 01:00 and 03:00 EDT overlap it, 00:30 ends as it starts
    assert [s.start.isoformat() for s in b.slots] == ["2027-03-14T00:00:00-05:00", "2027-03-14T00:30:00-05:00"]
    view = await env.svc.view(r)
    assert view["start_time"] == "2027-03-14T01:30:00-05:00" and view["end_time"] == "2027-03-14T03:30:00-04:00"


async def test_concurrent_bookings_of_one_slot_through_the_service(make_env: EnvFactory) -> None:
    """Postgres decides: of many concurrent bookings of one slot (warm cache saying it is free) exactly one
    succeeds; the others are SlotTaken."""
    import asyncio

    from tableside.storage.interface import User

    env = await make_env("postgres+redis")
    users = list(env.users)
    for i in range(16):
        uid = f"00000000-0000-4000-8000-{i:012d}"
        await env.store.create_user(User(uid, f"R{i}", f"r{i}@example.com", None, None, "h", 0.0, 0.0))
        users.append(uid)
    await env.svc.availability(1, DAY, SHORT)  # warm: says free
    results = await asyncio.gather(
        *(env.svc.book(u, 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0)) for u in users), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 1
    assert all(isinstance(r, SlotTaken) for r in results if isinstance(r, BaseException))
