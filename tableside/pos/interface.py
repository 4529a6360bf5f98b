"""The POS adapter contract. An adapter makes one attempt per call and says what it knows; the retry,
lookup and backoff policy lives in ``tableside.pos.submitter`` so every adapter gets the same
exactly-once behaviour. The order id is the idempotency key: submitting it twice never makes two tickets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PosOrder:
    order_id: str  # idempotency key
    order_number: int
    restaurant_id: int
    table_id: str
    items: list[dict[str, Any]]  # [{menu_item_id, name, qty, unit_price, note}]
    total: int
    special_instructions: str


@dataclass(frozen=True, slots=True)
class Accepted:
    ticket_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A definite refusal: the POS did not and will not create a ticket for this key."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The attempt may or may not have created a ticket (timeout, connection lost, 5xx)."""

    reason: str


PosOutcome = Accepted | Rejected | Unknown


@dataclass(frozen=True, slots=True)
class LookupResult:
    """``found`` None means the lookup itself failed (we still do not know)."""

    found: bool | None
    ticket_id: str | None = None
    reason: str = ""


class PosAdapter(Protocol):
    name: str

    async def submit(self, order: PosOrder, timeout: float) -> PosOutcome: ...
    async def lookup(self, order_id: str, timeout: float) -> LookupResult: ...
    async def close(self) -> None: ...
