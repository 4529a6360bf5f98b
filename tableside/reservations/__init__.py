"""Reservations, the service (issue 13, docs/reservations.md): availability with the slot cache, booking and
payment, holds, the waitlist, history, chat and seating. Imports booking, payments, storage (interface and
reservations), clock, config, metrics and protocol; never server, actors or cluster."""

from .service import Availability, BookingRefused, ChatAnswer, DayView, ReservationService
from .slot_cache import MemorySlotCache, NoSlotCache, RedisSlotCache, SlotCache, build_slot_cache
from .waitlist import MemoryWaitlistQueue, RedisWaitlistQueue, WaitlistQueue, build_waitlist_queue

__all__ = [
    "Availability",
    "BookingRefused",
    "ChatAnswer",
    "DayView",
    "MemorySlotCache",
    "MemoryWaitlistQueue",
    "NoSlotCache",
    "RedisSlotCache",
    "RedisWaitlistQueue",
    "ReservationService",
    "SlotCache",
    "WaitlistQueue",
    "build_slot_cache",
    "build_waitlist_queue",
]
