"""The whole product in a real browser (Debian's Chromium driven by Playwright, headless).

Two phones join one table and share a cart live; one places the order, the other sees the lock and then
the confirmation; the kitchen display shows the ticket and bumps it to ready, both phones see it; staff
check the table out on the staff console; both phones show the closed state and the old join link now
gives the "ask staff" page. Screenshots of every page go to build/screenshots/ (gitignored); with
TABLESIDE_UPDATE_SCREENSHOTS=1 they replace the committed ones in docs/screenshots/ instead.

The server runs as a subprocess on a fresh database. No blind sleeps: every wait is an ``expect`` with a
timeout (stretched by TABLESIDE_TEST_TIMEOUT_FACTOR on slow machines)."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, async_playwright, expect

from tests.client import t
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import Proc, start_tableside

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "browser-admin-pw"
PHONE = {"width": 375, "height": 812}
REPO = Path(__file__).resolve().parents[2]
# A test run leaves the tree clean: the committed screenshots change only on purpose.
UPDATE_SCREENSHOTS = os.environ.get("TABLESIDE_UPDATE_SCREENSHOTS") == "1"
SCREENSHOTS = REPO / ("docs" if UPDATE_SCREENSHOTS else "build") / "screenshots"
WAIT_MS = t(10) * 1000


def start_server(database_url: str, port: int | None = None, *, pos_latency_ms: int = 1500) -> Proc:
    return start_tableside(
        database_url,
        port=port,
        TABLESIDE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TABLESIDE_POS__LATENCY_MS=str(pos_latency_ms),
        TABLESIDE_POS__SUCCESS_RATE="1.0",
        TABLESIDE_DEMO__TABLES="3",
    )


@pytest.fixture
def database_url() -> Iterator[str]:
    url = create_database_sync("ts_browser")
    yield url
    drop_database_sync(url)


@pytest.fixture
def server(database_url: str) -> Iterator[Proc]:
    proc = start_server(database_url)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def staff_call(proc: Proc, path: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(proc.base + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def new_page(browser: Browser, errors: list[str], **kwargs: Any) -> tuple[BrowserContext, Page]:
    ctx = await browser.new_context(**kwargs)
    ctx.set_default_timeout(WAIT_MS)
    page = await ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    # A CSP violation (an inline script or style sneaking in) shows up as a console error.
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{page.url}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return ctx, page


async def screenshot(page: Page, name: str) -> None:
    """Full-page shot as if the screen were as tall as the page (sticky bars sit where they belong)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or PHONE
    await page.mouse.move(0, 0)  # no hover styles in the picture
    await page.evaluate("window.scrollTo(0, 0)")
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(height))})
    await page.screenshot(path=str(SCREENSHOTS / name), full_page=True, animations="disabled")
    await page.set_viewport_size(size)


async def staff_login(page: Page, base: str, path: str, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    if not page.url.startswith(base + path):
        await page.goto(base + path)
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#who")).to_have_text(f"{username} ({username})")


def demo_password(proc: Proc, username: str) -> str:
    """A generated demo password, from the logins file in the server's (temporary) data directory."""
    for line in (Path(proc.env["TABLESIDE_DATA_DIR"]) / "demo-logins.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == username:
            return parts[1]
    raise AssertionError(f"no demo password for {username}")


def staff_status(proc: Proc, method: str, path: str, token: str) -> int:
    req = urllib.request.Request(proc.base + path, data=b"" if method == "POST" else None, method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


async def page_staff_token(page: Page) -> str:
    return str(await page.evaluate("JSON.parse(sessionStorage.getItem('tableside_staff')).token"))


def cart_line(page: Page, name: str) -> Any:
    return page.locator("#cart > li", has_text=name)


def join_url_for(proc: Proc, table_id: str) -> tuple[str, str]:
    """(staff token, the table's join URL) via the admin API."""
    token = staff_call(proc, "/api/staff/login", body={"username": "admin", "password": ADMIN_PASSWORD})[
        "token"
    ]
    tables = staff_call(proc, "/api/staff/tables", token)
    return token, next(row["join_url"] for row in tables if row["table_id"] == table_id)


async def test_two_phones_kitchen_and_staff(server: Proc, browser: Browser) -> None:
    base = server.base
    _, join_url = join_url_for(server, "T001")
    errors: list[str] = []

    # -- two phones join the same table ------------------------------------------------------------
    _, phone_a = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    _, phone_b = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    # The guest page speaks tableside.v2.json: cart changes arrive as cart_delta, never as cart_updated.
    frames_a: list[str] = []
    phone_a.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames_a.append(p if isinstance(p, str) else "")))
    await phone_a.goto(join_url)
    assert phone_a.url == base + "/guest"  # the QR link is not left in the history
    await expect(phone_a.locator("#members")).to_contain_text("Guest 1 (you)")
    await phone_b.goto(join_url)
    await expect(phone_b.locator("#members")).to_contain_text("Guest 2 (you)")
    await expect(phone_a.locator("#members")).to_contain_text("Guest 2")
    await expect(phone_a.locator("#table-title")).to_have_text("Table T001")

    # -- both add items and see each other's lines live, with who added them -----------------------
    await phone_a.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50")).click()
    await phone_b.get_by_role("button", name=re.compile(r"^Add Shoyu Ramen, 14\.50")).click()
    await expect(cart_line(phone_a, "Shoyu Ramen")).to_contain_text("Added by Guest 2")
    await expect(cart_line(phone_b, "Edamame")).to_contain_text("Added by Guest 1")
    await expect(cart_line(phone_a, "Edamame")).to_contain_text("Added by you (Guest 1)")
    await phone_b.get_by_role("button", name="One more Shoyu Ramen").click()
    await expect(phone_a.locator("#total")).to_have_text("33.50")
    await expect(phone_b.locator("#total")).to_have_text("33.50")
    await expect(cart_line(phone_a, "Shoyu Ramen").locator(".qty")).to_have_text("2")
    assert any('"type":"cart_delta"' in f for f in frames_a), frames_a
    assert not any('"type":"cart_updated"' in f for f in frames_a), frames_a
    await expect(phone_a.locator("#place")).to_have_text("Place order")
    await expect(phone_a.locator("#place")).to_be_enabled()
    await screenshot(phone_a, "guest.png")

    # -- kitchen display and staff console, logged in before the order exists ------------------------
    _, kitchen = await new_page(browser, errors, viewport={"width": 1280, "height": 800})
    await staff_login(kitchen, base, "/kitchen")
    await expect(kitchen.locator("#empty-new")).to_be_visible()
    await expect(kitchen.locator("#conn")).to_be_hidden()
    _, staff = await new_page(browser, errors, viewport={"width": 1100, "height": 800})
    await staff_login(staff, base, "/staff")
    t001 = staff.locator('.table-card[data-table-id="T001"]')
    await expect(t001.locator(".table-status")).to_have_text("Occupied")
    await expect(t001.locator(".online")).to_have_text("2")
    await expect(t001.locator(".cart-total")).to_have_text("33.50")
    await expect(t001.get_by_role("link", name="Guest link")).to_have_attribute("href", re.compile(r"/q/T001/"))

    # -- guest B places the order; A sees the lock, then both see the confirmation -------------------
    await phone_b.locator("#instructions").fill("No spring onion in the ramen, please")
    await phone_b.get_by_role("button", name="Place order").click()
    await expect(phone_b.locator("#place")).to_have_text("Pending confirmation…")
    await expect(phone_b.locator("#place")).to_be_disabled()
    await expect(phone_b.locator("#notice")).to_have_text("Your order is being processed...")
    await expect(phone_a.locator("#place")).to_have_text("Order being processed by Guest 2")
    await expect(phone_a.locator("#place")).to_be_disabled()
    await expect(phone_a.get_by_role("button", name=re.compile(r"^Add Edamame"))).to_be_disabled()
    await screenshot(phone_a, "guest-locked.png")
    for phone in (phone_a, phone_b):
        await expect(phone.locator("#notice")).to_contain_text("Order placed successfully! 🎉 Order #")
        await expect(phone.locator("#orders > li")).to_have_count(1)
        await expect(phone.locator("#orders .kitchen-status")).to_have_text("Received")
        await expect(phone.locator("#cart > li")).to_have_count(0)
        await expect(phone.locator("#place")).to_have_text("Place order")
    order_label = await phone_a.locator("#orders > li strong").inner_text()  # "Order #N"
    number = order_label.removeprefix("Order #")

    # -- the kitchen shows the ticket, once; bumping it reaches both phones ----------------------------
    ticket = kitchen.locator("#col-new .ticket")
    await expect(ticket).to_have_count(1)
    await expect(ticket).to_contain_text(f"#{number}")
    await expect(ticket).to_contain_text("Table 1")
    await expect(ticket).to_contain_text("Shoyu Ramen")
    await expect(ticket).to_contain_text("No spring onion")
    await kitchen.get_by_role("button", name=f"Start preparing: order {number}").click()
    await expect(kitchen.locator("#col-preparing .ticket")).to_have_count(1)
    await expect(phone_a.locator("#orders .kitchen-status")).to_have_text("Preparing")
    await kitchen.get_by_role("button", name=f"Mark ready: order {number}").click()
    await expect(kitchen.locator("#col-ready .ticket")).to_have_count(1)
    for phone in (phone_a, phone_b):
        await expect(phone.locator("#orders .kitchen-status")).to_have_text("Ready")
        await expect(phone.locator("#notice")).to_have_text(f"Order #{number} is ready!")

    # A second round from phone A, so the kitchen shows tickets in two columns.
    await phone_a.get_by_role("button", name=re.compile(r"^Add Green Tea")).click()
    await phone_a.get_by_role("button", name=re.compile(r"^Add Chicken Karaage")).click()
    await expect(phone_b.locator("#cart > li")).to_have_count(2)
    await phone_a.get_by_role("button", name="Place order").click()
    await expect(phone_b.locator("#place")).to_have_text("Order being processed by Guest 1")
    await expect(kitchen.locator("#col-new .ticket")).to_have_count(1)
    await expect(phone_b.locator("#orders > li")).to_have_count(2)
    await expect(kitchen.locator("#col-ready .ticket")).to_have_count(1)
    await screenshot(kitchen, "kitchen.png")

    # -- staff "86" an item that sits in the cart: both phones flag the line and block the order -------
    await expect(phone_b.locator("#place")).to_have_text("Place order")
    await phone_b.get_by_role("button", name=re.compile(r"^Add Mochi")).click()
    await expect(cart_line(phone_a, "Mochi")).to_contain_text("Added by Guest 2")
    await staff.get_by_role("switch", name="Mochi (3)").click()
    await expect(staff.get_by_role("switch", name="Mochi (3)")).not_to_be_checked()
    await expect(staff.locator('#menu-list li[data-menu-item="mochi"] .badge')).to_have_text("Sold out")
    for phone in (phone_a, phone_b):
        await expect(cart_line(phone, "Mochi")).to_contain_text("Unavailable")
        await expect(phone.get_by_role("button", name="Mochi (3) is unavailable")).to_be_disabled()
        await expect(phone.locator("#place")).to_be_disabled()

    # -- staff check the table out; both phones close; the old link says "ask staff" -----------------
    await expect(t001.locator(".online")).to_have_text("2")
    await expect(t001.locator(".order")).to_have_text("none pending")
    await expect(t001.locator(".cart-total")).to_have_text("6.00")
    await screenshot(staff, "staff.png")
    await t001.get_by_role("button", name="Check out: Table 1").click()
    await t001.get_by_role("button", name="Confirm check out: Table 1").click()
    await expect(t001.locator(".table-status")).to_have_text("Paid – awaiting reset")
    for phone in (phone_a, phone_b):
        await expect(phone.locator("#closed")).to_be_visible()
        await expect(phone.locator("#closed")).to_contain_text(
            "Thank you! This sitting is closed. Please ask staff if you need anything."
        )
        await expect(phone.locator("#app")).to_be_hidden()
    await phone_b.reload()
    await expect(phone_b.locator("#closed")).to_be_visible()
    response = await phone_a.goto(join_url)
    assert response is not None and response.status == 409
    await expect(phone_a.locator("body")).to_contain_text(re.compile("ask staff", re.IGNORECASE))
    # A page in the app's style (the stylesheet applied: the dark top bar) that says what to do.
    await expect(phone_a.locator(".topbar")).to_have_css("background-color", "rgb(31, 42, 55)")
    await expect(phone_a.get_by_role("alert")).to_contain_text("checked out")
    await expect(phone_a.locator("body")).to_contain_text("A member of staff can help")
    await screenshot(phone_a, "guest-table-closed.png")

    # Reset makes the table vacant again.
    await t001.get_by_role("button", name="Reset: Table 1").click()
    await t001.get_by_role("button", name="Confirm reset: Table 1").click()
    await expect(t001.locator(".table-status")).to_have_text("Vacant")

    assert not errors, errors


async def test_reconnect_polling_and_reload(database_url: str, browser: Browser) -> None:
    """A phone whose socket cannot connect keeps its cart fresh by polling; a server killed with -9 and
    restarted: phone and kitchen show "reconnecting", come back by themselves, the acked cart is there;
    a reload while the order is processing restores the pending state; the kitchen gets the ticket once."""
    proc = start_server(database_url)
    try:
        base = proc.base
        _, join_url = join_url_for(proc, "T002")
        errors: list[str] = []
        _, phone_a = await new_page(browser, errors, viewport=PHONE)
        ctx_b, phone_b = await new_page(browser, errors, viewport=PHONE)

        # Phone B's websocket goes through a switchable proxy: "blocked" refuses every connection.
        blocked = False
        live_routes: list[WebSocketRoute] = []

        async def guest_socket(route: WebSocketRoute) -> None:
            if blocked:
                await route.close(code=1011, reason="blocked by the test")
                return
            route.connect_to_server()
            live_routes.append(route)

        await ctx_b.route_web_socket(re.compile(r"/ws$"), guest_socket)

        await phone_a.goto(join_url)
        await expect(phone_a.locator("#members")).to_contain_text("Guest 1 (you)")
        await phone_b.goto(join_url)
        await expect(phone_b.locator("#members")).to_contain_text("Guest 2 (you)")
        await phone_a.get_by_role("button", name=re.compile(r"^Add Edamame")).click()
        await expect(cart_line(phone_b, "Edamame")).to_be_visible()

        # -- B loses its socket: banner, controls off, and the cart still follows by polling ---------------
        blocked = True
        for route in live_routes:
            await route.close(code=1006, reason="network gone")
        await expect(phone_b.locator("#conn")).to_have_text("Connection lost. Reconnecting…")
        await expect(phone_b.locator("#conn")).to_be_visible()
        await expect(phone_b.locator("#place")).to_be_disabled()
        await phone_a.get_by_role("button", name=re.compile(r"^Add Miso Soup")).click()
        # Only GET /api/cart can bring this line to B: its socket is refused.
        await expect(cart_line(phone_b, "Miso Soup")).to_contain_text("Added by Guest 1")
        await expect(phone_b.locator("#conn")).to_be_visible()
        blocked = False
        await expect(phone_b.locator("#conn")).to_be_hidden()
        await expect(phone_b.locator("#place")).to_be_enabled()

        # -- kitchen screen connected, then the server dies and comes back ---------------------------------
        _, kitchen = await new_page(browser, errors, viewport={"width": 1280, "height": 800})
        await staff_login(kitchen, base, "/kitchen")
        await expect(kitchen.locator("#empty-new")).to_be_visible()
        proc.kill9()
        await expect(phone_a.locator("#conn")).to_be_visible()
        await expect(kitchen.locator("#conn")).to_have_text("Reconnecting…")
        await expect(kitchen.locator("#conn")).to_be_visible()
        proc = start_server(database_url, port=proc.port)
        for page in (phone_a, phone_b, kitchen):
            await expect(page.locator("#conn")).to_be_hidden()
        await expect(phone_a.locator("#cart > li")).to_have_count(2)
        await expect(phone_a.locator("#total")).to_have_text("8.00")

        # -- reload while processing: the pending state comes back from the cart ----------------------------
        await phone_a.get_by_role("button", name="Place order").click()
        await expect(phone_a.locator("#place")).to_have_text("Pending confirmation…")
        await phone_a.reload()
        await expect(phone_a.locator("#place")).to_have_text("Pending confirmation…")
        await expect(phone_a.locator("#notice")).to_have_text("Your order is being processed...")
        await expect(phone_b.locator("#place")).to_have_text("Order being processed by Guest 1")
        for phone in (phone_a, phone_b):
            await expect(phone.locator("#notice")).to_contain_text("Order placed successfully!")
            await expect(phone.locator("#orders > li")).to_have_count(1)
        await expect(kitchen.locator(".ticket")).to_have_count(1)
        await expect(kitchen.locator("#col-new .ticket")).to_contain_text("Miso Soup")
        assert not errors, errors
    finally:
        proc.stop()


async def test_landing_and_scan_to_join_pages(server: Proc, browser: Browser) -> None:
    """What someone meets before joining: / and /guest without a cookie are styled pages saying what to do."""
    errors: list[str] = []
    _, page = await new_page(browser, errors, viewport=PHONE)
    await page.goto(server.base + "/")
    await expect(page.get_by_text("Scan the QR code on your table")).to_be_visible()
    await expect(page.get_by_role("link", name="Staff console")).to_have_attribute("href", "/staff")
    await expect(page.get_by_role("link", name="Kitchen display")).to_have_attribute("href", "/kitchen")
    await expect(page.locator(".topbar")).to_have_css("background-color", "rgb(31, 42, 55)")
    await screenshot(page, "landing.png")
    await page.goto(server.base + "/guest")
    await expect(page.get_by_role("heading", name="Scan the QR code on your table to join")).to_be_visible()
    await expect(page.get_by_text("This sitting is closed")).to_have_count(0)
    await screenshot(page, "guest-no-session.png")
    await page.goto(server.base + "/staff/qr-sheet")
    await expect(page.get_by_role("link", name="Log in on the staff console")).to_have_attribute("href", "/staff")
    await screenshot(page, "qr-sheet-login-needed.png")
    assert not errors, errors


async def test_order_timeout_offers_a_retry_that_resumes_the_same_order(
    database_url: str, browser: Browser
) -> None:
    """Seed 004 §5.2: no outcome within the order timeout (shortened here, below the POS latency) → the
    guest is told and offered a retry; the retry resends the same request id, and exactly one order exists
    in the end."""
    proc = start_server(database_url, pos_latency_ms=4000)
    try:
        token, join_url = join_url_for(proc, "T003")
        errors: list[str] = []
        ctx, phone = await new_page(browser, errors, viewport=PHONE)
        await ctx.add_init_script("window.TABLESIDE_ORDER_TIMEOUT_MS = 1000;")
        sent: list[dict[str, Any]] = []
        phone.on(
            "websocket",
            lambda ws: ws.on(
                "framesent", lambda payload: sent.append(json.loads(payload)) if isinstance(payload, str) else None
            ),
        )
        await phone.goto(join_url)
        await expect(phone.locator("#members")).to_contain_text("Guest 1 (you)")
        await phone.get_by_role("button", name=re.compile(r"^Add Edamame")).click()
        await expect(cart_line(phone, "Edamame")).to_be_visible()
        await phone.get_by_role("button", name="Place order").click()

        await expect(phone.locator("#notice")).to_contain_text("No confirmation yet")
        await expect(phone.locator("#place")).to_have_text("Retry order")
        await expect(phone.locator("#place")).to_be_enabled()
        await screenshot(phone, "guest-order-timeout.png")
        await phone.locator("#place").click()

        await expect(phone.locator("#notice")).to_contain_text("Order placed successfully!", timeout=t(20) * 1000)
        await expect(phone.locator("#orders > li")).to_have_count(1)
        await expect(phone.locator("#place")).to_have_text("Place order")
        places = [m for m in sent if m.get("type") == "place_order"]
        assert len(places) >= 2 and {m["id"] for m in places} == {places[0]["id"]}, places
        tickets = staff_call(proc, "/api/kitchen/tickets", token)["tickets"]
        assert len(tickets) == 1, tickets
        assert not errors, errors
    finally:
        proc.stop()


async def test_a_guest_leaves_the_table(server: Proc, browser: Browser) -> None:
    """"Leave table" asks first; leaving tells the others (member_left), shows "you left" instead of the
    menu, and the page never reconnects (the token is revoked), also after a reload."""
    _, join_url = join_url_for(server, "T002")
    errors: list[str] = []
    _, phone_a = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    _, phone_b = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    sockets: list[Any] = []
    sent: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        sockets.append(ws)
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)) if isinstance(payload, str) else None)

    phone_a.on("websocket", on_socket)
    await phone_a.goto(join_url)
    await expect(phone_a.locator("#members")).to_contain_text("Guest 1 (you)")
    await phone_b.goto(join_url)
    await expect(phone_b.locator("#members")).to_contain_text("Guest 2 (you)")
    await expect(phone_b.locator("#members > li")).to_have_count(2)
    await phone_a.get_by_role("button", name=re.compile(r"^Add Edamame")).click()
    await expect(cart_line(phone_b, "Edamame")).to_be_visible()

    # The confirm step: "Stay" changes nothing.
    await phone_a.get_by_role("button", name="Leave table").click()
    await expect(phone_a.locator("#leave-confirm")).to_be_visible()
    await expect(phone_a.get_by_role("button", name="Leave table")).to_be_hidden()
    await phone_a.get_by_role("button", name="Stay").click()
    await expect(phone_a.locator("#leave-confirm")).to_be_hidden()
    assert not [m for m in sent if m.get("type") == "leave"]

    await phone_a.get_by_role("button", name="Leave table").click()
    await phone_a.get_by_role("button", name="Yes, leave the table").click()
    left = phone_a.locator("#left")
    await expect(left).to_be_visible()
    await expect(left).to_contain_text("You left the table")
    await expect(left).to_contain_text("Scan the QR code on the table to join again.")
    await expect(phone_a.locator("#app")).to_be_hidden()
    await expect(phone_a.locator("#closed")).to_be_hidden()
    await expect(phone_a.locator("#conn")).to_be_hidden()
    assert [m["type"] for m in sent if m.get("type") == "leave"] == ["leave"] and sent[-1].get("id")
    # The other phone sees the member leave; the lines they added stay in the cart.
    await expect(phone_b.locator("#members > li")).to_have_count(1)
    await expect(phone_b.locator("#members")).not_to_contain_text("Guest 1")
    await expect(cart_line(phone_b, "Edamame")).to_be_visible()
    await screenshot(phone_a, "guest-left.png")

    # A reload still says so (the revoked cookie gets 401; this tab remembers why) and opens no socket.
    await phone_a.reload()
    await expect(left).to_be_visible()
    await expect(phone_a.locator("#closed")).to_be_hidden()
    await expect(phone_b.locator("#members > li")).to_have_count(1)
    assert len(sockets) == 1, "the page reconnected after leaving"
    assert not errors, errors


async def test_kitchen_staff_pages(server: Proc, browser: Browser) -> None:
    """Kitchen staff: no guest link (the board omits join_url for them) on the staff console; the kitchen
    screen goes back to the login form when its session is ended elsewhere; "Log out" ends the session
    on the server."""
    password = demo_password(server, "kitchen")
    errors: list[str] = []
    _, staff = await new_page(browser, errors, viewport={"width": 1100, "height": 800})
    await staff_login(staff, server.base, "/staff", "kitchen", password)
    cards = staff.locator(".table-card")
    await expect(cards).to_have_count(3)
    await expect(cards.nth(2).locator(".table-status")).to_have_text("Vacant")  # the board has rendered
    for i in range(3):
        await expect(cards.nth(i).get_by_text("Guest link")).to_be_hidden()
    await expect(staff.get_by_role("link", name="Guest link")).to_have_count(0)
    await expect(staff.locator('a[href="undefined"]')).to_have_count(0)

    _, kitchen = await new_page(browser, errors, viewport={"width": 1280, "height": 800})
    await staff_login(kitchen, server.base, "/kitchen", "kitchen", password)
    await expect(kitchen.locator("#empty-new")).to_be_visible()
    await expect(kitchen.locator("#conn")).to_be_hidden()

    # Its session ends elsewhere (here: a logout with its token): the server closes the screen.
    token = await page_staff_token(kitchen)
    assert staff_status(server, "POST", "/api/staff/logout", token) == 204
    await expect(kitchen.locator("#login-error")).to_have_text("You were logged out. Please log in again.")
    await expect(kitchen.locator("#board")).to_be_hidden()
    await expect(kitchen.locator("#conn")).to_be_hidden()

    # Logged in again, "Log out" ends the session on the server, not only on this screen.
    await staff_login(kitchen, server.base, "/kitchen", "kitchen", password)
    await expect(kitchen.locator("#empty-new")).to_be_visible()
    token = await page_staff_token(kitchen)
    assert staff_status(server, "GET", "/api/staff/board", token) == 200
    async with kitchen.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/staff/logout")):
        await kitchen.get_by_role("button", name="Log out").click()
    await expect(kitchen.get_by_label("Username")).to_be_visible()
    await expect(kitchen.locator("#login-error")).to_have_text("")
    assert staff_status(server, "GET", "/api/staff/board", token) == 401
    assert not errors, errors
