"""docs/till.md, the endpoints: every call and transition, valid and invalid, with its status and error
code; ETag / If-Match; who may reach which session."""

from __future__ import annotations

import asyncio

from tests.integration.till_support import TillServer

SESSION_KEYS = {"id", "user_id", "store_id", "items", "total", "status", "created_at", "updated_at", "logout_time",
                "tab_id", "till_id", "revision", "transaction_id", "order_id"}


async def test_create_get_and_active_carry_the_session_and_its_etag(till: TillServer) -> None:
    answer = await till.call("GET", "/api/order-sessions/active", user="sam")
    assert answer.code == 200 and answer.body == {"session": None}
    created = await till.call("POST", "/api/order-sessions",
                              {"items": [{"menu_item_id": "gyoza", "qty": 2, "note": "crispy", "unit_price": 1}]},
                              user="sam", till="A")
    assert created.code == 201 and created.etag == '"1"'
    session = created.body
    assert set(session) == SESSION_KEYS
    assert session["status"] == "active" and session["till_id"] == "A" and session["user_id"] == "sam"
    assert session["store_id"] == 1 and session["revision"] == 1 and session["logout_time"] is None
    line = session["items"][0]
    assert set(line) == {"line_id", "menu_item_id", "name", "unit_price", "qty", "note"}
    assert line["unit_price"] > 1 and line["note"] == "crispy" and session["total"] == 2 * line["unit_price"]
    assert session["created_at"].endswith("Z")
    got = await till.call("GET", f"/api/order-sessions/{session['id']}", user="sam")
    assert got.code == 200 and got.body == session and got.etag == '"1"'
    active = await till.call("GET", "/api/order-sessions/active", user="sam")
    assert active.body == {"session": session} and active.etag == '"1"'
    for missing_id in ("999999", "0", "999999999999"):
        missing = await till.call("GET", f"/api/order-sessions/{missing_id}", user="sam")
        assert missing.code == 404 and missing.body["error"] == "not_found"
    assert (await till.call("GET", "/api/tabs/999999999999", user="sam")).code == 404


async def test_post_with_an_open_session_is_an_update_that_needs_if_match(till: TillServer) -> None:
    session = await till.open_session()
    again = await till.call("POST", "/api/order-sessions", {"items": []}, user="sam", till="A")
    assert again.code == 428 and again.body["error"] == "if_match_required"
    updated = await till.call("POST", "/api/order-sessions", {"items": [{"menu_item_id": "mochi", "qty": 1}]},
                              user="sam", till="A", if_match='"1"')
    assert updated.code == 200 and updated.body["id"] == session["id"] and updated.body["revision"] == 2
    assert updated.etag == '"2"' and [i["menu_item_id"] for i in updated.body["items"]] == ["mochi"]


async def test_put_needs_a_current_if_match(till: TillServer) -> None:
    session = await till.open_session()
    path = f"/api/order-sessions/{session['id']}"
    body = {"items": [{"menu_item_id": "gyoza", "qty": 3, "line_id": session["items"][0]["line_id"]}]}
    answer = await till.call("PUT", path, body, user="sam", till="A")
    assert answer.code == 428 and answer.body["error"] == "if_match_required"
    for bad in ('"x"', "W/", "-1", '"1'):
        answer = await till.call("PUT", path, body, user="sam", till="A", if_match=bad)
        assert answer.code == 400 and answer.body["error"] == "bad_request", bad
    answer = await till.call("PUT", path, body, user="sam", till="A", if_match=1)  # bare 1 is fine too
    assert answer.code == 200 and answer.body["revision"] == 2 and answer.body["items"][0]["qty"] == 3
    assert answer.body["items"][0]["line_id"] == session["items"][0]["line_id"]
    stale = await till.call("PUT", path, body, user="sam", till="A", if_match='"1"')
    assert stale.code == 409 and stale.body["error"] == "revision_mismatch"
    assert stale.body["session"] == answer.body and stale.etag == '"2"'


async def test_two_puts_with_the_same_if_match_one_wins(till: TillServer) -> None:
    session = await till.open_session()
    path = f"/api/order-sessions/{session['id']}"
    answers = await asyncio.gather(*(
        till.call("PUT", path, {"items": [{"menu_item_id": item, "qty": 1}]}, user="sam", till="A", if_match=1)
        for item in ("mochi", "asahi")
    ))
    assert sorted(a.code for a in answers) == [200, 409]
    loser = next(a for a in answers if a.code == 409)
    winner = next(a for a in answers if a.code == 200)
    assert loser.body["error"] == "revision_mismatch" and loser.body["session"] == winner.body
    got = await till.call("GET", path, user="sam")
    assert got.body == winner.body and got.body["revision"] == 2


async def test_status_changes_between_active_and_pending_logout_only(till: TillServer) -> None:
    session = await till.open_session()
    path = f"/api/order-sessions/{session['id']}"
    answer = await till.call("PUT", path, {"status": "completed"}, user="sam", till="A", if_match=1)
    assert answer.code == 409 and answer.body["error"] == "invalid_transition"
    answer = await till.call("PUT", path, {"status": "lunch"}, user="sam", till="A", if_match=1)
    assert answer.code == 400 and answer.body["error"] == "bad_request"
    parked = await till.call("PUT", path, {"status": "pending_logout"}, user="sam", till="A", if_match=1)
    assert parked.code == 200 and parked.body["status"] == "pending_logout" and parked.body["logout_time"]
    back = await till.call("PUT", path, {"status": "active"}, user="sam", till="A", if_match=2)
    assert back.code == 200 and back.body["status"] == "active" and back.body["logout_time"] is None


async def test_items_are_validated(till: TillServer) -> None:
    session = await till.open_session()
    path = f"/api/order-sessions/{session['id']}"
    for items, field in (
        ([{"menu_item_id": "gyoza", "qty": 0}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": 100}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": 1.0}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": True}], "items[0].qty"),
        ([{"menu_item_id": "gyoza", "qty": 1, "note": "n" * 201}], "items[0].note"),
        ([{"menu_item_id": "gyoza", "qty": 1}] * 101, "items"),
        ("gyoza", "items"),
    ):
        answer = await till.call("PUT", path, {"items": items}, user="sam", till="A", if_match=1)
        assert answer.code == 400 and answer.body["error"] == "bad_request" and answer.body["field"] == field
    answer = await till.call("PUT", path, {"items": [{"menu_item_id": "s2-espresso", "qty": 1}]},
                             user="sam", till="A", if_match=1)
    assert answer.code == 400 and answer.body["error"] == "unknown_item"  # another store's item
    sold_out = await till.call("POST", "/api/staff/menu/mochi/availability", {"available": False}, user="boss")
    assert sold_out.code == 200
    answer = await till.call("PUT", path, {"items": [{"menu_item_id": "mochi", "qty": 1}]},
                             user="sam", till="A", if_match=1)
    assert answer.code == 409 and answer.body["error"] == "item_unavailable"
    assert (await till.call("GET", path, user="sam")).body["revision"] == 1  # nothing written


async def test_roles_and_whose_sessions(till: TillServer) -> None:
    session = await till.open_session("sam")
    path = f"/api/order-sessions/{session['id']}"
    for method, p in (("GET", "/api/order-sessions/active"), ("POST", "/api/order-sessions"), ("GET", path),
                      ("GET", "/api/tabs")):
        answer = await till.call(method, p, {} if method == "POST" else None, user="kim")
        assert answer.code == 403 and answer.body["error"] == "forbidden", p
    assert (await till.call("GET", "/api/order-sessions/active")).code == 401
    # another server: not found, for reading and writing
    assert (await till.call("GET", path, user="tess")).body["error"] == "not_found"
    answer = await till.call("PUT", path, {"items": []}, user="tess", till="T", if_match=1)
    assert answer.code == 404 and answer.body["error"] == "not_found"
    # a manager of the store reads, lists and edits it (no till needed); of another store, not found
    assert (await till.call("GET", path, user="boss")).code == 200
    assert (await till.call("GET", path, user="boss2")).code == 404
    listed = await till.call("GET", "/api/order-sessions?status=active&user=sam", user="boss")
    assert listed.code == 200 and [s["id"] for s in listed.body["sessions"]] == [session["id"]]
    assert (await till.call("GET", "/api/order-sessions", user="boss2")).body == {"sessions": []}
    assert (await till.call("GET", "/api/order-sessions", user="sam")).code == 403
    assert (await till.call("GET", "/api/order-sessions?status=nope", user="boss")).code == 400
    assert (await till.call("GET", "/api/order-sessions?limit=0", user="boss")).code == 400
    edited = await till.call("PUT", path, {"items": [{"menu_item_id": "mochi", "qty": 1}]}, user="boss", if_match=1)
    assert edited.code == 200 and edited.body["till_id"] == "A" and edited.body["user_id"] == "sam"
    assert (await till.call("GET", "/api/order-sessions/active", user="boss")).body == {"session": None}
    admin_list = await till.call("GET", "/api/order-sessions?store_id=1", user="admin")
    assert [s["id"] for s in admin_list.body["sessions"]] == [session["id"]]
    bad_till = await till.call("GET", "/api/order-sessions/active", user="sam", till="no spaces")
    assert bad_till.code == 400


async def test_complete_pressed_on_two_tills_at_once_is_one_transaction_and_one_ticket(till: TillServer) -> None:
    session = await till.open_session(items=[{"menu_item_id": "gyoza", "qty": 2}, {"menu_item_id": "asahi", "qty": 1}])
    path = f"/api/order-sessions/{session['id']}/complete"
    one, two = await asyncio.gather(
        till.call("POST", path, {"payment_method": "cash"}, user="sam", till="A"),
        till.call("POST", path, {"payment_method": "cash"}, user="boss"),
    )
    assert one.code == two.code == 200, (one.body, two.body)
    assert one.body["transaction"] == two.body["transaction"] and one.body["order_id"] == two.body["order_id"]
    txn = one.body["transaction"]
    assert txn["total"] == session["total"] and txn["payment_method"] == "cash"
    assert txn["order_session_id"] == session["id"] and txn["tab_id"] is None
    assert one.body["session"]["status"] == "completed"
    assert one.body["session"]["transaction_id"] == txn["id"]
    assert one.body["session"]["order_id"] == one.body["order_id"]
    retry = await till.call("POST", path, {}, user="sam", till="A", if_match=1)
    assert retry.code == 200 and retry.body["transaction"] == txn
    tickets = await till.store.list_kitchen_orders(1, 0, 100)
    assert [t.order_id for t in tickets] == [one.body["order_id"]]
    assert tickets[0].order_id.startswith("ORD-1-")
    code = (await till.call("GET", "/api/kitchen/tickets", user="kim")).body
    assert [t["order_id"] for t in code["tickets"]] == [one.body["order_id"]]
    # completed is history
    put = await till.call("PUT", f"/api/order-sessions/{session['id']}", {"items": []}, user="sam", till="A",
                          if_match=one.body["session"]["revision"])
    assert put.code == 409 and put.body["error"] == "invalid_transition"
    gone = await till.call("DELETE", f"/api/order-sessions/{session['id']}", user="sam", till="A")
    assert gone.code == 409 and gone.body["error"] == "invalid_transition"
    assert (await till.call("GET", "/api/order-sessions/active", user="sam")).body == {"session": None}


async def test_complete_refusals(till: TillServer) -> None:
    empty = await till.open_session(items=[])
    path = f"/api/order-sessions/{empty['id']}/complete"
    answer = await till.call("POST", path, {}, user="sam", till="A")
    assert answer.code == 409 and answer.body["error"] == "invalid_transition"
    answer = await till.call("POST", path, {"payment_method": "iou"}, user="sam", till="A")
    assert answer.code == 400 and answer.body["error"] == "bad_request"
    full = await till.call("PUT", f"/api/order-sessions/{empty['id']}", {"items": [{"menu_item_id": "gyoza", "qty": 1}]},
                           user="sam", till="A", if_match=1)
    answer = await till.call("POST", path, {}, user="sam", till="A", if_match=1)
    assert answer.code == 409 and answer.body["error"] == "revision_mismatch"
    assert answer.body["session"] == full.body
    answer = await till.call("POST", "/api/order-sessions/999999/complete", {}, user="sam", till="A")
    assert answer.code == 404


async def test_delete_an_open_session(till: TillServer) -> None:
    session = await till.open_session()
    answer = await till.call("DELETE", f"/api/order-sessions/{session['id']}", user="sam", till="A")
    assert answer.code == 204
    assert (await till.call("GET", f"/api/order-sessions/{session['id']}", user="sam")).code == 404
    assert (await till.call("DELETE", f"/api/order-sessions/{session['id']}", user="sam", till="A")).code == 404
    assert (await till.open_session())["id"] != session["id"]  # a new one may be opened


async def test_tabs_and_assign_to_tab(till: TillServer) -> None:
    created = await till.call("POST", "/api/tabs", {"name": "Bar 1"}, user="sam")
    assert created.code == 201
    tab = created.body
    assert set(tab) == {"id", "store_id", "name", "table_id", "status", "created_at", "closed_at", "lines", "total",
                        "transaction_id"}
    assert tab["status"] == "open" and tab["name"] == "Bar 1" and tab["total"] == 0 and tab["table_id"] is None
    assert (await till.call("POST", "/api/tabs", {"name": ""}, user="sam")).code == 400
    listed = await till.call("GET", "/api/tabs?status=open", user="sam")
    assert tab["id"] in [t["id"] for t in listed.body["tabs"]]
    assert (await till.call("GET", "/api/tabs?status=maybe", user="sam")).code == 400
    assert (await till.call("GET", f"/api/tabs/{tab['id']}", user="boss2")).code == 404  # another store's

    session = await till.open_session(items=[{"menu_item_id": "asahi", "qty": 2}])
    path = f"/api/order-sessions/{session['id']}/assign-to-tab"
    assert (await till.call("POST", path, {"tab_id": "1"}, user="sam", till="A")).code == 400
    for missing_id in (999999, 1 << 40):
        missing = await till.call("POST", path, {"tab_id": missing_id}, user="sam", till="A")
        assert missing.code == 404 and missing.body["error"] == "not_found"
    one = await till.call("POST", path, {"tab_id": tab["id"]}, user="sam", till="A")
    assert one.code == 200, one.body
    assert one.body["session"]["status"] == "assigned_to_tab" and one.body["session"]["tab_id"] == tab["id"]
    assert one.body["tab"]["total"] == session["total"] and one.body["order_id"]
    two = await till.call("POST", path, {"tab_id": tab["id"]}, user="sam", till="A")
    assert two.code == 200 and two.body["order_id"] == one.body["order_id"]
    assert len(await till.store.list_kitchen_orders(1, 0, 100)) == 1

    closed = await till.call("POST", f"/api/tabs/{tab['id']}/close", {"payment_method": "card"}, user="sam")
    assert closed.code == 200 and closed.body["tab"]["status"] == "closed"
    assert closed.body["transaction"]["total"] == session["total"] and closed.body["transaction"]["tab_id"] == tab["id"]
    again = await till.call("POST", f"/api/tabs/{tab['id']}/close", {}, user="sam")
    assert again.code == 200 and again.body["transaction"] == closed.body["transaction"]
    assert (await till.call("GET", f"/api/tabs/{tab['id']}", user="sam")).body["transaction_id"] == \
        closed.body["transaction"]["id"]

    other = await till.open_session(items=[{"menu_item_id": "gyoza", "qty": 1}])
    answer = await till.call("POST", f"/api/order-sessions/{other['id']}/assign-to-tab", {"tab_id": tab["id"]},
                             user="sam", till="A")
    assert answer.code == 409 and answer.body["error"] == "tab_closed"
    assert (await till.call("POST", "/api/tabs/999999/close", {}, user="sam")).code == 404


async def test_take_over_needs_a_till(till: TillServer) -> None:
    session = await till.open_session()
    path = f"/api/order-sessions/{session['id']}/take-over"
    answer = await till.call("POST", path, user="sam")
    assert answer.code == 400 and answer.body["error"] == "till_required"
    answer = await till.call("POST", path, user="sam", till="B")
    assert answer.code == 200 and answer.body["till_id"] == "B" and answer.body["status"] == "active"
    assert answer.etag == f'"{answer.body["revision"]}"'
    moved = await till.call("PUT", f"/api/order-sessions/{session['id']}", {"items": []}, user="sam", till="A",
                            if_match=answer.body["revision"])
    assert moved.code == 409 and moved.body["error"] == "moved" and moved.body["till_id"] == "B"
    assert moved.body["session"] == answer.body
    tab = (await till.call("POST", "/api/tabs", {"name": "t"}, user="sam")).body
    for method, sub, body in (("POST", "/complete", {}), ("POST", "/assign-to-tab", {"tab_id": tab["id"]}),
                              ("DELETE", "", None)):
        answer = await till.call(method, f"/api/order-sessions/{session['id']}{sub}", body, user="sam", till="A")
        assert answer.code == 409 and answer.body["error"] == "moved", sub
