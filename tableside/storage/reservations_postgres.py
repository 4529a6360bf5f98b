"""``ReservationStore`` and ``HistoryStore`` on PostgreSQL (SQLAlchemy 2 Core, async, asyncpg).

Both take the ``AsyncEngine`` of a ``PostgresStore`` (``PostgresStore.engine``): one pool, one outage
translation (a database that is down is ``StorageUnavailable``, see ``postgres._unavailable_error``).

No double booking is the exclusion constraint ``ex_reservations_staff_time`` (schema.py): ``book`` inserts
and lets Postgres decide; SQLSTATE 23P01 becomes ``SlotTaken``. Concurrent bookings of one slot queue on the
first one's row and fail when it commits. Left alone, two concurrent inserts that conflict can each find
the other's not yet committed row and wait for each other (a deadlock Postgres breaks by aborting one, after
``deadlock_timeout``; with many overlapping bookings of one staff member this happens all the time). So a
booking first takes a transaction-scoped advisory lock of its staff member (``BOOKING_LOCK_KEY``,
``hashtext(staff_id)``): bookings of one staff member insert one after the other, each sees the previous
one committed, and the constraint refuses or accepts at once. The lock only orders; what refuses is still
the constraint (which also covers any writer that does not take the lock). A deadlock or serialization
failure all the same (SQLSTATE 40P01 / 40001) rolls the booking back whole and it is retried from the start
after a short random pause (up to ``_BOOK_ATTEMPTS`` times).

Row locks are always taken reservation first, then its payment, so settle_payment, cancel_reservation,
expire_holds, seat_reservation and mark_no_show serialise per reservation without deadlocking.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tableside.config import first_line
from tableside.storage import schema as s
from tableside.storage.interface import InvalidTransition, RestaurantNotFound, StorageError
from tableside.storage.postgres import _Opening, _unavailable_error
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

_R = s.reservations
_P = s.payments
_W = s.waitlist

_RETRY_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure
_BOOK_ATTEMPTS = 5
BOOKING_LOCK_KEY = 0x72657376  # "resv": pg_advisory_xact_lock(BOOKING_LOCK_KEY, hashtext(staff_id))


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _opt_ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else _ts(epoch)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_uuid(value: str | None, what: str) -> str | None:
    return None if value is None else canonical_uuid(value, what)


def _sqlstate(exc: DBAPIError) -> str | None:
    for e in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if code:
            return str(code)
    return None


def _constraint(exc: DBAPIError) -> str:
    name = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
    return str(name) if name else str(exc.orig)


def _check_violation(exc: IntegrityError) -> StorageError:
    return InvalidReservationData(f"refused by the schema: {first_line(exc.orig or exc)}")


def _staff(row: Any) -> BookableStaff:
    m = row._mapping
    return BookableStaff(
        staff_id=str(m["id"]),
        store_id=m["store_id"],
        name=m["name"],
        role=m["role"],
        bookable=m["bookable"],
        created_at=m["created_at"].timestamp(),
    )


def _course(row: Any) -> Course:
    m = row._mapping
    return Course(
        menu_id=str(m["id"]),
        store_id=m["store_id"],
        name=m["name"],
        price=m["price"],
        duration=m["duration"],
        bookable=m["bookable"],
        sort_order=m["sort_order"],
    )


def _reservation(row: Any) -> Reservation:
    m = row._mapping
    return Reservation(
        reservation_id=str(m["id"]),
        user_id=str(m["user_id"]),
        store_id=m["store_id"],
        staff_id=str(m["staff_id"]),
        menu_id=str(m["menu_id"]),
        start_time=m["start_time"].timestamp(),
        end_time=m["end_time"].timestamp(),
        status=ReservationStatus(m["status"]),
        party_size=m["party_size"],
        notes=m["notes"] or "",
        table_id=m["table_id"],
        group_id=m["group_id"],
        hold_expires_at=_epoch(m["hold_expires_at"]),
        created_at=m["created_at"].timestamp(),
        updated_at=m["updated_at"].timestamp(),
    )


def _payment(row: Any) -> Payment:
    m = row._mapping
    return Payment(
        payment_id=str(m["id"]),
        reservation_id=str(m["reservation_id"]),
        user_id=str(m["user_id"]),
        amount=m["amount"],
        status=PaymentStatus(m["status"]),
        idempotency_key=m["idempotency_key"],
        created_at=m["created_at"].timestamp(),
        updated_at=m["updated_at"].timestamp(),
    )


def _entry(row: Any) -> WaitlistEntry:
    m = row._mapping
    return WaitlistEntry(
        entry_id=m["id"],
        user_id=str(m["user_id"]),
        store_id=m["store_id"],
        menu_id=str(m["menu_id"]),
        start_time=m["start_time"].timestamp(),
        status=WaitlistStatus(m["status"]),
        created_at=m["created_at"].timestamp(),
        staff_id=_opt_str(m["staff_id"]),
        offered_until=_epoch(m["offered_until"]),
        offered_staff_id=_opt_str(m["offered_staff_id"]),
        reservation_id=_opt_str(m["reservation_id"]),
    )


# What book checks before inserting, in one round trip: the staff member's and the course's store and
# bookable flag, the course's duration, whether the user exists.
_BOOK_CHECK = sa.text(
    """
SELECT st.store_id AS staff_store, st.bookable AS staff_bookable,
       m.store_id AS menu_store, m.bookable AS menu_bookable, m.duration, m.name, m.price, m.sort_order,
       EXISTS (SELECT 1 FROM users WHERE id = CAST(:user_id AS uuid)) AS user_exists
FROM (SELECT 1) AS one
LEFT JOIN staff AS st ON st.id = CAST(:staff_id AS uuid)
LEFT JOIN menus AS m ON m.id = CAST(:menu_id AS uuid)
"""
)

_WAITLIST_CHECK = sa.text(
    """
SELECT EXISTS (SELECT 1 FROM users WHERE id = CAST(:user_id AS uuid)) AS user_exists,
       EXISTS (SELECT 1 FROM stores WHERE store_id = :store_id) AS store_exists,
       (SELECT store_id FROM menus WHERE id = CAST(:menu_id AS uuid)) AS menu_store
"""
)


class _Base:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        if not sa.event.contains(engine.sync_engine, "handle_error", _unavailable_error):
            sa.event.listen(engine.sync_engine, "handle_error", _unavailable_error)

    def _begin(self) -> _Opening:
        return _Opening(self.engine.begin())

    def _read(self) -> _Opening:
        return _Opening(self.engine.connect())

    async def _one(self, stmt: sa.Executable, params: dict[str, Any] | None = None) -> Any:
        async with self._read() as conn:
            return (await conn.execute(stmt, params or {})).first()

    async def _all(self, stmt: sa.Executable) -> Sequence[Any]:
        async with self._read() as conn:
            return (await conn.execute(stmt)).all()


class PostgresReservations(_Base):
    """``ReservationStore`` on the engine of a ``PostgresStore`` (see the module docstring)."""

    # -- what can be booked ----------------------------------------------------------------------

    async def upsert_bookable_staff(self, staff: BookableStaff) -> None:
        staff_id = canonical_uuid(staff.staff_id, "staff_id")
        validate_staff(staff)
        values = {"store_id": staff.store_id, "name": staff.name, "role": staff.role, "bookable": staff.bookable}
        stmt = (
            pg_insert(s.staff)
            .values(id=staff_id, created_at=_ts(staff.created_at), **values)
            .on_conflict_do_update(index_elements=[s.staff.c.id], set_=values)
        )
        try:
            async with self._begin() as conn:
                await conn.execute(stmt)
        except IntegrityError as e:
            if _sqlstate(e) == "23503":
                raise RestaurantNotFound(f"store {staff.store_id}") from e
            raise _check_violation(e) from e

    async def list_bookable_staff(self, store_id: int, *, include_unbookable: bool = False) -> list[BookableStaff]:
        q = sa.select(s.staff).where(s.staff.c.store_id == store_id).order_by(s.staff.c.name, s.staff.c.id)
        if not include_unbookable:
            q = q.where(s.staff.c.bookable)
        return [_staff(r) for r in await self._all(q)]

    async def get_bookable_staff(self, staff_id: str) -> BookableStaff | None:
        key = parse_uuid(staff_id)
        if key is None:
            return None
        row = await self._one(sa.select(s.staff).where(s.staff.c.id == key))
        return None if row is None else _staff(row)

    async def upsert_course(self, course: Course) -> None:
        menu_id = canonical_uuid(course.menu_id, "menu_id")
        validate_course(course)
        values = {
            "store_id": course.store_id,
            "name": course.name,
            "price": course.price,
            "duration": course.duration,
            "bookable": course.bookable,
            "sort_order": course.sort_order,
        }
        stmt = (
            pg_insert(s.menus)
            .values(id=menu_id, **values)
            .on_conflict_do_update(index_elements=[s.menus.c.id], set_=values)
        )
        try:
            async with self._begin() as conn:
                await conn.execute(stmt)
        except IntegrityError as e:
            if _sqlstate(e) == "23503":
                raise RestaurantNotFound(f"store {course.store_id}") from e
            raise _check_violation(e) from e

    async def list_courses(self, store_id: int, *, include_unbookable: bool = False) -> list[Course]:
        c = s.menus.c
        q = sa.select(s.menus).where(c.store_id == store_id).order_by(c.sort_order, c.name, c.id)
        if not include_unbookable:
            q = q.where(c.bookable)
        return [_course(r) for r in await self._all(q)]

    async def get_course(self, menu_id: str) -> Course | None:
        key = parse_uuid(menu_id)
        if key is None:
            return None
        row = await self._one(sa.select(s.menus).where(s.menus.c.id == key))
        return None if row is None else _course(row)

    # -- reservations and payments ----------------------------------------------------------------

    async def book(self, reservation: Reservation, payment: Payment) -> tuple[Reservation, Payment]:
        r, p = reservation, payment
        rid = canonical_uuid(r.reservation_id, "reservation_id")
        uid = canonical_uuid(r.user_id, "user_id")
        staff_id = canonical_uuid(r.staff_id, "staff_id")
        menu_id = canonical_uuid(r.menu_id, "menu_id")
        pid = canonical_uuid(p.payment_id, "payment_id")
        p_rid = canonical_uuid(p.reservation_id, "reservation_id")
        p_uid = canonical_uuid(p.user_id, "user_id")
        validate_booking(replace(r, reservation_id=rid, user_id=uid), replace(p, reservation_id=p_rid, user_id=p_uid))
        res_values = {
            "id": rid,
            "user_id": uid,
            "store_id": r.store_id,
            "staff_id": staff_id,
            "menu_id": menu_id,
            "start_time": _ts(r.start_time),
            "end_time": _ts(r.end_time),
            "status": ReservationStatus.PENDING.value,
            "notes": r.notes or None,
            "party_size": r.party_size,
            "table_id": r.table_id,
            "group_id": r.group_id,
            "hold_expires_at": _opt_ts(r.hold_expires_at),
            "created_at": _ts(r.created_at),
            "updated_at": _ts(r.updated_at),
        }
        pay_values = {
            "id": pid,
            "reservation_id": rid,
            "user_id": uid,
            "amount": p.amount,
            "status": PaymentStatus.PENDING.value,
            "idempotency_key": p.idempotency_key,
            "created_at": _ts(p.created_at),
            "updated_at": _ts(p.updated_at),
        }
        for attempt in range(_BOOK_ATTEMPTS):
            try:
                async with self._begin() as conn:
                    check = (
                        await conn.execute(_BOOK_CHECK, {"user_id": uid, "staff_id": staff_id, "menu_id": menu_id})
                    ).one()._mapping
                    if check["staff_store"] != r.store_id or not check["staff_bookable"]:
                        raise BookableStaffNotFound(f"staff {staff_id} of store {r.store_id}")
                    if check["menu_store"] != r.store_id or not check["menu_bookable"]:
                        raise CourseNotFound(f"course {menu_id} of store {r.store_id}")
                    validate_duration(
                        r,
                        Course(menu_id, r.store_id, check["name"], check["price"], check["duration"],
                               True, check["sort_order"]),
                    )
                    if not check["user_exists"]:
                        raise UserNotFound(f"user {uid}")
                    await conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:k, hashtext(:staff_id))"),
                        {"k": BOOKING_LOCK_KEY, "staff_id": staff_id},
                    )
                    res_row = (await conn.execute(sa.insert(_R).values(**res_values).returning(*_R.c))).one()
                    pay_row = (await conn.execute(sa.insert(_P).values(**pay_values).returning(*_P.c))).one()
                return _reservation(res_row), _payment(pay_row)
            except IntegrityError as e:
                raise self._booking_error(e) from e
            except DBAPIError as e:
                if _sqlstate(e) not in _RETRY_SQLSTATES or attempt == _BOOK_ATTEMPTS - 1:
                    raise
                # Rolled back whole: try again from the start, after a short random pause so the bookings
                # that deadlocked do not meet again in step.
                await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        raise AssertionError("unreachable")

    @staticmethod
    def _booking_error(e: IntegrityError) -> StorageError:
        code, name = _sqlstate(e), _constraint(e)
        if code == "23P01":
            return SlotTaken("that staff member is booked at an overlapping time")
        if code == "23503":  # a row deleted concurrently with the booking
            if "staff_id" in name:
                return BookableStaffNotFound(name)
            if "menu_id" in name:
                return CourseNotFound(name)
            if "store_id" in name:
                return RestaurantNotFound(name)
            return UserNotFound(name)
        if code == "23514":
            return _check_violation(e)
        return StorageError(f"booking refused: {first_line(e.orig or e)}")

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        key = parse_uuid(reservation_id)
        if key is None:
            return None
        row = await self._one(sa.select(_R).where(_R.c.id == key))
        return None if row is None else _reservation(row)

    async def get_payment(self, payment_id: str) -> Payment | None:
        key = parse_uuid(payment_id)
        if key is None:
            return None
        row = await self._one(sa.select(_P).where(_P.c.id == key))
        return None if row is None else _payment(row)

    async def payment_of(self, reservation_id: str) -> Payment | None:
        key = parse_uuid(reservation_id)
        if key is None:
            return None
        row = await self._one(
            sa.select(_P).where(_P.c.reservation_id == key).order_by(_P.c.created_at, _P.c.id).limit(1)
        )
        return None if row is None else _payment(row)

    async def list_user_reservations(self, user_id: str, *, limit: int = 200) -> list[Reservation]:
        key = parse_uuid(user_id)
        if key is None:
            return []
        q = (
            sa.select(_R)
            .where(_R.c.user_id == key)
            .order_by(_R.c.start_time.desc(), _R.c.id.desc())
            .limit(max(limit, 0))
        )
        return [_reservation(r) for r in await self._all(q)]

    async def list_store_reservations(self, store_id: int, start: float, end: float) -> list[Reservation]:
        q = (
            sa.select(_R)
            .where(_R.c.store_id == store_id, _R.c.start_time >= _ts(start), _R.c.start_time < _ts(end))
            .order_by(_R.c.start_time, _R.c.id)
        )
        return [_reservation(r) for r in await self._all(q)]

    async def busy(self, store_id: int, start: float, end: float) -> list[Reservation]:
        q = (
            sa.select(_R)
            .where(
                _R.c.store_id == store_id,
                _R.c.status != ReservationStatus.CANCELED.value,
                _R.c.start_time < _ts(end),
                _R.c.end_time > _ts(start),
            )
            .order_by(_R.c.start_time, _R.c.id)
        )
        return [_reservation(r) for r in await self._all(q)]

    @staticmethod
    async def _lock(conn: AsyncConnection, reservation_id: str) -> Reservation:
        key = parse_uuid(reservation_id)
        row = None
        if key is not None:
            row = (await conn.execute(sa.select(_R).where(_R.c.id == key).with_for_update())).first()
        if row is None:
            raise ReservationNotFound(reservation_id)
        return _reservation(row)

    @staticmethod
    async def _set(conn: AsyncConnection, reservation_id: str, values: dict[str, Any]) -> Reservation:
        row = (
            await conn.execute(sa.update(_R).where(_R.c.id == reservation_id).values(**values).returning(*_R.c))
        ).one()
        return _reservation(row)

    async def settle_payment(self, payment_id: str, status: PaymentStatus, now: float) -> tuple[Payment, Reservation]:
        if status not in (PaymentStatus.COMPLETED, PaymentStatus.FAILED):
            raise InvalidReservationData("a payment settles as completed or failed")
        key = parse_uuid(payment_id)
        async with self._begin() as conn:
            rid = None
            if key is not None:
                rid = (await conn.execute(sa.select(_P.c.reservation_id).where(_P.c.id == key))).scalar()
            if rid is None:
                raise PaymentNotFound(payment_id)
            r = await self._lock(conn, str(rid))  # reservation first, then its payment (one lock order)
            p = _payment((await conn.execute(sa.select(_P).where(_P.c.id == key).with_for_update())).one())
            if p.status != PaymentStatus.PENDING:
                return p, r
            p = _payment(
                (
                    await conn.execute(
                        sa.update(_P)
                        .where(_P.c.id == key)
                        .values(status=PaymentStatus(status).value, updated_at=_ts(now))
                        .returning(*_P.c)
                    )
                ).one()
            )
            if r.status == ReservationStatus.PENDING:
                new = ReservationStatus.CONFIRMED if status == PaymentStatus.COMPLETED else ReservationStatus.CANCELED
                r = await self._set(
                    conn, r.reservation_id, {"status": new.value, "hold_expires_at": None, "updated_at": _ts(now)}
                )
            return p, r

    async def cancel_reservation(self, reservation_id: str, now: float) -> Reservation:
        async with self._begin() as conn:
            r = await self._lock(conn, reservation_id)
            if r.status == ReservationStatus.CANCELED:
                return r
            if r.status not in (ReservationStatus.PENDING, ReservationStatus.CONFIRMED):
                raise InvalidTransition(f"a {r.status} reservation cannot be canceled")
            return await self._set(
                conn,
                r.reservation_id,
                {"status": ReservationStatus.CANCELED.value, "hold_expires_at": None, "updated_at": _ts(now)},
            )

    async def expire_holds(self, now: float) -> list[Reservation]:
        due = (
            sa.select(_R.c.id)
            .where(_R.c.status == ReservationStatus.PENDING.value, _R.c.hold_expires_at <= _ts(now))
            .order_by(_R.c.id)
            .with_for_update()  # locked in id order: two concurrent sweeps never deadlock
            .scalar_subquery()
        )
        stmt = (
            sa.update(_R)
            .where(_R.c.id.in_(due), _R.c.status == ReservationStatus.PENDING.value)
            .values(status=ReservationStatus.CANCELED.value, hold_expires_at=None, updated_at=_ts(now))
            .returning(*_R.c)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_reservation(r) for r in rows), key=lambda r: (r.start_time, r.reservation_id))

    async def seat_reservation(self, reservation_id: str, table_id: str, group_id: str, now: float) -> Reservation:
        async with self._begin() as conn:
            r = await self._lock(conn, reservation_id)
            if r.status == ReservationStatus.SEATED and r.table_id == table_id and r.group_id == group_id:
                return r
            if r.status != ReservationStatus.CONFIRMED:
                raise InvalidTransition(f"a {r.status} reservation cannot be seated")
            return await self._set(
                conn,
                r.reservation_id,
                {
                    "status": ReservationStatus.SEATED.value,
                    "table_id": table_id,
                    "group_id": group_id,
                    "updated_at": _ts(now),
                },
            )

    async def mark_no_show(self, reservation_id: str, now: float) -> Reservation:
        async with self._begin() as conn:
            r = await self._lock(conn, reservation_id)
            if r.status == ReservationStatus.NO_SHOW:
                return r
            if r.status != ReservationStatus.CONFIRMED:
                raise InvalidTransition(f"a {r.status} reservation cannot be a no-show")
            if now < r.start_time + NO_SHOW_AFTER_S:
                raise InvalidTransition("too early for a no-show")
            return await self._set(
                conn, r.reservation_id, {"status": ReservationStatus.NO_SHOW.value, "updated_at": _ts(now)}
            )

    # -- waitlist -----------------------------------------------------------------------------------

    async def add_waitlist(self, entry: WaitlistEntry) -> WaitlistEntry:
        e = entry
        uid = canonical_uuid(e.user_id, "user_id")
        menu_id = canonical_uuid(e.menu_id, "menu_id")
        values = {
            "user_id": uid,
            "store_id": e.store_id,
            "menu_id": menu_id,
            "staff_id": _opt_uuid(e.staff_id, "staff_id"),
            "start_time": _ts(e.start_time),
            "status": WaitlistStatus(e.status).value,
            "offered_until": _opt_ts(e.offered_until),
            "offered_staff_id": _opt_uuid(e.offered_staff_id, "offered_staff_id"),
            "reservation_id": _opt_uuid(e.reservation_id, "reservation_id"),
            "created_at": _ts(e.created_at),
        }
        if e.status != WaitlistStatus.WAITING:
            raise InvalidReservationData("a new waitlist entry is waiting")
        try:
            async with self._begin() as conn:
                check = (
                    await conn.execute(_WAITLIST_CHECK, {"user_id": uid, "store_id": e.store_id, "menu_id": menu_id})
                ).one()._mapping
                if not check["user_exists"]:
                    raise UserNotFound(f"user {uid}")
                if not check["store_exists"]:
                    raise RestaurantNotFound(f"store {e.store_id}")
                if check["menu_store"] != e.store_id:
                    raise CourseNotFound(f"course {menu_id} of store {e.store_id}")
                row = (await conn.execute(sa.insert(_W).values(**values).returning(*_W.c))).one()
        except IntegrityError as exc:
            raise self._waitlist_error(exc) from exc
        return _entry(row)

    @staticmethod
    def _waitlist_error(e: IntegrityError) -> StorageError:
        code, name = _sqlstate(e), _constraint(e)
        if code == "23505":
            return AlreadyWaiting("the user already waits for that slot")
        if code == "23503":
            if "menu_id" in name:
                return CourseNotFound(name)
            if "store_id" in name:
                return RestaurantNotFound(name)
            return UserNotFound(name)
        return _check_violation(e)

    async def get_waitlist_entry(self, entry_id: int) -> WaitlistEntry | None:
        row = await self._one(sa.select(_W).where(_W.c.id == entry_id))
        return None if row is None else _entry(row)

    async def list_user_waitlist(self, user_id: str) -> list[WaitlistEntry]:
        key = parse_uuid(user_id)
        if key is None:
            return []
        q = sa.select(_W).where(_W.c.user_id == key).order_by(_W.c.created_at, _W.c.id)
        return [_entry(r) for r in await self._all(q)]

    async def waiting_for(self, store_id: int, menu_id: str, start_time: float) -> list[WaitlistEntry]:
        key = parse_uuid(menu_id)
        if key is None:
            return []
        q = (
            sa.select(_W)
            .where(
                _W.c.store_id == store_id,
                _W.c.menu_id == key,
                _W.c.start_time == _ts(start_time),
                _W.c.status.in_([st.value for st in OPEN_WAITLIST_STATUSES]),
            )
            .order_by(_W.c.created_at, _W.c.id)
        )
        return [_entry(r) for r in await self._all(q)]

    async def update_waitlist(self, entry: WaitlistEntry) -> None:
        stmt = (
            sa.update(_W)
            .where(_W.c.id == entry.entry_id)
            .values(
                status=WaitlistStatus(entry.status).value,
                offered_until=_opt_ts(entry.offered_until),
                offered_staff_id=_opt_uuid(entry.offered_staff_id, "offered_staff_id"),
                reservation_id=_opt_uuid(entry.reservation_id, "reservation_id"),
            )
            .returning(_W.c.id)
        )
        try:
            async with self._begin() as conn:
                found = (await conn.execute(stmt)).first()
        except IntegrityError as e:
            raise self._waitlist_error(e) from e
        if found is None:
            raise WaitlistEntryNotFound(str(entry.entry_id))


# Append to a bounded JSONB array in one statement: the stored array and the new entries, of which only the
# newest :keep stay (jsonb_array_elements WITH ORDINALITY keeps their order). Concurrent appends of one
# document serialise on its row (ON CONFLICT DO UPDATE locks it), so none is lost.
def _bounded(stored: str, new: str) -> str:
    both = f"({stored} || {new})"
    return (
        f"(SELECT COALESCE(jsonb_agg(x.e ORDER BY x.i), '[]'::jsonb) FROM jsonb_array_elements({both})"
        f" WITH ORDINALITY AS x(e, i) WHERE x.i > jsonb_array_length({both}) - :keep)"
    )


_HISTORY_BOUNDED = _bounded("COALESCE(h.doc -> 'history', '[]'::jsonb)", "(EXCLUDED.doc -> 'history')")
_APPEND_HISTORY = sa.text(
    "INSERT INTO reservation_history AS h (user_id, doc, updated_at)"
    " VALUES (CAST(:user_id AS uuid), jsonb_build_object('history', CAST(:entries AS jsonb)), now())"
    " ON CONFLICT (user_id) DO UPDATE SET"
    f" doc = jsonb_set(h.doc, '{{history}}', {_HISTORY_BOUNDED}), updated_at = now()"
)

_APPEND_CHAT = sa.text(
    "INSERT INTO chat_logs AS c (user_id, channel, logs, updated_at)"
    " VALUES (CAST(:user_id AS uuid), :channel, CAST(:entries AS jsonb), now())"
    " ON CONFLICT (user_id, channel) DO UPDATE SET"
    f" logs = {_bounded('c.logs', 'EXCLUDED.logs')}, updated_at = now()"
)


class PostgresHistory(_Base):
    """``HistoryStore`` on the engine of a ``PostgresStore``: JSONB documents, appended in one statement."""

    async def _append(self, stmt: sa.TextClause, params: dict[str, Any], user_id: str) -> None:
        try:
            async with self._begin() as conn:
                await conn.execute(stmt, params)
        except IntegrityError as e:
            if _sqlstate(e) == "23503":
                raise UserNotFound(f"user {user_id}") from e
            raise StorageError(f"history: {first_line(e.orig or e)}") from e

    async def append_history(self, user_id: str, entry: dict[str, Any]) -> None:
        entries = encode_entries([entry])
        key = parse_uuid(user_id)
        if key is None:
            raise UserNotFound(f"user {user_id}")
        await self._append(_APPEND_HISTORY, {"user_id": key, "entries": entries, "keep": HISTORY_MAX_ENTRIES}, key)

    async def get_history(self, user_id: str) -> list[dict[str, Any]]:
        key = parse_uuid(user_id)
        if key is None:
            return []
        row = await self._one(sa.select(s.reservation_history.c.doc).where(s.reservation_history.c.user_id == key))
        return [] if row is None else list(row[0].get("history", []))

    async def append_chat(self, user_id: str, channel: str, entries: list[dict[str, Any]]) -> None:
        validate_channel(channel)
        encode_entries(entries)  # every entry must be JSON, even one the bound drops at once
        encoded = encode_entries(entries[-CHAT_MAX_ENTRIES:])
        key = parse_uuid(user_id)
        if key is None:
            raise UserNotFound(f"user {user_id}")
        if not entries:
            if await self._one(sa.text("SELECT 1 FROM users WHERE id = CAST(:u AS uuid)"), {"u": key}) is None:
                raise UserNotFound(f"user {user_id}")
            return
        await self._append(
            _APPEND_CHAT, {"user_id": key, "channel": channel, "entries": encoded, "keep": CHAT_MAX_ENTRIES}, key
        )

    async def get_chat(self, user_id: str, channel: str) -> list[dict[str, Any]]:
        key = parse_uuid(user_id)
        if key is None:
            return []
        c = s.chat_logs.c
        row = await self._one(sa.select(c.logs).where(c.user_id == key, c.channel == channel))
        return [] if row is None else list(row[0])


