"""Kitchen feed: confirmed orders reach every kitchen screen exactly once, in ``kitchen_seq`` order.

Each screen keeps a cursor (the last seq it was sent). A confirmation only wakes the pump; the pump reads
orders after each screen's cursor from the store, so a screen that reconnects with ``since`` gets what it
missed and never a duplicate, and nothing depends on an in-memory event surviving a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from tableside.clock import Clock, SystemClock
from tableside.protocol import OutboundFrame
from tableside.protocol import server_messages as sm
from tableside.storage.interface import OrderRecord, Store

log = structlog.get_logger("tableside.kitchen")

PAGE = 200


class KitchenScreen(Protocol):
    """What the hub needs from a kitchen connection."""

    connection_id: int

    def send(self, frame: OutboundFrame) -> None: ...

    def end_session(self, reason: str) -> None:
        """The staff session this screen was opened with has ended: say so and close (never raises)."""


def order_placed_message(order: OrderRecord) -> dict[str, Any]:
    return sm.order_placed(
        order.order_id,
        order.order_number,
        order.table_id,
        order.items,
        order.special_instructions,
        order.confirmed_at or order.created_at,
        order.kitchen_seq or 0,
    )


def ticket_view(order: OrderRecord) -> dict[str, Any]:
    out = order_placed_message(order)
    out.pop("type", None)
    out["status"] = order.kitchen_status
    return out


class StaffSessionWatch:
    """For hubs of sockets that live as long as a staff session (kitchen screens, tills): every
    ``interval_s`` the sessions of the open sockets are resolved again, and the sockets of a session that no
    longer resolves are ended. The hub has ``store``, ``clock``, ``subscriptions`` (values with ``session``
    and ``expires_at``) and ``end_sessions``."""

    __slots__ = ()
    store: Store
    clock: Clock
    subscriptions: dict[int, Any]
    session_check_failed = "staff_session_check_failed"  # the log event of a failed check

    def end_sessions(self, sessions: set[str], reason: str) -> int:
        raise NotImplementedError

    async def check_sessions(self, now: float) -> int:
        """Close the sockets whose staff session no longer resolves: logged out, the user's password or
        role changed or the user was removed (also by the CLI, in another process), or expired."""
        by_session: dict[str, float] = {}
        for sub in list(self.subscriptions.values()):
            if sub.session is not None:
                by_session[sub.session] = sub.expires_at
        closed = 0
        for session, expires_at in by_session.items():
            if await self.store.resolve_staff_session(session, now) is None:
                closed += self.end_sessions({session}, "expired" if now >= expires_at else "revoked")
        return closed

    async def session_loop(self, interval_s: float) -> None:
        """Every ``interval_s`` on the hub's clock: ``check_sessions``. Runs supervised beside the hub."""
        while True:
            await self.clock.sleep(interval_s)
            try:
                await self.check_sessions(self.clock.now())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the database is away: the next interval tries again
                log.warning(self.session_check_failed, error=repr(exc))


@dataclass(slots=True)
class _Subscription:
    screen: KitchenScreen
    restaurant_id: int
    cursor: int
    # The staff session the screen was opened with (token hash) and when it expires; None: not checked.
    session: str | None = None
    expires_at: float = float("inf")


@dataclass(slots=True)
class KitchenHub(StaffSessionWatch):
    session_check_failed = "kitchen_session_check_failed"
    store: Store
    subscriptions: dict[int, _Subscription] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    on_status: Callable[[OrderRecord], None] | None = None
    clock: Clock = field(default_factory=SystemClock)  # paces delivery retries and session re-checks

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def notify(self, restaurant_id: int) -> None:
        self._wake.set()

    def subscribe(
        self,
        screen: KitchenScreen,
        restaurant_id: int,
        since: int,
        *,
        session: str | None = None,
        expires_at: float = float("inf"),
    ) -> None:
        """``session``: the hash of the staff token the screen was opened with; the screen is closed
        (``end_session``) when that session ends (``end_sessions``, ``check_sessions``)."""
        self.subscriptions[screen.connection_id] = _Subscription(screen, restaurant_id, since, session, expires_at)
        self._wake.set()

    def unsubscribe(self, screen: KitchenScreen) -> None:
        self.subscriptions.pop(screen.connection_id, None)

    def broadcast(self, restaurant_id: int, message: dict[str, Any]) -> None:
        frame = OutboundFrame(message)
        for sub in self.subscriptions.values():
            if sub.restaurant_id == restaurant_id:
                sub.screen.send(frame)

    def end_sessions(self, sessions: set[str], reason: str) -> int:
        """Close every screen opened with one of these sessions (token hashes); returns how many."""
        ended = [sub for sub in self.subscriptions.values() if sub.session is not None and sub.session in sessions]
        for sub in ended:
            self.subscriptions.pop(sub.screen.connection_id, None)
            sub.screen.end_session(reason)
        if ended:
            log.info("kitchen_screens_closed", reason=reason, count=len(ended))
        return len(ended)

    async def run(self) -> None:
        """The pump loop: ``start`` runs it as a bare task, the server under ``BackgroundTasks``."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._deliver()
            except Exception as exc:  # keep the feed alive; the next wake retries from the cursors
                log.error("kitchen_pump_failed", error=repr(exc))
                await self.clock.sleep(0.5)
                self._wake.set()

    async def _deliver(self) -> None:
        # Screens at the same cursor share one query and one encoding per order.
        groups: dict[tuple[int, int], list[_Subscription]] = {}
        for sub in list(self.subscriptions.values()):
            groups.setdefault((sub.restaurant_id, sub.cursor), []).append(sub)
        for (restaurant_id, cursor), subs in groups.items():
            while True:
                orders = await self.store.list_kitchen_orders(restaurant_id, cursor, PAGE)
                for order in orders:
                    frame = OutboundFrame(order_placed_message(order))
                    for sub in subs:
                        if sub.screen.connection_id in self.subscriptions and order.kitchen_seq:
                            sub.screen.send(frame)
                            sub.cursor = order.kitchen_seq
                    cursor = orders[-1].kitchen_seq or cursor
                if len(orders) < PAGE:
                    break
