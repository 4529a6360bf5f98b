"""Reservation flows end to end over HTTP and ``/ws/me`` (docs/reservations.md): the race of 50 customers
for one slot, payment outcomes, hold expiry and waitlist offers on the fake clock, the chat against the
availability API, seating into a table's sitting, no-shows and hours changes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpclient

from tests.integration.reservation_support import (
    CHEF,
    LONG,
    SHORT,
    SOMM,
    STORE,
    TOMORROW,
    Resv,
    iso,
    start_resv,
)


@pytest.fixture
async def h(database_url: str) -> AsyncIterator[Resv]:
    server = await start_resv(database_url)
    yield server
    await server.running.stop()


@pytest.fixture
async def failing(database_url: str) -> AsyncIterator[Resv]:
    server = await start_resv(database_url, success_rate=0.0)
    yield server
    await server.running.stop()


async def test_fifty_customers_race_for_one_slot(h: Resv) -> None:
    customers = [await h.customer(f"c{i}") for i in range(50)]
    start = iso(TOMORROW, "12:00")
    # 50 HTTP clients (own connections each: the shared client would queue all but 10 requests)
    clients = [tornado.httpclient.AsyncHTTPClient(force_instance=True) for _ in customers]
    try:
        answers = await asyncio.gather(*(h.book(token, start, client=client)
                                         for (_, token), client in zip(customers, clients, strict=True)))
    finally:
        for client in clients:
            client.close()
    codes = Counter(code for code, _ in answers)
    assert codes == {201: 1, 409: 49}, codes
    assert all(body["error"] == "slot_taken" for code, body in answers if code == 409)
    winner = next(body for code, body in answers if code == 201)
    owner = next(token for (code, _), (_, token) in zip(answers, customers, strict=True) if code == 201)
    await h.wait_status(winner["reservation_id"], owner, "confirmed")
    staff = await h.staff_token()
    code, day = await h.call("GET", f"/api/staff/reservations?date={TOMORROW}", token=staff)
    assert code == 200
    held = [r for r in day["reservations"] if r["staff_id"] == CHEF and r["status"] != "canceled"]
    assert [r["reservation_id"] for r in held] == [winner["reservation_id"]]


async def test_payment_success_is_pushed_to_the_customer_socket(h: Resv) -> None:
    _, token = await h.customer()
    sock = await h.me_socket(token)
    code, body = await h.book(token, iso(TOMORROW, "11:30"), menu_id=LONG, staff_id=SOMM)
    assert code == 201, body
    rid = body["reservation_id"]
    for _ in range(50):
        if any(m["reservation"]["reservation_id"] == rid and m["reservation"]["status"] == "confirmed"
               for m in sock.of_type("reservation_updated")):
            break
        await h.clock.advance(0.05)
        await asyncio.sleep(0.01)
    update = await sock.wait_for(lambda m: m.get("type") == "reservation_updated"
                                 and m["reservation"]["status"] == "confirmed")
    assert update["reservation"]["reservation_id"] == rid
    got = await h.wait_status(rid, token, "confirmed")
    assert got["payment"]["status"] == "completed" and got["payment"]["amount"] == 9000 * 2
    await sock.close()


async def test_payment_failure_cancels_and_frees_the_slot(failing: Resv) -> None:
    h = failing
    _, token = await h.customer()
    start = iso(TOMORROW, "17:30")
    code, body = await h.book(token, start)
    assert code == 201, body
    got = await h.wait_status(body["reservation_id"], token, "canceled")
    assert got["payment"]["status"] == "failed"
    assert (start, CHEF) in {(s["start_time"], s["staff_id"]) for s in await h.slots()}


async def test_a_pending_hold_expires_with_the_clock(database_url: str) -> None:
    # The payment never answers in time (latency far beyond the hold): the hold runs out first.
    h = await start_resv(database_url, payments={"adapter": "dummy", "latency_ms": 3_600_000, "success_rate": 1.0,
                                                 "timeout_s": 3600, "lookup_interval_s": 3600})
    try:
        _, token = await h.customer()
        start = iso(TOMORROW, "19:00")
        code, body = await h.book(token, start)
        assert code == 201, body
        rid = body["reservation_id"]
        assert await h.status_of(rid, token) == "pending"
        assert (start, CHEF) not in {(s["start_time"], s["staff_id"]) for s in await h.slots()}
        await h.clock.advance(9 * 60)
        assert await h.status_of(rid, token) == "pending"
        await h.run_for(2 * 60 + 2 * h.services.settings.reservations.sweep_interval_s)
        await h.wait_status(rid, token, "canceled")
        assert (start, CHEF) in {(s["start_time"], s["staff_id"]) for s in await h.slots()}
    finally:
        await h.running.stop()


async def test_waitlist_offers_in_order(h: Resv) -> None:
    start = iso(TOMORROW, "20:00")
    _, holder = await h.customer("Holder")
    code, body = await h.book(holder, start, staff_id=CHEF)
    assert code == 201, body
    await h.wait_status(body["reservation_id"], holder, "confirmed")
    code, other = await h.book(holder, start, staff_id=SOMM)  # the sommelier's slot too
    assert code == 201, other
    await h.wait_status(other["reservation_id"], holder, "confirmed")
    _, first = await h.customer("First")
    _, second = await h.customer("Second")
    first_sock = await h.me_socket(first)
    second_sock = await h.me_socket(second)
    wanted = {"store_id": STORE, "menu_id": SHORT, "start_time": start}
    code, e1 = await h.call("POST", "/api/waitlist", wanted, first)
    assert code == 201 and e1["position"] == 1, e1
    code, e2 = await h.call("POST", "/api/waitlist", wanted, second)
    assert code == 201 and e2["position"] == 2, e2
    # the holder cancels one: the first waiting customer is offered it
    code, _ = await h.call("POST", f"/api/reservations/{body['reservation_id']}/cancel", token=holder)
    assert code == 200
    offer = await first_sock.wait_type("waitlist_offer", timeout=10)
    assert offer["entry"]["entry_id"] == e1["entry_id"] and offer["reservation_id"] and offer["offered_until"]
    assert not second_sock.of_type("waitlist_offer")
    code, mine = await h.call("GET", "/api/me/waitlist", token=first)
    assert code == 200
    entry = next(e for e in mine["waitlist"] if e["entry_id"] == e1["entry_id"])
    assert entry["status"] == "offered" and entry["reservation_id"] == offer["reservation_id"]
    assert entry["offered_until"]
    # the held slot is not bookable by anyone else meanwhile
    _, third = await h.customer("Third")
    code, err = await h.book(third, start, staff_id=CHEF)
    assert (code, err["error"]) == (409, "slot_taken"), err
    code, accepted = await h.call("POST", f"/api/waitlist/{e1['entry_id']}/accept", token=first)
    assert code == 200, accepted
    assert accepted["reservation_id"] == offer["reservation_id"] and accepted["payment_id"]
    await h.wait_status(accepted["reservation_id"], first, "confirmed")
    # the second customer was never offered this slot; the other held slot frees: now they get it
    code, _ = await h.call("POST", f"/api/reservations/{other['reservation_id']}/cancel", token=holder)
    assert code == 200
    offer2 = await second_sock.wait_type("waitlist_offer", timeout=10)
    assert offer2["entry"]["entry_id"] == e2["entry_id"]
    await first_sock.close()
    await second_sock.close()


async def test_an_offer_not_accepted_passes_to_the_next(h: Resv) -> None:
    start = iso(TOMORROW, "18:30")
    _, holder = await h.customer("Holder")
    bookings = []
    for staff in (CHEF, SOMM):
        code, body = await h.book(holder, start, staff_id=staff)
        assert code == 201, body
        bookings.append(body["reservation_id"])
    _, first = await h.customer("First")
    _, second = await h.customer("Second")
    second_sock = await h.me_socket(second)
    wanted = {"store_id": STORE, "menu_id": SHORT, "start_time": start, "staff_id": CHEF}
    code, e1 = await h.call("POST", "/api/waitlist", wanted, first)
    assert code == 201
    code, e2 = await h.call("POST", "/api/waitlist", wanted, second)
    assert code == 201
    await h.call("POST", f"/api/reservations/{bookings[0]}/cancel", token=holder)
    await h.settle()
    code, mine = await h.call("GET", "/api/me/waitlist", token=first)
    assert next(e for e in mine["waitlist"] if e["entry_id"] == e1["entry_id"])["status"] == "offered"
    offer_s = h.services.settings.reservations.offer_minutes * 60
    await h.run_for(offer_s + 2 * h.services.settings.reservations.sweep_interval_s)
    offer = await second_sock.wait_type("waitlist_offer", timeout=10)
    assert offer["entry"]["entry_id"] == e2["entry_id"]
    code, mine = await h.call("GET", "/api/me/waitlist", token=first)
    assert next(e for e in mine["waitlist"] if e["entry_id"] == e1["entry_id"])["status"] == "expired"
    code, err = await h.call("POST", f"/api/waitlist/{e1['entry_id']}/accept", token=first)
    assert code in (404, 409), err
    await second_sock.close()


def _ranges(slots: list[dict[str, Any]]) -> list[list[str]]:
    """Merged [start, end) ranges of slot times as HH:MM, what the chat says is free."""
    spans: list[list[str]] = []
    for s in sorted(slots, key=lambda s: s["start_time"]):
        start, end = s["start_time"][11:16], s["end_time"][11:16]
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return spans


async def test_chat_answers_from_the_availability(h: Resv) -> None:
    _, token = await h.customer()
    _, booker = await h.customer("Booker")
    for staff in (CHEF, SOMM):  # 11:00-12:00 taken with both staff: not free tomorrow
        code, _ = await h.book(booker, iso(TOMORROW, "11:00"), staff_id=staff)
        assert code == 201
    code, reply = await h.call("POST", "/api/chat", {"text": "明日空いてる？", "channel": "web"}, token)
    assert code == 200, reply
    assert reply["lang"] == "ja" and reply["date"] == TOMORROW
    code, avail = await h.call("GET", f"/api/stores/{STORE}/availability?date={TOMORROW}&menu_id={reply.get('menu_id', SHORT)}")
    assert code == 200
    assert reply["ranges"] == _ranges(avail["slots"]), (reply, avail["slots"])
    assert reply["ranges"] and reply["ranges"][0][0] >= "11:30"
    assert reply["ranges"][0][0] in reply["reply"] and "空いています" in reply["reply"]
    code, logs = await h.call("GET", "/api/me/chat?channel=web", token=token)
    assert [entry["message"] for entry in logs["logs"]][-2:] == ["明日空いてる？", reply["reply"]]
    code, en = await h.call("POST", "/api/chat", {"text": "is tomorrow free?"}, token)
    assert code == 200 and en["lang"] == "en" and en["ranges"] == reply["ranges"]


async def _confirmed(h: Resv, start: str, staff: str = CHEF) -> tuple[str, str]:
    _, token = await h.customer()
    code, body = await h.book(token, start, staff_id=staff)
    assert code == 201, body
    await h.wait_status(body["reservation_id"], token, "confirmed")
    return body["reservation_id"], token


async def test_seating_opens_the_tables_sitting(h: Resv) -> None:
    rid, token = await _confirmed(h, iso(TOMORROW, "13:00"))
    sock = await h.me_socket(token)
    staff = await h.staff_token()
    code, seated = await h.call("POST", f"/api/staff/reservations/{rid}/seat", {"table_id": "T001"}, staff)
    assert code == 200, seated
    assert seated["reservation"]["status"] == "seated" and seated["reservation"]["table_id"] == "T001"
    assert seated["table"]["join_url"].endswith(f"/q/T001/{await h.qr_secret('T001')}")
    code, board = await h.call("GET", "/api/staff/board", token=staff)
    assert code == 200
    tables = board["tables"] if isinstance(board, dict) else board
    row = next(t for t in tables if t["table_id"] == "T001")
    assert row["status"] == "occupied"
    table = await h.services.store.get_table("T001")
    group = table.current_group_id
    assert group
    assert await h.services.store.get_group_tab(group) is not None
    joined = await h.join("T001")  # a phone joins with the table's QR into the same sitting
    assert joined["group_id"] == group
    update = await sock.wait_for(lambda m: m.get("type") == "reservation_updated"
                                 and m["reservation"]["status"] == "seated")
    assert update["reservation"]["table_id"] == "T001"
    assert await h.status_of(rid, token) == "seated"
    # an occupied table, a seated reservation
    other, _ = await _confirmed(h, iso(TOMORROW, "13:00"), SOMM)
    code, err = await h.call("POST", f"/api/staff/reservations/{other}/seat", {"table_id": "T001"}, staff)
    assert (code, err["error"]) == (409, "table_occupied"), err
    code, err = await h.call("POST", f"/api/staff/reservations/{rid}/seat", {"table_id": "T002"}, staff)
    assert (code, err["error"]) == (409, "invalid_transition"), err
    code, err = await h.call("POST", f"/api/staff/reservations/{other}/seat", {"table_id": "NOPE"}, staff)
    assert code == 404, err
    code, err = await h.call("POST", f"/api/staff/reservations/{other}/seat", {}, staff)
    assert code == 400, err
    await sock.close()


async def test_seating_a_pending_reservation_is_refused(failing: Resv) -> None:
    h = failing
    _, token = await h.customer()
    code, body = await h.book(token, iso(TOMORROW, "13:00"))
    assert code == 201
    await h.wait_status(body["reservation_id"], token, "canceled")
    staff = await h.staff_token()
    code, err = await h.call("POST", f"/api/staff/reservations/{body['reservation_id']}/seat",
                             {"table_id": "T002"}, staff)
    assert (code, err["error"]) == (409, "invalid_transition"), err


async def test_no_show_only_fifteen_minutes_after_the_start(h: Resv) -> None:
    rid, token = await _confirmed(h, iso("2026-12-01", "11:00"))  # today, two hours from now
    staff = await h.staff_token()
    code, err = await h.call("POST", f"/api/staff/reservations/{rid}/no-show", token=staff)
    assert (code, err["error"]) == (409, "too_early"), err
    await h.clock.advance(2 * 3600 + 14 * 60)  # 11:14
    code, err = await h.call("POST", f"/api/staff/reservations/{rid}/no-show", token=staff)
    assert (code, err["error"]) == (409, "too_early"), err
    await h.clock.advance(60)  # 11:15
    code, body = await h.call("POST", f"/api/staff/reservations/{rid}/no-show", token=staff)
    assert code == 200, body
    status = body.get("status") or body["reservation"]["status"]
    assert status == "no_show"
    assert await h.status_of(rid, token) == "no_show"


async def test_staff_cancel_is_pushed_to_the_customer(h: Resv) -> None:
    rid, token = await _confirmed(h, iso(TOMORROW, "12:30"))
    sock = await h.me_socket(token)
    staff = await h.staff_token()
    code, body = await h.call("POST", f"/api/staff/reservations/{rid}/cancel", token=staff)
    assert code == 200 and body["status"] == "canceled", body
    update = await sock.wait_for(lambda m: m.get("type") == "reservation_updated"
                                 and m["reservation"]["status"] == "canceled")
    assert update["reservation"]["reservation_id"] == rid
    await sock.close()


async def test_hours_change_changes_availability(h: Resv) -> None:
    before = await h.slots()
    assert any(s["start_time"] == iso(TOMORROW, "11:00") for s in before)
    staff = await h.staff_token()
    hours = {day: [["18:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    code, store = await h.call("PUT", f"/api/staff/stores/{STORE}/hours",
                               {"business_hours": hours, "timezone": "Asia/Tokyo"}, staff)
    assert code == 200, store
    after = await h.slots()
    assert after and min(s["start_time"] for s in after) == iso(TOMORROW, "18:00")
    # closing the day through closed_dates
    code, _ = await h.call("PUT", f"/api/staff/stores/{STORE}/hours",
                           {"business_hours": {**hours, "closed_dates": [TOMORROW]}}, staff)
    assert code == 200
    code, body = await h.call("GET", f"/api/stores/{STORE}/availability?date={TOMORROW}&menu_id={SHORT}")
    assert code == 200 and body["closed"] is True and body["slots"] == []
