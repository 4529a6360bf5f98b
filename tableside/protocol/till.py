"""Till order sessions (docs/till.md), sans I/O: the client's ``items`` list checked and parsed, and the JSON
views of sessions, tabs and transactions the API and the staff websocket send.

``parse_till_items`` is the only reader of a client's items: at most ``MAX_LINES`` lines, ``qty`` an
integer 1..``MAX_QTY`` (never a bool or a float), ``note`` at most ``MAX_NOTE`` characters, ``menu_item_id``
a string of at most 64 characters, an optional ``line_id``. Any other key (a client's price, name or
total) is ignored: prices come from the menu."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_LINES = 100  # = storage.interface.TILL_MAX_LINES
MAX_QTY = 99  # = storage.interface.TILL_MAX_QUANTITY
MAX_NOTE = 200  # = storage.interface.TILL_MAX_NOTE
MAX_ITEM_ID = 64
MAX_LINE_ID = 64
TILL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
LINE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class TillItemsError(ValueError):
    """The items list is not acceptable; ``field`` names the offending part (``items[3].qty``)."""

    def __init__(self, message: str, field: str = "items") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class TillLine:
    """One line as the client asked for it (not priced yet)."""

    menu_item_id: str
    qty: int
    note: str = ""
    line_id: str | None = None


def valid_till_id(value: Any) -> bool:
    return isinstance(value, str) and TILL_ID.fullmatch(value) is not None


def parse_till_items(raw: Any) -> list[TillLine]:
    """The client's ``items`` as ``TillLine``s; ``TillItemsError`` for anything invalid."""
    if not isinstance(raw, list):
        raise TillItemsError("items must be a list")
    if len(raw) > MAX_LINES:
        raise TillItemsError(f"at most {MAX_LINES} lines")
    lines: list[TillLine] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"items[{i}]"
        if not isinstance(entry, dict):
            raise TillItemsError("each line must be an object", where)
        item = entry.get("menu_item_id")
        if not isinstance(item, str) or not 0 < len(item) <= MAX_ITEM_ID:
            raise TillItemsError(f"menu_item_id must be a string of 1..{MAX_ITEM_ID} characters",
                                 f"{where}.menu_item_id")
        qty = entry.get("qty")
        if type(qty) is not int or not 1 <= qty <= MAX_QTY:
            raise TillItemsError(f"qty must be an integer 1..{MAX_QTY}", f"{where}.qty")
        note = entry.get("note", "")
        if note is None:
            note = ""
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise TillItemsError(f"note must be a string of at most {MAX_NOTE} characters", f"{where}.note")
        line_id = entry.get("line_id")
        if line_id is not None:
            if not isinstance(line_id, str) or LINE_ID.fullmatch(line_id) is None:
                raise TillItemsError("line_id must be 1..64 characters [A-Za-z0-9_.:-]", f"{where}.line_id")
            if line_id in seen:
                raise TillItemsError(f"line_id {line_id!r} appears twice", f"{where}.line_id")
            seen.add(line_id)
        lines.append(TillLine(item, qty, note, line_id))
    return lines


def iso_time(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``2026-11-30T21:00:00.000Z``); None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _line(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "line_id": line.get("line_id"),
        "menu_item_id": line.get("menu_item_id"),
        "name": line.get("name"),
        "unit_price": line.get("unit_price"),
        "qty": line.get("qty"),
        "note": line.get("note", ""),
    }


def session_view(session: Any) -> dict[str, Any]:
    """An ``OrderSession`` (storage record) as the API's session JSON."""
    return {
        "id": session.session_id,
        "user_id": session.user_id,
        "store_id": session.store_id,
        "items": [_line(line) for line in session.items],
        "total": session.total,
        "status": str(session.status),
        "created_at": iso_time(session.created_at),
        "updated_at": iso_time(session.updated_at),
        "logout_time": iso_time(session.logout_time),
        "tab_id": session.tab_id,
        "till_id": session.till_id,
        "revision": session.revision,
        "transaction_id": session.transaction_id,
        "order_id": session.order_id,
    }


def tab_view(tab: Any) -> dict[str, Any]:
    """A ``Tab`` (with its lines) as the API's tab JSON."""
    return {
        "id": tab.tab_id,
        "store_id": tab.store_id,
        "name": tab.name,
        "table_id": tab.table_id,
        "status": str(tab.status),
        "created_at": iso_time(tab.created_at),
        "closed_at": iso_time(tab.closed_at),
        "lines": [dict(line) for line in tab.lines],
        "total": tab.total,
        "transaction_id": tab.transaction_id,
    }


def transaction_view(txn: Any) -> dict[str, Any]:
    return {
        "id": txn.transaction_id,
        "store_id": txn.store_id,
        "tab_id": txn.tab_id,
        "order_session_id": txn.order_session_id,
        "lines": [dict(line) for line in txn.lines],
        "total": txn.total,
        "payment_method": txn.payment_method,
        "created_at": iso_time(txn.created_at),
    }
