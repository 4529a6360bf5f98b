"""What can be put in a ``TableActor``'s mailbox, and the sink it talks back through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tableside.pos.interface import PosOutcome
from tableside.protocol import ClientMessage, OutboundFrame


class MemberSink(Protocol):
    """One member connection as the actor sees it: it can be sent frames and closed. Sending never
    blocks the actor; the transport owns buffering and slow-consumer handling."""

    connection_id: int

    def send(self, frame: OutboundFrame) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Connect:
    member_id: str
    sink: MemberSink


@dataclass(frozen=True, slots=True)
class Disconnect:
    member_id: str
    sink: MemberSink


@dataclass(frozen=True, slots=True)
class Command:
    member_id: str
    sink: MemberSink | None  # None for HTTP callers that read the returned answer
    message: ClientMessage


@dataclass(frozen=True, slots=True)
class PosResult:
    order_id: str
    outcome: PosOutcome


@dataclass(frozen=True, slots=True)
class CloseSession:
    reason: str


@dataclass(frozen=True, slots=True)
class GetCart:
    pass


@dataclass(frozen=True, slots=True)
class GetTableInfo:
    """For the staff board: the cart plus how many members are online."""


@dataclass(frozen=True, slots=True)
class MenuChanged:
    menu_item_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KitchenStatusChanged:
    order_id: str
    status: str


@dataclass(frozen=True, slots=True)
class IdleCheck:
    pass


@dataclass(frozen=True, slots=True)
class SendCart:
    """Send these connections the whole cart again (``cart_updated``): a forwarding node saw a gap in
    what it relayed and must not show a wrong cart."""

    connection_ids: tuple[int, ...]


TableMessage = (
    Connect
    | Disconnect
    | Command
    | PosResult
    | CloseSession
    | GetCart
    | GetTableInfo
    | MenuChanged
    | KitchenStatusChanged
    | IdleCheck
    | SendCart
)
