"""The store page (/store/{id}) in Debian's Chromium: the menu, the guest cart kept on the server (a reload
keeps it: the HttpOnly cookie carries the session), the hand-over of that cart into a table's shared cart
when the guest opens the table's QR link, and register / login keeping the cart. Screenshots go to
build/screenshots/ (docs/screenshots/ with TABLESIDE_UPDATE_SCREENSHOTS=1), like the other browser tests."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.browser.test_browser_flow import (  # noqa: F401  (fixtures used by name)
    PHONE,
    browser,
    database_url,
    join_url_for,
    new_page,
    screenshot,
    server,
    staff_call,
)
from tests.procs import Proc

pytestmark = pytest.mark.browser


def store_line(page: Page, name: str) -> Any:
    return page.locator("#cart > li", has_text=name)


async def open_store_and_fill_cart(page: Page, proc: Proc) -> None:
    """Store 1 opened fresh: Edamame and Shoyu Ramen added, the ramen stepped up to 2 → 33.50."""
    stores = staff_call(proc, "/api/stores")["stores"]
    first = next(s for s in stores if s["store_id"] == 1)
    await page.goto(proc.base + "/store/1")
    await expect(page.locator("#store-name")).to_have_text(first["name"])
    await expect(page.locator("#store-address")).to_have_text(first["address"])
    await expect(page.get_by_text("At the restaurant? Scan the QR code on your table: your cart comes with you.")).to_be_visible()
    await expect(page.locator("#cart-empty")).to_be_visible()
    await page.get_by_role("button", name=re.compile(r"^Add Edamame, 4\.50")).click()
    await expect(store_line(page, "Edamame")).to_be_visible()
    await page.get_by_role("button", name=re.compile(r"^Add Shoyu Ramen, 14\.50")).click()
    await expect(store_line(page, "Shoyu Ramen")).to_be_visible()
    await page.get_by_role("button", name="One more Shoyu Ramen").click()
    await expect(store_line(page, "Shoyu Ramen").locator(".qty")).to_have_text("2")
    await expect(page.locator("#total")).to_have_text("33.50")


async def test_store_page_cart_survives_a_reload(server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, page = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    await open_store_and_fill_cart(page, server)
    # One less, one more, remove and add again: PUT and DELETE through the cookie.
    await page.get_by_role("button", name="One less Shoyu Ramen").click()
    await expect(page.locator("#total")).to_have_text("19.00")
    await page.get_by_role("button", name="One more Shoyu Ramen").click()
    await expect(page.locator("#total")).to_have_text("33.50")
    await store_line(page, "Edamame").get_by_role("button", name="Remove Edamame").last.click()
    await expect(store_line(page, "Edamame")).to_have_count(0)
    await expect(page.locator("#total")).to_have_text("29.00")
    await page.get_by_role("button", name=re.compile(r"^Add Edamame")).click()
    await expect(page.locator("#total")).to_have_text("33.50")
    await screenshot(page, "store.png")

    await page.reload()
    await expect(page.locator("#cart > li")).to_have_count(2)
    await expect(store_line(page, "Shoyu Ramen").locator(".qty")).to_have_text("2")
    await expect(store_line(page, "Edamame").locator(".qty")).to_have_text("1")
    await expect(page.locator("#total")).to_have_text("33.50")
    await expect(page.locator("#notice")).to_have_text("")

    # Another store: a cart holds one store's items, so opening store 2 empties it, and the page says so.
    await page.goto(server.base + "/store/2")
    await expect(page.locator("#notice")).to_contain_text("so it was emptied when you opened this store")
    await expect(page.locator("#cart-empty")).to_be_visible()
    await expect(page.locator("#total")).to_have_text("0.00")

    # An item staff switched off is shown, its button disabled.
    token, _ = join_url_for(server, "T001")
    staff_call(server, "/api/staff/menu/mochi/availability", token, {"available": False})
    await page.goto(server.base + "/store/1")
    await expect(page.get_by_role("button", name="Mochi (3) is unavailable")).to_be_disabled()
    await expect(page.get_by_role("button", name=re.compile(r"^Add Edamame"))).to_be_enabled()
    await expect(page.locator("#notice")).to_have_text("")

    # An unknown store says so.
    await page.goto(server.base + "/store/999")
    await expect(page.get_by_role("heading", name="No such store")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    assert not errors, errors


async def test_store_cart_is_handed_over_to_the_table(server: Proc, browser: Browser) -> None:  # noqa: F811
    """The same browser opens table T001's QR link: the table's shared cart holds the lines, added by this
    member; the guest cart is empty afterwards; a second phone at the table sees the same lines."""
    _, join_url = join_url_for(server, "T001")
    errors: list[str] = []
    ctx, page = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    await open_store_and_fill_cart(page, server)

    await page.goto(join_url)
    assert page.url == server.base + "/guest"
    await expect(page.locator("#members")).to_contain_text("Guest 1 (you)")
    await expect(page.locator("#cart > li")).to_have_count(2)
    await expect(store_line(page, "Edamame")).to_contain_text("Added by you (Guest 1)")
    await expect(store_line(page, "Shoyu Ramen")).to_contain_text("Added by you (Guest 1)")
    await expect(store_line(page, "Shoyu Ramen").locator(".qty")).to_have_text("2")
    await expect(page.locator("#total")).to_have_text("33.50")
    resp = await ctx.request.get(server.base + "/api/guest/cart")
    assert resp.status == 200
    body = await resp.json()
    assert body["items"] == [] and body["total"] == 0, body
    await screenshot(page, "store-handed-over.png")

    _, phone_b = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    await phone_b.goto(join_url)
    await expect(phone_b.locator("#members")).to_contain_text("Guest 2 (you)")
    await expect(phone_b.locator("#cart > li")).to_have_count(2)
    await expect(store_line(phone_b, "Edamame")).to_contain_text("Added by Guest 1")
    await expect(store_line(phone_b, "Shoyu Ramen").locator(".qty")).to_have_text("2")
    await expect(phone_b.locator("#total")).to_have_text("33.50")

    # Back on the store page the guest cart is empty (the lines are at the table now).
    await page.goto(server.base + "/store/1")
    await expect(page.locator("#cart-empty")).to_be_visible()
    await expect(page.locator("#total")).to_have_text("0.00")
    assert not errors, errors


async def test_register_and_login_keep_the_cart(server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, page = await new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True)
    await open_store_and_fill_cart(page, server)

    await page.locator("#register-name").fill("Ana Lima")
    await page.locator("#register-email").fill("ana@example.com")
    await page.locator("#register-password").fill("correct horse")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#signed-in")).to_have_text("Signed in as Ana Lima")
    await expect(page.locator("#who")).to_have_text("Ana Lima")
    await expect(page.locator("#account-forms")).to_be_hidden()
    await expect(page.locator("#cart > li")).to_have_count(2)
    await expect(page.locator("#total")).to_have_text("33.50")
    await screenshot(page, "store-signed-in.png")
    # Signed in, the cart is the account's: a change shows there.
    await page.get_by_role("button", name="One less Shoyu Ramen").click()
    await expect(page.locator("#total")).to_have_text("19.00")
    await page.reload()
    await expect(page.locator("#signed-in")).to_have_text("Signed in as Ana Lima")
    await expect(page.locator("#total")).to_have_text("19.00")

    await page.get_by_role("button", name="Log out").click()
    await expect(page.locator("#account-forms")).to_be_visible()
    await expect(page.locator("#signed-in")).to_be_hidden()

    # A wrong password is the API's answer, shown by the form.
    await page.locator("#login-email").fill("ana@example.com")
    await page.locator("#login-password").fill("wrong password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
    await page.locator("#login-password").fill("correct horse")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#signed-in")).to_have_text("Signed in as Ana Lima")
    await expect(page.locator("#cart > li")).to_have_count(2)
    await expect(page.locator("#total")).to_have_text("19.00")
    assert not errors, errors


async def test_an_add_tapped_while_the_session_starts_is_not_lost(server: Proc, browser: Browser) -> None:  # noqa: F811
    """The menu can show before the guest session exists: an "Add" then waits for the session and lands."""
    errors: list[str] = []
    ctx, page = await new_page(browser, errors, viewport=PHONE)
    gate = asyncio.Event()

    async def held(route: Route) -> None:
        await gate.wait()
        await route.continue_()

    await ctx.route(re.compile(r"/api/guest/session$"), held)
    await page.goto(server.base + "/store/1")
    await page.get_by_role("button", name=re.compile(r"^Add Edamame")).click()
    await expect(page.locator("#cart > li")).to_have_count(0)
    gate.set()
    await expect(store_line(page, "Edamame")).to_be_visible()
    await expect(page.locator("#total")).to_have_text("4.50")
    await expect(page.locator("#notice")).to_have_text("")
    assert not errors, errors
