"""An in-memory cart with tableside's wire shape (no locking, no orders, no storage): what both baselines
send, so payload sizes match tableside's ``cart_updated`` and ``ack`` messages."""

from __future__ import annotations

import time
from typing import Any

Msg = dict[str, Any]

# the shape of tableside's demo menu: 12 dishes, prices in minor units
MENU: dict[str, tuple[str, int]] = {
    "m-burger": ("Classic Burger", 1450),
    "m-fries": ("Hand-cut Fries", 550),
    "m-salad": ("Garden Salad", 950),
    "m-soup": ("Soup of the Day", 750),
    "m-pizza": ("Margherita Pizza", 1350),
    "m-pasta": ("Penne Arrabbiata", 1250),
    "m-steak": ("Sirloin Steak", 2650),
    "m-fish": ("Fish and Chips", 1650),
    "m-cake": ("Chocolate Cake", 650),
    "m-icecream": ("Vanilla Ice Cream", 500),
    "m-cola": ("Cola", 350),
    "m-coffee": ("Espresso", 300),
}

MAX_LINES = 100
MAX_QTY = 99


class CartError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Cart:
    def __init__(self, table_id: str) -> None:
        self.table_id = table_id
        self.revision = 0
        self.lines: dict[str, Msg] = {}
        self._next_line = 1
        self.last_updated = time.time()

    def _bump(self) -> int:
        self.revision += 1
        self.last_updated = time.time()
        return self.revision

    def add_item(self, member_id: str, menu_item_id: Any, qty: Any, note: Any) -> int:
        if menu_item_id not in MENU:
            raise CartError("unknown_item", "no such menu item")
        if not isinstance(qty, int) or not 1 <= qty <= MAX_QTY:
            raise CartError("bad_request", "qty must be 1..99")
        if note is not None and (not isinstance(note, str) or len(note) > 200):
            raise CartError("bad_request", "note must be a string of at most 200 characters")
        if len(self.lines) >= MAX_LINES:
            raise CartError("bad_request", "cart is full")
        name, price = MENU[menu_item_id]
        line_id = f"ln_{self.table_id}_{self._next_line:06d}"
        self._next_line += 1
        self.lines[line_id] = {
            "line_id": line_id,
            "menu_item_id": menu_item_id,
            "name": name,
            "qty": qty,
            "unit_price": price,
            "note": note or "",
            "state": "pending",
            "added_by": member_id,
        }
        return self._bump()

    def update_item(self, line_id: Any, qty: Any) -> int:
        if not isinstance(qty, int) or not 0 <= qty <= MAX_QTY:
            raise CartError("bad_request", "qty must be 0..99")
        if line_id not in self.lines:
            raise CartError("unknown_line", "no such line")
        if qty == 0:
            del self.lines[line_id]
        else:
            self.lines[line_id]["qty"] = qty
        return self._bump()

    def remove_item(self, line_id: Any) -> int:
        if line_id not in self.lines:
            raise CartError("unknown_line", "no such line")
        del self.lines[line_id]
        return self._bump()

    def snapshot(self) -> Msg:
        items = list(self.lines.values())
        return {
            "items": items,
            "total": sum(it["qty"] * it["unit_price"] for it in items),
            "cart_locked": False,
            "pending_order_id": None,
            "order_processing_status": "idle",
            "revision": self.revision,
            "last_updated": self.last_updated,
        }


def apply(cart: Cart, member_id: str, msg: Msg) -> tuple[Msg, bool]:
    """Handle one client message; returns (reply, cart_changed)."""
    mtype = msg.get("type")
    rid = msg.get("id")
    try:
        if mtype == "add_item":
            rev = cart.add_item(member_id, msg.get("menu_item_id"), msg.get("qty", 1), msg.get("note"))
        elif mtype == "update_item":
            rev = cart.update_item(msg.get("line_id"), msg.get("qty"))
        elif mtype == "remove_item":
            rev = cart.remove_item(msg.get("line_id"))
        elif mtype == "get_snapshot":
            return {"type": "snapshot", "id": rid, "cart": cart.snapshot()}, False
        elif mtype == "ping":
            return {"type": "pong", "id": rid}, False
        else:
            raise CartError("unknown_type", f"unsupported message type {mtype!r}")
    except CartError as exc:
        return {"type": "error", "id": rid, "code": exc.code, "message": exc.message}, False
    return {"type": "ack", "id": rid, "revision": rev}, True


def welcome(cart: Cart, member_id: str, members: list[str]) -> Msg:
    return {
        "type": "welcome",
        "member_id": member_id,
        "table_id": cart.table_id,
        "group_id": f"grp_{cart.table_id}",
        "members": members,
        "cart": cart.snapshot(),
    }


def menu() -> Msg:
    return {
        "items": [
            {"menu_item_id": k, "name": n, "category": "main", "price": p, "available": True}
            for k, (n, p) in MENU.items()
        ]
    }
