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
    # True when the sender resolved the member's token as valid for this group just before (the websocket
    # handshake does): the actor then welcomes a new member without asking the store who is live. False
    # (forwarded connects, tests) keeps the store check.
    token_checked: bool = False


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
class ImportedLine:
    menu_item_id: str
    qty: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class ImportLines:
    """Bring a guest cart (a visitor's cart from the store page) into the group's cart as ``member_id``'s
    lines, in one committed operation: every phone sees it in one ``cart_updated``. Lines that cannot be
    added (unknown or unavailable item, the cart full or locked) are skipped; the answer and the member's
    next ``welcome`` say which. ``key`` makes it idempotent: an import already applied is answered again,
    never applied twice (the caller empties the guest cart only after the answer)."""

    member_id: str
    lines: tuple[ImportedLine, ...]
    key: str


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
    | ImportLines
)
