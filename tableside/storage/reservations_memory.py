"""``ReservationStore`` and ``HistoryStore`` in memory (tests, ``tableside serve`` without a database).

They model the Postgres schema exactly, as both pass one test suite (``tests/storage/test_reservations.py``):
the foreign keys to the ``MemoryStore``'s stores and users, the CHECKs, the unique keys and the exclusion
constraint over (staff, ``[start_time, end_time)``) of reservations that are not canceled. Single-threaded
asyncio code with no ``await`` between a check and its write, so every call is atomic as a transaction is.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

from tableside.storage.interface import InvalidTransition, RestaurantNotFound, StorageError
from tableside.storage.memory import MemoryStore
from tableside.storage.reservations import (
    CHAT_MAX_ENTRIES,
    HISTORY_MAX_ENTRIES,
    NO_SHOW_AFTER_S,
    OPEN_WAITLIST_STATUSES,
    AlreadyWaiting,
    BookableStaff,
    BookableStaffNotFound,
    Course,
    CourseNotFound,
    InvalidReservationData,
    Payment,
    PaymentNotFound,
    PaymentStatus,
    Reservation,
    ReservationNotFound,
    ReservationStatus,
    SlotTaken,
    UserNotFound,
    WaitlistEntry,
    WaitlistEntryNotFound,
    WaitlistStatus,
    canonical_uuid,
    encode_entries,
    parse_uuid,
    validate_booking,
    validate_channel,
    validate_course,
    validate_duration,
    validate_staff,
)


def _opt_uuid(value: str | None, what: str) -> str | None:
    return None if value is None else canonical_uuid(value, what)


class MemoryReservations:
    """``ReservationStore`` over the stores and users of ``store``."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._staff: dict[str, BookableStaff] = {}
        self._courses: dict[str, Course] = {}
        self._reservations: dict[str, Reservation] = {}
        self._payments: dict[str, Payment] = {}
        self._waitlist: dict[int, WaitlistEntry] = {}
        self._next_entry_id = 1

    async def _require_store(self, store_id: int) -> None:
        if await self._store.get_restaurant(store_id) is None:
            raise RestaurantNotFound(f"store {store_id}")

    async def _require_user(self, user_id: str) -> None:
        if await self._store.get_user(user_id) is None:
            raise UserNotFound(f"user {user_id}")

    # -- what can be booked ----------------------------------------------------------------------

    async def upsert_bookable_staff(self, staff: BookableStaff) -> None:
        staff_id = canonical_uuid(staff.staff_id, "staff_id")
        validate_staff(staff)
        await self._require_store(staff.store_id)
        before = self._staff.get(staff_id)
        created = before.created_at if before is not None else staff.created_at
        self._staff[staff_id] = replace(staff, staff_id=staff_id, created_at=created)

    async def list_bookable_staff(self, store_id: int, *, include_unbookable: bool = False) -> list[BookableStaff]:
        rows = [s for s in self._staff.values() if s.store_id == store_id and (include_unbookable or s.bookable)]
        return [replace(s) for s in sorted(rows, key=lambda s: (s.name, s.staff_id))]

    async def get_bookable_staff(self, staff_id: str) -> BookableStaff | None:
        key = parse_uuid(staff_id)
        s = None if key is None else self._staff.get(key)
        return None if s is None else replace(s)

    async def upsert_course(self, course: Course) -> None:
        menu_id = canonical_uuid(course.menu_id, "menu_id")
        validate_course(course)
        await self._require_store(course.store_id)
        self._courses[menu_id] = replace(course, menu_id=menu_id)

    async def list_courses(self, store_id: int, *, include_unbookable: bool = False) -> list[Course]:
        rows = [c for c in self._courses.values() if c.store_id == store_id and (include_unbookable or c.bookable)]
        return [replace(c) for c in sorted(rows, key=lambda c: (c.sort_order, c.name, c.menu_id))]

    async def get_course(self, menu_id: str) -> Course | None:
        key = parse_uuid(menu_id)
        c = None if key is None else self._courses.get(key)
        return None if c is None else replace(c)

    # -- reservations and payments ----------------------------------------------------------------

    async def book(self, reservation: Reservation, payment: Payment) -> tuple[Reservation, Payment]:
        r = replace(
            reservation,
            reservation_id=canonical_uuid(reservation.reservation_id, "reservation_id"),
            user_id=canonical_uuid(reservation.user_id, "user_id"),
            staff_id=canonical_uuid(reservation.staff_id, "staff_id"),
            menu_id=canonical_uuid(reservation.menu_id, "menu_id"),
        )
        p = replace(
            payment,
            payment_id=canonical_uuid(payment.payment_id, "payment_id"),
            reservation_id=canonical_uuid(payment.reservation_id, "reservation_id"),
            user_id=canonical_uuid(payment.user_id, "user_id"),
        )
        validate_booking(r, p)
        staff = self._staff.get(r.staff_id)
        if staff is None or staff.store_id != r.store_id or not staff.bookable:
            raise BookableStaffNotFound(f"staff {r.staff_id} of store {r.store_id}")
        course = self._courses.get(r.menu_id)
        if course is None or course.store_id != r.store_id or not course.bookable:
            raise CourseNotFound(f"course {r.menu_id} of store {r.store_id}")
        validate_duration(r, course)
        await self._require_user(r.user_id)
        if r.reservation_id in self._reservations:
            raise StorageError(f"reservation {r.reservation_id} already exists")
        if p.payment_id in self._payments:
            raise StorageError(f"payment {p.payment_id} already exists")
        if any(q.idempotency_key == p.idempotency_key for q in self._payments.values()):
            raise StorageError(f"payment idempotency key {p.idempotency_key!r} already used")
        for other in self._reservations.values():  # ex_reservations_staff_time
            if (
                other.staff_id == r.staff_id
                and other.status != ReservationStatus.CANCELED
                and other.start_time < r.end_time
                and r.start_time < other.end_time
            ):
                raise SlotTaken(f"staff {r.staff_id} is booked at an overlapping time")
        self._reservations[r.reservation_id] = r
        self._payments[p.payment_id] = p
        return replace(r), replace(p)

    def _get(self, reservation_id: str) -> Reservation:
        key = parse_uuid(reservation_id)
        r = None if key is None else self._reservations.get(key)
        if r is None:
            raise ReservationNotFound(reservation_id)
        return r

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        key = parse_uuid(reservation_id)
        r = None if key is None else self._reservations.get(key)
        return None if r is None else replace(r)

    async def get_payment(self, payment_id: str) -> Payment | None:
        key = parse_uuid(payment_id)
        p = None if key is None else self._payments.get(key)
        return None if p is None else replace(p)

    async def payment_of(self, reservation_id: str) -> Payment | None:
        key = parse_uuid(reservation_id)
        found = [p for p in self._payments.values() if p.reservation_id == key]
        return replace(min(found, key=lambda p: (p.created_at, p.payment_id))) if found else None

    async def list_user_reservations(self, user_id: str, *, limit: int = 200) -> list[Reservation]:
        key = parse_uuid(user_id)
        rows = [r for r in self._reservations.values() if r.user_id == key]
        rows.sort(key=lambda r: (r.start_time, r.reservation_id), reverse=True)
        return [replace(r) for r in rows[: max(limit, 0)]]

    @staticmethod
    def _by_start(rows: list[Reservation]) -> list[Reservation]:
        return [replace(r) for r in sorted(rows, key=lambda r: (r.start_time, r.reservation_id))]

    async def list_store_reservations(self, store_id: int, start: float, end: float) -> list[Reservation]:
        return self._by_start(
            [r for r in self._reservations.values() if r.store_id == store_id and start <= r.start_time < end]
        )

    async def busy(self, store_id: int, start: float, end: float) -> list[Reservation]:
        return self._by_start(
            [
                r
                for r in self._reservations.values()
                if r.store_id == store_id
                and r.status != ReservationStatus.CANCELED
                and r.start_time < end
                and r.end_time > start
            ]
        )

    async def settle_payment(self, payment_id: str, status: PaymentStatus, now: float) -> tuple[Payment, Reservation]:
        if status not in (PaymentStatus.COMPLETED, PaymentStatus.FAILED):
            raise InvalidReservationData("a payment settles as completed or failed")
        key = parse_uuid(payment_id)
        p = None if key is None else self._payments.get(key)
        if p is None:
            raise PaymentNotFound(payment_id)
        r = self._reservations[p.reservation_id]
        if p.status == PaymentStatus.PENDING:
            p.status, p.updated_at = PaymentStatus(status), now
            if r.status == ReservationStatus.PENDING:
                r.status = (
                    ReservationStatus.CONFIRMED if status == PaymentStatus.COMPLETED else ReservationStatus.CANCELED
                )
                r.hold_expires_at, r.updated_at = None, now
        return replace(p), replace(r)

    async def cancel_reservation(self, reservation_id: str, now: float) -> Reservation:
        r = self._get(reservation_id)
        if r.status in (ReservationStatus.PENDING, ReservationStatus.CONFIRMED):
            r.status, r.hold_expires_at, r.updated_at = ReservationStatus.CANCELED, None, now
        elif r.status != ReservationStatus.CANCELED:
            raise InvalidTransition(f"a {r.status} reservation cannot be canceled")
        return replace(r)

    async def expire_holds(self, now: float) -> list[Reservation]:
        expired = [
            r
            for r in self._reservations.values()
            if r.status == ReservationStatus.PENDING and r.hold_expires_at is not None and r.hold_expires_at <= now
        ]
        for r in expired:
            r.status, r.hold_expires_at, r.updated_at = ReservationStatus.CANCELED, None, now
        return self._by_start(expired)

    async def seat_reservation(self, reservation_id: str, table_id: str, group_id: str, now: float) -> Reservation:
        r = self._get(reservation_id)
        if r.status == ReservationStatus.SEATED and r.table_id == table_id and r.group_id == group_id:
            return replace(r)
        if r.status != ReservationStatus.CONFIRMED:
            raise InvalidTransition(f"a {r.status} reservation cannot be seated")
        r.status, r.table_id, r.group_id, r.updated_at = ReservationStatus.SEATED, table_id, group_id, now
        return replace(r)

    async def mark_no_show(self, reservation_id: str, now: float) -> Reservation:
        r = self._get(reservation_id)
        if r.status == ReservationStatus.NO_SHOW:
            return replace(r)
        if r.status != ReservationStatus.CONFIRMED:
            raise InvalidTransition(f"a {r.status} reservation cannot be a no-show")
        if now < r.start_time + NO_SHOW_AFTER_S:
            raise InvalidTransition("too early for a no-show")
        r.status, r.updated_at = ReservationStatus.NO_SHOW, now
        return replace(r)

    # -- waitlist -----------------------------------------------------------------------------------

    def _open_clash(self, e: WaitlistEntry) -> bool:
        return e.status in OPEN_WAITLIST_STATUSES and any(
            o.entry_id != e.entry_id
            and o.status in OPEN_WAITLIST_STATUSES
            and (o.user_id, o.store_id, o.menu_id, o.start_time) == (e.user_id, e.store_id, e.menu_id, e.start_time)
            for o in self._waitlist.values()
        )

    async def add_waitlist(self, entry: WaitlistEntry) -> WaitlistEntry:
        e = replace(
            entry,
            entry_id=self._next_entry_id,
            user_id=canonical_uuid(entry.user_id, "user_id"),
            menu_id=canonical_uuid(entry.menu_id, "menu_id"),
            staff_id=_opt_uuid(entry.staff_id, "staff_id"),
            offered_staff_id=_opt_uuid(entry.offered_staff_id, "offered_staff_id"),
            reservation_id=_opt_uuid(entry.reservation_id, "reservation_id"),
        )
        if e.status != WaitlistStatus.WAITING:
            raise InvalidReservationData("a new waitlist entry is waiting")
        await self._require_user(e.user_id)
        await self._require_store(e.store_id)
        course = self._courses.get(e.menu_id)
        if course is None or course.store_id != e.store_id:
            raise CourseNotFound(f"course {e.menu_id} of store {e.store_id}")
        if self._open_clash(e):
            raise AlreadyWaiting(f"user {e.user_id} already waits for that slot")
        self._next_entry_id += 1
        self._waitlist[e.entry_id] = e
        return replace(e)

    async def get_waitlist_entry(self, entry_id: int) -> WaitlistEntry | None:
        e = self._waitlist.get(entry_id)
        return None if e is None else replace(e)

    @staticmethod
    def _oldest_first(rows: list[WaitlistEntry]) -> list[WaitlistEntry]:
        return [replace(e) for e in sorted(rows, key=lambda e: (e.created_at, e.entry_id))]

    async def list_user_waitlist(self, user_id: str) -> list[WaitlistEntry]:
        key = parse_uuid(user_id)
        return self._oldest_first([e for e in self._waitlist.values() if e.user_id == key])

    async def waiting_for(self, store_id: int, menu_id: str, start_time: float) -> list[WaitlistEntry]:
        key = parse_uuid(menu_id)
        return self._oldest_first(
            [
                e
                for e in self._waitlist.values()
                if e.store_id == store_id
                and e.menu_id == key
                and e.start_time == start_time
                and e.status in OPEN_WAITLIST_STATUSES
            ]
        )

    async def update_waitlist(self, entry: WaitlistEntry) -> None:
        stored = self._waitlist.get(entry.entry_id)
        if stored is None:
            raise WaitlistEntryNotFound(str(entry.entry_id))
        changed = replace(
            stored,
            status=WaitlistStatus(entry.status),
            offered_until=entry.offered_until,
            offered_staff_id=_opt_uuid(entry.offered_staff_id, "offered_staff_id"),
            reservation_id=_opt_uuid(entry.reservation_id, "reservation_id"),
        )
        if self._open_clash(changed):
            raise AlreadyWaiting(f"user {changed.user_id} already waits for that slot")
        self._waitlist[entry.entry_id] = changed


class MemoryHistory:
    """``HistoryStore`` over the users of ``store``. A document of a user who no longer exists is gone (as
    Postgres' ON DELETE CASCADE)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._chat: dict[tuple[str, str], list[dict[str, Any]]] = {}

    async def _live(self, user_id: str) -> str | None:
        """The canonical id of an existing user; documents of users that are gone are dropped."""
        key = parse_uuid(user_id)
        if key is None:
            return None
        if await self._store.get_user(key) is None:
            self._history.pop(key, None)
            for k in [k for k in self._chat if k[0] == key]:
                del self._chat[k]
            return None
        return key

    async def append_history(self, user_id: str, entry: dict[str, Any]) -> None:
        encoded = encode_entries([entry])
        key = await self._live(user_id)
        if key is None:
            raise UserNotFound(f"user {user_id}")
        doc = self._history.setdefault(key, [])
        doc.extend(json.loads(encoded))
        del doc[:-HISTORY_MAX_ENTRIES]

    async def get_history(self, user_id: str) -> list[dict[str, Any]]:
        key = await self._live(user_id)
        return [] if key is None else copy.deepcopy(self._history.get(key, []))

    async def append_chat(self, user_id: str, channel: str, entries: list[dict[str, Any]]) -> None:
        validate_channel(channel)
        encoded = encode_entries(entries)
        key = await self._live(user_id)
        if key is None:
            raise UserNotFound(f"user {user_id}")
        if not entries:
            return
        logs = self._chat.setdefault((key, channel), [])
        logs.extend(json.loads(encoded))
        del logs[:-CHAT_MAX_ENTRIES]

    async def get_chat(self, user_id: str, channel: str) -> list[dict[str, Any]]:
        key = await self._live(user_id)
        return [] if key is None else copy.deepcopy(self._chat.get((key, channel), []))
