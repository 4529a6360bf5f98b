"""An admin (every store) picks the store on the staff console and the kitchen display; staff bound to one
store see no picker."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_browser_flow import (  # noqa: F401  (fixtures used by name)
    browser,
    database_url,
    demo_password,
    new_page,
    server,
    staff_login,
)
from tests.procs import Proc

pytestmark = pytest.mark.browser


async def test_an_admin_picks_the_store_and_a_manager_has_none_to_pick(server: Proc, browser: Browser) -> None:  # noqa: F811
    errors: list[str] = []
    _, staff = await new_page(browser, errors, viewport={"width": 1100, "height": 800})
    await staff_login(staff, server.base, "/staff")
    await expect(staff.locator('.table-card[data-table-id="T001"]')).to_be_visible()
    picker = staff.locator("#store-pick")
    await expect(picker).to_be_visible()
    stores: Any = await staff.evaluate("fetch('/api/stores').then(r => r.json())")
    second = str(stores["stores"][1]["store_id"])
    await picker.select_option(second)
    await staff.wait_for_url(f"**/staff?store_id={second}")
    await expect(staff.locator("#store-pick")).to_have_value(second)
    await expect(staff.locator('.table-card[data-table-id="S2-T001"]')).to_be_visible()  # the second store's
    await expect(staff.locator('.table-card[data-table-id="T001"]')).to_have_count(0)

    _, kitchen = await new_page(browser, errors, viewport={"width": 1280, "height": 800})
    await staff_login(kitchen, server.base, f"/kitchen?store_id={second}")
    await expect(kitchen.locator("#store-pick")).to_have_value(second)
    await expect(kitchen.locator("#empty-new")).to_be_visible()

    _, manager = await new_page(browser, errors, viewport={"width": 1100, "height": 800})
    await staff_login(manager, server.base, "/staff", "manager", demo_password(server, "manager"))
    await expect(manager.locator('.table-card[data-table-id="T001"]')).to_be_visible()
    await expect(manager.locator("#store-pick")).to_have_count(0)
    assert not errors, errors
