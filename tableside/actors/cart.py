"""The shared cart of one table group: plain data and rules, no I/O.

``TableActor`` owns exactly one ``GroupState`` and is the only writer; everything here is synchronous so
the rules can be tested without a loop. The whole object round-trips through ``to_snapshot`` /
``from_snapshot`` (the JSON stored in ``group_state.state``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class LineState(StrEnum):
    PENDING = "pending"
    LOCKED = "locked"
    ORDERED = "ordered"


class ProcessingStatus(StrEnum):
    IDLE = "idle"
    PROCESSING = "processing"
    CONFIRMED = "confirmed"
    FAILED = "failed"


# Each member's most recent acknowledged request ids are remembered (and persisted) so a resend after a
# reconnect or a restart gets the same answer and changes nothing. Bounded per member, and stored compactly
# (revision and order id, the only variable parts of an ack) because the whole snapshot is written per op.
ACKED_PER_MEMBER = 16  # a client resends only its unanswered (in-flight) requests


@dataclass(slots=True)
class CartLine:
    line_id: str
    menu_item_id: str
    name: str
    qty: int
    unit_price: int
    note: str
    added_by: str
    state: LineState = LineState.PENDING

    def view(self, unavailable: bool) -> dict[str, Any]:
        """The line as members see it (the stored form plus the live availability flag)."""
        out = self.to_json()
        if unavailable:
            out["unavailable"] = True
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "line_id": self.line_id,
            "menu_item_id": self.menu_item_id,
            "name": self.name,
            "qty": self.qty,
            "unit_price": self.unit_price,
            "note": self.note,
            "state": self.state.value,
            "added_by": self.added_by,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CartLine:
        return cls(
            line_id=d["line_id"],
            menu_item_id=d["menu_item_id"],
            name=d["name"],
            qty=int(d["qty"]),
            unit_price=int(d["unit_price"]),
            note=d.get("note", ""),
            added_by=d["added_by"],
            state=LineState(d.get("state", "pending")),
        )


@dataclass(slots=True)
class PendingOrder:
    """The order intent while the POS outcome is not settled."""

    order_id: str
    order_number: int
    placed_by: str
    special_instructions: str
    total: int
    started_at: float
    unresolved: bool = False  # retries used up with the outcome unknown: cart stays locked, a retry resumes

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "order_number": self.order_number,
            "placed_by": self.placed_by,
            "special_instructions": self.special_instructions,
            "total": self.total,
            "started_at": self.started_at,
            "unresolved": self.unresolved,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PendingOrder:
        return cls(
            order_id=d["order_id"],
            order_number=int(d["order_number"]),
            placed_by=d["placed_by"],
            special_instructions=d.get("special_instructions", ""),
            total=int(d["total"]),
            started_at=float(d["started_at"]),
            unresolved=bool(d.get("unresolved", False)),
        )


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class GroupState:
    revision: int = 0
    next_line: int = 1
    lines: dict[str, CartLine] = field(default_factory=dict)
    status: ProcessingStatus = ProcessingStatus.IDLE
    pending: PendingOrder | None = None
    last_order_id: str | None = None
    last_error: str | None = None
    members: dict[str, str] = field(default_factory=dict)  # member_id -> display name, in join order
    acked: dict[str, OrderedDict[str, list[Any]]] = field(default_factory=dict)  # id -> [revision, order_id?]
    last_updated: float = 0.0

    # -- derived ------------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self.pending is not None

    def total(self) -> int:
        return sum(line.qty * line.unit_price for line in self.lines.values() if line.state != LineState.ORDERED)

    def orderable_lines(self) -> list[CartLine]:
        return [line for line in self.lines.values() if line.state == LineState.PENDING]

    def view(self, unavailable_items: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        return {
            "items": [line.view(line.menu_item_id in unavailable_items) for line in self.lines.values()],
            "total": self.total(),
            "cart_locked": self.locked,
            "pending_order_id": self.pending.order_id if self.pending else None,
            "order_processing_status": self.status.value,
            "locked_by_member": self.pending.placed_by if self.pending else None,
            "revision": self.revision,
            "last_updated": iso(self.last_updated),
        }

    def member_name(self, member_id: str) -> str:
        return self.members.get(member_id, member_id)

    # -- idempotent request ids ---------------------------------------------------------------------
    def answered(self, member_id: str, request_id: str | None) -> dict[str, Any] | None:
        if request_id is None:
            return None
        seen = self.acked.get(member_id)
        compact = seen.get(request_id) if seen is not None else None
        if compact is None:
            return None
        answer: dict[str, Any] = {"type": "ack", "id": request_id, "revision": compact[0]}
        if len(compact) > 1:
            answer["order_id"] = compact[1]
        return answer

    def remember(self, member_id: str, request_id: str | None, answer: dict[str, Any]) -> None:
        """Remember an ``ack`` (the only answers that changed something) for resends."""
        if request_id is None or answer.get("type") != "ack":
            return
        seen = self.acked.setdefault(member_id, OrderedDict())
        compact: list[Any] = [answer["revision"]]
        if "order_id" in answer:
            compact.append(answer["order_id"])
        seen[request_id] = compact
        while len(seen) > ACKED_PER_MEMBER:
            seen.popitem(last=False)

    # -- persistence --------------------------------------------------------------------------------
    def to_snapshot(self) -> dict[str, Any]:
        return {
            "v": 1,
            "next_line": self.next_line,
            "lines": [line.to_json() for line in self.lines.values()],
            "status": self.status.value,
            "pending": self.pending.to_json() if self.pending else None,
            "last_order_id": self.last_order_id,
            "last_error": self.last_error,
            "members": list(self.members.items()),
            "acked": {m: list(seen.items()) for m, seen in self.acked.items()},
            "last_updated": self.last_updated,
        }

    @classmethod
    def from_snapshot(cls, revision: int, d: dict[str, Any]) -> GroupState:
        lines = [CartLine.from_json(x) for x in d.get("lines", [])]
        return cls(
            revision=revision,
            next_line=int(d.get("next_line", 1)),
            lines={line.line_id: line for line in lines},
            status=ProcessingStatus(d.get("status", "idle")),
            pending=PendingOrder.from_json(d["pending"]) if d.get("pending") else None,
            last_order_id=d.get("last_order_id"),
            last_error=d.get("last_error"),
            members=dict((m, n) for m, n in d.get("members", [])),
            acked={m: OrderedDict((k, v) for k, v in seen) for m, seen in d.get("acked", {}).items()},
            last_updated=float(d.get("last_updated", 0.0)),
        )
