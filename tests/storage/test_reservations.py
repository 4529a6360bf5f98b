"""Reservations (seed 003, issue 13): ``ReservationStore`` and ``HistoryStore`` on memory and on Postgres.

Every test taking ``env`` runs on both (``MemoryReservations``/``MemoryHistory`` over a ``MemoryStore``,
``PostgresReservations``/``PostgresHistory`` over a ``PostgresStore``'s engine); the race tests are Postgres
only: there the exclusion constraint, not the code, decides who gets a slot.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
import sqlalchemy as sa

from tableside.storage import MemoryStore, PostgresStore, Restaurant, RestaurantNotFound, Store
from tableside.storage.interface import InvalidTransition, StorageError, User
from tableside.storage.reservations import (
    CHAT_MAX_ENTRIES,
    HISTORY_MAX_ENTRIES,
    NO_SHOW_AFTER_S,
    AlreadyWaiting,
    BookableStaff,
    BookableStaffNotFound,
    Course,
    CourseNotFound,
    HistoryStore,
    InvalidReservationData,
    Payment,
    PaymentNotFound,
    PaymentStatus,
    Reservation,
    ReservationNotFound,
    ReservationStatus,
    ReservationStore,
    SlotTaken,
    UserNotFound,
    WaitlistEntry,
    WaitlistEntryNotFound,
    WaitlistStatus,
)
from tableside.storage.reservations_memory import MemoryHistory, MemoryReservations
from tableside.storage.reservations_postgres import PostgresHistory, PostgresReservations

NOW = 1_700_000_000.0
T = 1_800_000_000.0  # a slot start (on the hour)
H = 3600.0
HOLD = 600.0

CHEF = "00000000-0000-4000-8000-00000000c4ef"
SOMM = "00000000-0000-4000-8000-00000000501e"
COURSE = "00000000-0000-4000-8000-0000000000c1"  # 60 minutes
LONG = "00000000-0000-4000-8000-0000000000c2"  # 120 minutes


@dataclass
class Env:
    store: Store
    res: ReservationStore
    hist: HistoryStore
    ann: str
    bob: str


_STORE = Restaurant(1, "Sushi Kanda")


def _user(name: str) -> User:
    return User(str(uuid.uuid4()), name, f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.com", None, None,
                "$argon2id$hash", NOW, NOW)


async def _seed(store: Store, res: ReservationStore) -> tuple[str, str]:
    await store.upsert_restaurant(_STORE)
    await store.upsert_restaurant(Restaurant(2, "Other"))
    ann, bob = _user("Ann"), _user("Bob")
    await store.create_user(ann)
    await store.create_user(bob)
    await res.upsert_bookable_staff(BookableStaff(CHEF, 1, "Kenji", "chef", True, NOW))
    await res.upsert_bookable_staff(BookableStaff(SOMM, 1, "Aiko", "sommelier", True, NOW))
    await res.upsert_course(Course(COURSE, 1, "Omakase", 12000, 60, True, 0))
    await res.upsert_course(Course(LONG, 1, "Kaiseki", 20000, 120, True, 1))
    return ann.user_id, bob.user_id


@pytest.fixture
async def env(store_kind: tuple[str, str | None]) -> AsyncIterator[Env]:
    kind, url = store_kind
    if kind == "memory":
        mem = MemoryStore()
        res_m = MemoryReservations(mem)
        ann, bob = await _seed(mem, res_m)
        yield Env(mem, res_m, MemoryHistory(mem), ann, bob)
        return
    assert url is not None
    pg = await PostgresStore.connect(url)
    await pg.truncate_all()
    try:
        res_p = PostgresReservations(pg.engine)
        ann, bob = await _seed(pg, res_p)
        yield Env(pg, res_p, PostgresHistory(pg.engine), ann, bob)
    finally:
        await pg.close()


def booking(user_id: str, start: float = T, *, staff_id: str = CHEF, menu_id: str = COURSE, minutes: int = 60,
            party_size: int = 2, notes: str = "", amount: int = 12000, store_id: int = 1,
            now: float = NOW) -> tuple[Reservation, Payment]:
    rid, pid = str(uuid.uuid4()), str(uuid.uuid4())
    r = Reservation(rid, user_id, store_id, staff_id, menu_id, start, start + minutes * 60, ReservationStatus.PENDING,
                    party_size, notes, None, None, now + HOLD, now, now)
    p = Payment(pid, rid, user_id, amount, PaymentStatus.PENDING, pid, now, now)
    return r, p


async def book(env: Env, start: float = T, **kw: object) -> tuple[Reservation, Payment]:
    r, p = booking(env.ann, start, **kw)  # type: ignore[arg-type]
    return await env.res.book(r, p)


async def confirmed(env: Env, start: float = T, **kw: object) -> Reservation:
    r, p = await book(env, start, **kw)
    _, r2 = await env.res.settle_payment(p.payment_id, PaymentStatus.COMPLETED, NOW + 1)
    assert r2.status == ReservationStatus.CONFIRMED
    return r2


# -- what can be booked ------------------------------------------------------------------------------


async def test_bookable_staff_upsert_list_get(env: Env) -> None:
    res = env.res
    assert [s.name for s in await res.list_bookable_staff(1)] == ["Aiko", "Kenji"]  # by name
    off = BookableStaff("00000000-0000-4000-8000-0000000000FF", 1, "Zed", "chef", False, NOW)
    await res.upsert_bookable_staff(off)
    assert [s.name for s in await res.list_bookable_staff(1)] == ["Aiko", "Kenji"]
    assert [s.name for s in await res.list_bookable_staff(1, include_unbookable=True)] == ["Aiko", "Kenji", "Zed"]
    got = await res.get_bookable_staff(off.staff_id.upper())
    assert got == replace(off, staff_id=off.staff_id.lower())  # ids come back canonical (lower case)
    # replace: every field but created_at (kept from the first insert)
    await res.upsert_bookable_staff(BookableStaff(CHEF, 1, "Kenji S.", "head chef", True, NOW + 50))
    assert await res.get_bookable_staff(CHEF) == BookableStaff(CHEF, 1, "Kenji S.", "head chef", True, NOW)
    assert await res.get_bookable_staff(str(uuid.uuid4())) is None
    assert await res.get_bookable_staff("not-a-uuid") is None
    assert await res.list_bookable_staff(2) == [] and await res.list_bookable_staff(99) == []
    got = await res.get_bookable_staff(CHEF)
    assert got is not None
    got.name = "changed"  # a copy
    assert (await res.get_bookable_staff(CHEF)) == BookableStaff(CHEF, 1, "Kenji S.", "head chef", True, NOW)


async def test_bookable_staff_refusals(env: Env) -> None:
    sid = str(uuid.uuid4())
    with pytest.raises(RestaurantNotFound):
        await env.res.upsert_bookable_staff(BookableStaff(sid, 99, "X", "chef", True, NOW))
    for bad in (BookableStaff(sid, 1, "", "chef"), BookableStaff(sid, 1, "x" * 256, "chef"),
                BookableStaff(sid, 1, "X", "r" * 51), BookableStaff("nope", 1, "X", "chef")):
        with pytest.raises(InvalidReservationData):
            await env.res.upsert_bookable_staff(bad)
    assert await env.res.get_bookable_staff(sid) is None
    await env.res.upsert_bookable_staff(BookableStaff(sid, 1, "x" * 255, "r" * 50, True, NOW))  # the limits


async def test_courses_upsert_list_get(env: Env) -> None:
    res = env.res
    assert [c.name for c in await res.list_courses(1)] == ["Omakase", "Kaiseki"]  # by sort_order
    hidden = Course(str(uuid.uuid4()), 1, "Secret", 0, 1440, False, -1)
    await res.upsert_course(hidden)
    assert [c.menu_id for c in await res.list_courses(1)] == [COURSE, LONG]
    assert [c.menu_id for c in await res.list_courses(1, include_unbookable=True)] == [hidden.menu_id, COURSE, LONG]
    assert await res.get_course(hidden.menu_id) == hidden
    await res.upsert_course(replace(hidden, price=500, bookable=True, duration=1))
    assert await res.get_course(hidden.menu_id) == replace(hidden, price=500, bookable=True, duration=1)
    assert await res.get_course("x") is None and await res.get_course(str(uuid.uuid4())) is None
    assert await res.list_courses(2) == []


@pytest.mark.parametrize("change", [{"duration": 0}, {"duration": 1441}, {"price": -1}, {"name": ""},
                                    {"name": "n" * 256}, {"menu_id": "nope"}])
async def test_course_refusals(env: Env, change: dict[str, object]) -> None:
    course = replace(Course(str(uuid.uuid4()), 1, "C", 100, 30), **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidReservationData):
        await env.res.upsert_course(course)
    assert await env.res.list_courses(1, include_unbookable=True) != [] and len(
        await env.res.list_courses(1, include_unbookable=True)) == 2


async def test_course_of_unknown_store(env: Env) -> None:
    with pytest.raises(RestaurantNotFound):
        await env.res.upsert_course(Course(str(uuid.uuid4()), 99, "C", 100, 30))


# -- booking ---------------------------------------------------------------------------------------


async def test_book_stores_the_reservation_and_its_payment(env: Env) -> None:
    r, p = booking(env.ann, notes="window seat please", party_size=4)
    got_r, got_p = await env.res.book(r, p)
    assert (got_r, got_p) == (r, p)
    assert await env.res.get_reservation(r.reservation_id) == r
    assert await env.res.get_payment(p.payment_id) == p
    assert await env.res.payment_of(r.reservation_id) == p
    assert await env.res.payment_of(str(uuid.uuid4())) is None and await env.res.payment_of("x") is None
    assert await env.res.get_reservation("x") is None and await env.res.get_payment("x") is None
    # notes "" is NULL and comes back as ""
    r2, _ = await book(env, T + 2 * H)
    assert (await env.res.get_reservation(r2.reservation_id)) == r2 and r2.notes == ""
    got = await env.res.get_reservation(r.reservation_id)
    assert got is not None
    got.status = ReservationStatus.SEATED  # a copy
    assert (await env.res.get_reservation(r.reservation_id)) == r


async def test_listing_reservations(env: Env) -> None:
    a, _ = await book(env, T)
    b, _ = await book(env, T + H, staff_id=SOMM)
    c, _ = await book(env, T + 3 * H)
    other_r, other_p = booking(env.bob, T + 5 * H)
    other, _ = await env.res.book(other_r, other_p)
    await env.res.cancel_reservation(c.reservation_id, NOW + 2)
    mine = await env.res.list_user_reservations(env.ann)
    assert [r.reservation_id for r in mine] == [c.reservation_id, b.reservation_id, a.reservation_id]  # newest first
    assert [r.reservation_id for r in await env.res.list_user_reservations(env.ann, limit=1)] == [c.reservation_id]
    assert await env.res.list_user_reservations("x") == []
    day = await env.res.list_store_reservations(1, T, T + 24 * H)
    assert [r.reservation_id for r in day] == [a.reservation_id, b.reservation_id, c.reservation_id, other.reservation_id]
    # [start, end): a reservation starting at `end` is not in it; one starting at `start` is
    assert [r.reservation_id for r in await env.res.list_store_reservations(1, T, T + H)] == [a.reservation_id]
    assert await env.res.list_store_reservations(2, T, T + 24 * H) == []
    # busy: not canceled, overlapping [start, end)
    assert [r.reservation_id for r in await env.res.busy(1, T, T + 24 * H)] == [
        a.reservation_id, b.reservation_id, other.reservation_id]
    assert [r.reservation_id for r in await env.res.busy(1, T + 30 * 60, T + H + 1)] == [
        a.reservation_id, b.reservation_id]
    assert await env.res.busy(1, T + 2 * H, T + 5 * H) == []  # ends exactly where the next starts
    assert await env.res.busy(1, T - H, T) == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"staff_id": str(uuid.uuid4())}, BookableStaffNotFound),
        ({"menu_id": str(uuid.uuid4())}, CourseNotFound),
        ({"store_id": 2}, BookableStaffNotFound),  # staff and course are store 1's
        ({"minutes": 90}, InvalidReservationData),  # not the course's 60 minutes
        ({"party_size": 0}, InvalidReservationData),
        ({"party_size": 51}, InvalidReservationData),
        ({"minutes": 0}, InvalidReservationData),
        ({"amount": -1}, InvalidReservationData),
        ({"staff_id": "nope"}, InvalidReservationData),
    ],
)
async def test_book_refusals_store_nothing(env: Env, change: dict[str, object], error: type[Exception]) -> None:
    r, p = booking(env.ann, **change)  # type: ignore[arg-type]
    with pytest.raises(error):
        await env.res.book(r, p)
    assert await env.res.list_user_reservations(env.ann) == []
    assert await env.res.get_payment(p.payment_id) is None


async def test_book_refuses_what_does_not_fit_together(env: Env) -> None:
    r, p = booking(env.ann)
    bad: list[tuple[Reservation, Payment, type[StorageError]]] = [
        (replace(r, status=ReservationStatus.CONFIRMED), p, InvalidReservationData),
        (r, replace(p, status=PaymentStatus.COMPLETED), InvalidReservationData),
        (r, replace(p, reservation_id=str(uuid.uuid4())), InvalidReservationData),
        (r, replace(p, user_id=env.bob), InvalidReservationData),
        (r, replace(p, idempotency_key=""), InvalidReservationData),
        (replace(r, user_id=str(uuid.uuid4())), replace(p, user_id="x"), InvalidReservationData),
    ]
    ghost = str(uuid.uuid4())
    bad.append((replace(r, user_id=ghost), replace(p, user_id=ghost), UserNotFound))
    for rr, pp, error in bad:
        with pytest.raises(error):
            await env.res.book(rr, pp)
    assert await env.res.get_reservation(r.reservation_id) is None


async def test_unbookable_staff_or_course_cannot_be_booked(env: Env) -> None:
    await env.res.upsert_bookable_staff(BookableStaff(CHEF, 1, "Kenji", "chef", False, NOW))
    with pytest.raises(BookableStaffNotFound):
        await book(env)
    await env.res.upsert_course(Course(COURSE, 1, "Omakase", 12000, 60, False, 0))
    with pytest.raises(CourseNotFound):
        await book(env, staff_id=SOMM)
    assert await env.res.list_user_reservations(env.ann) == []


async def test_a_used_id_or_idempotency_key_is_refused(env: Env) -> None:
    r, p = await book(env)
    r2, p2 = booking(env.ann, T + 5 * H)
    with pytest.raises(StorageError):
        await env.res.book(r2, replace(p2, idempotency_key=p.idempotency_key))
    with pytest.raises(StorageError):
        await env.res.book(replace(r2, reservation_id=r.reservation_id),
                           replace(p2, reservation_id=r.reservation_id))
    assert await env.res.get_reservation(r2.reservation_id) is None
    assert [x.reservation_id for x in await env.res.list_user_reservations(env.ann)] == [r.reservation_id]


# -- no double booking --------------------------------------------------------------------------------


async def test_an_overlapping_booking_of_the_same_staff_is_slot_taken(env: Env) -> None:
    first, _ = await book(env, T)
    # the same hour, half an hour later, half an hour earlier, and [T-1h, T+1h) covering the whole of it
    for start, menu, minutes in [(T, COURSE, 60), (T + 30 * 60, COURSE, 60), (T - 30 * 60, COURSE, 60),
                                 (T - H, LONG, 120)]:
        r, p = booking(env.bob, start, menu_id=menu, minutes=minutes)
        with pytest.raises(SlotTaken):
            await env.res.book(r, p)
        assert await env.res.get_reservation(r.reservation_id) is None
        assert await env.res.get_payment(p.payment_id) is None
    assert [x.reservation_id for x in await env.res.busy(1, T - 2 * H, T + 2 * H)] == [first.reservation_id]


async def test_adjacent_slots_and_other_staff_are_free(env: Env) -> None:
    await book(env, T)
    await book(env, T + H)  # [T, T+1h) then [T+1h, T+2h): half-open, no overlap
    await book(env, T - H)
    await book(env, T, staff_id=SOMM)  # another staff member at the same time
    assert len(await env.res.busy(1, T - H, T + 2 * H)) == 4


async def test_canceled_frees_the_slot_but_other_statuses_hold_it(env: Env) -> None:
    r, _ = await book(env, T)
    await env.res.cancel_reservation(r.reservation_id, NOW + 5)
    again, _ = await book(env, T)  # the slot is free again
    await env.res.settle_payment((await env.res.payment_of(again.reservation_id)).payment_id,  # type: ignore[union-attr]
                                 PaymentStatus.COMPLETED, NOW + 6)
    with pytest.raises(SlotTaken):
        await book(env, T)  # confirmed holds it
    await env.res.seat_reservation(again.reservation_id, "T1", "g1", T)
    with pytest.raises(SlotTaken):
        await book(env, T)  # seated holds it
    late = await confirmed(env, T + 2 * H)
    await env.res.mark_no_show(late.reservation_id, T + 2 * H + NO_SHOW_AFTER_S)
    with pytest.raises(SlotTaken):
        await book(env, T + 2 * H)  # a no-show holds it too (the constraint: everything but canceled)


# -- payments ------------------------------------------------------------------------------------------


async def test_settle_completed_confirms_once(env: Env) -> None:
    r, p = await book(env)
    p2, r2 = await env.res.settle_payment(p.payment_id, PaymentStatus.COMPLETED, NOW + 10)
    assert p2 == replace(p, status=PaymentStatus.COMPLETED, updated_at=NOW + 10)
    assert r2 == replace(r, status=ReservationStatus.CONFIRMED, hold_expires_at=None, updated_at=NOW + 10)
    # a second outcome changes nothing
    p3, r3 = await env.res.settle_payment(p.payment_id, PaymentStatus.FAILED, NOW + 20)
    assert (p3, r3) == (p2, r2)
    assert await env.res.get_reservation(r.reservation_id) == r2 and await env.res.get_payment(p.payment_id) == p2


async def test_settle_failed_cancels_and_frees_the_slot(env: Env) -> None:
    r, p = await book(env)
    p2, r2 = await env.res.settle_payment(p.payment_id, PaymentStatus.FAILED, NOW + 10)
    assert p2.status == PaymentStatus.FAILED and r2.status == ReservationStatus.CANCELED
    assert r2.hold_expires_at is None and r2.updated_at == NOW + 10
    p3, r3 = await env.res.settle_payment(p.payment_id, PaymentStatus.COMPLETED, NOW + 20)
    assert (p3, r3) == (p2, r2)  # settled once
    await book(env)  # free


async def test_settle_refusals(env: Env) -> None:
    _, p = await book(env)
    with pytest.raises(InvalidReservationData):
        await env.res.settle_payment(p.payment_id, PaymentStatus.PENDING, NOW)
    with pytest.raises(PaymentNotFound):
        await env.res.settle_payment(str(uuid.uuid4()), PaymentStatus.COMPLETED, NOW)
    with pytest.raises(PaymentNotFound):
        await env.res.settle_payment("x", PaymentStatus.COMPLETED, NOW)


async def test_a_payment_completing_after_cancel_is_recorded_and_the_reservation_stays_canceled(env: Env) -> None:
    r, p = await book(env)
    c = await env.res.cancel_reservation(r.reservation_id, NOW + 5)
    assert (await env.res.get_payment(p.payment_id)) == p  # cancel leaves the payment alone
    p2, r2 = await env.res.settle_payment(p.payment_id, PaymentStatus.COMPLETED, NOW + 9)
    assert p2.status == PaymentStatus.COMPLETED and p2.updated_at == NOW + 9
    assert r2 == c  # still canceled (the caller refunds)


# -- status transitions ----------------------------------------------------------------------------------


async def test_cancel_transitions(env: Env) -> None:
    pending, _ = await book(env, T)
    c = await env.res.cancel_reservation(pending.reservation_id, NOW + 5)
    assert c == replace(pending, status=ReservationStatus.CANCELED, hold_expires_at=None, updated_at=NOW + 5)
    assert await env.res.cancel_reservation(pending.reservation_id, NOW + 9) == c  # unchanged
    conf = await confirmed(env, T + H)
    assert (await env.res.cancel_reservation(conf.reservation_id, NOW + 6)).status == ReservationStatus.CANCELED
    seated = await confirmed(env, T + 2 * H)
    await env.res.seat_reservation(seated.reservation_id, "T1", "g", T + 2 * H)
    with pytest.raises(InvalidTransition):
        await env.res.cancel_reservation(seated.reservation_id, NOW)
    ns = await confirmed(env, T + 3 * H)
    await env.res.mark_no_show(ns.reservation_id, T + 4 * H)
    with pytest.raises(InvalidTransition):
        await env.res.cancel_reservation(ns.reservation_id, NOW)
    for missing in (str(uuid.uuid4()), "x"):
        with pytest.raises(ReservationNotFound):
            await env.res.cancel_reservation(missing, NOW)


async def test_expire_holds_cancels_only_pending_holds_that_ran_out(env: Env) -> None:
    early, early_p = await book(env, T, now=NOW)  # hold until NOW + 600
    later, _ = await book(env, T + H, now=NOW + 100)  # hold until NOW + 700
    paid = await confirmed(env, T + 2 * H, now=NOW)
    assert await env.res.expire_holds(NOW + HOLD - 1) == []
    out = await env.res.expire_holds(NOW + HOLD)  # <= now
    assert out == [replace(early, status=ReservationStatus.CANCELED, hold_expires_at=None, updated_at=NOW + HOLD)]
    assert await env.res.get_reservation(early.reservation_id) == out[0]
    assert await env.res.get_payment(early_p.payment_id) == early_p  # the payment is not touched
    assert await env.res.expire_holds(NOW + HOLD) == []  # once
    assert [r.reservation_id for r in await env.res.expire_holds(NOW + 10_000)] == [later.reservation_id]
    assert (await env.res.get_reservation(paid.reservation_id)) == paid  # confirmed: no hold
    await book(env, T)  # the expired slot is free


async def test_seat_transitions(env: Env) -> None:
    r = await confirmed(env)
    s = await env.res.seat_reservation(r.reservation_id, "T3", "grp-1", T + 60)
    assert s == replace(r, status=ReservationStatus.SEATED, table_id="T3", group_id="grp-1", updated_at=T + 60)
    assert await env.res.seat_reservation(r.reservation_id, "T3", "grp-1", T + 99) == s  # again: unchanged
    with pytest.raises(InvalidTransition):
        await env.res.seat_reservation(r.reservation_id, "T4", "grp-2", T + 99)  # elsewhere
    pending, _ = await book(env, T + H)
    with pytest.raises(InvalidTransition):
        await env.res.seat_reservation(pending.reservation_id, "T1", "g", T)
    await env.res.cancel_reservation(pending.reservation_id, NOW)
    with pytest.raises(InvalidTransition):
        await env.res.seat_reservation(pending.reservation_id, "T1", "g", T)
    with pytest.raises(ReservationNotFound):
        await env.res.seat_reservation(str(uuid.uuid4()), "T1", "g", T)


async def test_no_show_transitions(env: Env) -> None:
    r = await confirmed(env)
    with pytest.raises(InvalidTransition):
        await env.res.mark_no_show(r.reservation_id, T + NO_SHOW_AFTER_S - 1)  # too early
    n = await env.res.mark_no_show(r.reservation_id, T + NO_SHOW_AFTER_S)
    assert n == replace(r, status=ReservationStatus.NO_SHOW, updated_at=T + NO_SHOW_AFTER_S)
    assert await env.res.mark_no_show(r.reservation_id, T + 2 * H) == n  # unchanged
    with pytest.raises(InvalidTransition):
        await env.res.seat_reservation(r.reservation_id, "T1", "g", T + H)
    s = await confirmed(env, T + H)
    await env.res.seat_reservation(s.reservation_id, "T1", "g", T + H)
    with pytest.raises(InvalidTransition):
        await env.res.mark_no_show(s.reservation_id, T + 3 * H)
    p, _ = await book(env, T + 3 * H)
    with pytest.raises(InvalidTransition):
        await env.res.mark_no_show(p.reservation_id, T + 5 * H)
    with pytest.raises(ReservationNotFound):
        await env.res.mark_no_show(str(uuid.uuid4()), T)


# -- waitlist ----------------------------------------------------------------------------------------------


def wait(user_id: str, created_at: float, *, start: float = T, menu_id: str = COURSE, staff_id: str | None = None,
         store_id: int = 1) -> WaitlistEntry:
    return WaitlistEntry(0, user_id, store_id, menu_id, start, WaitlistStatus.WAITING, created_at, staff_id)


async def test_waitlist_order_offer_and_reopen(env: Env) -> None:
    w = env.res
    carl = _user("Carl")
    await env.store.create_user(carl)
    first = await w.add_waitlist(wait(env.bob, NOW + 1, staff_id=CHEF))
    second = await w.add_waitlist(wait(carl.user_id, NOW + 2))
    third = await w.add_waitlist(wait(env.ann, NOW + 2))  # same time: by entry_id
    assert (first.entry_id, second.entry_id, third.entry_id) == (1, 2, 3)
    assert first == replace(wait(env.bob, NOW + 1, staff_id=CHEF), entry_id=1)
    await w.add_waitlist(wait(env.ann, NOW, start=T + H))  # another slot
    assert [e.entry_id for e in await w.waiting_for(1, COURSE, T)] == [1, 2, 3]
    # the slot frees: the first is offered it, then lets the offer run out; the next is offered
    offered = replace(first, status=WaitlistStatus.OFFERED, offered_until=NOW + 300, offered_staff_id=CHEF)
    await w.update_waitlist(offered)
    assert await w.get_waitlist_entry(1) == offered
    assert [e.status for e in await w.waiting_for(1, COURSE, T)] == ["offered", "waiting", "waiting"]
    await w.update_waitlist(replace(offered, status=WaitlistStatus.EXPIRED))
    assert [e.entry_id for e in await w.waiting_for(1, COURSE, T)] == [2, 3]
    r, _ = await book(env, T)
    await w.update_waitlist(replace(second, status=WaitlistStatus.ACCEPTED, reservation_id=r.reservation_id))
    assert (await w.get_waitlist_entry(2)).reservation_id == r.reservation_id  # type: ignore[union-attr]
    assert [e.entry_id for e in await w.waiting_for(1, COURSE, T)] == [3]
    assert [e.entry_id for e in await w.list_user_waitlist(env.ann)] == [4, 3]  # oldest first
    assert await w.waiting_for(1, COURSE, T + 1) == [] and await w.waiting_for(1, "x", T) == []
    # once the old entry is closed the customer may wait again
    again = await w.add_waitlist(wait(env.bob, NOW + 9, staff_id=CHEF))
    assert again.entry_id == 5
    with pytest.raises(AlreadyWaiting):  # reopening the old one would make two open entries
        await w.update_waitlist(replace(offered, status=WaitlistStatus.WAITING))
    assert (await w.get_waitlist_entry(1)).status == WaitlistStatus.EXPIRED  # type: ignore[union-attr]


async def test_waitlist_refusals(env: Env) -> None:
    w = env.res
    await w.add_waitlist(wait(env.ann, NOW))
    with pytest.raises(AlreadyWaiting):
        await w.add_waitlist(wait(env.ann, NOW + 1))
    with pytest.raises(UserNotFound):
        await w.add_waitlist(wait(str(uuid.uuid4()), NOW))
    with pytest.raises(RestaurantNotFound):
        await w.add_waitlist(wait(env.ann, NOW, store_id=99))
    with pytest.raises(CourseNotFound):
        await w.add_waitlist(wait(env.ann, NOW, menu_id=str(uuid.uuid4())))
    with pytest.raises(CourseNotFound):
        await w.add_waitlist(wait(env.ann, NOW, store_id=2))  # the course is store 1's
    with pytest.raises(InvalidReservationData):
        await w.add_waitlist(replace(wait(env.bob, NOW), status=WaitlistStatus.OFFERED))
    with pytest.raises(WaitlistEntryNotFound):
        await w.update_waitlist(replace(wait(env.ann, NOW), entry_id=99))
    assert await w.get_waitlist_entry(99) is None
    assert [e.entry_id for e in await w.list_user_waitlist(env.ann)] == [1]
    assert await w.list_user_waitlist(env.bob) == [] and await w.list_user_waitlist("x") == []


# -- history and chat documents -------------------------------------------------------------------------------


async def test_history_append_get_and_bound(env: Env) -> None:
    h = env.hist
    assert await h.get_history(env.ann) == []
    entry = {"reservation_id": "r1", "store": "Sushi Kanda", "menu": "Omakase", "date": "2026-12-01T12:00:00Z",
             "status": "confirmed", "nested": {"a": [1, 2.5, None, True]}}
    await h.append_history(env.ann, entry)
    await h.append_history(env.ann, {"reservation_id": "r2"})
    assert await h.get_history(env.ann) == [entry, {"reservation_id": "r2"}]
    assert await h.get_history(env.bob) == [] and await h.get_history("x") == []
    got = await h.get_history(env.ann)
    got[0]["store"] = "changed"
    assert (await h.get_history(env.ann))[0] == entry  # a copy
    for i in range(HISTORY_MAX_ENTRIES + 3):
        await h.append_history(env.bob, {"i": i})
    bobs = await h.get_history(env.bob)
    assert len(bobs) == HISTORY_MAX_ENTRIES and bobs[0] == {"i": 3} and bobs[-1] == {"i": HISTORY_MAX_ENTRIES + 2}
    with pytest.raises(UserNotFound):
        await h.append_history(str(uuid.uuid4()), entry)
    with pytest.raises(InvalidReservationData):
        await h.append_history(env.ann, {"x": float("nan")})
    with pytest.raises(InvalidReservationData):
        await h.append_history(env.ann, {"x": object()})
    assert len(await h.get_history(env.ann)) == 2


async def test_chat_append_get_channels_and_bound(env: Env) -> None:
    h = env.hist
    q = {"timestamp": "2025-03-16T14:00:00Z", "role": "user", "message": "明日空いてる？"}
    a = {"timestamp": "2025-03-16T14:00:01Z", "role": "system", "message": "明日は15:00〜17:00が空いています。"}
    await h.append_chat(env.ann, "LINE", [q, a])
    await h.append_chat(env.ann, "web", [q])
    await h.append_chat(env.ann, "LINE", [])
    assert await h.get_chat(env.ann, "LINE") == [q, a]
    assert await h.get_chat(env.ann, "web") == [q]
    assert await h.get_chat(env.ann, "line") == [] and await h.get_chat(env.bob, "LINE") == []
    await h.append_chat(env.bob, "web", [{"n": i} for i in range(CHAT_MAX_ENTRIES + 1)])  # bounded at once
    logs = await h.get_chat(env.bob, "web")
    assert len(logs) == CHAT_MAX_ENTRIES and logs[0] == {"n": 1}
    await h.append_chat(env.bob, "web", [{"n": "x"}, {"n": "y"}])
    logs = await h.get_chat(env.bob, "web")
    assert len(logs) == CHAT_MAX_ENTRIES and logs[0] == {"n": 3} and logs[-2:] == [{"n": "x"}, {"n": "y"}]
    for channel in ("", "c" * 33):
        with pytest.raises(InvalidReservationData):
            await h.append_chat(env.ann, channel, [q])
    await h.append_chat(env.ann, "c" * 32, [q])
    for ghost in (str(uuid.uuid4()), "x"):
        with pytest.raises(UserNotFound):
            await h.append_chat(ghost, "web", [q])
        with pytest.raises(UserNotFound):
            await h.append_chat(ghost, "web", [])
    with pytest.raises(InvalidReservationData):
        await h.append_chat(env.ann, "web", [q, {"bad": {1, 2}}])
    with pytest.raises(InvalidReservationData):
        await h.append_chat(env.ann, "web", ["not an object"])  # type: ignore[list-item]
    assert await h.get_chat(env.ann, "web") == [q]


async def test_concurrent_appends_all_land(env: Env) -> None:
    await asyncio.gather(*(env.hist.append_history(env.ann, {"i": i}) for i in range(20)))
    await asyncio.gather(*(env.hist.append_chat(env.ann, "web", [{"i": i}, {"i": -i}]) for i in range(20)))
    assert sorted(e["i"] for e in await env.hist.get_history(env.ann)) == list(range(20))
    assert len(await env.hist.get_chat(env.ann, "web")) == 40


async def test_deleting_a_user_deletes_their_documents(env: Env) -> None:
    await env.hist.append_history(env.bob, {"a": 1})
    await env.hist.append_chat(env.bob, "web", [{"a": 1}])
    if isinstance(env.store, MemoryStore):
        env.store.remove_user(env.bob)
    else:
        assert isinstance(env.store, PostgresStore)
        async with env.store.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": env.bob})
    assert await env.hist.get_history(env.bob) == [] and await env.hist.get_chat(env.bob, "web") == []


# -- races (Postgres: the exclusion constraint decides) -------------------------------------------------------


@pytest.fixture
async def pg_env(pg_url: str) -> AsyncIterator[Env]:
    """A PostgresStore with a pool large enough that each of 50 concurrent bookings has its own connection."""
    pg = await PostgresStore.connect(pg_url, pool_size=25)  # 25 + 25 overflow = 50 connections
    await pg.truncate_all()
    try:
        res = PostgresReservations(pg.engine)
        ann, bob = await _seed(pg, res)
        yield Env(pg, res, PostgresHistory(pg.engine), ann, bob)
    finally:
        await pg.close()


async def _race(env: Env, bookings: list[tuple[Reservation, Payment]]) -> tuple[list[Reservation], list[BaseException]]:
    gate = asyncio.Event()

    async def one(r: Reservation, p: Payment) -> Reservation:
        async with env.store.engine.connect() as conn:  # type: ignore[attr-defined]
            await conn.execute(sa.text("SELECT 1"))  # hold a connection of its own before the start
            await gate.wait()
        return (await env.res.book(r, p))[0]

    tasks = [asyncio.ensure_future(one(r, p)) for r, p in bookings]
    await asyncio.sleep(0.2)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    won = [x for x in results if isinstance(x, Reservation)]
    lost = [x for x in results if isinstance(x, BaseException)]
    return won, lost


async def test_race_50_bookings_of_one_slot_exactly_one_wins(pg_env: Env) -> None:
    users = [_user(f"U{i}") for i in range(50)]
    for u in users:
        await pg_env.store.create_user(u)
    bookings = [booking(u.user_id, T) for u in users]
    won, lost = await _race(pg_env, bookings)
    assert len(won) == 1, (won, lost)
    assert len(lost) == 49 and all(isinstance(e, SlotTaken) for e in lost), {type(e) for e in lost}
    assert [r.reservation_id for r in await pg_env.res.busy(1, T, T + H)] == [won[0].reservation_id]
    async with pg_env.store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert (await conn.execute(sa.text("SELECT count(*) FROM payments"))).scalar() == 1  # losers left nothing


async def test_race_overlapping_different_slots_never_overlap(pg_env: Env) -> None:
    # 40 bookings of one chef, starting every 10 minutes, 60 minutes long: many overlap, many are compatible
    users = [_user(f"V{i}") for i in range(40)]
    for u in users:
        await pg_env.store.create_user(u)
    bookings = [booking(u.user_id, T + i * 600) for i, u in enumerate(users)]
    won, lost = await _race(pg_env, bookings)
    assert all(isinstance(e, SlotTaken) for e in lost), [repr(e) for e in lost if not isinstance(e, SlotTaken)]
    # a winner overlaps at most 11 of the starts (5 before, 5 after): at least 4 win
    assert len(won) + len(lost) == 40 and len(won) >= 4
    spans = sorted((r.start_time, r.end_time) for r in won)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # the winners never overlap
    lost_starts = {r.start_time for r, _ in bookings} - {s for s, _ in spans}
    for start in lost_starts:  # and every loser really overlapped a winner
        assert any(s < start + H and start < e for s, e in spans), start
    stored = await pg_env.res.busy(1, T - H, T + 10 * H)
    assert sorted((r.start_time, r.end_time) for r in stored) == spans


async def test_race_cancel_and_rebook(pg_env: Env) -> None:
    """A slot freed by a cancel while others try to book it: at most one of them gets it."""
    r, _ = await book(pg_env, T)
    users = [_user(f"W{i}") for i in range(20)]
    for u in users:
        await pg_env.store.create_user(u)
    bookings = [booking(u.user_id, T) for u in users]
    cancel = asyncio.ensure_future(pg_env.res.cancel_reservation(r.reservation_id, NOW + 1))
    won, lost = await _race(pg_env, bookings)
    await cancel
    assert len(won) <= 1 and all(isinstance(e, SlotTaken) for e in lost)
    assert len(await pg_env.res.busy(1, T, T + H)) == len(won)


async def test_race_settle_against_expire(pg_env: Env) -> None:
    """The provider's outcome and the hold's expiry at once: the reservation ends in one consistent state."""
    for i in range(10):
        r, p = await book(pg_env, T + i * H)
        (p2, r2), expired = await asyncio.gather(
            pg_env.res.settle_payment(p.payment_id, PaymentStatus.COMPLETED, NOW + HOLD),
            pg_env.res.expire_holds(NOW + HOLD),
        )
        final = await pg_env.res.get_reservation(r.reservation_id)
        assert p2.status == PaymentStatus.COMPLETED
        if expired:
            assert final is not None and final.status == ReservationStatus.CANCELED  # expired first: stays canceled
        else:
            assert final is not None and final.status == ReservationStatus.CONFIRMED
