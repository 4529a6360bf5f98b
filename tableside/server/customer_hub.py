"""This node's customer sockets (``/ws/me``), by user id: where ``reservation_updated`` and ``waitlist_offer``
go (``Router.customer_event`` calls ``deliver`` on every node). Each event is encoded once per codec, not
once per socket (``OutboundFrame``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tableside.protocol import OutboundFrame


class CustomerScreen(Protocol):
    connection_id: int

    def send(self, frame: OutboundFrame) -> None: ...


@dataclass(slots=True)
class CustomerHub:
    by_user: dict[str, dict[int, CustomerScreen]] = field(default_factory=dict)
    users_of: dict[int, str] = field(default_factory=dict)

    def subscribe(self, screen: CustomerScreen, user_id: str) -> None:
        self.users_of[screen.connection_id] = user_id
        self.by_user.setdefault(user_id, {})[screen.connection_id] = screen

    def unsubscribe(self, screen: CustomerScreen) -> None:
        user_id = self.users_of.pop(screen.connection_id, None)
        if user_id is None:
            return
        mine = self.by_user.get(user_id)
        if mine is not None:
            mine.pop(screen.connection_id, None)
            if not mine:
                del self.by_user[user_id]

    def deliver(self, user_id: str, message: dict[str, Any]) -> int:
        """Send ``message`` to every socket of ``user_id`` here, encoded once per codec."""
        screens = self.by_user.get(user_id)
        if not screens:
            return 0
        frame = OutboundFrame(message)
        for screen in list(screens.values()):
            screen.send(frame)
        return len(screens)

    @property
    def sockets(self) -> int:
        return len(self.users_of)
