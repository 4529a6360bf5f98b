"""Reservations (seed 003, issue 13): the records and the two small storage interfaces.

``ReservationStore`` keeps what is bookable (bookable staff, courses), reservations, their payments and the
waitlist, in Postgres (``PostgresReservations``) or in memory (``MemoryReservations``); both pass one test
suite. Double booking is refused by the database itself: an exclusion constraint over (staff, time range)
of every reservation that is not canceled (btree_gist), so two concurrent bookings of one slot are decided
by Postgres and the loser gets ``SlotTaken`` (``reservations_postgres.py`` says how concurrent bookings of one
staff member are ordered so that they never deadlock). ``HistoryStore`` keeps the seed's MongoDB documents
(``reservation_history`` per user, ``chat_logs`` per user and channel) as JSONB documents in Postgres.

Times are epoch seconds (float) like the rest of the storage interface (TIMESTAMP WITH TIME ZONE in
Postgres, so microsecond precision); money is integer minor units (the seed's DECIMAL(10,2) prices become
minor units); ids of the seed's UUID tables are UUIDs in canonical (lower-case) text form; store ids are the
integer ``stores.store_id``.

Every record returned is a copy: changing it changes nothing stored. Every constraint of the Postgres schema
(``schema.py``: foreign keys, CHECKs, unique keys, the exclusion constraint) is modelled exactly by the memory
implementation, and every refusal is a typed ``StorageError`` (listed per method), never a driver exception.
``MemoryReservations`` / ``MemoryHistory`` take the ``MemoryStore`` whose stores and users they refer to;
``PostgresReservations`` / ``PostgresHistory`` take the ``AsyncEngine`` of a ``PostgresStore``
(``PostgresStore.engine``). A database that is down is ``StorageUnavailable``, as everywhere in storage.

Status transitions of a reservation (anything else is ``InvalidTransition`` from ``interface.py``)::

    pending   -> confirmed   settle_payment(completed)
    pending   -> canceled    settle_payment(failed), cancel_reservation, expire_holds
    confirmed -> canceled    cancel_reservation
    confirmed -> seated      seat_reservation
    confirmed -> no_show     mark_no_show (at or after start_time + NO_SHOW_AFTER_S)

Repeating a transition that already happened (cancel a canceled reservation, seat it again at the same table
and sitting, mark a no-show again, settle a settled payment) returns the record unchanged: callers retry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from tableside.storage.codec import dumps
from tableside.storage.interface import StorageError


class ReservationStatus(StrEnum):
    PENDING = "pending"  # booked, payment not completed yet: the slot is held until hold_expires_at
    CONFIRMED = "confirmed"  # paid
    CANCELED = "canceled"  # by the customer or staff, a failed payment, or a hold that expired: slot free
    SEATED = "seated"  # the party sits at a table (its sitting is open)
    NO_SHOW = "no_show"  # not seated 15 minutes after its start


NO_SHOW_AFTER_S = 15 * 60  # a confirmed reservation not seated this long after its start may be marked no_show
HISTORY_MAX_ENTRIES = 500  # reservation_history keeps the newest this many entries per user
CHAT_MAX_ENTRIES = 1000  # chat_logs keeps the newest this many entries per user and channel
CHANNEL_MAX_LEN = 32  # chat_logs.channel is VARCHAR(32)
PARTY_SIZE_RANGE = (1, 50)  # CHECK party_size BETWEEN 1 AND 50
DURATION_RANGE = (1, 1440)  # CHECK duration BETWEEN 1 AND 1440 (minutes)
NAME_MAX_LEN = 255  # staff.name, menus.name: VARCHAR(255)
ROLE_MAX_LEN = 50  # staff.role: VARCHAR(50)

HOLDING_STATUSES = (ReservationStatus.PENDING, ReservationStatus.CONFIRMED, ReservationStatus.SEATED,
                    ReservationStatus.NO_SHOW)  # every status but canceled keeps its slot (the constraint)


class PaymentStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class WaitlistStatus(StrEnum):
    """waiting and offered are *open*: a customer has at most one open entry per (store, course, start time).

    The store only records an offer: it does not keep anyone else from booking the slot meanwhile. To hold
    the slot for the offered customer, the caller books it for them (a pending reservation whose
    ``hold_expires_at`` is ``offered_until``), which the exclusion constraint then protects like any other."""

    WAITING = "waiting"
    OFFERED = "offered"  # the slot is offered to this customer until offered_until
    ACCEPTED = "accepted"  # booked (reservation_id set)
    EXPIRED = "expired"  # the offer ran out; the next waiting customer is offered the slot
    CANCELED = "canceled"


OPEN_WAITLIST_STATUSES = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)


@dataclass(slots=True)
class BookableStaff:
    """The seed's ``staff``: a person a reservation is made with (chef, sommelier...). Not a login."""

    staff_id: str
    store_id: int
    name: str
    role: str
    bookable: bool = True
    created_at: float = 0.0


@dataclass(slots=True)
class Course:
    """The seed's ``menus``: a bookable course with a price and how long it takes."""

    menu_id: str
    store_id: int
    name: str
    price: int  # minor units, >= 0
    duration: int  # minutes, 1..1440
    bookable: bool = True
    sort_order: int = 0


@dataclass(slots=True)
class Reservation:
    """The seed's ``reservations`` row. ``end_time`` is ``start_time`` + the course's duration (checked by
    ``book``); the slot it holds is the half-open ``[start_time, end_time)``, so a reservation ending at 14:00
    and one starting at 14:00 do not overlap. ``notes`` "" is stored as NULL and read back as ""."""

    reservation_id: str
    user_id: str
    store_id: int
    staff_id: str
    menu_id: str
    start_time: float
    end_time: float
    status: ReservationStatus
    party_size: int = 2  # 1..50
    notes: str = ""
    table_id: str | None = None
    group_id: str | None = None  # the sitting opened when seated
    hold_expires_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(slots=True)
class Payment:
    payment_id: str
    reservation_id: str
    user_id: str
    amount: int
    status: PaymentStatus
    idempotency_key: str  # what the payment provider dedupes on (e.g. the payment id itself); unique
    created_at: float
    updated_at: float


@dataclass(slots=True)
class WaitlistEntry:
    """A customer waiting for a slot (store, course, start time, optionally one staff member: ``staff_id``
    None means anyone). ``entry_id`` is assigned by ``add_waitlist`` (1, 2, ... ; the value passed is
    ignored). ``staff_id``, ``offered_staff_id`` and ``reservation_id`` are not foreign keys."""

    entry_id: int
    user_id: str
    store_id: int
    menu_id: str
    start_time: float
    status: WaitlistStatus
    created_at: float
    staff_id: str | None = None
    offered_until: float | None = None
    offered_staff_id: str | None = None
    reservation_id: str | None = None


class SlotTaken(StorageError):
    """Another reservation that is not canceled holds that staff member at an overlapping time (the exclusion
    constraint ``ex_reservations_staff_time``; the server's 409 ``slot_taken``)."""


class ReservationNotFound(StorageError):
    pass


class PaymentNotFound(StorageError):
    pass


class CourseNotFound(StorageError):
    """No such course, or (when booking) not of the reservation's store or not bookable."""


class BookableStaffNotFound(StorageError):
    """No such staff member, or (when booking) not of the reservation's store or not bookable."""


class UserNotFound(StorageError):
    """The customer (``users.id``) a reservation, payment, waitlist entry or document refers to does not exist."""


class WaitlistEntryNotFound(StorageError):
    pass


class AlreadyWaiting(StorageError):
    """The customer already has an open (waiting or offered) entry for that slot (``uq_waitlist_open_entry``)."""


class InvalidReservationData(StorageError):
    """A value the schema's CHECKs or column sizes refuse (party size, duration, price, amount, end before
    start, a name too long...), or a booking whose parts do not fit together (end_time not start_time +
    the course's duration, a payment of another reservation or user, a status other than pending)."""


def _bad(message: str) -> InvalidReservationData:
    return InvalidReservationData(message)


def canonical_uuid(value: str, what: str) -> str:
    """``value`` as Postgres prints a UUID (lower case, hyphenated); InvalidReservationData if it is none."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise _bad(f"{what} must be a UUID") from None


def parse_uuid(value: str) -> str | None:
    """``value`` in canonical form, or None when it is not a UUID (lookups of such an id find nothing)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def validate_staff(staff: BookableStaff) -> None:
    """The CHECKs and column sizes of ``staff`` (both implementations call this before writing)."""
    if not staff.name or len(staff.name) > NAME_MAX_LEN:
        raise _bad(f"staff name must be 1..{NAME_MAX_LEN} characters")
    if len(staff.role) > ROLE_MAX_LEN:
        raise _bad(f"staff role must be at most {ROLE_MAX_LEN} characters")


def validate_course(course: Course) -> None:
    """The CHECKs and column sizes of ``menus``."""
    if not course.name or len(course.name) > NAME_MAX_LEN:
        raise _bad(f"course name must be 1..{NAME_MAX_LEN} characters")
    if not DURATION_RANGE[0] <= course.duration <= DURATION_RANGE[1]:
        raise _bad(f"course duration must be {DURATION_RANGE[0]}..{DURATION_RANGE[1]} minutes")
    if course.price < 0:
        raise _bad("course price must not be negative")


def validate_booking(reservation: Reservation, payment: Payment) -> None:
    """What ``book`` checks before looking anything up (see ``ReservationStore.book``)."""
    r, p = reservation, payment
    if r.status != ReservationStatus.PENDING:
        raise _bad("a new reservation is pending")
    if not PARTY_SIZE_RANGE[0] <= r.party_size <= PARTY_SIZE_RANGE[1]:
        raise _bad(f"party_size must be {PARTY_SIZE_RANGE[0]}..{PARTY_SIZE_RANGE[1]}")
    if not r.end_time > r.start_time:
        raise _bad("end_time must be after start_time")
    if p.status != PaymentStatus.PENDING:
        raise _bad("a new payment is pending")
    if p.reservation_id != r.reservation_id or p.user_id != r.user_id:
        raise _bad("the payment must be the reservation's, by its user")
    if p.amount < 0:
        raise _bad("payment amount must not be negative")
    if not p.idempotency_key:
        raise _bad("payment idempotency_key must not be empty")


def validate_duration(reservation: Reservation, course: Course) -> None:
    if abs((reservation.end_time - reservation.start_time) - course.duration * 60) > 1e-6:
        raise _bad("end_time must be start_time + the course's duration")


def encode_entries(entries: list[dict[str, Any]]) -> str:
    """The JSON text of history/chat entries (a JSON array); InvalidReservationData if they are not JSON
    objects (NaN and Infinity are refused, as jsonb refuses them)."""
    if not all(isinstance(e, dict) for e in entries):
        raise _bad("history and chat entries are JSON objects")
    try:
        return dumps(entries)
    except (TypeError, ValueError) as exc:
        raise _bad(f"history and chat entries must be JSON: {exc}") from None


def validate_channel(channel: str) -> None:
    if not channel or len(channel) > CHANNEL_MAX_LEN:
        raise _bad(f"chat channel must be 1..{CHANNEL_MAX_LEN} characters")


class ReservationStore(Protocol):
    """Bookable staff, courses, reservations, payments and the waitlist (see the module docstring)."""

    # -- what can be booked ----------------------------------------------------------------------
    async def upsert_bookable_staff(self, staff: BookableStaff) -> None:
        """Insert or replace (by ``staff_id``) every field; ``created_at`` is kept from the first insert.
        Raises RestaurantNotFound (no such store), InvalidReservationData (name > 255 or role > 50
        characters, empty name)."""

    async def list_bookable_staff(self, store_id: int, *, include_unbookable: bool = False) -> list[BookableStaff]:
        """The store's staff (bookable ones only unless ``include_unbookable``), by name then staff_id. An
        unknown store has none."""

    async def get_bookable_staff(self, staff_id: str) -> BookableStaff | None:
        """None for an unknown id (also one that is not a UUID)."""

    async def upsert_course(self, course: Course) -> None:
        """Insert or replace (by ``menu_id``) every field. Raises RestaurantNotFound, InvalidReservationData
        (duration outside 1..1440, negative price, empty name or longer than 255)."""

    async def list_courses(self, store_id: int, *, include_unbookable: bool = False) -> list[Course]:
        """The store's courses (bookable ones only unless ``include_unbookable``), by sort_order, name,
        menu_id."""

    async def get_course(self, menu_id: str) -> Course | None:
        """None for an unknown id (also one that is not a UUID)."""

    # -- reservations and payments ----------------------------------------------------------------
    async def book(self, reservation: Reservation, payment: Payment) -> tuple[Reservation, Payment]:
        """Insert the reservation and its payment in one transaction and return both as stored.

        The caller fills in everything: new UUIDs, ``status`` pending, ``hold_expires_at`` (when the unpaid
        hold runs out), ``created_at`` = ``updated_at`` = now, and a pending payment whose
        ``reservation_id`` / ``user_id`` are the reservation's.

        Checked, in this order: the values (InvalidReservationData: status not pending, party_size outside
        1..50, end_time not start_time + the course's duration, payment not pending or of another
        reservation/user, negative amount); the staff member exists, is of the reservation's store and is
        bookable (BookableStaffNotFound); the course likewise (CourseNotFound); the user exists
        (UserNotFound); no reservation that is not canceled holds that staff member at an overlapping time
        (SlotTaken: in Postgres decided by the exclusion constraint, so of concurrent bookings of one slot
        exactly one succeeds). An id or idempotency key already used is a plain StorageError. On any error
        nothing is stored."""

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        """None for an unknown id (also one that is not a UUID)."""

    async def get_payment(self, payment_id: str) -> Payment | None:
        """None for an unknown id (also one that is not a UUID)."""

    async def payment_of(self, reservation_id: str) -> Payment | None:
        """The reservation's payment (the one ``book`` stored), or None."""

    async def list_user_reservations(self, user_id: str, *, limit: int = 200) -> list[Reservation]:
        """The user's reservations (any status), newest start_time first, at most ``limit``."""

    async def list_store_reservations(self, store_id: int, start: float, end: float) -> list[Reservation]:
        """Every reservation of the store (any status) starting in [start, end), by start time then
        reservation_id (the staff console's day timeline)."""

    async def busy(self, store_id: int, start: float, end: float) -> list[Reservation]:
        """The store's reservations that hold a slot (not canceled) overlapping [start, end) (that is
        ``start_time < end and end_time > start``), by start time then reservation_id: what availability
        subtracts."""

    async def settle_payment(self, payment_id: str, status: PaymentStatus, now: float) -> tuple[Payment, Reservation]:
        """The provider's outcome, recorded once (``status`` completed or failed, else
        InvalidReservationData; PaymentNotFound for an unknown payment).

        A pending payment takes ``status`` (``updated_at`` = now) and its reservation follows, if it is still
        pending: completed -> confirmed, failed -> canceled (slot free); either way its ``hold_expires_at`` is
        cleared and ``updated_at`` = now. A reservation that is no longer pending (canceled by the customer or
        by expire_holds meanwhile) is left as it is: a payment completed for a canceled reservation is
        recorded as completed, and refunding it is the caller's business. A payment already settled is
        returned unchanged (with its reservation), whatever ``status`` says now."""

    async def cancel_reservation(self, reservation_id: str, now: float) -> Reservation:
        """pending/confirmed -> canceled (slot free), ``hold_expires_at`` cleared, ``updated_at`` = now. Already
        canceled: unchanged. Seated/no_show: InvalidTransition. ReservationNotFound. The payment is not
        touched (a pending one is still settled by the provider's outcome; refunds are the caller's)."""

    async def expire_holds(self, now: float) -> list[Reservation]:
        """Pending reservations whose hold ran out (``hold_expires_at <= now``) become canceled (slot free,
        hold cleared, ``updated_at`` = now); returned as changed, by start time then reservation_id. Their
        payments are not touched: a late completion is still recorded by settle_payment (and refunded by the
        caller)."""

    async def seat_reservation(self, reservation_id: str, table_id: str, group_id: str, now: float) -> Reservation:
        """confirmed -> seated at ``table_id`` (the caller opened the table's sitting ``group_id``),
        ``updated_at`` = now. Already seated at that table and sitting: unchanged. Anything else
        (pending, canceled, no_show, seated elsewhere): InvalidTransition. ReservationNotFound."""

    async def mark_no_show(self, reservation_id: str, now: float) -> Reservation:
        """confirmed -> no_show, only once ``now >= start_time + NO_SHOW_AFTER_S`` (earlier:
        InvalidTransition); ``updated_at`` = now. Already no_show: unchanged. Other statuses:
        InvalidTransition. ReservationNotFound. A no-show keeps its slot (the time has passed anyway)."""

    # -- waitlist -----------------------------------------------------------------------------------
    async def add_waitlist(self, entry: WaitlistEntry) -> WaitlistEntry:
        """Store a new entry (its ``status`` must be waiting, else InvalidReservationData) and return it
        with its assigned ``entry_id``. Raises UserNotFound, RestaurantNotFound, CourseNotFound (no such
        course, or of another store), AlreadyWaiting (the user has an open entry for that slot)."""

    async def get_waitlist_entry(self, entry_id: int) -> WaitlistEntry | None: ...

    async def list_user_waitlist(self, user_id: str) -> list[WaitlistEntry]:
        """Every entry of the user (any status), oldest first (created_at, then entry_id)."""

    async def waiting_for(self, store_id: int, menu_id: str, start_time: float) -> list[WaitlistEntry]:
        """Open entries (waiting or offered) for that slot, oldest first (created_at, then entry_id): the
        order in which the slot is offered."""

    async def update_waitlist(self, entry: WaitlistEntry) -> None:
        """Write the mutable fields of the entry with that ``entry_id``: status, offered_until,
        offered_staff_id, reservation_id (the others are ignored). Raises WaitlistEntryNotFound,
        AlreadyWaiting (reopening an entry while the user has another open one for the slot)."""


class HistoryStore(Protocol):
    """The seed's MongoDB documents, as JSONB documents in Postgres (one row per user / user+channel).

    ``reservation_history``: one document ``{"history": [...]}`` per user; ``chat_logs``: one array of entries
    per user and channel (the seed's ``logs``). Entries are JSON objects chosen by the caller (the seed's
    shapes: history ``{"reservation_id", "store", "menu", "date", "status"}``, chat ``{"timestamp", "role",
    "message"}``); they are stored and returned as given (a copy), oldest first. Appending is one atomic
    statement (concurrent appends all land) and keeps only the newest HISTORY_MAX_ENTRIES /
    CHAT_MAX_ENTRIES entries. Deleting a user deletes their documents."""

    async def append_history(self, user_id: str, entry: dict[str, Any]) -> None:
        """Append one entry. Raises UserNotFound."""

    async def get_history(self, user_id: str) -> list[dict[str, Any]]:
        """The user's history entries, oldest first; [] when there are none."""

    async def append_chat(self, user_id: str, channel: str, entries: list[dict[str, Any]]) -> None:
        """Append the entries, in order (e.g. the user's message and the answer). Raises UserNotFound,
        InvalidReservationData (channel empty or longer than CHANNEL_MAX_LEN). No entries: nothing happens."""

    async def get_chat(self, user_id: str, channel: str) -> list[dict[str, Any]]:
        """The entries of that user and channel, oldest first; [] when there are none."""
