"""Shared by ``MemoryStore`` and ``PostgresStore``: how till sessions and table orders become bill lines and
kitchen tickets (docs/till.md), so both stores build exactly the same records."""

from __future__ import annotations

from typing import Any

from tableside.storage.interface import OrderRecord, OrderSession, OrderStatus


def session_group_id(session_id: int) -> str:
    """The ``group_id`` of an order session's kitchen ticket."""
    return f"till:{session_id}"


def order_line(order_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """One item of a confirmed table order as a tab line."""
    return {
        "source": "order",
        "ref": order_id,
        "menu_item_id": item.get("menu_item_id"),
        "name": item.get("name", ""),
        "unit_price": int(item.get("unit_price", 0)),
        "qty": int(item.get("qty", 0)),
        "note": item.get("note") or "",
    }


def session_line(session_id: int, item: dict[str, Any]) -> dict[str, Any]:
    """One item of an order session as a tab / transaction line."""
    return {
        "source": "till",
        "ref": session_id,
        "menu_item_id": item.get("menu_item_id"),
        "name": item.get("name", ""),
        "unit_price": int(item.get("unit_price", 0)),
        "qty": int(item.get("qty", 0)),
        "note": item.get("note") or "",
    }


def session_lines(session: OrderSession) -> list[dict[str, Any]]:
    return [session_line(session.session_id, item) for item in session.items]


def lines_total(lines: list[dict[str, Any]]) -> int:
    return sum(int(line["unit_price"]) * int(line["qty"]) for line in lines)


def ticket_items(session: OrderSession) -> list[dict[str, Any]]:
    """The session's items as order items (``added_by`` the staff user)."""
    return [
        {
            "line_id": item.get("line_id", f"{session.session_id}-{i}"),
            "menu_item_id": item.get("menu_item_id"),
            "name": item.get("name", ""),
            "qty": int(item.get("qty", 0)),
            "unit_price": int(item.get("unit_price", 0)),
            "note": item.get("note") or "",
            "added_by": session.user_id,
        }
        for i, item in enumerate(session.items)
    ]


def ticket(session: OrderSession, order_number: int, table_id: str, now: float) -> OrderRecord:
    """The kitchen ticket of a completed or assigned session (``kitchen_seq`` is the store's to assign)."""
    items = ticket_items(session)
    return OrderRecord(
        order_id=f"ORD-{session.store_id}-{order_number}",
        order_number=order_number,
        restaurant_id=session.store_id,
        table_id=table_id,
        group_id=session_group_id(session.session_id),
        status=OrderStatus.CONFIRMED,
        items=items,
        total=sum(i["unit_price"] * i["qty"] for i in items),
        special_instructions="",
        placed_by=session.user_id,
        created_at=now,
        confirmed_at=now,
    )
