"""The cart rules and the stored group state (``tableside/actors/cart.py``): pure, no loop. The whole state
round-trips through the JSON stored in ``group_state.state``; snapshots missing newer keys still load."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from tableside.actors.cart import (
    ACK_KEY_RAW_CHARS,
    CartLine,
    GroupState,
    LineState,
    PendingOrder,
    ProcessingStatus,
    ack_key,
    iso,
)


def stored(state: GroupState) -> dict[str, Any]:
    """The snapshot as it comes back from the database (JSON)."""
    out: dict[str, Any] = json.loads(json.dumps(state.to_snapshot()))
    return out


def busy_state() -> GroupState:
    state = GroupState(
        revision=41,
        next_line=9,
        status=ProcessingStatus.PROCESSING,
        last_order_id="ORD-1-6",
        last_error="declined",
        last_updated=1_700_000_123.25,
        next_guest=7,
    )
    state.lines["L3"] = CartLine("L3", "gyoza", "Pork Gyoza (6)", 2, 680, "extra sauce", "m1", LineState.LOCKED)
    state.lines["L8"] = CartLine("L8", "miso", "Miso Soup", 1, 350, "", "m2")
    state.lines["L5"] = CartLine("L5", "asahi", "Asahi", 3, 600, "cold", "m2", LineState.ORDERED)
    state.pending = PendingOrder("ORD-1-7", 7, "m2", "window seat", 1360, 1_700_000_100.5, unresolved=True)
    state.members = {"m1": "Guest 1", "m2": "Guest 4"}
    state.remember("m1", "a1", {"type": "ack", "id": "a1", "revision": 30})
    state.remember("m1", "r" * 40, {"type": "ack", "id": "r" * 40, "revision": 33})
    state.remember("m2", "po", {"type": "ack", "id": "po", "revision": 40, "order_id": "ORD-1-7"})
    state.remember("m2", "a2", {"type": "ack", "id": "a2", "revision": 41})
    return state


def test_the_whole_state_round_trips_through_the_stored_json() -> None:
    state = busy_state()
    again = GroupState.from_snapshot(41, stored(state))
    assert again == state
    assert list(again.lines) == ["L3", "L8", "L5"] and list(again.members) == ["m1", "m2"]  # order kept
    assert again.acked["m1"] == OrderedDict([("a1", [30]), (ack_key("r" * 40), [33])])
    assert again.answered("m2", "po") == {"type": "ack", "id": "po", "revision": 40, "order_id": "ORD-1-7"}
    assert again.answered("m1", "r" * 40) == {"type": "ack", "id": "r" * 40, "revision": 33}
    assert stored(again) == stored(state)
    # The revision is the stored row's, not part of the JSON.
    assert GroupState.from_snapshot(99, stored(state)).revision == 99


def test_a_snapshot_without_the_optional_keys_loads_with_the_defaults() -> None:
    assert GroupState.from_snapshot(3, {}) == GroupState(revision=3, next_guest=1)
    assert GroupState.from_snapshot(0, {"pending": None}).pending is None
    minimal_line = {"line_id": "L1", "menu_item_id": "gyoza", "name": "Gyoza", "qty": 2, "unit_price": 680, "added_by": "m1"}
    minimal_pending = {"order_id": "ORD-1-2", "order_number": 2, "placed_by": "m1", "total": 1360, "started_at": 5}
    state = GroupState.from_snapshot(
        4, {"lines": [minimal_line], "pending": minimal_pending, "members": [["m1", "Guest 1"], ["m2", "Guest 2"]]}
    )
    assert state.lines == {"L1": CartLine("L1", "gyoza", "Gyoza", 2, 680, "", "m1", LineState.PENDING)}
    assert state.pending == PendingOrder("ORD-1-2", 2, "m1", "", 1360, 5.0, unresolved=False)
    assert state.next_guest == 3 and state.add_member("m3") == "Guest 3"
    assert state.status is ProcessingStatus.IDLE and state.next_line == 1 and state.acked == {}


def test_lines_and_pending_orders_round_trip_on_their_own() -> None:
    line = CartLine("L2", "ramen", "Shoyu Ramen", 4, 1450, "no egg", "m9", LineState.LOCKED)
    assert line.to_json() == {
        "line_id": "L2",
        "menu_item_id": "ramen",
        "name": "Shoyu Ramen",
        "qty": 4,
        "unit_price": 1450,
        "note": "no egg",
        "state": "locked",
        "added_by": "m9",
    }
    assert CartLine.from_json(json.loads(json.dumps(line.to_json()))) == line
    assert line.view(False) == line.to_json()
    assert line.view(True) == {**line.to_json(), "unavailable": True}
    pending = PendingOrder("ORD-2-9", 9, "m9", "", 5800, 12.5, unresolved=True)
    assert PendingOrder.from_json(json.loads(json.dumps(pending.to_json()))) == pending
    assert pending.to_json() == {
        "order_id": "ORD-2-9",
        "order_number": 9,
        "placed_by": "m9",
        "special_instructions": "",
        "total": 5800,
        "started_at": 12.5,
        "unresolved": True,
    }


def test_the_cart_view() -> None:
    state = busy_state()
    view = state.view(frozenset({"miso"}))
    assert [i["line_id"] for i in view["items"]] == ["L3", "L8", "L5"]
    assert view["items"][1] == {**state.lines["L8"].to_json(), "unavailable": True}
    assert "unavailable" not in view["items"][0]
    assert view["total"] == 2 * 680 + 350  # ordered lines are not in the total
    assert view["cart_locked"] is True and view["pending_order_id"] == "ORD-1-7"
    assert view["locked_by_member"] == "m2" and view["order_processing_status"] == "processing"
    assert view["revision"] == 41 and view["last_updated"] == "2023-11-14T22:15:23.250000Z"
    idle = GroupState().view()
    assert idle["cart_locked"] is False and idle["pending_order_id"] is None and idle["locked_by_member"] is None
    assert idle["items"] == [] and idle["total"] == 0 and idle["order_processing_status"] == "idle"
    assert idle["last_updated"] == "1970-01-01T00:00:00Z"


def test_orderable_lines_are_the_pending_ones() -> None:
    state = busy_state()
    assert [line.line_id for line in state.orderable_lines()] == ["L8"]
    assert state.locked  # an order is pending
    state.pending = None
    assert not state.locked


def test_timestamps_are_iso_8601_utc() -> None:
    assert iso(1_700_000_000.0) == "2023-11-14T22:13:20Z"
    assert iso(0.123) == "1970-01-01T00:00:00.123000Z"


def test_ack_keys_short_ids_verbatim_long_ones_hashed() -> None:
    twelve = "a" * ACK_KEY_RAW_CHARS
    assert ACK_KEY_RAW_CHARS == 12  # docs/protocol.md: ids longer than 12 characters are hashed
    assert ack_key(twelve) == twelve and ack_key("x") == "x"
    thirteen = twelve + "b"
    hashed = ack_key(thirteen)
    assert hashed.startswith("~") and len(hashed) == 13 and hashed == ack_key(thirteen)
    assert ack_key(twelve + "c") != hashed and ack_key("b" + twelve) != hashed
    # A short id that looks like a hashed key is hashed too, so the two forms cannot collide.
    tilde = ack_key("~" + "a" * 11)
    assert tilde != "~" + "a" * 11 and tilde.startswith("~") and len(tilde) == 13
    # Ids decoded from JSON may hold lone surrogates: still a key, and a distinct one.
    odd = ack_key("req-\ud800-" + "z" * 20)
    assert odd.startswith("~") and odd != ack_key("req-\ud801-" + "z" * 20)


def test_remember_and_answered() -> None:
    state = GroupState()
    state.remember("m1", "e1", {"type": "error", "id": "e1", "code": "not_found", "message": "x"})
    state.remember("m1", None, {"type": "ack", "revision": 3})
    assert state.acked == {}  # errors and id-less answers use up nothing
    assert state.answered("m1", None) is None and state.answered("m1", "e1") is None
    assert state.answered("nobody", "e1") is None
    state.remember("m1", "a", {"type": "ack", "id": "a", "revision": 5})
    state.remember("m1", "b", {"type": "ack", "id": "b", "revision": 6, "order_id": "ORD-1-1"})
    assert state.answered("m1", "a") == {"type": "ack", "id": "a", "revision": 5}
    assert state.answered("m1", "b") == {"type": "ack", "id": "b", "revision": 6, "order_id": "ORD-1-1"}
    assert state.answered("m2", "a") is None  # per member
    # A re-used id moves to the newest end (and the stored window follows every change).
    first = stored(state)["acks"]["m1"]
    assert first == ["a", 5, "b", [1, "ORD-1-1"]]
    state.remember("m1", "a", {"type": "ack", "id": "a", "revision": 9})
    assert list(state.acked["m1"]) == ["b", "a"]
    assert stored(state)["acks"]["m1"] == ["b", [6, "ORD-1-1"], "a", 3]
    assert GroupState.from_snapshot(9, stored(state)).answered("m1", "a") == {"type": "ack", "id": "a", "revision": 9}


def test_members_are_named_in_order_and_names_are_never_reused() -> None:
    state = GroupState()
    assert state.add_member("m1") == "Guest 1"
    assert state.add_member("m2") == "Guest 2"
    state.remember("m2", "x", {"type": "ack", "id": "x", "revision": 1})
    stored(state)
    assert state.remove_member("m2") is True
    assert state.remove_member("m2") is False and state.remove_member("never") is False
    assert state.answered("m2", "x") is None and "m2" not in stored(state)["acks"]
    assert state.add_member("m3") == "Guest 3"
    assert state.members == {"m1": "Guest 1", "m3": "Guest 3"}
    again = GroupState.from_snapshot(0, stored(state))
    assert again.add_member("m4") == "Guest 4"
    assert state.member_name("m3") == "Guest 3"
    assert state.member_name("m2") == "a guest who left"
