"""The service's booking flow: what can be booked, availability, booking and its payment (success, failure,
unknown outcome), holds that expire, cancel; on memory and on Postgres + Redis."""

from __future__ import annotations

from datetime import date

import pytest

from tableside.reservations import BookingRefused
from tableside.storage import RestaurantNotFound
from tableside.storage.reservations import (
    BookableStaffNotFound,
    CourseNotFound,
    PaymentStatus,
    ReservationStatus,
    SlotTaken,
)
from tests.reservations.conftest import CHEF, LONG, SHORT, SOMM, Env, EnvFactory, jst

DAY = date(2026, 12, 1)


def starts(avail_slots: list, staff: str | None = None) -> list[str]:  # type: ignore[type-arg]
    return [s.start.strftime("%H:%M") for s in avail_slots if staff is None or s.staff_id == staff]


async def test_courses_and_staff(env: Env) -> None:
    assert [c.menu_id for c in await env.svc.courses(1)] == [SHORT, LONG]
    assert {s.staff_id for s in await env.svc.bookable_staff(1)} == {CHEF, SOMM}
    with pytest.raises(RestaurantNotFound):
        await env.svc.courses(99)
    assert await env.svc.courses(2) == []


async def test_availability_follows_hours_breaks_and_now(env: Env) -> None:
    a = await env.svc.availability(1, DAY, SHORT, CHEF)
    assert a.timezone == "Asia/Tokyo" and not a.closed
    assert starts(a.slots) == ["11:30", "12:00", "12:30", "13:00", "13:30",
                               "17:00", "17:30", "18:00", "18:30", "19:00", "19:30", "20:00", "20:30", "21:00"]
    assert a.json()["slots"][0] == {"start_time": "2026-12-01T11:30:00+09:00",
                                    "end_time": "2026-12-01T12:30:00+09:00", "staff_id": CHEF}
    both = await env.svc.availability(1, DAY, LONG)
    assert starts(both.slots, SOMM) == ["11:30", "12:00", "12:30", "13:00", "17:00", "17:30", "18:00", "18:30",
                                        "19:00", "19:30", "20:00", "20:30"]
    closed = await env.svc.availability(1, date(2026, 12, 2), SHORT)  # a Wednesday
    assert closed.closed and closed.slots == []
    await env.tick(4 * 3600)  # 13:00 JST: only later starts
    later = await env.svc.availability(1, DAY, SHORT, CHEF)
    assert starts(later.slots)[:2] == ["13:00", "13:30"]


async def test_availability_refusals(env: Env) -> None:
    with pytest.raises(CourseNotFound):
        await env.svc.availability(2, DAY, SHORT)
    with pytest.raises(BookableStaffNotFound):
        await env.svc.availability(1, DAY, SHORT, "00000000-0000-4000-8000-000000000000")
    with pytest.raises(BookingRefused) as err:
        await env.svc.availability(1, date(2027, 7, 1), SHORT)
    assert err.value.code == "bad_request" and err.value.field == "date"


async def test_book_pay_confirm(env: Env) -> None:
    ann = env.users[0]
    r, p = await env.svc.book(ann, 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0), party_size=3, notes="window")
    assert r.status == ReservationStatus.PENDING and p.amount == 15000 and p.status == PaymentStatus.PENDING
    assert r.hold_expires_at == env.clock.now() + 600
    assert "18:00" not in starts((await env.svc.availability(1, DAY, SHORT, CHEF)).slots)
    await env.settle()
    got = await env.svc.get(r.reservation_id)
    assert got.status == ReservationStatus.CONFIRMED
    pay = await env.svc.payment_of(r.reservation_id)
    assert pay is not None and pay.status == PaymentStatus.COMPLETED
    assert [h["status"] for h in await env.svc.history(ann)] == ["confirmed", "pending"]
    kinds = [(u, m["type"], m["reservation"]["status"]) for u, m in env.events]
    assert kinds == [(ann, "reservation_updated", "pending"), (ann, "reservation_updated", "confirmed")]
    view = env.events[-1][1]["reservation"]
    assert view["start_time"] == "2026-12-01T18:00:00+09:00" and view["course"] == "Omakase"
    assert view["staff_name"] == "Kenji" and view["payment"]["status"] == "completed"


async def test_book_refusals(env: Env) -> None:
    ann = env.users[0]
    for when in (jst(2026, 12, 1, 14, 0),  # runs across the break
                 jst(2026, 12, 1, 18, 15),  # off the grid
                 jst(2026, 12, 1, 8, 0),  # before opening (and past)
                 jst(2026, 12, 2, 18, 0)):  # closed day
        with pytest.raises(BookingRefused) as err:
            await env.svc.book(ann, 1, SHORT, CHEF, when)
        assert err.value.field == "start_time"
    with pytest.raises(BookingRefused):
        await env.svc.book(ann, 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0), party_size=0)
    await env.svc.book(ann, 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    with pytest.raises(SlotTaken):
        await env.svc.book(env.users[1], 1, LONG, CHEF, jst(2026, 12, 1, 17, 30))
    await env.svc.book(env.users[1], 1, LONG, SOMM, jst(2026, 12, 1, 17, 30))  # the other staff member is free


async def test_payment_failure_cancels_and_frees_the_slot(make_env: EnvFactory) -> None:
    for kind in ("memory", "postgres+redis"):
        env = await make_env(kind, success_rate=0.0)
        r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
        await env.svc.availability(1, DAY, SHORT, CHEF)  # cached with the slot taken
        await env.settle()
        assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.CANCELED
        pay = await env.svc.payment_of(r.reservation_id)
        assert pay is not None and pay.status == PaymentStatus.FAILED
        assert "18:00" in starts((await env.svc.availability(1, DAY, SHORT, CHEF)).slots)
        await env.svc.book(env.users[1], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))


async def test_unknown_outcome_is_looked_up_until_known(env: Env) -> None:
    env.payments.lose_next_answers(1)
    env.payments.fail_next_lookups(1)
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    await env.tick(1.5)  # the charge went through, its answer was lost
    assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.PENDING
    await env.tick(2)  # first lookup fails
    assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.PENDING
    await env.settle(2)  # second lookup: completed
    assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.CONFIRMED
    assert env.payments.charges == 1 and env.payments.lookups == 2


async def test_a_slow_charge_times_out_and_is_looked_up(make_env: EnvFactory) -> None:
    env = await make_env("memory", latency_ms=15_000)  # longer than timeout_s (10)
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    await env.tick(10)  # timed out
    await env.tick(2)  # lookup while still in flight: unknown
    assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.PENDING
    await env.settle(4)
    assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.CONFIRMED
    assert env.payments.lookups >= 2


async def test_a_hold_that_runs_out_is_canceled_by_the_sweep(make_env: EnvFactory) -> None:
    env = await make_env("memory", latency_ms=3_600_000)  # the payment never answers in time
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    await env.tick(599)
    assert await env.svc.sweep() == []
    await env.tick(1)
    expired = await env.svc.sweep()
    assert [x.reservation_id for x in expired] == [r.reservation_id]
    assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.CANCELED
    assert "18:00" in starts((await env.svc.availability(1, DAY, SHORT, CHEF)).slots)
    await env.svc.close()


async def test_cancel_frees_the_slot(env: Env) -> None:
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    await env.settle()
    assert "18:00" not in starts((await env.svc.availability(1, DAY, SHORT, CHEF)).slots)
    c = await env.svc.cancel(r.reservation_id)
    assert c.status == ReservationStatus.CANCELED
    assert (await env.svc.cancel(r.reservation_id)).status == ReservationStatus.CANCELED  # again: unchanged
    assert "18:00" in starts((await env.svc.availability(1, DAY, SHORT, CHEF)).slots)
    assert [h["status"] for h in await env.svc.history(env.users[0])] == ["canceled", "confirmed", "pending"]


async def test_the_sweep_loop_runs_on_the_clock(make_env: EnvFactory) -> None:
    import asyncio

    env = await make_env("memory", latency_ms=3_600_000)
    r, _ = await env.svc.book(env.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    loop = asyncio.get_running_loop().create_task(env.svc.sweep_loop())
    try:
        for _ in range(41):  # 41 intervals of 15 s: past the 10-minute hold
            await env.tick(15)
        assert (await env.svc.get(r.reservation_id)).status == ReservationStatus.CANCELED
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


def test_builders_pick_redis_only_when_configured() -> None:
    from tableside.clock import FakeClock
    from tableside.reservations import (
        MemoryWaitlistQueue,
        NoSlotCache,
        RedisSlotCache,
        RedisWaitlistQueue,
        build_slot_cache,
        build_waitlist_queue,
    )

    assert isinstance(build_slot_cache(None, FakeClock()), NoSlotCache)
    assert isinstance(build_slot_cache("redis://127.0.0.1:6379/0", FakeClock()), RedisSlotCache)
    assert isinstance(build_waitlist_queue(None), MemoryWaitlistQueue)
    assert isinstance(build_waitlist_queue("redis://127.0.0.1:6379/0"), RedisWaitlistQueue)


def test_payment_adapter_from_settings() -> None:
    import pytest as _pytest

    from tableside.clock import FakeClock
    from tableside.config import PaymentSettings, Settings
    from tableside.payments import DummyPayments, build_payment_adapter

    adapter = build_payment_adapter(PaymentSettings(latency_ms=5, success_rate=0.5), clock=FakeClock())
    assert isinstance(adapter, DummyPayments) and adapter.latency_ms == 5 and adapter.success_rate == 0.5
    s = Settings()
    assert s.payments.latency_ms == 1500 and s.reservations.hold_minutes == 10
    assert s.reservations.slot_cache_ttl_s == 600 and s.payments.lookup_interval_s == 2
    with _pytest.raises(ValueError):
        PaymentSettings(success_rate=2.0)


async def test_dummy_payments_are_deterministic_per_key() -> None:
    import random

    from tableside.clock import FakeClock
    from tableside.payments import DummyPayments, PaymentOutcome

    clock = FakeClock()
    pay = DummyPayments(1000, 0.5, clock=clock, rng=random.Random(3))
    assert await pay.lookup("never") == PaymentOutcome.FAILED
    outcomes = {}
    for i in range(20):
        import asyncio

        task = asyncio.ensure_future(pay.charge(f"k{i}", 100, "x"))
        await asyncio.sleep(0)
        assert await pay.lookup(f"k{i}") == PaymentOutcome.UNKNOWN  # still in flight
        await clock.advance(1)
        outcomes[f"k{i}"] = await task
        assert await pay.lookup(f"k{i}") == outcomes[f"k{i}"]
        assert await pay.charge(f"k{i}", 100, "x") == outcomes[f"k{i}"]  # idempotent: no new draw
    assert set(outcomes.values()) == {PaymentOutcome.COMPLETED, PaymentOutcome.FAILED}


async def test_a_failing_notifier_never_fails_a_change(menv: Env) -> None:
    def broken(user_id: str, message: dict) -> None:  # type: ignore[type-arg]
        raise RuntimeError("socket gone")

    menv.svc._notify_cb = broken
    r, _ = await menv.svc.book(menv.users[0], 1, SHORT, CHEF, jst(2026, 12, 1, 18, 0))
    await menv.settle()
    assert (await menv.svc.get(r.reservation_id)).status == ReservationStatus.CONFIRMED
