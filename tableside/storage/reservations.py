"""Reservations (seed 003, issue 13): the records and the two small storage interfaces.

``ReservationStore`` keeps what is bookable (bookable staff, courses), reservations, their payments and the
waitlist, in Postgres (``PostgresReservations``) or in memory (``MemoryReservations``); both pass one test
suite. Double booking is refused by the database itself: an exclusion constraint over (staff, time range)
of every reservation that is not canceled (btree_gist), so two concurrent bookings of one slot are decided
by Postgres and the loser gets ``SlotTaken``. ``HistoryStore`` keeps the seed's MongoDB documents
(``reservation_history`` per user, ``chat_logs`` per user and channel) as JSONB documents in Postgres.

Times are epoch seconds (float) like the rest of the storage interface (TIMESTAMP WITH TIME ZONE in
Postgres); money is integer minor units (the seed's DECIMAL(10,2) prices become minor units); ids of the
seed's UUID tables are UUIDs in canonical text form.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from tableside.storage.interface import StorageError


class ReservationStatus(StrEnum):
    PENDING = "pending"  # booked, payment not completed yet: the slot is held until hold_expires_at
    CONFIRMED = "confirmed"  # paid
    CANCELED = "canceled"  # by the customer or staff, a failed payment, or a hold that expired: slot free
    SEATED = "seated"  # the party sits at a table (its sitting is open)
    NO_SHOW = "no_show"  # not seated 15 minutes after its start


HOLDING_STATUSES = (ReservationStatus.PENDING, ReservationStatus.CONFIRMED, ReservationStatus.SEATED,
                    ReservationStatus.NO_SHOW)  # every status but canceled keeps its slot (the constraint)


class PaymentStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class WaitlistStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"  # the slot is held for this customer until offered_until
    ACCEPTED = "accepted"  # booked (reservation_id set)
    EXPIRED = "expired"  # the offer ran out; the next waiting customer is offered the slot
    CANCELED = "canceled"


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
    price: int
    duration: int  # minutes
    bookable: bool = True
    sort_order: int = 0


@dataclass(slots=True)
class Reservation:
    reservation_id: str
    user_id: str
    store_id: int
    staff_id: str
    menu_id: str
    start_time: float
    end_time: float
    status: ReservationStatus
    party_size: int = 2
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
    idempotency_key: str  # what the payment provider dedupes on (the payment id itself)
    created_at: float
    updated_at: float


@dataclass(slots=True)
class WaitlistEntry:
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
    """Another reservation that is not canceled holds that staff member at an overlapping time."""


class ReservationNotFound(StorageError):
    pass


class CourseNotFound(StorageError):
    pass


class BookableStaffNotFound(StorageError):
    pass


class ReservationStore(Protocol):
    # -- what can be booked ----------------------------------------------------------------------
    async def upsert_bookable_staff(self, staff: BookableStaff) -> None: ...
    async def list_bookable_staff(self, store_id: int, *, include_unbookable: bool = False) -> list[BookableStaff]: ...
    async def get_bookable_staff(self, staff_id: str) -> BookableStaff | None: ...
    async def upsert_course(self, course: Course) -> None: ...
    async def list_courses(self, store_id: int, *, include_unbookable: bool = False) -> list[Course]: ...
    async def get_course(self, menu_id: str) -> Course | None: ...

    # -- reservations and payments ----------------------------------------------------------------
    async def book(self, reservation: Reservation, payment: Payment) -> tuple[Reservation, Payment]:
        """Insert the reservation (pending, with its hold) and its pending payment in one transaction.
        SlotTaken when the exclusion constraint refuses it (decided by the database under concurrency)."""

    async def get_reservation(self, reservation_id: str) -> Reservation | None: ...
    async def get_payment(self, payment_id: str) -> Payment | None: ...
    async def payment_of(self, reservation_id: str) -> Payment | None: ...
    async def list_user_reservations(self, user_id: str, *, limit: int = 200) -> list[Reservation]: ...
    async def list_store_reservations(self, store_id: int, start: float, end: float) -> list[Reservation]:
        """Every reservation of the store (any status) starting in [start, end), by start time."""

    async def busy(self, store_id: int, start: float, end: float) -> list[Reservation]:
        """Reservations that hold a slot (not canceled) overlapping [start, end)."""

    async def settle_payment(self, payment_id: str, status: PaymentStatus, now: float) -> tuple[Payment, Reservation]:
        """The provider's outcome, once: completed -> the reservation (still pending) becomes confirmed;
        failed -> it becomes canceled (slot free). A payment already settled is returned unchanged."""

    async def cancel_reservation(self, reservation_id: str, now: float) -> Reservation:
        """pending/confirmed -> canceled (slot free). Already canceled: unchanged. Seated/no_show:
        InvalidTransition."""

    async def expire_holds(self, now: float) -> list[Reservation]:
        """Pending reservations whose hold ran out become canceled (their payment failed)."""

    async def seat_reservation(self, reservation_id: str, table_id: str, group_id: str, now: float) -> Reservation:
        """confirmed -> seated at ``table_id`` (the caller opened the table's sitting ``group_id``)."""

    async def mark_no_show(self, reservation_id: str, now: float) -> Reservation:
        """confirmed -> no_show."""

    # -- waitlist -----------------------------------------------------------------------------------
    async def add_waitlist(self, entry: WaitlistEntry) -> WaitlistEntry: ...
    async def list_user_waitlist(self, user_id: str) -> list[WaitlistEntry]: ...
    async def waiting_for(self, store_id: int, menu_id: str, start_time: float) -> list[WaitlistEntry]:
        """Entries waiting or offered for that slot, oldest first."""

    async def update_waitlist(self, entry: WaitlistEntry) -> None: ...


class HistoryStore(Protocol):
    """The seed's MongoDB documents, as JSONB documents in Postgres (one row per user / user+channel)."""

    async def append_history(self, user_id: str, entry: dict[str, Any]) -> None: ...
    async def get_history(self, user_id: str) -> list[dict[str, Any]]: ...
    async def append_chat(self, user_id: str, channel: str, entries: list[dict[str, Any]]) -> None: ...
    async def get_chat(self, user_id: str, channel: str) -> list[dict[str, Any]]: ...


