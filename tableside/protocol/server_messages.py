"""Server -> client message builders.

Pure functions returning plain dicts (``type`` first, for readable logs and cheap client dispatch) that
both codecs can encode. Containers passed in are shallow-copied into plain ``dict``/``list`` so a
``Mapping``/``tuple`` from the caller never reaches ``json.dumps`` (which refuses non-dict mappings) and
later mutation of the caller's top-level container does not change a built message.

Replies to a request (``ack``, ``error``, ``pong``, ``snapshot``) carry the request's ``id``; the key is
omitted when the request had none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ErrorCode, ProtocolError


def _reply(msg_type: str, request_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": msg_type}
    if request_id is not None:
        out["id"] = request_id
    return out


def welcome(
    member_id: str,
    table_id: str,
    group_id: str,
    members: Iterable[Any],
    cart: Mapping[str, Any],
    imported: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``imported``: once, after the member's guest cart was brought into this cart:
    ``{"lines": n, "skipped": [{"menu_item_id", "name", "reason"}]}``."""
    out = {
        "type": "welcome",
        "member_id": member_id,
        "table_id": table_id,
        "group_id": group_id,
        "members": list(members),
        "cart": dict(cart),
    }
    if imported is not None:
        out["imported"] = dict(imported)
    return out


def ack(request_id: str | None, revision: int, **extra: Any) -> dict[str, Any]:
    """Success reply to a mutating request; ``revision`` is the cart revision after the change."""
    if "type" in extra or "id" in extra:
        raise ValueError("ack extras may not override 'type' or 'id'")
    out = _reply("ack", request_id)
    out["revision"] = revision
    out.update(extra)
    return out


def error(request_id: str | None, code: ErrorCode | str, message: str) -> dict[str, Any]:
    out = _reply("error", request_id)
    out["code"] = str(code)
    out["message"] = message
    return out


def error_from(exc: ProtocolError) -> dict[str, Any]:
    """The ``error`` message for a rejected frame."""
    return error(exc.request_id, exc.code, exc.message)


def pong(request_id: str | None) -> dict[str, Any]:
    return _reply("pong", request_id)


def snapshot(request_id: str | None, cart: Mapping[str, Any]) -> dict[str, Any]:
    out = _reply("snapshot", request_id)
    out["cart"] = dict(cart)
    return out


def cart_updated(cart: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "cart_updated", "cart": dict(cart)}


def cart_delta(revision: int, base_revision: int, changes: Mapping[str, Any]) -> dict[str, Any]:
    """v2 only: what changed since the cart at ``base_revision`` (see ``protocol/delta.py``)."""
    return {"type": "cart_delta", "revision": revision, "base_revision": base_revision, "changes": dict(changes)}


def member_joined(member_id: str, members: Iterable[Any]) -> dict[str, Any]:
    return {"type": "member_joined", "member_id": member_id, "members": list(members)}


def member_left(member_id: str, members: Iterable[Any]) -> dict[str, Any]:
    return {"type": "member_left", "member_id": member_id, "members": list(members)}


def cart_locked(locked_by_member: str, order_id: str, message: str, timestamp: str) -> dict[str, Any]:
    return {
        "type": "cart_locked",
        "locked_by_member": locked_by_member,
        "order_id": order_id,
        "message": message,
        "timestamp": timestamp,
    }


def order_confirmed(
    order_id: str, order_number: int | str, message: str, total: int, items: Iterable[Any]
) -> dict[str, Any]:
    return {
        "type": "order_confirmed",
        "order_id": order_id,
        "order_number": order_number,
        "message": message,
        "total": total,
        "items": list(items),
    }


def order_failed(order_id: str, error: str, message: str, allow_retry: bool) -> dict[str, Any]:
    return {
        "type": "order_failed",
        "order_id": order_id,
        "error": error,
        "message": message,
        "allow_retry": allow_retry,
    }


def session_closed(reason: str) -> dict[str, Any]:
    return {"type": "session_closed", "reason": reason}


def order_status(order_id: str, status: str) -> dict[str, Any]:
    return {"type": "order_status", "order_id": order_id, "status": status}


def kitchen_snapshot(tickets: Iterable[Any], cursor: int | str | None) -> dict[str, Any]:
    return {"type": "kitchen_snapshot", "tickets": list(tickets), "cursor": cursor}


def order_placed(
    order_id: str,
    order_number: int | str,
    table_id: str,
    items: Iterable[Any],
    special_instructions: str,
    placed_at: float,
    seq: int,
) -> dict[str, Any]:
    return {
        "type": "order_placed",
        "order_id": order_id,
        "order_number": order_number,
        "table_id": table_id,
        "items": list(items),
        "special_instructions": special_instructions,
        "placed_at": placed_at,
        "seq": seq,
    }


# -- the staff websocket of the till (docs/till.md) ----------------------------------------------------


def staff_welcome(username: str, role: str, till_id: str | None, session: Mapping[str, Any] | None) -> dict[str, Any]:
    """On connect: who the socket is and the user's open order session (or None)."""
    return {
        "type": "staff_welcome",
        "username": username,
        "role": role,
        "till_id": till_id,
        "session": dict(session) if session is not None else None,
    }


def order_session_updated(session: Mapping[str, Any] | None, session_id: int | None = None) -> dict[str, Any]:
    """A change of one of the user's order sessions. A deleted session: ``session`` None and its
    ``session_id``."""
    out: dict[str, Any] = {"type": "order_session_updated", "session": dict(session) if session is not None else None}
    if session is None and session_id is not None:
        out["session_id"] = session_id
    return out


def session_moved(session_id: int, till_id: str | None) -> dict[str, Any]:
    """Another till (``till_id``) took the session over."""
    return {"type": "session_moved", "session_id": session_id, "till_id": till_id}


# -- the customer socket ``/ws/me`` (docs/reservations.md) -----------------------------------------------


def customer_welcome(user_id: str) -> dict[str, Any]:
    """On connect: whose socket this is."""
    return {"type": "customer_welcome", "user_id": user_id}


def reservation_updated(reservation: Mapping[str, Any]) -> dict[str, Any]:
    """A status change of one of the customer's reservations (payment outcome, canceled, seated...)."""
    return {"type": "reservation_updated", "reservation": dict(reservation)}


def waitlist_offer(entry: Mapping[str, Any], reservation_id: str | None, offered_until: str | float | None) -> dict[str, Any]:
    """A freed slot offered to the customer: ``reservation_id`` is the pending reservation held for them
    until ``offered_until``; ``POST /api/waitlist/{entry_id}/accept`` takes it."""
    return {"type": "waitlist_offer", "entry": dict(entry), "reservation_id": reservation_id,
            "offered_until": offered_until}
