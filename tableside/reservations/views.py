"""The JSON views of reservations (docs/reservations.md), pure: the API handlers and the notifications build
their bodies from these. Times are ISO 8601 in the store's zone (``2026-12-01T15:00:00+09:00``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tableside.booking import Slot, slot_json
from tableside.storage.reservations import BookableStaff, Course, Payment, Reservation, WaitlistEntry


def iso(ts: float | None, tz: str) -> str | None:
    """Epoch seconds as ISO 8601 in the zone ``tz`` (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(tz)).isoformat()


def course_json(course: Course) -> dict[str, Any]:
    return {"menu_id": course.menu_id, "name": course.name, "price": course.price, "duration": course.duration}


def staff_json(staff: BookableStaff) -> dict[str, Any]:
    return {"staff_id": staff.staff_id, "name": staff.name, "role": staff.role}


def payment_json(payment: Payment | None) -> dict[str, Any] | None:
    if payment is None:
        return None
    return {"payment_id": payment.payment_id, "amount": payment.amount, "status": str(payment.status)}


def reservation_json(
    r: Reservation,
    tz: str,
    *,
    course: Course | None = None,
    staff: BookableStaff | None = None,
    payment: Payment | None = None,
) -> dict[str, Any]:
    """``GET /api/reservations/{id}``'s body."""
    return {
        "reservation_id": r.reservation_id,
        "user_id": r.user_id,
        "store_id": r.store_id,
        "menu_id": r.menu_id,
        "course": course.name if course is not None else None,
        "staff_id": r.staff_id,
        "staff_name": staff.name if staff is not None else None,
        "start_time": iso(r.start_time, tz),
        "end_time": iso(r.end_time, tz),
        "status": str(r.status),
        "party_size": r.party_size,
        "notes": r.notes,
        "table_id": r.table_id,
        "group_id": r.group_id,
        "payment": payment_json(payment),
        "payment_id": payment.payment_id if payment is not None else None,
        "hold_expires_at": iso(r.hold_expires_at, tz),
    }


def waitlist_json(entry: WaitlistEntry, tz: str, *, position: int | None = None) -> dict[str, Any]:
    """An entry of ``GET /api/me/waitlist`` (``position``: 1 = next to be offered, when known)."""
    out: dict[str, Any] = {
        "entry_id": entry.entry_id,
        "store_id": entry.store_id,
        "menu_id": entry.menu_id,
        "start_time": iso(entry.start_time, tz),
        "staff_id": entry.staff_id,
        "status": str(entry.status),
        "offered_until": iso(entry.offered_until, tz),
        "offered_staff_id": entry.offered_staff_id,
        "reservation_id": entry.reservation_id,
        "created_at": iso(entry.created_at, tz),
    }
    if position is not None:
        out["position"] = position
    return out


def slots_json(slots: list[Slot]) -> list[dict[str, str]]:
    return [slot_json(s) for s in slots]


def reservation_updated(reservation: dict[str, Any]) -> dict[str, Any]:
    """The customer websocket's ``reservation_updated`` message."""
    return {"type": "reservation_updated", "reservation": reservation}


def waitlist_offer(entry: dict[str, Any], reservation_id: str | None, offered_until: str | None) -> dict[str, Any]:
    """The customer websocket's ``waitlist_offer`` message."""
    return {"type": "waitlist_offer", "entry": entry, "reservation_id": reservation_id, "offered_until": offered_until}
