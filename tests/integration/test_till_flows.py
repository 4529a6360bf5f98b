"""docs/till.md: the staff websocket, login and logout, take-over between tills, stale sessions, and the
checkout of a table into a transaction."""

from __future__ import annotations

import asyncio

import tornado.httpclient
import tornado.websocket

from tableside.clock import FakeClock
from tests.client import WsClient, eventually
from tests.integration.till_support import TillServer, start_till_server

CLOSE_SESSION_ENDED = 4001


async def test_staff_socket_welcome_ping_and_refusals(till: TillServer) -> None:
    sock = await till.socket("sam", "A")
    welcome = sock.of_type("staff_welcome")[0]
    assert welcome == {"type": "staff_welcome", "username": "sam", "role": "server", "till_id": "A", "session": None}
    assert (await sock.request({"type": "ping"}))["type"] == "pong"
    assert (await sock.request({"type": "set_status", "order_id": "x", "status": "ready"}))["type"] == "error"
    session = await till.open_session()
    again = await till.socket("sam", "A")
    assert again.of_type("staff_welcome")[0]["session"] == session
    for token, code in (("nope", 401), (till.tokens["kim"], 403)):
        try:
            await tornado.websocket.websocket_connect(f"{till.ws_base}/ws/staff?token={token}",
                                                      subprotocols=["tableside.v1.json"])
            raise AssertionError("connected")
        except tornado.httpclient.HTTPClientError as err:
            assert err.code == code
    await sock.close()
    await again.close()


async def test_every_change_reaches_the_users_sockets_including_a_managers_edit(till: TillServer) -> None:
    sam_a = await till.socket("sam", "A")
    tess = await till.socket("tess", "T")
    session = await till.open_session()
    created = await sam_a.wait_type("order_session_updated")
    assert created["session"] == session
    edited = await till.call("PUT", f"/api/order-sessions/{session['id']}",
                             {"items": [{"menu_item_id": "mochi", "qty": 4}]}, user="boss", if_match=1)
    assert edited.code == 200
    seen = await sam_a.wait_for(lambda m: m.get("type") == "order_session_updated" and m["session"]["revision"] == 2)
    assert seen["session"] == edited.body
    assert tess.of_type("order_session_updated") == []  # another user's sessions are not sent
    await till.call("DELETE", f"/api/order-sessions/{session['id']}", user="sam", till="A")
    gone = await sam_a.wait_for(lambda m: m.get("type") == "order_session_updated" and m["session"] is None)
    assert gone["session_id"] == session["id"]
    await sam_a.close()
    await tess.close()


async def test_take_over_tells_the_old_till_and_its_writes_are_moved(till: TillServer) -> None:
    session = await till.open_session(till="A")
    sock_a = await till.socket("sam", "A")
    answer = await till.call("POST", f"/api/order-sessions/{session['id']}/take-over", user="sam", till="B")
    assert answer.code == 200
    moved = await sock_a.wait_type("session_moved")
    assert moved == {"type": "session_moved", "session_id": session["id"], "till_id": "B"}
    update = await sock_a.wait_for(lambda m: m.get("type") == "order_session_updated" and m["session"]["till_id"] == "B")
    assert update["session"] == answer.body
    put = await till.call("PUT", f"/api/order-sessions/{session['id']}", {"items": []}, user="sam", till="A",
                          if_match=answer.body["revision"])
    assert put.code == 409 and put.body["error"] == "moved" and put.body["till_id"] == "B"
    await sock_a.close()


async def test_logout_parks_and_login_at_another_till_carries_on(till: TillServer) -> None:
    session = await till.open_session(till="A")
    sock = await till.socket("sam", "A")
    out = await till.call("POST", "/api/staff/logout", user="sam", till="A")
    assert out.code == 204
    closed = await sock.wait_type("session_closed")
    assert closed["reason"] == "logged_out"
    await eventually(lambda: sock.closed.is_set(), what="the staff socket to close")
    assert sock.close_code == CLOSE_SESSION_ENDED
    parked = sock.of_type("order_session_updated")[-1]["session"]
    assert parked["status"] == "pending_logout" and parked["logout_time"] is not None
    got = await till.call("GET", f"/api/order-sessions/{session['id']}", user="boss")
    assert got.body["status"] == "pending_logout" and got.body["logout_time"] is not None

    login = await till.login("sam", till="B")
    assert login.body["warning"] is None
    recovered = login.body["order_session"]
    assert recovered["id"] == session["id"] and recovered["status"] == "active" and recovered["till_id"] == "B"
    assert recovered["logout_time"] is None and recovered["items"] == session["items"]

    # logging in at A now: the session stays on B and the answer warns, naming B
    other = await till.call("POST", "/api/staff/login", {"username": "sam", "password": "till-test-password"},
                            till="A")
    assert other.code == 200 and other.body["order_session"]["till_id"] == "B"
    assert other.body["warning"]["code"] == "active_on_other_till" and other.body["warning"]["till_id"] == "B"
    assert other.body["warning"]["message"]
    # logging out at A (not the session's till) leaves it active on B
    assert (await till.call("POST", "/api/staff/logout", token=other.body["token"], till="A")).code == 204
    assert (await till.call("GET", "/api/order-sessions/active", user="sam")).body["session"]["status"] == "active"
    # a login without a session answers nulls; a kitchen login has no till fields
    boss = await till.login("boss", till="M")
    assert boss.body["order_session"] is None and boss.body["warning"] is None
    kim = await till.login("kim")
    assert set(kim.body) == {"token", "username", "role"}


async def test_a_stale_active_session_is_parked_by_the_cleanup(database_url: str) -> None:
    clock = FakeClock()
    server = await start_till_server(database_url, clock, cleanup_interval_s=60, till={"stale_minutes": 10})
    try:
        session = await server.open_session()
        sock = await server.socket("sam", "A")
        await clock.advance(5 * 60)  # a cleanup pass: not stale yet
        assert (await server.call("GET", f"/api/order-sessions/{session['id']}", user="sam")).body["status"] == "active"
        await clock.advance(6 * 60)  # now past stale_minutes without a change

        def parked() -> bool:
            return any(m.get("type") == "order_session_updated" and m["session"]["status"] == "pending_logout"
                       for m in sock.messages)

        # A cleanup pass does real database I/O, so it may still be running when advance() returns and miss
        # a tick: keep the fake time moving, one interval at a time, until a pass parked the session.
        for _ in range(200):
            if parked():
                break
            await clock.advance(60)
            await asyncio.sleep(0.01)
        await eventually(parked, what="the stale session to be parked")
        got = await server.call("GET", f"/api/order-sessions/{session['id']}", user="sam")
        assert got.body["status"] == "pending_logout" and got.body["logout_time"] is not None
        assert got.body["items"] == session["items"]  # parked, never deleted
        await sock.close()
    finally:
        await server.running.stop()


async def test_checkout_of_a_table_answers_the_transaction_of_its_tab(till: TillServer) -> None:
    qr = (await till.store.get_table("T001")).qr_secret
    joined = await till.call("POST", "/api/join", {"table_id": "T001", "qr": qr})
    assert joined.code == 201
    phone = await WsClient.connect(till.ws_base, joined.body["token"])
    await phone.wait_type("welcome")
    await phone.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 2})
    placed = await phone.request({"type": "place_order"})
    assert placed["type"] == "ack", placed
    confirmed = await phone.wait_type("order_confirmed", timeout=15)
    bad = await till.call("POST", "/api/staff/tables/T001/checkout", {"payment_method": "gold"}, user="sam")
    assert bad.code == 400 and bad.body["error"] == "bad_request"
    tabs = (await till.call("GET", "/api/tabs?status=open", user="sam")).body["tabs"]
    table_tab = next(t for t in tabs if t["table_id"] == "T001")
    assert table_tab["total"] == confirmed["total"]
    answer = await till.call("POST", "/api/staff/tables/T001/checkout", {"payment_method": "cash"}, user="sam")
    assert answer.code == 200 and answer.body["status"] == "paid"
    txn = answer.body["transaction"]
    assert txn["total"] == confirmed["total"] and txn["payment_method"] == "cash" and txn["tab_id"] == table_tab["id"]
    tab = (await till.call("GET", f"/api/tabs/{table_tab['id']}", user="sam")).body
    assert tab["status"] == "closed" and tab["transaction_id"] == txn["id"]
    await phone.close()


async def test_closing_a_tables_tab_checks_the_table_out(till: TillServer) -> None:
    qr = (await till.store.get_table("T002")).qr_secret
    joined = await till.call("POST", "/api/join", {"table_id": "T002", "qr": qr})
    assert joined.code == 201
    tab = next(t for t in (await till.call("GET", "/api/tabs", user="sam")).body["tabs"] if t["table_id"] == "T002")
    closed = await till.call("POST", f"/api/tabs/{tab['id']}/close", {"payment_method": "other"}, user="sam")
    assert closed.code == 200 and closed.body["tab"]["status"] == "closed"
    assert closed.body["transaction"]["payment_method"] == "other"
    assert (await till.store.get_table("T002")).status == "paid"
