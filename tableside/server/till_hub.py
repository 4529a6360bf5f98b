"""This node's staff sockets (``/ws/staff``), by username: where ``order_session_updated`` and
``session_moved`` go (``Router.till_event`` calls ``deliver`` on every node). Like the kitchen hub, a
socket lives as long as the staff session it was opened with: ``end_sessions`` / ``check_sessions``
close it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from tableside.clock import Clock, SystemClock
from tableside.protocol import OutboundFrame
from tableside.server.kitchen import StaffSessionWatch
from tableside.storage.interface import Store

log = structlog.get_logger("tableside.till")


class StaffScreen(Protocol):
    connection_id: int

    def send(self, frame: OutboundFrame) -> None: ...

    def end_session(self, reason: str) -> None: ...


@dataclass(slots=True)
class _Sub:
    screen: StaffScreen
    username: str
    session: str | None  # token hash of the staff session
    expires_at: float = float("inf")


@dataclass(slots=True)
class TillHub(StaffSessionWatch):
    store: Store
    clock: Clock = field(default_factory=SystemClock)
    subscriptions: dict[int, _Sub] = field(default_factory=dict)
    by_user: dict[str, dict[int, _Sub]] = field(default_factory=dict)

    def subscribe(self, screen: StaffScreen, username: str, *, session: str | None = None,
                  expires_at: float = float("inf")) -> None:
        sub = _Sub(screen, username, session, expires_at)
        self.subscriptions[screen.connection_id] = sub
        self.by_user.setdefault(username, {})[screen.connection_id] = sub

    def unsubscribe(self, screen: StaffScreen) -> None:
        sub = self.subscriptions.pop(screen.connection_id, None)
        if sub is None:
            return
        mine = self.by_user.get(sub.username)
        if mine is not None:
            mine.pop(screen.connection_id, None)
            if not mine:
                del self.by_user[sub.username]

    def deliver(self, username: str, message: dict[str, Any]) -> int:
        """Send ``message`` to every socket of ``username`` here, encoded once per codec (not per socket)."""
        subs = self.by_user.get(username)
        if not subs:
            return 0
        frame = OutboundFrame(message)
        for sub in list(subs.values()):
            sub.screen.send(frame)
        return len(subs)

    def end_sessions(self, sessions: set[str], reason: str) -> int:
        ended = [s for s in self.subscriptions.values() if s.session is not None and s.session in sessions]
        for sub in ended:
            self.unsubscribe(sub.screen)
            sub.screen.end_session(reason)
        if ended:
            log.info("staff_sockets_closed", reason=reason, count=len(ended))
        return len(ended)
