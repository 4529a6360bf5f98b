"""The bridge (issue 11): a visitor fills a guest cart on the store page, sits down and opens the table's QR
link: the guest cart arrives in the table's shared cart as that member's lines, in one ``cart_updated`` that
every phone sees; unavailable items are skipped and reported in the newcomer's ``welcome``; the guest cart is
emptied. Opening the link again brings nothing twice."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from typing import Any

import tornado.httpclient

from tableside.server.base import GUEST_COOKIE
from tableside.server.guests import GUEST_SESSION_COOKIE
from tests.client import WsClient
from tests.integration.conftest import Harness


async def fetch(harness: Harness, method: str, path: str, body: Any = None, cookies: dict[str, str] | None = None
                ) -> tornado.httpclient.HTTPResponse:
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())} if cookies else {}
    data = None if body is None else json.dumps(body)
    if method == "POST" and data is None:
        data = ""
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{harness.base}{path}", method=method, body=data, headers=headers, raise_error=False, follow_redirects=False
    )


def cookie_value(resp: tornado.httpclient.HTTPResponse, name: str) -> str | None:
    for line in resp.headers.get_list("Set-Cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(line)
        if name in jar:
            return jar[name].value
    return None


async def guest_cart(harness: Harness, sid: str) -> dict[str, Any]:
    resp = await fetch(harness, "GET", "/api/guest/cart", cookies={GUEST_SESSION_COOKIE: sid})
    assert resp.code == 200, resp.body
    return dict(json.loads(resp.body))


async def test_a_guest_cart_comes_to_the_table_in_one_update_that_every_phone_sees(harness: Harness) -> None:
    _, phone_a = await harness.member("T001")
    _, phone_b = await harness.member("T001")
    resp = await fetch(harness, "POST", "/api/guest/session")
    assert resp.code == 201, resp.body
    sid = json.loads(resp.body)["session_id"]
    guest = {GUEST_SESSION_COOKIE: sid}
    assert (await fetch(harness, "POST", "/api/guest/session/store", {"store_id": 1}, guest)).code == 200
    for item, qty in (("miso", 2), ("gyoza", 1), ("edamame", 3)):
        resp = await fetch(harness, "POST", "/api/guest/cart/add", {"menu_item_id": item, "quantity": qty}, guest)
        assert resp.code in (200, 201), resp.body
    token = await harness.staff_token()
    code, _ = await harness.http("POST", "/api/staff/menu/gyoza/availability", {"available": False}, token=token)
    assert code == 200
    before_a, before_b = len(phone_a.of_type("cart_updated")), len(phone_b.of_type("cart_updated"))

    qr = await harness.qr_secret("T001")
    opened = await fetch(harness, "GET", f"/q/T001/{qr}", cookies=guest)
    assert opened.code == 303
    member_token = cookie_value(opened, GUEST_COOKIE)
    assert member_token
    newcomer = await WsClient.connect(harness.ws_base, member_token)
    welcome = await newcomer.wait_type("welcome")
    assert welcome["imported"] == {
        "lines": 2,
        "skipped": [{"menu_item_id": "gyoza", "name": "Pork Gyoza (6)", "reason": "item_unavailable"}],
    }
    mine = [(i["menu_item_id"], i["qty"]) for i in welcome["cart"]["items"] if i["added_by"] == welcome["member_id"]]
    assert sorted(mine) == [("edamame", 3), ("miso", 2)]
    for phone, before in ((phone_a, before_a), (phone_b, before_b)):
        update = await phone.wait_for(lambda m: m.get("type") == "cart_updated" and len(m["cart"]["items"]) == 2)
        assert len(phone.of_type("cart_updated")) - before == 1  # one update for the whole guest cart
        assert update["cart"]["total"] == 2 * 350 + 3 * 450  # the menu's prices
    assert (await guest_cart(harness, sid))["items"] == []  # emptied

    # Opening the link again (same member cookie, same guest session) brings nothing twice.
    again = await fetch(harness, "GET", f"/q/T001/{qr}", cookies={**guest, GUEST_COOKIE: member_token})
    assert again.code == 303
    snapshot = await newcomer.request({"type": "get_snapshot"})
    assert len(snapshot["cart"]["items"]) == 2
    for ws in (phone_a, phone_b, newcomer):
        await ws.close()


async def test_a_guest_cart_of_another_store_stays_where_it_is(harness: Harness) -> None:
    resp = await fetch(harness, "POST", "/api/guest/session")
    sid = json.loads(resp.body)["session_id"]
    guest = {GUEST_SESSION_COOKIE: sid}
    stores = json.loads((await fetch(harness, "GET", "/api/stores")).body)["stores"]
    other = next(s["store_id"] for s in stores if s["store_id"] != 1)
    assert (await fetch(harness, "POST", "/api/guest/session/store", {"store_id": other}, guest)).code == 200
    menu = json.loads((await fetch(harness, "GET", f"/api/stores/{other}/menu")).body)["items"]
    add = {"menu_item_id": menu[0]["menu_item_id"], "quantity": 1}
    assert (await fetch(harness, "POST", "/api/guest/cart/add", add, guest)).code in (200, 201)
    qr = await harness.qr_secret("T001")
    opened = await fetch(harness, "GET", f"/q/T001/{qr}", cookies=guest)
    member_token = cookie_value(opened, GUEST_COOKIE)
    assert member_token
    newcomer = await WsClient.connect(harness.ws_base, member_token)
    welcome = await newcomer.wait_type("welcome")
    assert "imported" not in welcome and welcome["cart"]["items"] == []
    assert len((await guest_cart(harness, sid))["items"]) == 1  # still in the guest cart
    await newcomer.close()
