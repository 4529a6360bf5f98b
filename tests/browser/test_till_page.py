"""The till view (/till, docs/till.md) in Debian's Chromium: a server logs in, rings up an order (every edit
is the server's answer: lines, total, revision), a reload in the middle of it shows the same order at the
same revision, paying makes a transaction and one kitchen ticket, an order goes on a tab, and a second till
(another browser context: its own localStorage, so its own till id) takes the order over: the first till
shows the "moved" banner at once through the staff websocket and can no longer edit.

Every wait is an ``expect`` (no sleeps). Screenshots go to build/screenshots/ like the other browser tests."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.test_browser_flow import (  # noqa: F401  (fixtures used by name)
    ADMIN_PASSWORD,
    browser,
    database_url,
    demo_password,
    new_page,
    page_staff_token,
    screenshot,
    server,
    staff_call,
)
from tests.procs import Proc

pytestmark = pytest.mark.browser

WIDE = {"width": 1280, "height": 900}
USER = "server"  # the demo user with the role "server", in the first store


def line(page: Page, name: str) -> Any:
    return page.locator("#order > li", has_text=name)


async def till_id_of(page: Page) -> str:
    return str(await page.evaluate("localStorage.getItem('tableside_till_id')"))


async def revision_of(page: Page) -> int:
    return int(await page.locator("#order-meta").get_attribute("data-revision") or "0")


def short(till_id: str) -> str:
    return f"{till_id[:4]}…" if len(till_id) > 8 else till_id


def api(proc: Proc, method: str, path: str, token: str, till_id: str | None = None, body: Any = None,
        if_match: int | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if till_id:
        headers["X-Till-Id"] = till_id
    if if_match is not None:
        headers["If-Match"] = str(if_match)
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT") else None)
    req = urllib.request.Request(proc.base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return int(resp.status), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def admin_token(proc: Proc) -> str:
    return str(staff_call(proc, "/api/staff/login", body={"username": "admin", "password": ADMIN_PASSWORD})["token"])


async def open_till(browser: Browser, errors: list[str], proc: Proc) -> tuple[BrowserContext, Page]:  # noqa: F811
    """A fresh browser context (its own localStorage: its own till) logged in at /till as the server."""
    ctx, page = await new_page(browser, errors, viewport=WIDE)
    await page.goto(proc.base + "/till")
    till_id = await till_id_of(page)
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", till_id), till_id
    await expect(page.locator("#till-id")).to_have_text(short(till_id))
    await page.get_by_label("Username").fill(USER)
    await page.get_by_label("Password").fill(demo_password(proc, USER))
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#who")).to_have_text(f"{USER} ({USER})")
    await expect(page.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50"))).to_be_visible()
    await expect(page.locator("#menu-loading")).to_be_hidden()
    return ctx, page


async def ring_up(page: Page) -> None:
    """Edamame and two Shoyu Ramen: 33.50 (each edit answered by the server)."""
    await page.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50")).click()
    await expect(line(page, "Edamame")).to_be_visible()
    await expect(page.locator("#total")).to_have_text("4.50")
    await page.get_by_role("button", name=re.compile(r"^Add Shoyu Ramen, 14\.50")).click()
    await expect(page.locator("#total")).to_have_text("19.00")
    await page.get_by_role("button", name=re.compile(r"^Add Shoyu Ramen, 14\.50")).click()
    await expect(line(page, "Shoyu Ramen").locator(".qty")).to_have_text("2")
    await expect(page.locator("#total")).to_have_text("33.50")


async def test_till_order_survives_a_reload_and_pays_into_the_kitchen(server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, page = await open_till(browser, errors, server)
    till_id = await till_id_of(page)
    await expect(page.locator("#order-empty")).to_be_visible()
    await expect(page.locator("#elsewhere")).to_be_hidden()
    await expect(page.get_by_role("button", name="Pay")).to_be_disabled()
    await ring_up(page)
    # −, +, remove and add again, a note: each one a write answered by the server.
    await line(page, "Shoyu Ramen").get_by_role("button", name="One less Shoyu Ramen").click()
    await expect(page.locator("#total")).to_have_text("19.00")
    await line(page, "Shoyu Ramen").get_by_role("button", name="One more Shoyu Ramen").click()
    await expect(page.locator("#total")).to_have_text("33.50")
    await line(page, "Edamame").get_by_role("button", name="Remove Edamame").click()
    await expect(line(page, "Edamame")).to_have_count(0)
    await expect(page.locator("#total")).to_have_text("29.00")
    await page.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50")).click()
    await expect(page.locator("#total")).to_have_text("33.50")
    rev_before_note = await revision_of(page)
    await page.get_by_label("Note for Shoyu Ramen").fill("no egg")
    await page.get_by_label("Note for Shoyu Ramen").press("Enter")
    await expect(page.locator("#order-meta")).not_to_have_attribute("data-revision", str(rev_before_note))
    revision = await revision_of(page)
    session_id = await page.locator("#order-meta").get_attribute("data-session-id")
    assert session_id and revision > rev_before_note

    # The server holds what the page shows, on this till.
    token = await page_staff_token(page)
    status, body = api(server, "GET", f"/api/order-sessions/{session_id}", token, till_id)
    assert status == 200, body
    assert body["till_id"] == till_id and body["revision"] == revision and body["total"] == 3350, body
    assert {i["name"]: (i["qty"], i["note"] or "") for i in body["items"]} == {
        "Shoyu Ramen": (2, "no egg"), "Edamame": (1, ""),
    }, body

    # A reload in the middle of the order: the same lines at the same revision.
    await page.reload()
    await expect(page.locator("#order > li")).to_have_count(2)
    await expect(line(page, "Shoyu Ramen").locator(".qty")).to_have_text("2")
    await expect(page.get_by_label("Note for Shoyu Ramen")).to_have_value("no egg")
    await expect(line(page, "Edamame").locator(".qty")).to_have_text("1")
    await expect(page.locator("#total")).to_have_text("33.50")
    await expect(page.locator("#order-meta")).to_have_attribute("data-revision", str(revision))
    await expect(page.locator("#order-meta")).to_have_attribute("data-session-id", session_id)
    assert await till_id_of(page) == till_id
    await screenshot(page, "till.png")

    # Pay by card: the transaction's total and the kitchen ticket are shown; the till is ready for the next.
    await page.get_by_role("button", name="Pay").click()
    await page.get_by_role("button", name="Card").click()
    await expect(page.locator("#receipt-text")).to_have_text("Paid 33.50 by card.")
    await expect(page.locator("#receipt-ticket")).to_contain_text("kitchen ticket ORD-")
    order_id = await page.locator("#receipt").get_attribute("data-order-id")
    transaction_id = await page.locator("#receipt").get_attribute("data-transaction-id")
    assert order_id and order_id.startswith("ORD-") and transaction_id, (order_id, transaction_id)
    await expect(page.locator("#order-empty")).to_be_visible()
    await expect(page.locator("#total")).to_have_text("0.00")
    await expect(page.get_by_role("button", name="Pay")).to_be_disabled()
    status, body = api(server, "GET", f"/api/order-sessions/{session_id}", token, till_id)
    assert status == 200 and body["status"] == "completed" and body["order_id"] == order_id, body
    status, body = api(server, "GET", "/api/order-sessions/active", token, till_id)
    assert status == 200 and body["session"] is None, body

    # The ticket is on the kitchen's list, once, with the lines.
    status, body = api(server, "GET", "/api/kitchen/tickets?since=0", admin_token(server))
    assert status == 200, body
    tickets = [t for t in body["tickets"] if t["order_id"] == order_id]
    assert len(tickets) == 1, body
    assert sorted((i["name"], i["qty"]) for i in tickets[0]["items"]) == [("Edamame", 1), ("Shoyu Ramen", 2)]
    await screenshot(page, "till-paid.png")

    # A reload after paying starts empty.
    await page.reload()
    await expect(page.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50"))).to_be_enabled()
    await expect(page.locator("#order-empty")).to_be_visible()
    assert not errors, errors


async def test_till_order_goes_on_a_tab(server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, page = await open_till(browser, errors, server)
    await expect(page.locator("#tabs-empty")).to_be_visible()
    await page.get_by_label("New tab").fill("Sam at the bar")
    await page.get_by_role("button", name="Open tab").click()
    assign = page.get_by_role("button", name="Assign the order to tab Sam at the bar")
    await expect(assign).to_be_visible()
    await expect(assign).to_be_disabled()  # nothing to put on it yet
    await ring_up(page)
    await expect(assign).to_be_enabled()
    await assign.click()
    await expect(page.locator("#receipt-text")).to_have_text("33.50 added to tab Sam at the bar.")
    await expect(page.locator("#receipt-ticket")).to_contain_text("Kitchen ticket ORD-")
    await expect(page.locator("#order-empty")).to_be_visible()
    order_id = await page.locator("#receipt").get_attribute("data-order-id")
    tab_id = await page.locator("#tabs > li", has_text="Sam at the bar").get_attribute("data-tab-id")
    assert order_id and tab_id

    token = await page_staff_token(page)
    status, tab = api(server, "GET", f"/api/tabs/{tab_id}", token, await till_id_of(page))
    assert status == 200 and tab["status"] == "open" and tab["total"] == 3350, tab
    status, body = api(server, "GET", "/api/kitchen/tickets?since=0", admin_token(server))
    assert status == 200 and [t["order_id"] for t in body["tickets"]].count(order_id) == 1, body
    assert not errors, errors


async def test_a_second_till_takes_the_order_over(server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, till_a = await open_till(browser, errors, server)
    await ring_up(till_a)
    id_a = await till_id_of(till_a)

    # The same user logs in at till B (another context: its own localStorage, its own till id).
    _, till_b = await open_till(browser, errors, server)
    id_b = await till_id_of(till_b)
    assert id_a != id_b
    banner_b = till_b.locator("#elsewhere")
    await expect(banner_b).to_be_visible()
    await expect(banner_b).to_have_attribute("data-till-id", id_a)
    await expect(till_b.locator("#order > li")).to_have_count(2)  # the order is shown, read-only
    await expect(till_b.locator("#total")).to_have_text("33.50")
    await expect(till_b.get_by_role("button", name=re.compile(r"^Add Edamame"))).to_be_disabled()
    await expect(till_b.get_by_role("button", name="Pay")).to_be_disabled()
    await screenshot(till_b, "till-warning.png")

    await till_b.get_by_role("button", name="Take over").click()
    await expect(banner_b).to_be_hidden()
    await expect(till_b.get_by_role("button", name=re.compile(r"^Add Edamame"))).to_be_enabled()
    # Till A is told at once (the staff websocket): the moved banner, nothing editable.
    banner_a = till_a.locator("#elsewhere")
    await expect(banner_a).to_be_visible()
    await expect(banner_a).to_contain_text(f"This order moved to till {short(id_b)}")
    await expect(banner_a).to_have_attribute("data-till-id", id_b)
    await expect(till_a.get_by_role("button", name=re.compile(r"^Add Edamame"))).to_be_disabled()
    await expect(till_a.get_by_role("button", name="One more Shoyu Ramen")).to_be_disabled()
    await expect(till_a.get_by_role("button", name="Pay")).to_be_disabled()
    await expect(till_a.get_by_role("button", name="Clear")).to_be_disabled()
    await screenshot(till_a, "till-moved.png")

    # The server agrees: a write from till A is 409 moved; B's edit is shown on A (read-only) at once.
    token = await page_staff_token(till_a)
    session_id = await till_b.locator("#order-meta").get_attribute("data-session-id")
    revision = await revision_of(till_b)
    status, body = api(server, "PUT", f"/api/order-sessions/{session_id}", token, id_a,
                       {"items": []}, if_match=revision)
    assert status == 409 and body["error"] == "moved" and body["till_id"] == id_b, body
    await till_b.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50")).click()
    await expect(till_b.locator("#total")).to_have_text("38.00")
    await expect(till_a.locator("#total")).to_have_text("38.00")
    await expect(line(till_a, "Edamame").locator(".qty")).to_have_text("2")
    await expect(banner_a).to_be_visible()

    # Till A takes it back; B is now the one told.
    await till_a.get_by_role("button", name="Take over").click()
    await expect(banner_a).to_be_hidden()
    await expect(till_b.locator("#elsewhere")).to_contain_text(f"This order moved to till {short(id_a)}")
    await expect(till_b.get_by_role("button", name=re.compile(r"^Add Edamame"))).to_be_disabled()
    await till_a.get_by_role("button", name="Clear").click()
    await expect(till_a.locator("#order-empty")).to_be_visible()
    assert not errors, errors


async def test_a_change_made_elsewhere_reaches_the_till_and_a_stale_edit_is_refused(
    server: Proc, browser: Browser,  # noqa: F811
) -> None:
    """A change of the order from outside the page (here: the API with this till's id, as another tab of
    the till would) shows at once through the staff websocket. Then, with the socket silenced (a route that
    never reaches the server), the page's next edit goes out with a stale If-Match: 409
    ``revision_mismatch``, and the page adopts the server's session and says so."""
    errors: list[str] = []
    ctx, page = await open_till(browser, errors, server)
    till_id = await till_id_of(page)
    token = await page_staff_token(page)
    await page.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50")).click()
    await expect(page.locator("#total")).to_have_text("4.50")
    session_id = await page.locator("#order-meta").get_attribute("data-session-id")
    revision = await revision_of(page)
    status, body = api(server, "GET", f"/api/order-sessions/{session_id}", token, till_id)
    assert status == 200, body
    items = [{"line_id": i["line_id"], "menu_item_id": i["menu_item_id"], "qty": 3} for i in body["items"]]
    status, body = api(server, "PUT", f"/api/order-sessions/{session_id}", token, till_id, {"items": items},
                       if_match=revision)
    assert status == 200, body
    await expect(line(page, "Edamame").locator(".qty")).to_have_text("3")
    await expect(page.locator("#total")).to_have_text("13.50")
    await expect(page.locator("#order-meta")).to_have_attribute("data-revision", str(body["revision"]))

    # Silence the socket (a route that never connects to the server), reload: the page knows revision N.
    await ctx.route_web_socket(re.compile(r"/ws/staff"), lambda ws: None)
    await page.reload()
    await expect(line(page, "Edamame").locator(".qty")).to_have_text("3")
    revision = await revision_of(page)
    status, body = api(server, "PUT", f"/api/order-sessions/{session_id}", token, till_id,
                       {"items": [{**items[0], "qty": 1}]}, if_match=revision)
    assert status == 200, body
    await expect(page.locator("#total")).to_have_text("13.50")  # not told: the socket is silent
    await page.get_by_role("button", name="One more Edamame").click()
    await expect(page.locator("#msg")).to_contain_text("This order was changed elsewhere")
    await expect(line(page, "Edamame").locator(".qty")).to_have_text("1")
    await expect(page.locator("#total")).to_have_text("4.50")
    await expect(page.locator("#order-meta")).to_have_attribute("data-revision", str(body["revision"]))
    # The next edit goes out on the adopted revision and lands.
    await page.get_by_role("button", name="One more Edamame").click()
    await expect(page.locator("#total")).to_have_text("9.00")
    await expect(page.locator("#order-meta")).to_have_attribute("data-revision", str(body["revision"] + 1))
    assert not errors, errors


async def test_a_logout_parks_the_order_and_the_next_till_carries_on(server: Proc, browser: Browser) -> None:  # noqa: F811
    """"Log out" at till A parks the order (pending_logout); logging in at till B brings it back there,
    active, with no warning, and B edits it."""
    errors: list[str] = []
    _, till_a = await open_till(browser, errors, server)
    await ring_up(till_a)
    session_id = await till_a.locator("#order-meta").get_attribute("data-session-id")
    async with till_a.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/staff/logout")):
        await till_a.get_by_role("button", name="Log out").click()
    await expect(till_a.get_by_label("Username")).to_be_visible()
    status, body = api(server, "GET", f"/api/order-sessions/{session_id}", admin_token(server))
    assert status == 200 and body["status"] == "pending_logout" and body["logout_time"], body

    _, till_b = await open_till(browser, errors, server)
    id_b = await till_id_of(till_b)
    await expect(till_b.locator("#order-meta")).to_have_attribute("data-session-id", session_id or "")
    await expect(till_b.locator("#elsewhere")).to_be_hidden()
    await expect(till_b.locator("#total")).to_have_text("33.50")
    await till_b.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50")).click()
    await expect(till_b.locator("#total")).to_have_text("38.00")
    token = await page_staff_token(till_b)
    status, body = api(server, "GET", f"/api/order-sessions/{session_id}", token, id_b)
    assert status == 200 and body["status"] == "active" and body["till_id"] == id_b, body
    assert not errors, errors
