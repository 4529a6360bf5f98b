"""Fail-safe expiry and cleanup (seed 000): expired guest tokens, staff, customer and guest sessions are deleted and
sittings idle past ``group_idle_hours`` are closed. Every step is a conditional statement in the store,
so the job is safe to run on every node at once."""

from __future__ import annotations

import asyncio

import structlog

from tableside.actors.messages import CloseSession
from tableside.protocol import server_messages as sm
from tableside.protocol.till import session_view
from tableside.server.services import Services
from tableside.storage.interface import CleanupReport

log = structlog.get_logger("tableside.maintenance")


async def run_cleanup(services: Services) -> CleanupReport:
    now = services.clock.now()
    report = await services.store.cleanup(now)
    cutoff = now - services.settings.group_idle_hours * 3600
    closed = await services.store.close_idle_groups(cutoff, now)
    for _table_id, group_id in closed:
        await services.router.tell_group(group_id, CloseSession("expired"))
    report.extra["idle_groups_closed"] = len(closed)
    # Till order sessions left active with no change for till.stale_minutes are parked (never deleted).
    parked = await services.store.park_stale_order_sessions(now - services.settings.till.stale_minutes * 60, now)
    for session in parked:
        services.router.till_event(session.user_id, sm.order_session_updated(session_view(session)))
    report.extra["order_sessions_parked"] = len(parked)
    log.info(
        "cleanup",
        expired_tokens=report.expired_tokens,
        expired_staff_sessions=report.expired_staff_sessions,
        expired_user_sessions=report.expired_user_sessions,
        expired_guest_sessions=report.expired_guest_sessions,
        idle_groups_closed=len(closed),
        order_sessions_parked=len(parked),
        tables=[t for t, _ in closed[:50]],
    )
    return report


async def cleanup_loop(services: Services) -> None:
    while True:
        await services.clock.sleep(services.settings.cleanup_interval_s)
        try:
            await run_cleanup(services)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed run is retried at the next interval
            log.error("cleanup_failed", error=repr(exc))


async def sweep_loop(services: Services) -> None:
    """Reservations (docs/reservations.md): every ``reservations.sweep_interval_s``, pending holds and
    waitlist offers that ran out are canceled / expired (and the next waiting customer offered the slot).
    Conditional statements in the store, safe on every node at once."""
    while True:
        await services.clock.sleep(services.settings.reservations.sweep_interval_s)
        try:
            await services.reservations.sweep()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed run is retried at the next interval
            log.error("reservation_sweep_failed", error=repr(exc))
