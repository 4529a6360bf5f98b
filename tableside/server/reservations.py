"""Reservations over HTTP and the customer websocket (docs/reservations.md). Thin handlers: parse and bound
the input, check who may, call ``services.reservations`` (``tableside.reservations.service``), map the typed
errors to status codes. The customer socket ``/ws/me`` gets ``reservation_updated`` and ``waitlist_offer``
through ``Router.customer_event`` (every node) and ``CustomerHub`` (this node's sockets)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any, TypeVar

import structlog

from tableside.auth import token_hash
from tableside.booking import BookingInputError, parse_date, parse_start_time, zone
from tableside.protocol import server_messages as sm
from tableside.reservations import BookingRefused, ReservationService, views
from tableside.server.base import ApiError, BaseHandler, StoreScope, db_id
from tableside.server.customer_hub import CustomerHub
from tableside.server.http import store_view
from tableside.server.users import USER_COOKIE, user_token
from tableside.server.ws import SessionSocket
from tableside.storage.interface import (
    InvalidStoreData,
    InvalidTransition,
    RestaurantNotFound,
    StaffRole,
    TableNotFound,
)
from tableside.storage.reservations import (
    PARTY_SIZE_RANGE,
    AlreadyWaiting,
    BookableStaffNotFound,
    CourseNotFound,
    InvalidReservationData,
    Reservation,
    ReservationNotFound,
    SlotTaken,
    UserNotFound,
    WaitlistEntryNotFound,
    parse_uuid,
)

log = structlog.get_logger("tableside.reservations")

__all__ = ["CustomerHub", "CustomerSocket"]

T = TypeVar("T")
STAFF_ROLES = (StaffRole.MANAGER, StaffRole.SERVER)  # and admin (always)
HOURS_ROLES = (StaffRole.MANAGER,)  # and admin
NOTES_MAX = 500
CHAT_MAX = 500
CHANNEL_MAX = 32


# -- input ---------------------------------------------------------------------------------------------


def uuid_or_404(raw: str, what: str = "reservation") -> str:
    """A UUID in canonical form; anything else names nothing (404 before touching the database)."""
    value = parse_uuid(raw) if len(raw) <= 64 else None
    if value is None:
        raise ApiError(404, "not_found", f"no such {what}")
    return value


def id_or_404(raw: str, what: str) -> int:
    value = db_id(raw)
    if value is None:
        raise ApiError(404, "not_found", f"no such {what}")
    return value


def store_or_404(raw: str) -> int:
    return id_or_404(raw, "store")


def entry_or_404(raw: str) -> int:
    return id_or_404(raw, "waitlist entry")


def bad(field: str, message: str) -> ApiError:
    return ApiError(400, "bad_request", message, extra={"field": field})


def query_date(handler: BaseHandler) -> date:
    raw = handler.get_query_argument("date", None)
    if raw is None:
        raise bad("date", "date is required (YYYY-MM-DD)")
    try:
        return parse_date(raw)
    except BookingInputError as exc:
        raise bad("date", exc.message) from None


def body_uuid(data: dict[str, Any], name: str) -> str | None:
    """An optional UUID member (absent or null: None)."""
    value = data.get(name)
    if value is None:
        return None
    parsed = parse_uuid(value) if isinstance(value, str) and len(value) <= 64 else None
    if parsed is None:
        raise bad(name, f"{name} must be a UUID")
    return parsed


def required_uuid(data: dict[str, Any], name: str) -> str:
    value = body_uuid(data, name)
    if value is None:
        raise bad(name, f"{name} is required")
    return value


def body_store(data: dict[str, Any]) -> int:
    value = data.get("store_id")
    if isinstance(value, bool) or not isinstance(value, int) or db_id(value) is None:
        raise bad("store_id", "store_id must be a positive integer")
    return value


def body_start(data: dict[str, Any]) -> datetime:
    try:
        return parse_start_time(data.get("start_time"), "UTC")
    except BookingInputError as exc:
        raise bad("start_time", exc.message) from None


def body_party(data: dict[str, Any]) -> int:
    value = data.get("party_size", 2)
    low, high = PARTY_SIZE_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad("party_size", f"party_size must be an integer {low}..{high}")
    return value


def body_notes(data: dict[str, Any]) -> str:
    value = data.get("notes", "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > NOTES_MAX:
        raise bad("notes", f"notes must be a string of at most {NOTES_MAX} characters")
    return value


def channel_of(value: Any) -> str:
    if value is None:
        return "web"
    if not isinstance(value, str) or not 0 < len(value) <= CHANNEL_MAX or not value.isascii() or not value.isprintable():
        raise bad("channel", f"channel must be 1..{CHANNEL_MAX} printable ASCII characters")
    return value


def map_error(exc: Exception) -> ApiError | None:
    """The HTTP error for a typed failure of the reservation service (None: not one of ours)."""
    match exc:
        case SlotTaken():
            return ApiError(409, "slot_taken", "that slot is not free")
        case BookingRefused():
            status = 400 if exc.code == "bad_request" else 409  # table_occupied, too_early, not_offered...
            return ApiError(status, exc.code, exc.message, extra={"field": exc.field} if exc.field else {})
        case BookingInputError():
            return ApiError(400, "bad_request", exc.message, extra={"field": _field_of(exc.code)})
        case ReservationNotFound():
            return ApiError(404, "not_found", "no such reservation")
        case CourseNotFound():
            return ApiError(404, "not_found", "no such course")
        case BookableStaffNotFound():
            return ApiError(404, "not_found", "no such staff member")
        case RestaurantNotFound():
            return ApiError(404, "not_found", "no such store")
        case WaitlistEntryNotFound():
            return ApiError(404, "not_found", "no such waitlist entry")
        case TableNotFound():
            return ApiError(404, "not_found", "no such table")
        case UserNotFound():
            return ApiError(401, "unauthorized", "login required")
        case AlreadyWaiting():
            return ApiError(409, "already_waiting", "you are already waiting for that slot")
        case InvalidTransition():
            return ApiError(409, "invalid_transition", str(exc) or "not allowed in the reservation's state")
        case InvalidStoreData():
            return ApiError(400, "bad_request", str(exc), extra={"field": "business_hours"})
        case InvalidReservationData():
            return ApiError(400, "bad_request", str(exc))
    return None


def _field_of(code: str) -> str:
    return {
        "invalid_date": "date",
        "invalid_start_time": "start_time",
        "invalid_timezone": "timezone",
        "invalid_business_hours": "business_hours",
        "invalid_duration": "duration",
    }.get(code, code)


class ReservationsBase(BaseHandler):
    """Handlers of this module: ``call`` runs a service call and maps its typed errors."""

    @property
    def svc(self) -> ReservationService:
        return self.services.reservations

    async def call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except Exception as exc:
            mapped = map_error(exc)
            if mapped is None:
                raise
            raise mapped from None

    async def customer(self) -> str:
        """The user id of the request's customer session (401 without one)."""
        session = await self.services.accounts.resolve(user_token(self), self.services.clock.now())
        if session is None:
            raise ApiError(401, "unauthorized", "login required")
        return str(session.user_id)

    async def customer_or_staff(self) -> tuple[str | None, StoreScope | None]:
        """A customer session (its user id), else a staff session of a role that sees reservations (its
        store scope); 401 with neither."""
        session = await self.services.accounts.resolve(user_token(self), self.services.clock.now())
        if session is not None:
            return str(session.user_id), None
        _staff, scope = await self.require_staff_in_store(*STAFF_ROLES)
        return None, scope

    async def reservation(self, reservation_id: str, user_id: str | None, scope: StoreScope | None) -> Reservation:
        """The reservation, if the caller may see it: its own customer, or staff of its store. Anybody else
        gets 404 (it is not theirs to know about)."""
        r = await self.call(self.svc.get(reservation_id))
        if user_id is not None and r.user_id != user_id:
            raise ApiError(404, "not_found", "no such reservation")
        if user_id is None and (scope is None or not scope.allows(r.store_id)):
            raise ApiError(404, "not_found", "no such reservation")
        return r

    async def view(self, r: Reservation) -> dict[str, Any]:
        return await self.call(self.svc.view(r))


# -- public --------------------------------------------------------------------------------------------


class CoursesHandler(ReservationsBase):
    """``GET /api/stores/{store_id}/courses``."""

    async def get(self, raw: str) -> None:
        courses = await self.call(self.svc.courses(store_or_404(raw)))
        self.send_json({"courses": [views.course_json(c) for c in courses]})


class BookableStaffHandler(ReservationsBase):
    """``GET /api/stores/{store_id}/staff``."""

    async def get(self, raw: str) -> None:
        staff = await self.call(self.svc.bookable_staff(store_or_404(raw)))
        self.send_json({"staff": [views.staff_json(s) for s in staff]})


class AvailabilityHandler(ReservationsBase):
    """``GET /api/stores/{store_id}/availability?date=…&menu_id=…[&staff_id=…]``."""

    async def get(self, raw: str) -> None:
        store_id = store_or_404(raw)
        day = query_date(self)
        menu = self.get_query_argument("menu_id", None)
        if not menu:
            raise bad("menu_id", "menu_id is required")
        menu_id = uuid_or_404(menu, "course")
        staff = self.get_query_argument("staff_id", None)
        staff_id = uuid_or_404(staff, "staff member") if staff else None
        availability = await self.call(self.svc.availability(store_id, day, menu_id, staff_id))
        self.send_json(availability.json())


# -- customer ------------------------------------------------------------------------------------------


class ReservationsHandler(ReservationsBase):
    """``POST /api/reservations`` → 201 the pending reservation with its payment."""

    async def post(self) -> None:
        user_id = await self.customer()
        data = self.json_body()
        store_id = body_store(data)
        menu_id = required_uuid(data, "menu_id")
        staff_id = required_uuid(data, "staff_id")
        start = body_start(data)
        party = body_party(data)
        notes = body_notes(data)
        r, _payment = await self.call(self.svc.book(user_id, store_id, menu_id, staff_id, start, party, notes))
        self.send_json(await self.view(r), 201)


class ReservationHandler(ReservationsBase):
    """``GET /api/reservations/{id}``: its customer, or staff of its store; anybody else 404."""

    async def get(self, raw: str) -> None:
        reservation_id = uuid_or_404(raw)
        user_id, scope = await self.customer_or_staff()
        self.send_json(await self.view(await self.reservation(reservation_id, user_id, scope)))


class CancelHandler(ReservationsBase):
    """``POST /api/reservations/{id}/cancel`` (customer: their own; staff of its store: any)."""

    async def post(self, raw: str) -> None:
        reservation_id = uuid_or_404(raw)
        user_id, scope = await self.customer_or_staff()
        await self.cancel(reservation_id, user_id, scope)

    async def cancel(self, reservation_id: str, user_id: str | None, scope: StoreScope | None) -> None:
        await self.reservation(reservation_id, user_id, scope)
        r = await self.call(self.svc.cancel(reservation_id))
        self.send_json(await self.view(r))


class MyReservationsHandler(ReservationsBase):
    """``GET /api/me/reservations``: newest start first."""

    async def get(self) -> None:
        user_id = await self.customer()
        mine = await self.call(self.svc.my_reservations(user_id))
        self.send_json({"reservations": [await self.view(r) for r in mine]})


class MyHistoryHandler(ReservationsBase):
    async def get(self) -> None:
        user_id = await self.customer()
        self.send_json({"history": await self.call(self.svc.history(user_id))})


class WaitlistHandler(ReservationsBase):
    """``POST /api/waitlist {store_id, menu_id, start_time, staff_id?}`` → 201 the entry."""

    async def post(self) -> None:
        user_id = await self.customer()
        data = self.json_body()
        store_id = body_store(data)
        menu_id = required_uuid(data, "menu_id")
        start = body_start(data)
        staff_id = body_uuid(data, "staff_id")
        entry, position = await self.call(self.svc.join_waitlist(user_id, store_id, menu_id, start, staff_id))
        self.send_json(await self.svc.entry_view(entry, position), 201)


class MyWaitlistHandler(ReservationsBase):
    async def get(self) -> None:
        user_id = await self.customer()
        mine = await self.call(self.svc.my_waitlist(user_id))
        self.send_json({"waitlist": [await self.svc.entry_view(e, pos) for e, pos in mine]})


class WaitlistAcceptHandler(ReservationsBase):
    """``POST /api/waitlist/{entry_id}/accept``: the held reservation, its payment started."""

    async def post(self, raw: str) -> None:
        entry_id = entry_or_404(raw)
        user_id = await self.customer()
        r, _payment = await self.call(self.svc.accept_offer(user_id, entry_id))
        self.send_json(await self.view(r))


class WaitlistEntryHandler(ReservationsBase):
    """``DELETE /api/waitlist/{entry_id}`` → 204."""

    async def delete(self, raw: str) -> None:
        entry_id = entry_or_404(raw)
        user_id = await self.customer()
        await self.call(self.svc.leave_waitlist(user_id, entry_id))
        self.set_status(204)
        self.finish()


class ChatHandler(ReservationsBase):
    """``POST /api/chat {text, channel?, store_id?}`` → the rule-based answer from the real availability."""

    async def post(self) -> None:
        user_id = await self.customer()
        data = self.json_body()
        text = data.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > CHAT_MAX:
            raise bad("text", f"text must be a string of 1..{CHAT_MAX} characters")
        channel = channel_of(data.get("channel"))
        store_id = body_store(data) if data.get("store_id") is not None else None
        answer = await self.call(self.svc.chat(user_id, text, channel, store_id))
        self.send_json(answer.json())


class MyChatHandler(ReservationsBase):
    """``GET /api/me/chat?channel=web``."""

    async def get(self) -> None:
        user_id = await self.customer()
        channel = channel_of(self.get_query_argument("channel", None))
        self.send_json({"logs": await self.call(self.svc.chat_log(user_id, channel))})


# -- staff ---------------------------------------------------------------------------------------------


class StaffDayHandler(ReservationsBase):
    """``GET /api/staff/reservations?date=YYYY-MM-DD``: the day's timeline of the staff member's store
    (default: today in the store's zone)."""

    async def get(self) -> None:
        _session, scope = await self.require_staff_in_store(*STAFF_ROLES)
        if self.get_query_argument("date", None) is None:
            rest = await self.services.store.get_restaurant(scope.store_id)
            day = self.svc.today(rest.timezone if rest is not None else "UTC")
        else:
            day = query_date(self)
        view = await self.call(self.svc.day(scope.store_id, day))
        self.send_json({
            "date": view.date.isoformat(),
            "store_id": view.store.restaurant_id,
            "timezone": view.store.timezone,
            "staff": [views.staff_json(s) for s in view.staff],
            "reservations": [await self.view(r) for r in view.reservations],
        })


class SeatHandler(ReservationsBase):
    """``POST /api/staff/reservations/{id}/seat {table_id}``: the table's sitting opens."""

    async def post(self, raw: str) -> None:
        reservation_id = uuid_or_404(raw)
        _session, scope = await self.require_staff_in_store(*STAFF_ROLES)
        data = self.json_body()
        table_id = data.get("table_id")
        if not isinstance(table_id, str) or not 0 < len(table_id) <= 64:
            raise bad("table_id", "table_id must be a string of 1..64 characters")
        await self.reservation(reservation_id, None, scope)
        r, table = await self.call(self.svc.seat(reservation_id, table_id))
        self.send_json({
            "reservation": await self.view(r),
            "table": {
                "table_id": table.table_id,
                "name": table.name,
                "status": str(table.status),
                "store_id": table.restaurant_id,
                "group_id": table.current_group_id,
                "join_url": self.services.join_url(table),
            },
        })


class NoShowHandler(ReservationsBase):
    """``POST /api/staff/reservations/{id}/no-show`` → the reservation, ``no_show``; earlier than 15 minutes
    after its start 409 ``too_early``."""

    async def post(self, raw: str) -> None:
        reservation_id = uuid_or_404(raw)
        _session, scope = await self.require_staff_in_store(*STAFF_ROLES)
        await self.reservation(reservation_id, None, scope)
        self.send_json(await self.view(await self.call(self.svc.no_show(reservation_id))))


class StaffCancelHandler(CancelHandler):
    """``POST /api/staff/reservations/{id}/cancel``: as the customer's cancel, for staff of its store."""

    async def post(self, raw: str) -> None:
        reservation_id = uuid_or_404(raw)
        _session, scope = await self.require_staff_in_store(*STAFF_ROLES)
        await self.cancel(reservation_id, None, scope)


class HoursHandler(ReservationsBase):
    """``PUT /api/staff/stores/{store_id}/hours {business_hours, timezone?}`` (admin, or a manager of that
    store) → the store; the store's cached slots are dropped."""

    async def put(self, raw: str) -> None:
        session = await self.require_staff(*HOURS_ROLES)
        store_id = store_or_404(raw)
        if not (session.role == StaffRole.ADMIN and session.store_id is None):
            own = session.store_id if session.store_id is not None else await self.services.default_store_id()
            if own != store_id:
                raise ApiError(403, "forbidden", "your staff login is for another store")
        data = self.json_body()
        hours = data.get("business_hours")
        if not isinstance(hours, dict):
            raise bad("business_hours", "business_hours must be an object")
        tz = data.get("timezone")
        if tz is not None:
            if not isinstance(tz, str) or not 0 < len(tz) <= 64:
                raise bad("timezone", "timezone must be an IANA zone name")
            try:
                zone(tz)
            except BookingInputError as exc:
                raise bad("timezone", exc.message) from None
        store = await self.call(self.svc.set_hours(store_id, hours, tz))
        self.send_json(store_view(store))


# -- the customer websocket ----------------------------------------------------------------------------


class CustomerSocket(SessionSocket):
    """``/ws/me?token=…``: a customer's live view of their reservations and waitlist offers."""

    user_id: str
    session_key: str  # hash of the customer token: a logout closes the socket (4001)
    subscribed = False
    kind = "customer"

    async def get(self, *args: Any, **kwargs: Any) -> None:
        token = self.get_query_argument("token", None) or self.get_cookie(USER_COOKIE)
        session = await self.services.accounts.resolve(token, self.services.clock.now())
        if session is None or token is None:
            self.refuse(401, "unauthorized", "login required")
            return
        self.user_id = str(session.user_id)
        self.session_key = token_hash(token)
        await super().get(*args, **kwargs)

    async def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.watch()
        self.services.customer_hub.subscribe(self, self.user_id, self.session_key)
        self.subscribed = True
        self.send_message(sm.customer_welcome(self.user_id))

    def on_close(self) -> None:
        if self.subscribed:
            self.services.customer_hub.unsubscribe(self)
