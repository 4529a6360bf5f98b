"""Reservations, the pure core (docs/architecture.md): bookable slots from business hours, staff and existing
reservations (``availability``) and a rule-based availability chat (``chat``). No I/O: no storage, no network,
no clock reads; the caller passes the time in."""

from .availability import (
    MAX_DURATION_MINUTES,
    WEEKDAYS,
    BookingInputError,
    Busy,
    Slot,
    available_slots,
    day_windows,
    free_ranges,
    is_closed,
    local_instant,
    parse_date,
    parse_start_time,
    slot_json,
    validate_duration,
    zone,
)
from .chat import MAX_TEXT_CHARS, Question, answer, detect_language, help_text, narrow, parse_question

__all__ = [
    "MAX_DURATION_MINUTES",
    "MAX_TEXT_CHARS",
    "Question",
    "answer",
    "detect_language",
    "help_text",
    "narrow",
    "parse_question",
    "WEEKDAYS",
    "BookingInputError",
    "Busy",
    "Slot",
    "available_slots",
    "day_windows",
    "free_ranges",
    "is_closed",
    "local_instant",
    "parse_date",
    "parse_start_time",
    "slot_json",
    "validate_duration",
    "zone",
]
