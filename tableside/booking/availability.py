"""Bookable slots from business hours, staff and existing reservations: pure (no storage, no clock reads).

Times live in two worlds. Business hours are *wall times* of the store's zone (``"17:00"`` means 17:00 on the
clock in the dining room, whatever the UTC offset is that day); durations, steps and overlaps are *elapsed
time*. So a day's windows are first placed on the wall clock (:func:`day_windows`), and everything after that
is arithmetic on instants, done in UTC: a 120-minute course that starts at 01:00 on the night the clocks go
back really ends two hours later, at 02:00 (the second 01:00 having come in between).

Intervals are half-open, ``[start, end)``, like a Postgres ``tstzrange '[)'`` exclusion constraint: a
reservation ending at 19:00 and one starting at 19:00 do not overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DURATION_MINUTES = 1440

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
_DATE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
_MAX_INPUT_CHARS = 64


class BookingInputError(ValueError):
    """A value from outside (a query parameter, a request body, a store's settings) that cannot be used.
    ``code`` is machine-readable (``invalid_date``, ``invalid_start_time``, ``invalid_duration``,
    ``invalid_timezone``, ``invalid_business_hours``, ``invalid_argument``); ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Busy:
    """Time a staff member is taken (a reservation that is not canceled): ``[start, end)``, aware
    datetimes."""

    staff_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True, eq=False)
class Slot:
    """A bookable start: ``[start, end)`` with ``staff_id``, both datetimes in the store's zone. Compared,
    hashed and ordered as instants, by ``(start, staff_id)``: Python compares two datetimes of the *same*
    zone by wall time, ignoring ``fold``, which would make 01:30 EDT and 01:30 EST equal on a fall-back
    night."""

    start: datetime
    end: datetime
    staff_id: str

    def _key(self) -> tuple[datetime, str, datetime]:
        return (self.start.astimezone(UTC), self.staff_id, self.end.astimezone(UTC))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slot) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Slot) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Slot) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Slot) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Slot) -> bool:
        return self._key() >= other._key()


# --- validation helpers ------------------------------------------------------------------------------------


def zone(tz: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA name; ``BookingInputError('invalid_timezone')`` when unknown."""
    if not isinstance(tz, str) or not tz or len(tz) > _MAX_INPUT_CHARS or tz.startswith("/") or ".." in tz:
        raise BookingInputError("invalid_timezone", f"unknown timezone {str(tz)[:_MAX_INPUT_CHARS]!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BookingInputError("invalid_timezone", f"unknown timezone {tz!r}") from exc


def parse_date(text: Any) -> date:
    """``"YYYY-MM-DD"`` (exactly that form) as a date; else ``BookingInputError('invalid_date')``."""
    if not isinstance(text, str) or not _DATE.match(text):
        raise BookingInputError("invalid_date", "date must be YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BookingInputError("invalid_date", f"{text} is not a date") from exc


def parse_start_time(text: Any, tz: str) -> datetime:
    """An ISO 8601 instant with an explicit offset or ``Z`` (``2026-03-16T15:00:00+09:00``), returned in the
    store's zone. A naive time is refused: it would silently mean different instants in different places."""
    where = zone(tz)
    if not isinstance(text, str) or not text or len(text) > _MAX_INPUT_CHARS or not text[:1].isdigit():
        raise BookingInputError(
            "invalid_start_time", "start_time must be an ISO 8601 date-time with an offset"
        )
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BookingInputError("invalid_start_time", "start_time is not an ISO 8601 date-time") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise BookingInputError("invalid_start_time", "start_time needs a UTC offset (e.g. +09:00 or Z)")
    return parsed.astimezone(where)


def validate_duration(minutes: Any) -> int:
    """A course duration in whole minutes, 1..1440; else ``BookingInputError('invalid_duration')``."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_DURATION_MINUTES:
        raise BookingInputError("invalid_duration", f"duration must be 1..{MAX_DURATION_MINUTES} minutes")
    return minutes


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise BookingInputError("invalid_argument", f"{what} must be a timezone-aware datetime")
    return value


# --- windows ---------------------------------------------------------------------------------------------


def local_instant(day: date, hhmm: str, where: ZoneInfo) -> datetime:
    """The instant the store's clock shows ``hhmm`` on ``day``, in the store's zone. ``"24:00"`` is the next
    day's 00:00. A wall time skipped by a spring-forward gap resolves forward (``02:30`` on a night that jumps
    from 02:00 to 03:00 becomes ``03:30``, the same instant as ``02:30`` in the old offset); a wall time that
    happens twice on a fall-back night is its first occurrence (``fold=0``)."""
    match = _HHMM.match(hhmm) if isinstance(hhmm, str) else None
    if not match:
        raise BookingInputError("invalid_business_hours", f"{hhmm!r} is not HH:MM")
    try:
        if hhmm == "24:00":
            day, wall = day + timedelta(days=1), time(0, 0)
        else:
            wall = time(int(match.group(1)), int(match.group(2)))
        naive = datetime.combine(day, wall)
        # fold=0: the first occurrence when ambiguous, the pre-transition offset when nonexistent; the UTC
        # round trip then names a nonexistent wall time by the real one of the same instant.
        return naive.replace(tzinfo=where, fold=0).astimezone(UTC).astimezone(where)
    except OverflowError as exc:  # the first or last day datetime can hold
        raise BookingInputError("invalid_date", f"{day} is out of range") from exc


def is_closed(business_hours: dict[str, Any], day: date) -> bool:
    """Whether the store is closed all day: ``day`` is in ``closed_dates`` or its weekday has no pairs."""
    return not _pairs(business_hours, day)


def _pairs(business_hours: dict[str, Any], day: date) -> list[Any]:
    if not isinstance(business_hours, dict):
        raise BookingInputError("invalid_business_hours", "business_hours must be an object")
    closed = business_hours.get("closed_dates") or []
    if not isinstance(closed, list):
        raise BookingInputError("invalid_business_hours", "closed_dates must be a list")
    if day.isoformat() in closed:
        return []
    pairs = business_hours.get(WEEKDAYS[day.weekday()]) or []
    if not isinstance(pairs, list):
        raise BookingInputError("invalid_business_hours", "a weekday must be a list of [open, close] pairs")
    return pairs


def day_windows(business_hours: dict[str, Any], tz: str, day: date) -> list[tuple[datetime, datetime]]:
    """The opening windows of local date ``day`` as ``[open, close)`` aware datetimes in the store's zone
    (ascending, disjoint); empty when closed. Gaps between a day's pairs are breaks. Each wall time is
    placed by :func:`local_instant`; a window squeezed to nothing by a spring-forward gap (``02:30-03:00``
    on that night) is dropped, and one that a gap made overlap its predecessor starts where that one ends."""
    where = zone(tz)
    windows: list[tuple[datetime, datetime]] = []
    for pair in _pairs(business_hours, day):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise BookingInputError("invalid_business_hours", f"{pair!r} is not an [open, close] pair")
        opens, closes = local_instant(day, pair[0], where), local_instant(day, pair[1], where)
        # Compared as instants (in UTC): same-zone datetimes compare by wall time, ignoring fold.
        if windows and opens.astimezone(UTC) < windows[-1][1].astimezone(UTC):
            opens = windows[-1][1]
        if opens.astimezone(UTC) < closes.astimezone(UTC):
            windows.append((opens, closes))
    return windows


# --- slots -----------------------------------------------------------------------------------------------


def available_slots(
    *,
    business_hours: dict[str, Any],
    tz: str,
    day: date,
    duration_minutes: int,
    staff_ids: list[str],
    busy: list[Busy],
    step_minutes: int = 30,
    now: datetime | None = None,
    lead_minutes: int = 0,
) -> list[Slot]:
    """Every bookable ``Slot`` of ``day``, sorted by ``(start, staff_id)``.

    A start lies on the ``step_minutes`` grid counted (in elapsed time) from its window's opening; the whole
    ``[start, start + duration)`` fits in that one window (a course never runs across a break or past
    closing); it overlaps no ``busy`` interval of that staff member (half-open: touching is fine); and, when
    ``now`` is given, ``start >= now + lead_minutes``."""
    validate_duration(duration_minutes)
    if isinstance(step_minutes, bool) or not isinstance(step_minutes, int) or step_minutes < 1:
        raise BookingInputError("invalid_argument", "step_minutes must be a positive integer")
    if isinstance(lead_minutes, bool) or not isinstance(lead_minutes, int) or lead_minutes < 0:
        raise BookingInputError("invalid_argument", "lead_minutes must be a non-negative integer")
    where = zone(tz)
    earliest = None
    if now is not None:
        earliest = (_aware(now, "now") + timedelta(minutes=lead_minutes)).astimezone(UTC)
    taken: dict[str, list[tuple[datetime, datetime]]] = {}
    for b in busy:
        taken.setdefault(b.staff_id, []).append(
            (_aware(b.start, "busy.start").astimezone(UTC), _aware(b.end, "busy.end").astimezone(UTC))
        )
    duration, step = timedelta(minutes=duration_minutes), timedelta(minutes=step_minutes)
    slots: list[Slot] = []
    for opens, closes in day_windows(business_hours, tz, day):
        start, last = opens.astimezone(UTC), closes.astimezone(UTC) - duration
        while start <= last:
            end = start + duration
            if earliest is None or start >= earliest:
                for staff in dict.fromkeys(staff_ids):
                    if not any(b_start < end and start < b_end for b_start, b_end in taken.get(staff, ())):
                        slots.append(Slot(start.astimezone(where), end.astimezone(where), staff))
            start += step
    slots.sort()
    return slots


def slot_json(slot: Slot) -> dict[str, str]:
    """``{"start_time", "end_time", "staff_id"}`` with ISO 8601 times carrying the store's UTC offset."""
    return {"start_time": slot.start.isoformat(), "end_time": slot.end.isoformat(), "staff_id": slot.staff_id}


def free_ranges(slots: list[Slot]) -> list[tuple[datetime, datetime]]:
    """The slots' ``[start, end)`` of any staff member merged into maximal ranges (touching or overlapping
    ones join): what a person reads as "free 15:00-17:00"."""
    merged: list[tuple[datetime, datetime]] = []
    for slot in sorted(slots, key=lambda s: (s.start.astimezone(UTC), s.end.astimezone(UTC))):
        if merged and slot.start.astimezone(UTC) <= merged[-1][1].astimezone(UTC):
            if slot.end.astimezone(UTC) > merged[-1][1].astimezone(UTC):
                merged[-1] = (merged[-1][0], slot.end)
        else:
            merged.append((slot.start, slot.end))
    return merged
