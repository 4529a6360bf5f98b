"""The booking page (/book, docs/reservations.md "Pages") and the staff console's reservations timeline in
Debian's Chromium: a customer picks store → course → day → time, registers, pays (the dummy payment adapter,
no latency) and sees the reservation confirmed live; a failed payment shows it canceled; two browsers try
the same slot and one of them is told someone just took it (and can join the waitlist); the staff timeline
shows the day's reservations, seats one at a vacant table (the board says occupied) and refuses an early
no-show with the API's message.

Every wait is an ``expect`` (no sleeps). Screenshots go to build/screenshots/ like the other browser tests,
and the two main ones are copied to /tmp (book.png, timeline.png) for a look."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from tableside.storage.postgres import PostgresStore
from tableside.storage.reservations import BookableStaff, Course
from tableside.storage.reservations_postgres import PostgresReservations
from tests.browser.test_browser_flow import (  # noqa: F401  (fixtures used by name)
    ADMIN_PASSWORD,
    PHONE,
    SCREENSHOTS,
    browser,
    database_url,
    new_page,
    screenshot,
    staff_call,
    staff_login,
)
from tests.procs import Proc, start_tableside

pytestmark = pytest.mark.browser

STORE = 1
WIDE = {"width": 1280, "height": 900}
STORE_TZ = "Asia/Tokyo"
BROWSER_TZ = "America/Los_Angeles"  # the browser's own zone: never the one the page shows times in


def start_book_server(url: str, *, success_rate: str) -> Proc:
    return start_tableside(
        url,
        TABLESIDE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TABLESIDE_POS__SUCCESS_RATE="1.0",
        TABLESIDE_DEMO__TABLES="3",
        TABLESIDE_PAYMENTS__ADAPTER="dummy",
        TABLESIDE_PAYMENTS__LATENCY_MS="0",
        TABLESIDE_PAYMENTS__SUCCESS_RATE=success_rate,
    )


async def _seed_bookables(url: str) -> None:
    store = await PostgresStore.connect(url, pool_size=1)
    try:
        resv = PostgresReservations(store.engine)
        await resv.upsert_bookable_staff(BookableStaff("11111111-1111-4111-8111-111111111111", STORE, "Kenji", "chef"))
        await resv.upsert_bookable_staff(BookableStaff("22222222-2222-4222-8222-222222222222", STORE, "Aiko", "sommelier"))
        await resv.upsert_course(Course("33333333-3333-4333-8333-333333333333", STORE, "Lunch omakase", 5000, 60, sort_order=0))
        await resv.upsert_course(Course("44444444-4444-4444-8444-444444444444", STORE, "Dinner omakase", 9000, 90, sort_order=1))
    finally:
        await store.close()


def prepare_store(proc: Proc, url: str) -> None:
    """Store 1 has bookable staff and courses: the demo's (``serve --demo``), or, on a demo without them,
    two staff and two courses written straight into the database (what the demo gives). Its hours get a
    lunch break and its zone is Asia/Tokyo (through the hours API), far from the browser's zone
    (``BROWSER_TZ``): the page must show the store's wall clock."""
    if not staff_call(proc, f"/api/stores/{STORE}/courses")["courses"]:
        asyncio.run(_seed_bookables(url))
    assert staff_call(proc, f"/api/stores/{STORE}/courses")["courses"]
    admin = staff_call(proc, "/api/staff/login", body={"username": "admin", "password": ADMIN_PASSWORD})["token"]
    hours: dict[str, Any] = {day: [["11:00", "14:00"], ["17:00", "22:00"]] for day in
                             ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    hours["closed_dates"] = []
    status, body = call(proc, "PUT", f"/api/staff/stores/{STORE}/hours", admin,
                        {"business_hours": hours, "timezone": STORE_TZ})
    assert status == 200, body


@pytest.fixture
def book_server(database_url: str) -> Iterator[Proc]:  # noqa: F811
    """Payments succeed at once."""
    proc = start_book_server(database_url, success_rate="1.0")
    try:
        prepare_store(proc, database_url)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def failing_server(database_url: str) -> Iterator[Proc]:  # noqa: F811
    """Every payment fails."""
    proc = start_book_server(database_url, success_rate="0.0")
    try:
        prepare_store(proc, database_url)
        yield proc
    finally:
        proc.stop()


def call(proc: Proc, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT") else None)
    req = urllib.request.Request(proc.base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return int(resp.status), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def first_open_slot(proc: Proc, store_id: int = STORE) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(the first course, the first day of the next two weeks with a free slot, that day's first slot),
    asked of the availability API the page uses."""
    courses = staff_call(proc, f"/api/stores/{store_id}/courses")["courses"]
    assert courses, "the demo store has bookable courses"
    course = courses[0]
    store = next(s for s in staff_call(proc, "/api/stores")["stores"] if s["store_id"] == store_id)
    today = datetime.now(ZoneInfo(store.get("timezone") or "UTC")).date()
    for offset in range(14):
        day = (today + timedelta(days=offset)).isoformat()
        answer = staff_call(proc, f"/api/stores/{store_id}/availability?date={day}&menu_id={course['menu_id']}")
        if answer["slots"]:
            return course, day, answer["slots"][0]
    raise AssertionError("no free slot in the next 14 days")


def slot_button(page: Page, slot: dict[str, Any]) -> Any:
    return page.locator(f'#slots button[data-start="{slot["start_time"]}"][data-staff-id="{slot["staff_id"]}"]')


async def pick_slot(page: Page, proc: Proc, course: dict[str, Any], day: str, slot: dict[str, Any]) -> None:
    """/book?store=1: the course, the day and the time, each a button press."""
    await page.goto(f"{proc.base}/book?store={STORE}")
    await expect(page.locator("#store-select")).to_have_value(str(STORE))
    await page.locator("#courses button", has_text=course["name"]).first.click()
    await expect(page.locator("#courses button", has_text=course["name"]).first).to_have_attribute("aria-pressed", "true")
    await page.locator(f'#days button[data-date="{day}"]').click()
    await expect(page.locator("#slots")).to_have_attribute("data-loaded", f"{STORE}:{course['menu_id']}:{day}")
    staff = staff_call(proc, f"/api/stores/{STORE}/staff")["staff"]
    name = next(s["name"] for s in staff if s["staff_id"] == slot["staff_id"])
    await expect(page.locator(f'#slots .book-staff[data-staff-id="{slot["staff_id"]}"] h3')).to_contain_text(name)
    button = slot_button(page, slot)
    await expect(button).to_have_text(slot["start_time"][11:16])  # the store's wall clock, as the API spells it
    await button.click()
    await expect(button).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#summary")).to_contain_text(course["name"])
    await expect(page.locator("#summary")).to_contain_text(f"{slot['start_time'][11:16]}–{slot['end_time'][11:16]}")


async def register(page: Page, name: str, email: str) -> None:
    await page.locator("#register-name").fill(name)
    await page.locator("#register-email").fill(email)
    await page.locator("#register-password").fill("correct horse")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#signed-in")).to_have_text(f"Signed in as {name}")
    await expect(page.locator("#account-forms")).to_be_hidden()


async def shot(page: Page, name: str) -> None:
    await screenshot(page, name)
    shutil.copyfile(SCREENSHOTS / name, f"/tmp/{name}")


def customer(proc: Proc, name: str, email: str) -> str:
    status, body = call(proc, "POST", "/api/users/register", body={"name": name, "email": email, "password": "correct horse"})
    assert status == 201, body
    return str(body["token"])


async def test_a_customer_books_pays_and_sees_it_confirmed(book_server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    ctx, page = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True, timezone_id=BROWSER_TZ)
    course, day, slot = first_open_slot(book_server)
    assert slot["start_time"].endswith("+09:00"), slot  # the store's offset, not the browser's
    # The landing page and the store page link to /book; from the store page it opens on that store.
    await page.goto(book_server.base + "/")
    await expect(page.get_by_role("link", name="Book a table")).to_have_attribute("href", "/book")
    await page.goto(f"{book_server.base}/store/{STORE}")
    await page.get_by_role("link", name="Book a table").click()
    await page.wait_for_url(f"**/book?store={STORE}")
    await expect(page.locator("#store-select")).to_have_value(str(STORE))
    await expect(page.locator("#store-info")).to_contain_text(STORE_TZ)
    await pick_slot(page, book_server, course, day, slot)
    await expect(page.get_by_role("button", name="Pay (log in first)")).to_be_disabled()
    await register(page, "Kenji Sato", "kenji@example.com")
    await expect(page.locator("#app")).to_have_attribute("data-live", "1")  # /ws/me said customer_welcome
    pay = page.locator("#pay")
    await expect(pay).to_be_enabled()
    await expect(pay).to_contain_text("Pay ")
    await pay.click()

    status = page.locator("#current-status")
    await expect(status).to_have_attribute("data-status", "confirmed")
    await expect(status).to_have_text("confirmed")
    await expect(page.locator("#current-text")).to_contain_text("confirmed")
    await expect(page.locator("#current-detail")).to_contain_text(course["name"])
    await expect(page.locator("#current-detail")).to_contain_text(slot["start_time"][11:16])
    reservation_id = await page.locator("#current").get_attribute("data-reservation-id")
    assert reservation_id

    # The server agrees, and "My reservations" lists it with a Cancel button.
    resp = await ctx.request.get(f"{book_server.base}/api/reservations/{reservation_id}")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "confirmed" and body["start_time"] == slot["start_time"], body
    assert body["payment"]["status"] == "completed", body
    mine = page.locator(f'#mine li[data-reservation-id="{reservation_id}"]')
    await expect(mine).to_have_attribute("data-status", "confirmed")
    await expect(mine.get_by_role("button", name=re.compile(r"^Cancel the reservation"))).to_be_visible()
    # The booked time is gone from the slots.
    await expect(slot_button(page, slot)).to_have_count(0)

    # The chat answers from the availability.
    await page.locator("#chat-text").fill("明日空いてる？")
    await page.get_by_role("button", name="Ask").click()
    await expect(page.locator("#chat-log .book-chat-me")).to_have_text("明日空いてる？")
    await expect(page.locator("#chat-log .book-chat-reply")).to_have_count(1)
    await expect(page.locator("#chat-log .book-chat-reply")).not_to_have_text("")
    await expect(page.locator("#chat-error")).to_have_text("")
    await shot(page, "book.png")

    # A reload keeps the account (cookie) and the list; cancel takes two taps.
    await page.reload()
    await expect(page.locator("#signed-in")).to_have_text("Signed in as Kenji Sato")
    await expect(mine).to_have_attribute("data-status", "confirmed")
    await mine.get_by_role("button", name=re.compile(r"^Cancel the reservation")).click()
    await mine.get_by_role("button", name=re.compile(r"^Confirm cancel")).click()
    await expect(mine).to_have_attribute("data-status", "canceled")
    await expect(page.locator("#notice")).to_contain_text("is canceled")
    resp = await ctx.request.get(f"{book_server.base}/api/reservations/{reservation_id}")
    assert (await resp.json())["status"] == "canceled"
    assert not errors, errors


async def test_a_failed_payment_shows_the_reservation_canceled(failing_server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, page = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True, timezone_id=BROWSER_TZ)
    course, day, slot = first_open_slot(failing_server)
    await pick_slot(page, failing_server, course, day, slot)
    await register(page, "Mia Chen", "mia@example.com")
    await page.locator("#pay").click()
    await expect(page.locator("#current-status")).to_have_attribute("data-status", "canceled")
    await expect(page.locator("#current-text")).to_contain_text("payment did not go through")
    # The slot is free again.
    await expect(slot_button(page, slot)).to_have_count(1)
    await shot(page, "book-failed.png")
    assert not errors, errors


async def test_two_browsers_one_slot_one_is_told_it_was_taken(book_server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, first = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True, timezone_id=BROWSER_TZ)
    _, second = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True, timezone_id=BROWSER_TZ)
    course, day, slot = first_open_slot(book_server)
    await pick_slot(first, book_server, course, day, slot)
    await register(first, "Aiko Mori", "aiko@example.com")
    await pick_slot(second, book_server, course, day, slot)
    await register(second, "Ben Ode", "ben@example.com")

    await first.locator("#pay").click()
    await expect(first.locator("#current-status")).to_have_attribute("data-status", "confirmed")
    await second.locator("#pay").click()
    await expect(second.locator("#notice")).to_contain_text("someone just took that time")
    await expect(second.locator("#current")).to_be_hidden()
    # The slots were loaded again: the taken time is not offered any more.
    await expect(slot_button(second, slot)).to_have_count(0)
    await expect(second.locator("#pay")).to_be_disabled()
    join = second.get_by_role("button", name="Join the waitlist")
    await expect(join).to_be_visible()
    await join.click()
    await expect(second.locator("#notice")).to_contain_text("You are on the waitlist")
    await expect(second.locator("#waitlist li")).to_have_count(1)
    await expect(second.locator("#waitlist li")).to_have_attribute("data-status", "waiting")
    await shot(second, "book-taken.png")

    # The first customer cancels: the slot is offered to the waiting one live (waitlist_offer on /ws/me),
    # who accepts it and pays.
    await expect(second.locator("#app")).to_have_attribute("data-live", "1")
    mine = first.locator("#mine li").first
    await mine.get_by_role("button", name=re.compile(r"^Cancel the reservation")).click()
    await mine.get_by_role("button", name=re.compile(r"^Confirm cancel")).click()
    await expect(mine).to_have_attribute("data-status", "canceled")
    await expect(second.locator("#waitlist li")).to_have_attribute("data-status", "offered")
    await expect(second.locator("#notice")).to_contain_text("A time you waited for is free")
    await second.locator("#waitlist li").get_by_role("button", name="Accept").click()
    await expect(second.locator("#current-status")).to_have_attribute("data-status", "confirmed")
    await expect(second.locator("#current-detail")).to_contain_text(slot["start_time"][11:16])
    assert not errors, errors


async def test_staff_timeline_seats_a_reservation(book_server: Proc, browser: Browser) -> None:  # noqa: F811
    course, day, slot = first_open_slot(book_server)
    token = customer(book_server, "Yui Tanaka", "yui@example.com")
    status, booked = call(book_server, "POST", "/api/reservations", token, {
        "store_id": STORE, "menu_id": course["menu_id"], "staff_id": slot["staff_id"],
        "start_time": slot["start_time"], "party_size": 3,
    })
    assert status == 201, booked
    rid = booked["reservation_id"]
    # A second one, with the other member of staff when there is one: stays confirmed, too early for no-show.
    answer = staff_call(book_server, f"/api/stores/{STORE}/availability?date={day}&menu_id={course['menu_id']}")
    other = next((s for s in answer["slots"] if s["staff_id"] != slot["staff_id"]), answer["slots"][0])
    status, booked2 = call(book_server, "POST", "/api/reservations", token, {
        "store_id": STORE, "menu_id": course["menu_id"], "staff_id": other["staff_id"],
        "start_time": other["start_time"], "party_size": 2,
    })
    assert status == 201, booked2
    rid2 = booked2["reservation_id"]

    errors: list[str] = []
    _, page = await new_page(browser, errors, viewport=WIDE, timezone_id=BROWSER_TZ)
    await staff_login(page, book_server.base, "/staff")
    await expect(page.locator('.table-card[data-table-id="T001"] .table-status')).to_have_text("Vacant")
    await expect(page.locator("#resv-h")).to_be_visible()
    await page.locator("#resv-date").fill(day)
    await expect(page.locator("#resv-timeline")).to_have_attribute("data-date", day)
    staff = staff_call(book_server, f"/api/stores/{STORE}/staff")["staff"]
    for s in staff:
        await expect(page.locator(f'#resv-timeline .resv-col-head[data-staff-id="{s["staff_id"]}"]')).to_contain_text(s["name"])
    block = page.locator(f'#resv-timeline .resv-col[data-staff-id="{slot["staff_id"]}"] .resv-block[data-reservation-id="{rid}"]')
    await expect(block).to_have_attribute("data-status", "confirmed")  # paid at once
    await expect(block).to_contain_text(f"{slot['start_time'][11:16]}–{slot['end_time'][11:16]}")
    await expect(block).to_contain_text("3 guests")
    await expect(page.locator(f'.resv-block[data-reservation-id="{rid2}"]')).to_have_attribute("data-status", "confirmed")

    # No-show before 15 minutes after the start: the API's 409 too_early is shown.
    await page.locator(f'.resv-block[data-reservation-id="{rid2}"]').click()
    await page.locator("#resv-detail").get_by_role("button", name="No-show").click()
    await expect(page.locator("#resv-detail-msg")).to_contain_text("Too early")
    await expect(page.locator(f'.resv-block[data-reservation-id="{rid2}"]')).to_have_attribute("data-status", "confirmed")

    # Seat the first one at T001.
    await block.click()
    await expect(page.locator("#resv-detail-status")).to_have_text("Confirmed")
    await page.locator("#seat-table").select_option("T001")
    await page.locator("#resv-detail").get_by_role("button", name="Seat").click()
    await expect(page.locator("#resv-detail-status")).to_have_text("Seated")
    await expect(block).to_have_attribute("data-status", "seated")
    await expect(block).to_contain_text("T001")
    await expect(page.locator('.table-card[data-table-id="T001"] .table-status')).to_have_text("Occupied")
    admin = staff_call(book_server, "/api/staff/login", body={"username": "admin", "password": ADMIN_PASSWORD})["token"]
    board = staff_call(book_server, "/api/staff/board", admin)
    assert next(row for row in board if row["table_id"] == "T001")["status"] == "occupied", board
    status, body = call(book_server, "GET", f"/api/reservations/{rid}", token)
    assert status == 200 and body["status"] == "seated" and body["table_id"] == "T001", body
    await page.locator("#reservations").scroll_into_view_if_needed()
    await shot(page, "timeline.png")
    assert not errors, errors
