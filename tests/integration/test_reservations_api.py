"""The reservation API (docs/reservations.md): every endpoint with valid and invalid input, on Postgres, a
fake clock and the dummy payment (latency 0)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.reservation_support import (
    CHEF,
    LONG,
    OTHER_STORE_COURSE,
    SHORT,
    SOMM,
    STORE,
    TODAY,
    TOMORROW,
    Resv,
    iso,
    start_resv,
)

NOT_A_UUID = "not-a-uuid"
UNKNOWN = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
async def h(database_url: str) -> AsyncIterator[Resv]:
    server = await start_resv(database_url)
    yield server
    await server.running.stop()


async def test_courses_and_staff_are_public(h: Resv) -> None:
    code, body = await h.call("GET", f"/api/stores/{STORE}/courses")
    assert code == 200, body
    assert [(c["menu_id"], c["name"], c["price"], c["duration"]) for c in body["courses"]] == [
        (SHORT, "Lunch omakase", 5000, 60), (LONG, "Dinner omakase", 9000, 90)]
    code, body = await h.call("GET", f"/api/stores/{STORE}/staff")
    assert code == 200, body
    assert sorted((s["staff_id"], s["name"], s["role"]) for s in body["staff"]) == sorted(
        [(CHEF, "Kenji", "chef"), (SOMM, "Aiko", "sommelier")])
    for path in ("/api/stores/999/courses", "/api/stores/999/staff", "/api/stores/0/courses"):
        code, body = await h.call("GET", path)
        assert (code, body["error"]) == (404, "not_found"), path


async def test_availability_lists_slots_in_the_store_zone(h: Resv) -> None:
    code, body = await h.call("GET", f"/api/stores/{STORE}/availability?date={TOMORROW}&menu_id={SHORT}")
    assert code == 200, body
    assert body["date"] == TOMORROW and body["timezone"] == "Asia/Tokyo" and body["closed"] is False
    assert body["store_id"] == STORE and body["menu_id"] == SHORT
    starts = [s["start_time"] for s in body["slots"]]
    assert iso(TOMORROW, "11:00") in starts and iso(TOMORROW, "13:00") in starts
    assert iso(TOMORROW, "13:30") not in starts  # a 60-minute course across the lunch break
    assert iso(TOMORROW, "15:00") not in starts  # the break
    assert all(s["start_time"].endswith("+09:00") and s["end_time"].endswith("+09:00") for s in body["slots"])
    assert {s["staff_id"] for s in body["slots"]} == {CHEF, SOMM}
    keys = [(s["start_time"], s["staff_id"]) for s in body["slots"]]
    assert keys == sorted(keys)
    only = await h.slots(staff_id=SOMM)
    assert only and {s["staff_id"] for s in only} == {SOMM}
    # Sunday is closed
    code, body = await h.call("GET", f"/api/stores/{STORE}/availability?date=2026-12-06&menu_id={SHORT}")
    assert code == 200 and body["closed"] is True and body["slots"] == []
    # today: only starts after now (09:00 in Tokyo, so every slot of the day still counts)
    assert await h.slots(date=TODAY)


@pytest.mark.parametrize("query, field", [
    (f"date=2026-13-01&menu_id={SHORT}", "date"),
    (f"date=tomorrow&menu_id={SHORT}", "date"),
    (f"menu_id={SHORT}", "date"),
    (f"date={TOMORROW}", "menu_id"),
    (f"date=2027-12-01&menu_id={SHORT}", "date"),  # more than 180 days ahead
])
async def test_availability_bad_requests(h: Resv, query: str, field: str) -> None:
    code, body = await h.call("GET", f"/api/stores/{STORE}/availability?{query}")
    assert (code, body["error"], body.get("field")) == (400, "bad_request", field), body


@pytest.mark.parametrize("query", [
    f"date={TOMORROW}&menu_id={UNKNOWN}",
    f"date={TOMORROW}&menu_id={NOT_A_UUID}",
    f"date={TOMORROW}&menu_id={OTHER_STORE_COURSE}",
    f"date={TOMORROW}&menu_id={SHORT}&staff_id={UNKNOWN}",
])
async def test_availability_not_found(h: Resv, query: str) -> None:
    code, body = await h.call("GET", f"/api/stores/{STORE}/availability?{query}")
    assert (code, body["error"]) == (404, "not_found"), body
    code, body = await h.call("GET", f"/api/stores/424242/availability?date={TOMORROW}&menu_id={SHORT}")
    assert (code, body["error"]) == (404, "not_found"), body


async def test_booking_answers_and_reading_it_back(h: Resv) -> None:
    user_id, token = await h.customer()
    start = iso(TOMORROW, "11:00")
    code, body = await h.book(token, start, party_size=3, notes="window seat")
    assert code == 201, body
    assert body["status"] == "pending" and body["start_time"] == start
    assert body["end_time"] == iso(TOMORROW, "12:00")
    assert body["payment_id"] and body["hold_expires_at"] is not None
    rid = body["reservation_id"]
    got = await h.wait_status(rid, token, "confirmed")
    assert got["store_id"] == STORE and got["menu_id"] == SHORT and got["staff_id"] == CHEF
    assert got["party_size"] == 3 and got["notes"] == "window seat" and got["table_id"] is None
    assert got["course"] and got["staff_name"] == "Kenji"
    assert got["payment"]["payment_id"] == body["payment_id"]
    assert got["payment"]["amount"] == 5000 * 3 and got["payment"]["status"] == "completed"
    code, mine = await h.call("GET", "/api/me/reservations", token=token)
    assert code == 200 and [r["reservation_id"] for r in mine["reservations"]] == [rid]
    code, hist = await h.call("GET", "/api/me/history", token=token)
    assert code == 200 and any(e["reservation_id"] == rid for e in hist["history"])
    assert {"reservation_id", "store", "menu", "date", "status"} <= set(hist["history"][0])
    # the slot is gone from availability
    assert (start, CHEF) not in {(s["start_time"], s["staff_id"]) for s in await h.slots()}
    # staff of the store see it too
    staff = await h.staff_token()
    code, seen = await h.call("GET", f"/api/reservations/{rid}", token=staff)
    assert code == 200 and seen["reservation_id"] == rid
    assert user_id  # the customer who booked


async def test_another_customer_sees_404_and_cannot_cancel(h: Resv) -> None:
    _, owner = await h.customer("Owner")
    _, other = await h.customer("Other")
    code, body = await h.book(owner, iso(TOMORROW, "12:00"))
    assert code == 201, body
    rid = body["reservation_id"]
    for method, path in (("GET", f"/api/reservations/{rid}"), ("POST", f"/api/reservations/{rid}/cancel")):
        code, err = await h.call(method, path, token=other)
        assert (code, err["error"]) == (404, "not_found"), (path, err)
    assert await h.status_of(rid, owner) in ("pending", "confirmed")


@pytest.mark.parametrize("change, field", [
    ({"store_id": "1"}, "store_id"),
    ({"store_id": -1}, "store_id"),
    ({"menu_id": NOT_A_UUID}, "menu_id"),
    ({"staff_id": 7}, "staff_id"),
    ({"start_time": "tomorrow at noon"}, "start_time"),
    ({"start_time": "2026-12-02T11:00:00"}, "start_time"),  # no offset
    ({"start_time": "x" * 65}, "start_time"),
    ({"start_time": iso(TOMORROW, "11:10")}, "start_time"),  # not on the grid
    ({"start_time": iso(TOMORROW, "15:00")}, "start_time"),  # the break
    ({"start_time": iso(TOMORROW, "13:30")}, "start_time"),  # across the break
    ({"start_time": iso("2026-11-30", "11:00")}, "start_time"),  # the past
    ({"party_size": 0}, "party_size"),
    ({"party_size": 51}, "party_size"),
    ({"party_size": True}, "party_size"),
    ({"notes": "n" * 501}, "notes"),
])
async def test_booking_bad_requests(h: Resv, change: dict[str, object], field: str) -> None:
    _, token = await h.customer()
    body = {"store_id": STORE, "menu_id": SHORT, "staff_id": CHEF, "start_time": iso(TOMORROW, "11:00"),
            "party_size": 2, "notes": ""}
    body.update(change)
    code, err = await h.call("POST", "/api/reservations", body, token)
    assert (code, err["error"], err.get("field")) == (400, "bad_request", field), err


async def test_booking_needs_a_customer_and_known_things(h: Resv) -> None:
    code, err = await h.book("nope", iso(TOMORROW, "11:00"))
    assert (code, err["error"]) == (401, "unauthorized")
    staff = await h.staff_token()
    code, err = await h.book(staff, iso(TOMORROW, "11:00"))  # a staff token is not a customer
    assert (code, err["error"]) == (401, "unauthorized")
    _, token = await h.customer()
    for change in ({"menu_id": UNKNOWN}, {"staff_id": UNKNOWN}, {"menu_id": OTHER_STORE_COURSE}):
        body = {"store_id": STORE, "menu_id": SHORT, "staff_id": CHEF, "start_time": iso(TOMORROW, "11:00"),
                **change}
        code, err = await h.call("POST", "/api/reservations", body, token)
        assert (code, err["error"]) == (404, "not_found"), (change, err)
    code, err = await h.call("POST", "/api/reservations", b"[1]", token)
    assert code == 400
    code, err = await h.call("POST", "/api/reservations", b"{", token)
    assert code == 400


async def test_bad_ids_are_404_before_the_database(h: Resv) -> None:
    _, token = await h.customer()
    staff = await h.staff_token()
    for method, path, who in (
        ("GET", f"/api/reservations/{NOT_A_UUID}", token),
        ("GET", f"/api/reservations/{UNKNOWN}", token),
        ("POST", f"/api/reservations/{UNKNOWN}/cancel", token),
        ("POST", "/api/waitlist/999999/accept", token),
        ("DELETE", "/api/waitlist/999999", token),
        ("POST", f"/api/staff/reservations/{NOT_A_UUID}/no-show", staff),
        ("POST", f"/api/staff/reservations/{UNKNOWN}/cancel", staff),
    ):
        code, err = await h.call(method, path, None, who)
        assert (code, err["error"]) == (404, "not_found"), (path, err)


async def test_customer_endpoints_need_a_login(h: Resv) -> None:
    for method, path in (("GET", "/api/me/reservations"), ("GET", "/api/me/history"), ("GET", "/api/me/waitlist"),
                         ("POST", "/api/waitlist"), ("POST", "/api/chat"), ("GET", "/api/me/chat")):
        code, err = await h.call(method, path, {} if method == "POST" else None)
        assert (code, err["error"]) == (401, "unauthorized"), path


async def test_cancel_frees_the_slot(h: Resv) -> None:
    _, token = await h.customer()
    start = iso(TOMORROW, "17:00")
    code, body = await h.book(token, start)
    assert code == 201, body
    rid = body["reservation_id"]
    await h.wait_status(rid, token, "confirmed")
    code, canceled = await h.call("POST", f"/api/reservations/{rid}/cancel", token=token)
    assert code == 200 and canceled["status"] == "canceled", canceled
    assert (start, CHEF) in {(s["start_time"], s["staff_id"]) for s in await h.slots()}
    code, again = await h.call("POST", f"/api/reservations/{rid}/cancel", token=token)
    assert code == 200 and again["status"] == "canceled"  # idempotent
    _, other = await h.customer("Next")
    code, body = await h.book(other, start)
    assert code == 201, body


async def test_waitlist_endpoints(h: Resv) -> None:
    _, token = await h.customer()
    start = iso(TOMORROW, "18:00")
    _, holder = await h.customer("Holder")
    for staff in (CHEF, SOMM):  # the slot is full: joining waits (a free slot is offered at once)
        code, _ = await h.book(holder, start, staff_id=staff)
        assert code == 201
    body = {"store_id": STORE, "menu_id": SHORT, "start_time": start}
    code, entry = await h.call("POST", "/api/waitlist", body, token)
    assert code == 201, entry
    assert entry["status"] == "waiting" and entry["position"] == 1 and entry["entry_id"]
    code, err = await h.call("POST", "/api/waitlist", body, token)
    assert (code, err["error"]) == (409, "already_waiting"), err
    code, mine = await h.call("GET", "/api/me/waitlist", token=token)
    assert code == 200 and [e["entry_id"] for e in mine["waitlist"]] == [entry["entry_id"]]
    item = mine["waitlist"][0]
    assert {"entry_id", "store_id", "menu_id", "start_time", "staff_id", "status", "offered_until",
            "reservation_id"} <= set(item)
    # another customer cannot touch it; not offered: accept is refused
    _, other = await h.customer("Other")
    code, err = await h.call("DELETE", f"/api/waitlist/{entry['entry_id']}", token=other)
    assert (code, err["error"]) == (404, "not_found")
    code, err = await h.call("POST", f"/api/waitlist/{entry['entry_id']}/accept", token=token)
    assert code == 409, err
    code, _ = await h.call("DELETE", f"/api/waitlist/{entry['entry_id']}", token=token)
    assert code == 204
    code, mine = await h.call("GET", "/api/me/waitlist", token=token)
    assert [e["status"] for e in mine["waitlist"]] in ([], ["canceled"])
    for bad, field in (({"menu_id": NOT_A_UUID}, "menu_id"), ({"start_time": 5}, "start_time"),
                       ({"staff_id": "x"}, "staff_id"), ({"store_id": None}, "store_id")):
        code, err = await h.call("POST", "/api/waitlist", {**body, **bad}, token)
        assert (code, err.get("field")) == (400, field), err


async def test_chat_endpoints(h: Resv) -> None:
    _, token = await h.customer()
    code, reply = await h.call("POST", "/api/chat", {"text": "hello"}, token)
    assert code == 200 and reply["reply"] and reply["lang"] in ("en", "ja"), reply
    code, logs = await h.call("GET", "/api/me/chat?channel=web", token=token)
    assert code == 200 and [entry["role"] for entry in logs["logs"]][-2:] in (["user", "bot"], ["user", "assistant"])
    assert logs["logs"][-2]["message"] == "hello" and logs["logs"][-1]["timestamp"]
    for bad, field in (({"text": ""}, "text"), ({"text": "x" * 501}, "text"), ({"text": 3}, "text"),
                       ({"text": "hi", "channel": "c" * 33}, "channel")):
        code, err = await h.call("POST", "/api/chat", bad, token)
        assert (code, err.get("field")) == (400, field), err
    code, err = await h.call("GET", "/api/me/chat?channel=" + "c" * 33, token=token)
    assert code == 400


async def test_staff_endpoints_need_staff(h: Resv) -> None:
    _, token = await h.customer()
    for method, path in (("GET", f"/api/staff/reservations?date={TOMORROW}"),
                         ("POST", f"/api/staff/reservations/{UNKNOWN}/seat"),
                         ("POST", f"/api/staff/reservations/{UNKNOWN}/no-show"),
                         ("PUT", f"/api/staff/stores/{STORE}/hours")):
        code, err = await h.call(method, path, {} if method != "GET" else None, token)
        assert (code, err["error"]) == (401, "unauthorized"), path
    kitchen = await h.staff_token("kitchen", await _demo_password(h, "kitchen"))
    code, err = await h.call("GET", f"/api/staff/reservations?date={TOMORROW}", token=kitchen)
    assert code == 403, err


async def test_staff_day_timeline(h: Resv) -> None:
    _, token = await h.customer()
    code, body = await h.book(token, iso(TOMORROW, "11:00"), staff_id=SOMM)
    assert code == 201
    staff = await h.staff_token()
    code, day = await h.call("GET", f"/api/staff/reservations?date={TOMORROW}", token=staff)
    assert code == 200, day
    assert day["date"] == TOMORROW and day["store_id"] == STORE and day["timezone"] == "Asia/Tokyo"
    assert {s["staff_id"] for s in day["staff"]} == {CHEF, SOMM}
    assert [r["reservation_id"] for r in day["reservations"]] == [body["reservation_id"]]
    code, err = await h.call("GET", "/api/staff/reservations?date=2026-02-30", token=staff)
    assert (code, err.get("field")) == (400, "date"), err
    # the manager of store 2 sees store 2's (empty) day, not store 1's
    manager2 = await h.staff_token("manager2", await _demo_password(h, "manager2"))
    code, day2 = await h.call("GET", f"/api/staff/reservations?date={TOMORROW}", token=manager2)
    assert code == 200 and day2["store_id"] == STORE + 1 and day2["reservations"] == []
    # ... and cannot touch store 1's reservation
    code, err = await h.call("POST", f"/api/staff/reservations/{body['reservation_id']}/cancel", token=manager2)
    assert (code, err["error"]) == (404, "not_found"), err


async def test_hours_validation_and_roles(h: Resv) -> None:
    staff = await h.staff_token()
    for bad, field in (({"business_hours": "always"}, "business_hours"),
                       ({"business_hours": {"mon": [["10:00", "09:00"]]}}, "business_hours"),
                       ({"business_hours": {"mon": []}, "timezone": "Mars/Olympus"}, "timezone")):
        code, err = await h.call("PUT", f"/api/staff/stores/{STORE}/hours", bad, staff)
        assert (code, err["error"]) == (400, "bad_request"), err
        assert err.get("field") == field, err
    code, err = await h.call("PUT", "/api/staff/stores/4242/hours", {"business_hours": {}}, staff)
    assert (code, err["error"]) == (404, "not_found"), err
    server = await h.staff_token("server", await _demo_password(h, "server"))
    code, err = await h.call("PUT", f"/api/staff/stores/{STORE}/hours", {"business_hours": {}}, server)
    assert code == 403, err
    manager2 = await h.staff_token("manager2", await _demo_password(h, "manager2"))
    code, err = await h.call("PUT", f"/api/staff/stores/{STORE}/hours", {"business_hours": {}}, manager2)
    assert code == 403, err


async def test_customer_socket(h: Resv) -> None:
    user_id, token = await h.customer()
    sock = await h.me_socket(token)
    assert sock.of_type("customer_welcome")[0]["user_id"] == user_id
    pong = await sock.request({"type": "ping"})
    assert pong["type"] == "pong"
    await sock.close()
    import tornado.httpclient
    import tornado.websocket
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await tornado.websocket.websocket_connect(f"{h.ws_base}/ws/me?token=wrong",
                                                  subprotocols=["tableside.v1.json"])
    assert info.value.code == 401


async def _demo_password(h: Resv, username: str) -> str:
    from tableside.demo import demo_logins_path, read_logins

    return read_logins(demo_logins_path(h.services.settings.data_dir))[username]
