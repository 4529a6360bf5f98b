"""The shared cart of one table group: plain data and rules, no I/O.

``TableActor`` owns exactly one ``GroupState`` and is the only writer; everything here is synchronous so
the rules can be tested without a loop. The whole object round-trips through ``to_snapshot`` /
``from_snapshot`` (the JSON stored in ``group_state.state``).

The op log: the changes a cart edit makes (``add_line``, ``set_qty``, ``remove_line``, ``set_status``,
``remember``) and membership changes (``add_member``, ``remove_member``: a member may be added in memory and
written with the group's next write, which may be a cart batch) are also appended to a journal as compact ops; ``take_ops`` hands them out (and clears the
journal) so a cart batch is stored as one small op record (``{"rev", "t", "ops"}``) instead of the whole
snapshot, and ``apply_ops`` replays such a record onto the state it was made from. An order intent is an op
record too (``start_intent``'s ``"o"`` op and a ``"k"`` op without the order id, ``"n": null``): the store
fills in the record's ``n`` (the order number it takes in the same statement) and replay derives the order
id from it. Every other change (orders settled, imports) is stored as a full snapshot, which makes the
journal moot (the writer clears it).
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tableside.storage.interface import register_group_replay


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
# reconnect or a restart gets the same answer and changes nothing: the last ACKED_PER_MEMBER of each member
# (docs/protocol.md promises 128); an older id is forgotten and a resend of it is a new operation.
# The whole snapshot is written per op, so the window is stored compactly (see ``_encode_acked``): ids of up
# to ACK_KEY_RAW_CHARS characters as they are, longer ones (up to 64) as a 72-bit hash, and per id only the
# revision (as a delta to the previous one) plus, for place_order, the order id.
ACKED_PER_MEMBER = 128
ACK_KEY_RAW_CHARS = 12
_HASHED_KEY_PREFIX = "~"


def ack_key(request_id: str) -> str:
    """The form a request id is remembered under: short ids verbatim, long ones as ``~`` + a 72-bit
    BLAKE2b hash (12 base64url characters). A raw id never starts with ``~``, so the two cannot collide."""
    if len(request_id) <= ACK_KEY_RAW_CHARS and not request_id.startswith(_HASHED_KEY_PREFIX):
        return request_id
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=9).digest()
    return _HASHED_KEY_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")


def _encode_acked(seen: OrderedDict[str, list[Any]]) -> list[Any]:
    """``[key, rev, key, drev, key, [drev, order_id], ...]``: oldest first, the first revision absolute and
    every later one as the difference to the one before (acks of a member have increasing revisions)."""
    out: list[Any] = []
    previous = 0
    for key, compact in seen.items():
        revision = int(compact[0])
        delta = revision - previous
        previous = revision
        out.append(key)
        out.append(delta if len(compact) == 1 else [delta, compact[1]])
    return out


def _decode_acked(flat: list[Any]) -> OrderedDict[str, list[Any]]:
    seen: OrderedDict[str, list[Any]] = OrderedDict()
    revision = 0
    for i in range(0, len(flat) - 1, 2):
        key, value = flat[i], flat[i + 1]
        if isinstance(value, list):
            revision += int(value[0])
            seen[str(key)] = [revision, value[1]]
        else:
            revision += int(value)
            seen[str(key)] = [revision]
    return seen


def _decode_legacy_acked(pairs: list[Any]) -> OrderedDict[str, list[Any]]:
    """Snapshots written before the compact form: ``[[request_id, [revision, order_id?]], ...]``."""
    return OrderedDict((ack_key(str(rid)), list(compact)) for rid, compact in pairs)


# How many guest-cart imports a group remembers (their idempotency keys).
IMPORT_KEYS = 32


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
    # member_id -> ack_key(request id) -> [revision, order_id?], oldest first, at most ACKED_PER_MEMBER each
    acked: dict[str, OrderedDict[str, list[Any]]] = field(default_factory=dict)
    last_updated: float = 0.0
    next_guest: int = 0  # the N of the next "Guest N" (0: not known yet, len(members) + 1)
    # Keys of guest carts already brought into this cart (``ImportLines``), newest last, at most IMPORT_KEYS:
    # the same import asked again (a retry after a crash) is answered, not applied twice.
    imports: list[str] = field(default_factory=list)
    # Encoded ``acked`` per member, reused by to_snapshot until that member's window changes.
    _acked_wire: dict[str, list[Any]] = field(default_factory=dict, init=False, repr=False, compare=False)
    # The ops of the changes made since the last ``take_ops`` (see the module docstring).
    _journal: list[list[Any]] = field(default_factory=list, init=False, repr=False, compare=False)

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
        return self.members.get(member_id, "a guest who left")

    # -- idempotent request ids ---------------------------------------------------------------------
    def answered(self, member_id: str, request_id: str | None) -> dict[str, Any] | None:
        if request_id is None:
            return None
        seen = self.acked.get(member_id)
        compact = seen.get(ack_key(request_id)) if seen is not None else None
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
        compact: list[Any] = [answer["revision"]]
        if "order_id" in answer:
            compact.append(answer["order_id"])
        self._remember_key(member_id, ack_key(request_id), compact)

    def _remember_key(self, member_id: str, key: str, compact: list[Any]) -> None:
        self._journal.append(["k", member_id, key, *compact])
        seen = self.acked.setdefault(member_id, OrderedDict())
        seen.pop(key, None)  # a re-used id moves to the newest end
        seen[key] = compact
        while len(seen) > ACKED_PER_MEMBER:
            seen.popitem(last=False)
        self._acked_wire.pop(member_id, None)

    # -- cart edits (journaled) ---------------------------------------------------------------------
    def add_line(
        self, menu_item_id: str, name: str, qty: int, unit_price: int, note: str, added_by: str
    ) -> CartLine:
        """A new pending line with the next line id (``L<next_line>``)."""
        self._journal.append(["a", menu_item_id, name, qty, unit_price, note, added_by])
        line_id = f"L{self.next_line}"
        self.next_line += 1
        line = CartLine(line_id, menu_item_id, name, qty, unit_price, note, added_by)
        self.lines[line_id] = line
        return line

    def set_qty(self, line_id: str, qty: int) -> None:
        self._journal.append(["q", line_id, qty])
        self.lines[line_id].qty = qty

    def remove_line(self, line_id: str) -> None:
        self._journal.append(["r", line_id])
        del self.lines[line_id]

    def set_status(self, status: ProcessingStatus) -> None:
        if status != self.status:
            self._journal.append(["s", status.value])
            self.status = status

    def touch(self, now: float) -> int:
        """One more change: the next revision, stamped ``now`` (carried by the op record itself)."""
        self.revision += 1
        self.last_updated = now
        return self.revision

    def start_intent(self, prefix: str, pending: PendingOrder, line_ids: list[str]) -> None:
        """Lock ``line_ids`` and make ``pending`` the order in progress (status processing). Journaled as
        ``["o", prefix, fields, line_ids]`` without the order's number, which the store fills in (the op
        record's ``n``): replay makes the order id ``prefix + str(n)``."""
        fields = {
            "placed_by": pending.placed_by,
            "special_instructions": pending.special_instructions,
            "total": pending.total,
            "started_at": pending.started_at,
        }
        self._journal.append(["o", prefix, fields, list(line_ids)])
        self._start_intent(pending, line_ids)  # the caller's object: it learns its number after the commit

    def _start_intent(self, pending: PendingOrder, line_ids: list[str]) -> None:
        for line_id in line_ids:
            self.lines[line_id].state = LineState.LOCKED
        self.pending = pending
        self.status = ProcessingStatus.PROCESSING
        self.last_error = None

    def journal_intent_ack(self, member_id: str, request_id: str | None, revision: int) -> None:
        """Journal the intent's ack (``["k", member, key, revision, null]``: replay fills in the order id);
        it is remembered in memory once the number is known (``remember``)."""
        if request_id is not None:
            self._journal.append(["k", member_id, ack_key(request_id), revision, None])

    def take_ops(self) -> list[list[Any]]:
        """The journal since the last call (and clear it). A writer that stores a full snapshot calls it
        too and drops the result: the snapshot holds those changes."""
        ops, self._journal = self._journal, []
        return ops

    # -- members ------------------------------------------------------------------------------------
    def add_member(self, member_id: str) -> str:
        """Give a new member the next "Guest N" name (numbers are never reused within the sitting)."""
        self._journal.append(["m", member_id])
        number = max(self.next_guest, len(self.members) + 1)
        self.members[member_id] = f"Guest {number}"
        self.next_guest = number + 1
        return self.members[member_id]

    def remove_member(self, member_id: str) -> bool:
        """Forget a member who left (and their resend window). False when they were not a member."""
        self._journal.append(["x", member_id])
        self.acked.pop(member_id, None)
        self._acked_wire.pop(member_id, None)
        return self.members.pop(member_id, None) is not None

    def _acked_snapshot(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for member_id, seen in self.acked.items():
            wire = self._acked_wire.get(member_id)
            if wire is None:
                wire = self._acked_wire[member_id] = _encode_acked(seen)
            out[member_id] = wire
        return out

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
            "members": [[m, name] for m, name in self.members.items()],  # lists, as JSON gives them back
            "next_guest": self.next_guest,
            # "acks" (compact) replaced "acked" ([[id, [revision, order_id?]], ...]), which is still read.
            "acks": self._acked_snapshot(),
            "last_updated": self.last_updated,
            "imports": list(self.imports),
        }

    @classmethod
    def from_snapshot(cls, revision: int, d: dict[str, Any]) -> GroupState:
        lines = [CartLine.from_json(x) for x in d.get("lines", [])]
        if "acks" in d:
            acked = {m: _decode_acked(flat) for m, flat in d["acks"].items()}
        else:
            acked = {m: _decode_legacy_acked(pairs) for m, pairs in d.get("acked", {}).items()}
        members = dict((m, n) for m, n in d.get("members", []))
        return cls(
            revision=revision,
            next_line=int(d.get("next_line", 1)),
            lines={line.line_id: line for line in lines},
            status=ProcessingStatus(d.get("status", "idle")),
            pending=PendingOrder.from_json(d["pending"]) if d.get("pending") else None,
            last_order_id=d.get("last_order_id"),
            last_error=d.get("last_error"),
            members=members,
            acked=acked,
            last_updated=float(d.get("last_updated", 0.0)),
            next_guest=int(d.get("next_guest", len(members) + 1)),
            imports=[str(k) for k in d.get("imports", [])],
        )


def op_record(state: GroupState, base: int) -> dict[str, Any]:
    """The op record of the changes since the last ``take_ops``, made on the state of revision ``base``:
    ``{"b": base, "rev": revision after, "t": last_updated after, "ops": [...]}`` (ints and strings only,
    plus the float ``t``)."""
    return {"b": base, "rev": state.revision, "t": state.last_updated, "ops": state.take_ops()}


def apply_ops(state: GroupState, record: dict[str, Any]) -> None:
    """Replay one op record onto ``state`` (the state it was made from, or a later one: a record at or below
    the state's revision is in it already and changes nothing). Raises ValueError for an op it does not
    know or a record that does not follow on (a gap would silently lose changes)."""
    revision = int(record["rev"])
    if revision <= state.revision:
        return
    if int(record["b"]) != state.revision:
        raise ValueError(f"op record {record['b']}->{revision} does not follow revision {state.revision}")
    journal, state._journal = state._journal, []  # replaying is not a new change
    intent_id: str | None = None  # the order id an intent record's "o" op made (from the record's "n")
    try:
        for op in record["ops"]:
            kind = op[0]
            if kind == "a":
                state.add_line(str(op[1]), str(op[2]), int(op[3]), int(op[4]), str(op[5]), str(op[6]))
            elif kind == "q":
                state.set_qty(str(op[1]), int(op[2]))
            elif kind == "r":
                state.remove_line(str(op[1]))
            elif kind == "s":
                state.set_status(ProcessingStatus(op[1]))
            elif kind == "k":
                rest = [intent_id if v is None else v for v in op[4:]]
                if None in rest:
                    raise ValueError("an ack without its order id outside an intent record")
                state._remember_key(str(op[1]), str(op[2]), [int(op[3]), *rest])
            elif kind == "o":
                n = record.get("n")
                if not isinstance(n, int) or isinstance(n, bool):
                    raise ValueError(f"an intent record without its order number: n={n!r}")
                intent_id = f"{op[1]}{n}"
                fields = op[2]
                pending = PendingOrder(
                    order_id=intent_id,
                    order_number=n,
                    placed_by=str(fields["placed_by"]),
                    special_instructions=str(fields.get("special_instructions", "")),
                    total=int(fields["total"]),
                    started_at=float(fields["started_at"]),
                )
                state._start_intent(pending, [str(x) for x in op[3]])
            elif kind == "m":
                state.add_member(str(op[1]))
            elif kind == "x":
                state.remove_member(str(op[1]))
            else:
                raise ValueError(f"unknown op {kind!r}")
    finally:
        state._journal = journal
    state.revision = revision
    state.last_updated = float(record["t"])


def replay_snapshot(revision: int, snapshot: dict[str, Any], records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """A stored snapshot plus the op records after it, as the snapshot they amount to (revision, state)."""
    # ``{}``: no snapshot was ever written (the stores' placeholder; a real one has "v"): the records start
    # from a new group, as an actor without a snapshot does.
    state = GroupState.from_snapshot(revision, snapshot) if snapshot else GroupState()
    for record in records:
        apply_ops(state, record)
    return state.revision, state.to_snapshot()


# ``Store.load_group`` answers the current state (snapshot + records replayed) through this.
register_group_replay(replay_snapshot)
