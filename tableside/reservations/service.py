"""The reservation service (issue 13, docs/reservations.md): availability with the slot cache, booking and its
payment, holds, the waitlist, history, the availability chat, and seating a reservation at a table.

Everything that reads time or waits takes the injected ``Clock``; payments run as background tasks in
``payment_tasks`` (tests await them with ``drain_payments``; ``close`` cancels them). Refusals are typed: the
storage errors (``RestaurantNotFound``, ``CourseNotFound``, ``BookableStaffNotFound``, ``ReservationNotFound``,
``WaitlistEntryNotFound``, ``TableNotFound``, ``SlotTaken``, ``AlreadyWaiting``, ``InvalidTransition``...) and
``BookingRefused(code, message, field)`` for what the service itself refuses (see ``BookingRefused``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from tableside.booking import (
    MAX_TEXT_CHARS,
    BookingInputError,
    Busy,
    Slot,
    available_slots,
    detect_language,
    free_ranges,
    help_text,
    is_closed,
    narrow,
    parse_question,
    reply,
)
from tableside.clock import Clock, run_with_timeout
from tableside.config import PaymentSettings, ReservationSettings
from tableside.payments.interface import PaymentAdapter, PaymentOutcome, PaymentUnknown
from tableside.reservations import views
from tableside.reservations.slot_cache import SlotCache
from tableside.reservations.waitlist import WaitlistQueue
from tableside.storage.interface import (
    InvalidStoreData,
    InvalidTransition,
    Restaurant,
    RestaurantNotFound,
    StorageError,
    StorageUnavailable,
    Store,
    Table,
    TableNotFound,
    TableStatus,
    validate_business_hours,
    validate_timezone,
)
from tableside.storage.reservations import (
    NO_SHOW_AFTER_S,
    PARTY_SIZE_RANGE,
    BookableStaff,
    BookableStaffNotFound,
    Course,
    CourseNotFound,
    HistoryStore,
    Payment,
    PaymentStatus,
    Reservation,
    ReservationNotFound,
    ReservationStatus,
    ReservationStore,
    SlotTaken,
    WaitlistEntry,
    WaitlistEntryNotFound,
    WaitlistStatus,
)

log = structlog.get_logger("tableside.reservations")

Notify = Callable[[str, dict[str, Any]], None]
NOTES_MAX_CHARS = 1000
_PAD = timedelta(hours=24)  # busy intervals are read for the local day +- 24 h: any course (<= 1440 min) fits


class BookingRefused(Exception):
    """What the service refuses before storage is asked. ``code``:

    - ``bad_request`` (HTTP 400, with ``field``): a bad date, a date more than ``max_days_ahead`` ahead, a
      ``start_time`` that is not a slot start of the availability (outside hours, across a break, not on the
      grid, in the past), a party size outside 1..50, notes too long, chat text too long;
    - ``table_occupied`` (409): seating at a table that is not vacant;
    - ``too_early`` (409): a no-show less than 15 minutes after the start;
    - ``not_offered`` (409): accepting a waitlist entry that holds no offer;
    - ``offer_expired`` (409): accepting an offer whose time ran out."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Availability:
    date: date
    store_id: int
    menu_id: str
    timezone: str
    closed: bool
    slots: list[Slot]

    def json(self) -> dict[str, Any]:
        """``GET /api/stores/{id}/availability``'s body."""
        return {
            "date": self.date.isoformat(),
            "store_id": self.store_id,
            "menu_id": self.menu_id,
            "timezone": self.timezone,
            "closed": self.closed,
            "slots": views.slots_json(self.slots),
        }


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    reply: str
    lang: str
    date: date | None = None
    ranges: list[tuple[str, str]] | None = None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reply": self.reply, "lang": self.lang}
        if self.date is not None:
            out["date"] = self.date.isoformat()
        if self.ranges is not None:
            out["ranges"] = [list(r) for r in self.ranges]
        return out


@dataclass(frozen=True, slots=True)
class DayView:
    """The staff console's day timeline."""

    date: date
    store: Restaurant
    staff: list[BookableStaff]
    reservations: list[Reservation]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _local_midnight(day: date, tz: str) -> float:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).timestamp()


def _clock_text(moment: datetime, day: date, tz: str) -> str:
    local = moment.astimezone(ZoneInfo(tz))
    if local.date() > day and local.time() == time(0, 0):
        return "24:00"
    return local.strftime("%H:%M")


class ReservationService:
    def __init__(
        self,
        store: Store,
        reservations: ReservationStore,
        history: HistoryStore,
        payments: PaymentAdapter,
        cache: SlotCache,
        waitlist: WaitlistQueue,
        clock: Clock,
        settings: ReservationSettings,
        payment_settings: PaymentSettings,
        notify: Notify | None = None,
    ) -> None:
        self.store = store
        self.reservations = reservations
        self.history_store = history
        self.payments = payments
        self.cache = cache
        self.waitlist = waitlist
        self.clock = clock
        self.settings = settings
        self.payment_settings = payment_settings
        self._notify_cb = notify
        # payment_id -> the task charging it (removed when done); tests await them, close() cancels them.
        self.payment_tasks: dict[str, asyncio.Task[None]] = {}

    def _notify(self, user_id: str, message: dict[str, Any]) -> None:
        """Tell the customer (their websockets); a failing notifier never fails the change that happened."""
        if self._notify_cb is None:
            return
        try:
            self._notify_cb(user_id, message)
        except Exception as exc:
            log.warning("reservation_notify_failed", user_id=user_id, error=repr(exc))

    # -- lookups ---------------------------------------------------------------------------------------
    async def _restaurant(self, store_id: int) -> Restaurant:
        rest = await self.store.get_restaurant(store_id)
        if rest is None:
            raise RestaurantNotFound(store_id)
        return rest

    async def _course(self, store_id: int, menu_id: str) -> Course:
        course = await self.reservations.get_course(menu_id)
        if course is None or course.store_id != store_id or not course.bookable:
            raise CourseNotFound(menu_id)
        return course

    async def courses(self, store_id: int) -> list[Course]:
        await self._restaurant(store_id)
        return await self.reservations.list_courses(store_id)

    async def bookable_staff(self, store_id: int) -> list[BookableStaff]:
        await self._restaurant(store_id)
        return await self.reservations.list_bookable_staff(store_id)

    async def _staff_ids(self, store_id: int, staff_id: str | None) -> list[str]:
        staff = await self.reservations.list_bookable_staff(store_id)
        if staff_id is None:
            return [s.staff_id for s in staff]
        if not any(s.staff_id == staff_id for s in staff):
            raise BookableStaffNotFound(staff_id)
        return [staff_id]

    def today(self, tz: str) -> date:
        return _utc(self.clock.now()).astimezone(ZoneInfo(tz)).date()

    # -- availability ------------------------------------------------------------------------------------
    async def _busy(self, store_id: int, day: date, tz: str, *, use_cache: bool = True) -> list[Busy]:
        cached = await self.cache.get(store_id, day) if use_cache else None
        if cached is None:
            lo = _local_midnight(day, tz) - _PAD.total_seconds()
            hi = _local_midnight(day + timedelta(days=1), tz) + _PAD.total_seconds()
            rows = await self.reservations.busy(store_id, lo, hi)
            cached = [{"staff_id": r.staff_id, "start": r.start_time, "end": r.end_time} for r in rows]
            await self.cache.put(store_id, day, cached, self.settings.slot_cache_ttl_s)
        out: list[Busy] = []
        for item in cached:
            try:
                out.append(Busy(str(item["staff_id"]), _utc(float(item["start"])), _utc(float(item["end"]))))
            except (KeyError, TypeError, ValueError):
                continue  # a malformed cached item is skipped; booking never trusts the cache anyway
        return out

    def _check_day(self, day: date, tz: str) -> None:
        if day > self.today(tz) + timedelta(days=self.settings.max_days_ahead):
            raise BookingRefused(
                "bad_request", f"date is more than {self.settings.max_days_ahead} days ahead", "date"
            )

    async def availability(
        self, store_id: int, day: date, menu_id: str, staff_id: str | None = None, *, use_cache: bool = True
    ) -> Availability:
        """The bookable starts of ``day`` (the store's local date) for the course, with any bookable staff
        member (or the one asked), after now; ``use_cache`` False reads the reservations from the database
        (and refreshes the cache). Raises RestaurantNotFound, CourseNotFound, BookableStaffNotFound,
        BookingRefused(bad_request, field date)."""
        rest = await self._restaurant(store_id)
        course = await self._course(store_id, menu_id)
        staff_ids = await self._staff_ids(store_id, staff_id)
        tz = rest.timezone
        self._check_day(day, tz)
        closed = is_closed(rest.business_hours, day)
        slots: list[Slot] = []
        if not closed and staff_ids:
            slots = available_slots(
                business_hours=rest.business_hours,
                tz=tz,
                day=day,
                duration_minutes=course.duration,
                staff_ids=staff_ids,
                busy=await self._busy(store_id, day, tz, use_cache=use_cache),
                step_minutes=self.settings.slot_step_minutes,
                now=_utc(self.clock.now()),
            )
        return Availability(day, store_id, menu_id, tz, closed, slots)

    async def _invalidate_span(self, store_id: int, start: float, end: float, tz: str) -> None:
        """Drop every cached day whose busy range (the day +- 24 h) may contain ``[start, end)``."""
        where = ZoneInfo(tz)
        first = (_utc(start) - _PAD).astimezone(where).date()
        last = (_utc(end) + _PAD).astimezone(where).date()
        day = first
        while day <= last:
            await self.cache.invalidate(store_id, day)
            day += timedelta(days=1)

    async def _invalidate(self, r: Reservation, tz: str | None = None) -> None:
        if tz is None:
            tz = await self._tz(r.store_id)
        await self._invalidate_span(r.store_id, r.start_time, r.end_time, tz)

    async def _tz(self, store_id: int) -> str:
        rest = await self.store.get_restaurant(store_id)
        return rest.timezone if rest is not None else "UTC"

    async def _validate_start(
        self, rest: Restaurant, course: Course, staff_ids: list[str], start_time: datetime
    ) -> None:
        """``start_time`` must be a slot start of the availability ignoring reservations (hours, breaks, the
        grid, not in the past); whether it is *free* is decided by the database."""
        if start_time.tzinfo is None or start_time.utcoffset() is None:
            raise BookingRefused("bad_request", "start_time needs a UTC offset", "start_time")
        tz = rest.timezone
        day = start_time.astimezone(ZoneInfo(tz)).date()
        self._check_day(day, tz)
        grid = available_slots(
            business_hours=rest.business_hours,
            tz=tz,
            day=day,
            duration_minutes=course.duration,
            staff_ids=staff_ids,
            busy=[],
            step_minutes=self.settings.slot_step_minutes,
            now=_utc(self.clock.now()),
        )
        ts = start_time.timestamp()
        if not any(abs(s.start.timestamp() - ts) < 1e-6 for s in grid):
            raise BookingRefused(
                "bad_request",
                "start_time is not a bookable slot start (outside hours, across a break, off the grid or past)",
                "start_time",
            )

    # -- booking ---------------------------------------------------------------------------------------------
    async def book(
        self,
        user_id: str,
        store_id: int,
        menu_id: str,
        staff_id: str,
        start_time: datetime,
        party_size: int = 2,
        notes: str = "",
    ) -> tuple[Reservation, Payment]:
        """A pending reservation and its pending payment, whose charge starts in the background. Raises
        RestaurantNotFound, CourseNotFound, BookableStaffNotFound, BookingRefused (bad_request), SlotTaken
        (the constraint decides: the slot cache is not consulted), UserNotFound."""
        if isinstance(party_size, bool) or not isinstance(party_size, int) or not (
            PARTY_SIZE_RANGE[0] <= party_size <= PARTY_SIZE_RANGE[1]
        ):
            raise BookingRefused("bad_request", "party_size must be 1..50", "party_size")
        if not isinstance(notes, str) or len(notes) > NOTES_MAX_CHARS:
            raise BookingRefused("bad_request", f"notes must be at most {NOTES_MAX_CHARS} characters", "notes")
        rest = await self._restaurant(store_id)
        course = await self._course(store_id, menu_id)
        staff_ids = await self._staff_ids(store_id, staff_id)
        await self._validate_start(rest, course, staff_ids, start_time)
        now = self.clock.now()
        r, p = await self._book(
            user_id, rest, course, staff_id, start_time.timestamp(), party_size, notes,
            hold_until=now + self.settings.hold_minutes * 60,
        )
        self._start_payment(p, course, rest)
        return r, p

    async def _book(
        self,
        user_id: str,
        rest: Restaurant,
        course: Course,
        staff_id: str,
        start: float,
        party_size: int,
        notes: str,
        *,
        hold_until: float,
    ) -> tuple[Reservation, Payment]:
        now = self.clock.now()
        rid, pid = str(uuid.uuid4()), str(uuid.uuid4())
        r = Reservation(
            rid, user_id, rest.restaurant_id, staff_id, course.menu_id, start, start + course.duration * 60,
            ReservationStatus.PENDING, party_size, notes, None, None, hold_until, now, now,
        )
        p = Payment(pid, rid, user_id, course.price * party_size, PaymentStatus.PENDING, pid, now, now)
        r, p = await self.reservations.book(r, p)
        await self._invalidate(r, rest.timezone)
        await self._record(r, rest=rest, course=course)
        return r, p

    async def get(self, reservation_id: str) -> Reservation:
        r = await self.reservations.get_reservation(reservation_id)
        if r is None:
            raise ReservationNotFound(reservation_id)
        return r

    async def payment_of(self, reservation_id: str) -> Payment | None:
        return await self.reservations.payment_of(reservation_id)

    async def my_reservations(self, user_id: str) -> list[Reservation]:
        return await self.reservations.list_user_reservations(user_id)

    async def cancel(self, reservation_id: str) -> Reservation:
        """pending/confirmed -> canceled (customer or staff): the slot is free and the waitlist is offered it.
        Authorisation (the customer's own, staff of the store) is the caller's. Raises ReservationNotFound,
        InvalidTransition (seated, no_show)."""
        before = await self.get(reservation_id)
        r = await self.reservations.cancel_reservation(reservation_id, self.clock.now())
        if before.status != ReservationStatus.CANCELED:
            await self._freed(r)
            entry = await self._offer_holding(r)
            if entry is not None:  # the customer canceled the slot held for their offer: they do not want it
                await self._close_entry(entry, WaitlistStatus.CANCELED)
            await self._promote(r.store_id, r.menu_id, r.start_time)
        return r

    async def _freed(self, r: Reservation) -> None:
        """A reservation just became canceled: drop the cached days, record and tell."""
        await self._invalidate(r)
        await self._record(r)
        payment = await self.reservations.payment_of(r.reservation_id)
        if payment is not None and payment.status == PaymentStatus.COMPLETED:
            # No refund API in the adapter yet: say so loudly, the money is to be returned by hand.
            log.warning("reservation_refund_needed", reservation_id=r.reservation_id, payment_id=payment.payment_id)

    # -- payments ----------------------------------------------------------------------------------------------
    def _start_payment(self, payment: Payment, course: Course, rest: Restaurant) -> None:
        if payment.payment_id in self.payment_tasks or payment.status != PaymentStatus.PENDING:
            return
        description = f"{rest.name}: {course.name}"
        task = asyncio.get_running_loop().create_task(self._run_payment(payment, description))
        self.payment_tasks[payment.payment_id] = task
        pid = payment.payment_id

        def _done(_task: asyncio.Task[None]) -> None:
            if self.payment_tasks.get(pid) is _task:
                del self.payment_tasks[pid]

        task.add_done_callback(_done)

    async def _run_payment(self, payment: Payment, description: str) -> None:
        key, cfg = payment.idempotency_key, self.payment_settings
        try:
            outcome = await run_with_timeout(
                self.clock, self.payments.charge(key, payment.amount, description), cfg.timeout_s
            )
        except (PaymentUnknown, TimeoutError) as exc:
            log.info("payment_outcome_unknown", payment_id=payment.payment_id, error=repr(exc))
            outcome = PaymentOutcome.UNKNOWN
        except Exception as exc:  # a broken adapter must not kill the task: look the key up instead
            log.warning("payment_charge_error", payment_id=payment.payment_id, error=repr(exc))
            outcome = PaymentOutcome.UNKNOWN
        while outcome == PaymentOutcome.UNKNOWN:
            await self.clock.sleep(cfg.lookup_interval_s)
            try:
                outcome = await run_with_timeout(self.clock, self.payments.lookup(key), cfg.timeout_s)
            except (PaymentUnknown, TimeoutError):
                outcome = PaymentOutcome.UNKNOWN
            except Exception as exc:
                log.warning("payment_lookup_error", payment_id=payment.payment_id, error=repr(exc))
                outcome = PaymentOutcome.UNKNOWN
        status = PaymentStatus.COMPLETED if outcome == PaymentOutcome.COMPLETED else PaymentStatus.FAILED
        while True:
            try:
                await self._settle(payment.payment_id, status)
                return
            except StorageUnavailable as exc:  # the outcome is known: keep trying to record it
                log.warning("payment_settle_retry", payment_id=payment.payment_id, error=repr(exc))
                await self.clock.sleep(cfg.lookup_interval_s)

    async def _settle(self, payment_id: str, status: PaymentStatus) -> None:
        payment = await self.reservations.get_payment(payment_id)
        if payment is None:
            return
        before = await self.reservations.get_reservation(payment.reservation_id)
        payment, r = await self.reservations.settle_payment(payment_id, status, self.clock.now())
        if before is None or before.status == r.status:
            if payment.status == PaymentStatus.COMPLETED and r.status == ReservationStatus.CANCELED:
                log.warning("reservation_refund_needed", reservation_id=r.reservation_id, payment_id=payment_id)
            return
        if r.status == ReservationStatus.CONFIRMED:
            await self._record(r)
        elif r.status == ReservationStatus.CANCELED:  # the payment failed: the slot is free again
            await self._freed(r)
            await self._promote(r.store_id, r.menu_id, r.start_time)

    async def drain_payments(self) -> None:
        """Wait for every payment task running now (tests: advance the fake clock first)."""
        while self.payment_tasks:
            await asyncio.gather(*list(self.payment_tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Shutdown: cancel the payment tasks. Their reservations stay pending until the hold runs out and the
        sweep (of this or another node) cancels them; a charge that went through meanwhile is recorded when
        settled and logged for refund."""
        tasks = list(self.payment_tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.payment_tasks.clear()

    # -- the cleanup loop ----------------------------------------------------------------------------------------
    async def sweep(self) -> list[Reservation]:
        """Pending holds that ran out (unpaid bookings and unaccepted waitlist offers, whose hold is the
        offer's end) become canceled: the cache is invalidated, history written, the customer told, an
        offer holding it expires, and the slot is offered to the next customer waiting. Returns them."""
        expired = await self.reservations.expire_holds(self.clock.now())
        for r in expired:
            await self._freed(r)
            entry = await self._offer_holding(r)
            if entry is not None:
                await self._close_entry(entry, WaitlistStatus.EXPIRED)
                tz = await self._tz(entry.store_id)
                self._notify(entry.user_id, {"type": "waitlist_updated", "entry": views.waitlist_json(entry, tz)})
        for r in expired:
            await self._promote(r.store_id, r.menu_id, r.start_time)
        return expired

    async def sweep_loop(self) -> None:
        """Run ``sweep`` every ``sweep_interval_s`` until cancelled (the server starts it as a task; safe on
        every node at once: expire_holds is one conditional statement, and a slot is offered through a
        booking, which the constraint lets only one node make)."""
        while True:
            await self.clock.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed run is retried at the next interval
                log.warning("reservation_sweep_failed", error=repr(exc))

    # -- waitlist ------------------------------------------------------------------------------------------------
    async def _offer_holding(self, r: Reservation) -> WaitlistEntry | None:
        for e in await self.reservations.waiting_for(r.store_id, r.menu_id, r.start_time):
            if e.status == WaitlistStatus.OFFERED and e.reservation_id == r.reservation_id:
                return e
        return None

    async def _close_entry(self, entry: WaitlistEntry, status: WaitlistStatus) -> None:
        """The entry leaves the slot's queue for good (accepted, expired or canceled): its row, then the list."""
        entry.status = status
        await self.reservations.update_waitlist(entry)
        await self.waitlist.remove(entry.store_id, entry.menu_id, entry.start_time, entry.entry_id)

    async def _queue(self, store_id: int, menu_id: str, start: float) -> list[WaitlistEntry]:
        """The open entries of a slot in offer order. The rows are the truth; the Redis list is rebuilt from
        them when it is missing or holds other ids."""
        rows = await self.reservations.waiting_for(store_id, menu_id, start)
        ids = [e.entry_id for e in rows]
        queued = await self.waitlist.entries(store_id, menu_id, start)
        if queued != ids:
            await self.waitlist.replace(store_id, menu_id, start, ids)
        return rows

    async def _promote(self, store_id: int, menu_id: str, start: float) -> list[WaitlistEntry]:
        """Offer the slot (store, course, start) to the waiting customers in order while a staff member they
        accept is free at that start: each offer is a pending reservation booked for them whose hold ends
        with the offer (so the constraint protects it). Returns the entries offered."""
        if start <= self.clock.now():
            return []
        rows = await self._queue(store_id, menu_id, start)
        waiting = [e for e in rows if e.status == WaitlistStatus.WAITING]
        if not waiting:
            return []
        rest = await self.store.get_restaurant(store_id)
        course = await self.reservations.get_course(menu_id)
        if rest is None or course is None or course.store_id != store_id or not course.bookable:
            return []
        day = _utc(start).astimezone(ZoneInfo(rest.timezone)).date()
        try:
            avail = await self.availability(store_id, day, menu_id, use_cache=False)  # who is free: the truth
        except (BookingRefused, StorageError, BookingInputError):
            return []
        free = [s.staff_id for s in avail.slots if abs(s.start.timestamp() - start) < 1e-6]
        offered: list[WaitlistEntry] = []
        for entry in waiting:
            if not free:
                break
            candidates = [entry.staff_id] if entry.staff_id is not None else list(free)
            for staff_id in candidates:
                if staff_id not in free:
                    continue
                free.remove(staff_id)
                try:
                    got = await self._offer(entry, rest, course, staff_id)
                except SlotTaken:
                    continue  # taken meanwhile (another node's booking): try the next staff member
                except StorageError as exc:  # this customer cannot be offered it (e.g. deleted): the next one
                    log.warning("waitlist_offer_failed", entry_id=entry.entry_id, error=repr(exc))
                    free.append(staff_id)
                    break
                offered.append(got)
                break
        return offered

    async def _offer(self, entry: WaitlistEntry, rest: Restaurant, course: Course, staff_id: str) -> WaitlistEntry:
        until = self.clock.now() + self.settings.offer_minutes * 60
        # If this process dies between the booking and the entry update, the held reservation simply
        # expires at ``until`` (expire_holds) and the slot is offered again.
        r, _ = await self._book(entry.user_id, rest, course, staff_id, entry.start_time, 2, "", hold_until=until)
        entry.status = WaitlistStatus.OFFERED
        entry.offered_until = until
        entry.offered_staff_id = staff_id
        entry.reservation_id = r.reservation_id
        await self.reservations.update_waitlist(entry)
        entry_view = views.waitlist_json(entry, rest.timezone)
        self._notify(
            entry.user_id,
            views.waitlist_offer(entry_view, r.reservation_id, views.iso(until, rest.timezone)),
        )
        return entry

    async def join_waitlist(
        self, user_id: str, store_id: int, menu_id: str, start_time: datetime, staff_id: str | None = None
    ) -> tuple[WaitlistEntry, int | None]:
        """A waiting entry for that slot (and its position, 1 = next; None once offered). When the slot is
        free right now it is offered at once. Raises RestaurantNotFound, CourseNotFound,
        BookableStaffNotFound, BookingRefused(bad_request, start_time), AlreadyWaiting, UserNotFound."""
        rest = await self._restaurant(store_id)
        course = await self._course(store_id, menu_id)
        staff_ids = await self._staff_ids(store_id, staff_id)
        await self._validate_start(rest, course, staff_ids, start_time)
        start = start_time.timestamp()
        entry = await self.reservations.add_waitlist(
            WaitlistEntry(0, user_id, store_id, menu_id, start, WaitlistStatus.WAITING, self.clock.now(), staff_id)
        )
        await self.waitlist.push(store_id, menu_id, start, entry.entry_id)
        await self._promote(store_id, menu_id, start)
        got = await self.reservations.get_waitlist_entry(entry.entry_id)
        entry = got if got is not None else entry
        return entry, await self.position(entry)

    async def position(self, entry: WaitlistEntry) -> int | None:
        if entry.status != WaitlistStatus.WAITING:
            return None
        rows = await self._queue(entry.store_id, entry.menu_id, entry.start_time)
        waiting = [e.entry_id for e in rows if e.status == WaitlistStatus.WAITING]
        return waiting.index(entry.entry_id) + 1 if entry.entry_id in waiting else None

    async def _own_entry(self, user_id: str, entry_id: int) -> WaitlistEntry:
        entry = await self.reservations.get_waitlist_entry(entry_id)
        if entry is None or entry.user_id != user_id:
            raise WaitlistEntryNotFound(entry_id)
        return entry

    async def leave_waitlist(self, user_id: str, entry_id: int) -> WaitlistEntry:
        """Cancel an open entry (an offer's held reservation is canceled and the slot offered to the next).
        A closed entry is returned unchanged. Raises WaitlistEntryNotFound (also another user's)."""
        entry = await self._own_entry(user_id, entry_id)
        if entry.status not in (WaitlistStatus.WAITING, WaitlistStatus.OFFERED):
            return entry
        held = entry.reservation_id if entry.status == WaitlistStatus.OFFERED else None
        await self._close_entry(entry, WaitlistStatus.CANCELED)
        if held is not None:
            r = await self.reservations.get_reservation(held)
            if r is not None and r.status == ReservationStatus.PENDING:
                await self.cancel(held)  # the slot is free again and offered to the next customer
        return entry

    async def my_waitlist(self, user_id: str) -> list[tuple[WaitlistEntry, int | None]]:
        return [(e, await self.position(e)) for e in await self.reservations.list_user_waitlist(user_id)]

    async def accept_offer(self, user_id: str, entry_id: int) -> tuple[Reservation, Payment]:
        """An offered entry becomes accepted and the payment of its held reservation starts (the reservation
        stays pending until it completes). Accepting again answers the same. Raises WaitlistEntryNotFound,
        BookingRefused(not_offered | offer_expired)."""
        entry = await self._own_entry(user_id, entry_id)
        if entry.status == WaitlistStatus.ACCEPTED and entry.reservation_id is not None:
            r = await self.get(entry.reservation_id)
            p = await self.reservations.payment_of(r.reservation_id)
            assert p is not None
            return r, p
        if entry.status != WaitlistStatus.OFFERED or entry.reservation_id is None:
            raise BookingRefused("not_offered", "this waitlist entry holds no offer")
        now = self.clock.now()
        r = await self.get(entry.reservation_id)
        if (entry.offered_until is not None and now >= entry.offered_until) or r.status != ReservationStatus.PENDING:
            raise BookingRefused("offer_expired", "the offer ran out")
        p = await self.reservations.payment_of(r.reservation_id)
        assert p is not None
        await self._close_entry(entry, WaitlistStatus.ACCEPTED)
        rest = await self._restaurant(r.store_id)
        course = await self._course(r.store_id, r.menu_id)
        # The held reservation's hold is the offer's end: the payment has to complete before it (the dummy
        # takes latency_ms); a charge completing after it is recorded and logged for refund.
        self._start_payment(p, course, rest)
        return r, p

    # -- history ------------------------------------------------------------------------------------------------------
    async def _record(
        self, r: Reservation, *, rest: Restaurant | None = None, course: Course | None = None
    ) -> None:
        """One history entry (the seed's document) for a status change, and the customer is told."""
        if rest is None:
            rest = await self.store.get_restaurant(r.store_id)
        if course is None:
            course = await self.reservations.get_course(r.menu_id)
        tz = rest.timezone if rest is not None else "UTC"
        entry = {
            "reservation_id": r.reservation_id,
            "store": rest.name if rest is not None else str(r.store_id),
            "store_id": r.store_id,
            "menu": course.name if course is not None else r.menu_id,
            "date": views.iso(r.start_time, tz),
            "status": str(r.status),
            "at": views.iso(self.clock.now(), tz),
        }
        try:
            await self.history_store.append_history(r.user_id, entry)
        except StorageError as exc:  # history is a record, not a gate: the change itself happened
            log.warning("reservation_history_failed", reservation_id=r.reservation_id, error=repr(exc))
        self._notify(r.user_id, views.reservation_updated(await self.view(r, rest=rest, course=course)))

    async def history(self, user_id: str) -> list[dict[str, Any]]:
        """The user's history entries, newest first."""
        return list(reversed(await self.history_store.get_history(user_id)))

    async def view(
        self, r: Reservation, *, rest: Restaurant | None = None, course: Course | None = None
    ) -> dict[str, Any]:
        """The reservation's JSON (``views.reservation_json``) with its course, staff and payment."""
        if rest is None:
            rest = await self.store.get_restaurant(r.store_id)
        if course is None:
            course = await self.reservations.get_course(r.menu_id)
        staff = await self.reservations.get_bookable_staff(r.staff_id)
        payment = await self.reservations.payment_of(r.reservation_id)
        tz = rest.timezone if rest is not None else "UTC"
        return views.reservation_json(r, tz, course=course, staff=staff, payment=payment)

    async def entry_view(self, entry: WaitlistEntry, position: int | None = None) -> dict[str, Any]:
        return views.waitlist_json(entry, await self._tz(entry.store_id), position=position)

    # -- chat ------------------------------------------------------------------------------------------------------
    async def chat(self, user_id: str, text: str, channel: str = "web", store_id: int | None = None) -> ChatAnswer:
        """Answer an availability question from the real availability of ``store_id`` (default: the first
        store, by id) for its shortest bookable course with any staff member (its free ranges are the widest:
        a longer course starts within them), and append both sides to the user's chat log of ``channel``."""
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise BookingRefused("bad_request", f"text must be 1..{MAX_TEXT_CHARS} characters", "text")
        if store_id is None:
            stores = await self.store.list_restaurants()
            if not stores:
                raise RestaurantNotFound(0)
            rest = min(stores, key=lambda s: s.restaurant_id)
        else:
            rest = await self._restaurant(store_id)
        tz = rest.timezone
        lang = detect_language(text)
        question = parse_question(text, self.today(tz), tz)
        answer: ChatAnswer
        if question is None:
            answer = ChatAnswer(help_text(lang), lang)
        else:
            courses = await self.reservations.list_courses(rest.restaurant_id)
            slots: list[Slot] = []
            closed = is_closed(rest.business_hours, question.day)
            if courses:
                shortest = min(courses, key=lambda c: (c.duration, c.sort_order, c.menu_id))
                try:
                    avail = await self.availability(rest.restaurant_id, question.day, shortest.menu_id)
                    slots, closed = avail.slots, avail.closed
                except BookingRefused:
                    slots = []  # too far ahead: nothing bookable
            narrowed = narrow(question, slots)
            ranges = [
                (_clock_text(s, question.day, tz), _clock_text(e, question.day, tz)) for s, e in free_ranges(narrowed)
            ]
            answer = ChatAnswer(reply(question, slots, closed=closed), question.lang, question.day, ranges)
        stamp = views.iso(self.clock.now(), tz)
        await self.history_store.append_chat(
            user_id,
            channel,
            [
                {"timestamp": stamp, "role": "user", "message": text},
                {"timestamp": stamp, "role": "assistant", "message": answer.reply},
            ],
        )
        return answer

    async def chat_log(self, user_id: str, channel: str = "web") -> list[dict[str, Any]]:
        return await self.history_store.get_chat(user_id, channel)

    # -- the restaurant side ---------------------------------------------------------------------------------------
    async def day(self, store_id: int, day: date) -> DayView:
        rest = await self._restaurant(store_id)
        lo = _local_midnight(day, rest.timezone)
        hi = _local_midnight(day + timedelta(days=1), rest.timezone)
        staff = await self.reservations.list_bookable_staff(store_id)
        return DayView(day, rest, staff, await self.reservations.list_store_reservations(store_id, lo, hi))

    async def seat(
        self,
        reservation_id: str,
        table_id: str,
        group_id_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> tuple[Reservation, Table]:
        """A confirmed reservation at a vacant table of its store: the table's sitting opens (occupied, a new
        group and its tab; the party's phones join it with the table's QR) and the reservation is seated.
        Seating again at the same table answers the same. Raises ReservationNotFound, TableNotFound (also a
        table of another store), InvalidTransition (not confirmed), BookingRefused(table_occupied)."""
        r = await self.get(reservation_id)
        table = await self.store.get_table(table_id)
        if table is None or table.restaurant_id != r.store_id:
            raise TableNotFound(table_id)
        if r.status == ReservationStatus.SEATED and r.table_id == table_id:
            return r, table
        if r.status != ReservationStatus.CONFIRMED:
            raise InvalidTransition(f"seat a {r.status} reservation")
        if table.status != TableStatus.VACANT or table.current_group_id is not None:
            raise BookingRefused("table_occupied", "the table is not vacant", "table_id")
        now = self.clock.now()
        group_id = group_id_factory()
        try:
            table = await self.store.open_sitting(table_id, group_id, now)
        except InvalidTransition:  # a phone opened it meanwhile
            raise BookingRefused("table_occupied", "the table is not vacant", "table_id") from None
        try:
            seated = await self.reservations.seat_reservation(reservation_id, table_id, group_id, now)
        except StorageError:
            # The sitting is open but the reservation could not be seated (canceled meanwhile, or the
            # database failed). If nobody joined it yet the table goes back to vacant (its empty tab is closed
            # unpaid); if phones already joined, the sitting is real and stays open for the staff to handle.
            try:
                if not await self.store.live_members(group_id, now):
                    await self.store.reset_table(table_id, now)
            except StorageError as exc:
                log.warning("seat_undo_failed", table_id=table_id, group_id=group_id, error=repr(exc))
            raise
        await self._record(seated)
        return seated, table

    async def no_show(self, reservation_id: str) -> Reservation:
        """confirmed -> no_show, 15 minutes after the start. Raises ReservationNotFound,
        BookingRefused(too_early), InvalidTransition."""
        r = await self.get(reservation_id)
        now = self.clock.now()
        if r.status == ReservationStatus.NO_SHOW:
            return r
        if r.status == ReservationStatus.CONFIRMED and now < r.start_time + NO_SHOW_AFTER_S:
            raise BookingRefused("too_early", "a no-show can be marked 15 minutes after the start")
        r = await self.reservations.mark_no_show(reservation_id, now)
        await self._record(r)
        return r

    async def set_hours(self, store_id: int, hours: Any, tz: str | None = None) -> Restaurant:
        """New business hours (and zone) of the store; every cached day of the store is dropped. Raises
        RestaurantNotFound, InvalidStoreData."""
        rest = await self._restaurant(store_id)
        hours = validate_business_hours(hours)
        zone_name = validate_timezone(tz) if tz is not None else rest.timezone
        updated = replace(rest, business_hours=hours, timezone=zone_name)
        await self.store.upsert_restaurant(updated)
        await self.cache.invalidate(store_id, None)
        got = await self.store.get_restaurant(store_id)
        return got if got is not None else updated


__all__ = [
    "Availability",
    "BookingRefused",
    "ChatAnswer",
    "DayView",
    "InvalidStoreData",
    "ReservationService",
]
