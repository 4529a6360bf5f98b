"""Guest sessions and guest carts over HTTP (issue 11, seed 001): every endpoint's success and error
cases, expiry on the injected clock, the cookie / header / path id, the per-IP rate limit, conversion at
login and merge, concurrent adds (no lost update), the cleanup, and no session id in any log line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
from tornado.netutil import bind_sockets

from tableside.clock import FakeClock
from tableside.server.app import make_app
from tableside.server.guests import GUEST_SESSION_COOKIE
from tableside.server.maintenance import run_cleanup
from tableside.server.users import USER_COOKIE
from tests.integration.conftest import Harness, start_on_clock

DAY = 24 * 3600
PASSWORD = "open sesame 42"


class GuestHarness(Harness):
    clock: FakeClock

    async def fetch(self, method: str, path: str, body: Any = None, *, sid: str | None = None,
                    header: str | None = None, token: str | None = None,
                    ip: str = "192.0.2.1") -> tornado.httpclient.HTTPResponse:
        headers = {"X-Real-IP": ip}
        if sid:
            headers["Cookie"] = f"{GUEST_SESSION_COOKIE}={sid}"
        if header:
            headers["X-Guest-Session"] = header
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        if method in ("POST", "PUT") and data is None:
            data = ""
        return await tornado.httpclient.AsyncHTTPClient().fetch(
            f"{self.base}{path}", method=method, body=data, headers=headers, raise_error=False)

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        resp = await self.fetch(method, path, body, **kw)
        return resp.code, (json.loads(resp.body) if resp.body else None)

    async def new_session(self, store_id: int | None = None, ip: str = "192.0.2.1") -> str:
        code, body = await self.call("POST", "/api/guest/session", ip=ip)
        assert code == 201, body
        sid = str(body["session_id"])
        if store_id is not None:
            code, body = await self.call("POST", "/api/guest/session/store", {"store_id": store_id}, sid=sid)
            assert code == 200, body
        return sid

    def menu(self, store_id: int) -> list[str]:
        return [i.menu_item_id for i in self.running.services.menu.items(store_id) if i.available]


async def _start(database_url: str, **settings: Any) -> GuestHarness:
    clock = FakeClock()
    h = await start_on_clock(database_url, clock, cls=GuestHarness, **settings)
    proxied = tornado.httpserver.HTTPServer(make_app(h.running.services), xheaders=True)
    sockets = bind_sockets(0, "127.0.0.1")
    proxied.add_sockets(sockets)
    h.base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    h.clock = clock
    h.proxied = proxied  # type: ignore[attr-defined]
    return h


@pytest.fixture
async def gh(database_url: str) -> AsyncIterator[GuestHarness]:
    h = await _start(database_url, guest={"max_cart_lines": 3, "sessions_per_minute_per_ip": 1000})
    yield h
    h.proxied.stop()  # type: ignore[attr-defined]
    await h.running.stop()


def guest_cookie(resp: tornado.httpclient.HTTPResponse) -> tuple[str, str] | None:
    for line in resp.headers.get_list("Set-Cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(line)
        if GUEST_SESSION_COOKIE in cookie:
            return cookie[GUEST_SESSION_COOKIE].value, line
    return None


# -- sessions ----------------------------------------------------------------------------------------------


async def test_create_answers_201_with_the_session_and_a_cookie(gh: GuestHarness) -> None:
    resp = await gh.fetch("POST", "/api/guest/session")
    assert resp.code == 201
    body = json.loads(resp.body)
    assert set(body) == {"session_id", "selected_store_id", "expires_at", "converted_to_user_id"}
    sid = body["session_id"]
    assert len(sid) == 64 and all(c in "0123456789abcdef" for c in sid)
    assert body["selected_store_id"] is None and body["converted_to_user_id"] is None
    assert body["expires_at"] == gh.clock.now() + DAY
    cookie = guest_cookie(resp)
    assert cookie is not None and cookie[0] == sid
    attrs = cookie[1].lower()
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs and "secure" not in attrs
    # the same session by cookie, header and path
    for kw in ({"sid": sid}, {"header": sid}):
        code, got = await gh.call("GET", "/api/guest/session", **kw)  # type: ignore[arg-type]
        assert code == 200 and got == body
    code, got = await gh.call("GET", f"/api/guest/session/{sid}")
    assert code == 200 and got == body
    other = await gh.new_session()
    assert other != sid


async def test_unknown_missing_and_malformed_ids_are_401_unknown_session(gh: GuestHarness) -> None:
    for kw in ({}, {"sid": "0" * 64}, {"header": "not-an-id"}, {"sid": "A" * 64}):
        code, body = await gh.call("GET", "/api/guest/session", **kw)  # type: ignore[arg-type]
        assert (code, body["error"]) == (401, "unknown_session"), kw
    code, body = await gh.call("GET", f"/api/guest/session/{'f' * 64}")
    assert (code, body["error"]) == (401, "unknown_session")
    code, body = await gh.call("GET", "/api/guest/cart", sid="0" * 64)
    assert (code, body["error"]) == (401, "unknown_session")


async def test_expiry_is_24h_sliding_on_the_injected_clock(gh: GuestHarness) -> None:
    sid = await gh.new_session()
    await gh.clock.advance(23 * 3600)
    code, body = await gh.call("GET", "/api/guest/session", sid=sid)
    assert code == 200 and body["expires_at"] == gh.clock.now() + DAY  # slid
    resp = await gh.fetch("GET", "/api/guest/session", sid=sid)
    assert guest_cookie(resp) is None  # within the minute: nothing written, no new cookie
    await gh.clock.advance(23 * 3600)  # 46 h after creation: alive thanks to the slide
    resp = await gh.fetch("GET", "/api/guest/session", sid=sid)
    assert resp.code == 200 and guest_cookie(resp) is not None  # the cookie slides too
    await gh.clock.advance(DAY)
    for path in ("/api/guest/session", "/api/guest/cart", f"/api/guest/session/{sid}"):
        code, body = await gh.call("GET", path, sid=sid)
        assert (code, body["error"]) == (401, "session_expired"), path
    report = await run_cleanup(gh.running.services)
    assert report.expired_guest_sessions == 1
    code, body = await gh.call("GET", "/api/guest/session", sid=sid)
    assert (code, body["error"]) == (401, "unknown_session")  # deleted: unknown now


async def test_session_creation_is_rate_limited_per_ip(database_url: str) -> None:
    h = await _start(database_url, guest={"sessions_per_minute_per_ip": 3})
    try:
        codes = [(await h.fetch("POST", "/api/guest/session", ip="203.0.113.5")).code for _ in range(3)]
        assert codes == [201, 201, 201]
        resp = await h.fetch("POST", "/api/guest/session", ip="203.0.113.5")
        assert resp.code == 429 and json.loads(resp.body)["error"] == "rate_limited"
        assert int(resp.headers["Retry-After"]) >= 1
        assert (await h.fetch("POST", "/api/guest/session", ip="198.51.100.1")).code == 201  # another IP
    finally:
        h.proxied.stop()  # type: ignore[attr-defined]
        await h.running.stop()


async def test_pick_a_store(gh: GuestHarness) -> None:
    sid = await gh.new_session()
    code, body = await gh.call("POST", "/api/guest/session/store", {"store_id": 99}, sid=sid)
    assert (code, body["error"]) == (404, "store_not_found")
    for bad in ({"store_id": "1"}, {}, {"store_id": True}, {"store_id": -1}):
        code, body = await gh.call("POST", "/api/guest/session/store", bad, sid=sid)
        assert code == 400, bad
    code, body = await gh.call("POST", "/api/guest/session/store", {"store_id": 1}, header=sid)
    assert code == 200 and body["selected_store_id"] == 1 and body["session_id"] == sid
    code, body = await gh.call("POST", "/api/guest/session/store", {"store_id": 1})
    assert (code, body["error"]) == (401, "unknown_session")


# -- the cart ----------------------------------------------------------------------------------------------


async def test_cart_calls_before_a_store_is_picked_are_409(gh: GuestHarness) -> None:
    sid = await gh.new_session()
    item = gh.menu(1)[0]
    for method, path, body in (("GET", "/api/guest/cart", None),
                               ("POST", "/api/guest/cart/add", {"menu_item_id": item, "quantity": 1}),
                               ("PUT", "/api/guest/cart/item/1", {"quantity": 1}),
                               ("DELETE", "/api/guest/cart/item/1", None)):
        code, answer = await gh.call(method, path, body, sid=sid)
        assert (code, answer["error"]) == (409, "store_not_selected"), path


async def test_add_list_change_and_delete(gh: GuestHarness) -> None:
    sid = await gh.new_session(1)
    code, cart = await gh.call("GET", "/api/guest/cart", sid=sid)
    assert code == 200 and cart == {"store_id": 1, "items": [], "total": 0}
    a, b = gh.menu(1)[:2]
    menu = gh.running.services.menu
    pa, pb = menu.get(a).price, menu.get(b).price  # type: ignore[union-attr]
    code, cart = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": 2}, sid=sid)
    assert code == 200
    code, cart = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": 3}, sid=sid)
    code, cart = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": b}, sid=sid)  # default 1
    assert code == 200
    assert [(i["menu_item_id"], i["quantity"]) for i in cart["items"]] == [(a, 5), (b, 1)]
    line = cart["items"][0]
    assert set(line) == {"item_id", "menu_item_id", "name", "unit_price", "quantity", "line_total"}
    assert line["unit_price"] == pa and line["line_total"] == 5 * pa and line["name"] == menu.get(a).name  # type: ignore[union-attr]
    assert cart["total"] == 5 * pa + pb and cart["store_id"] == 1
    assert (await gh.call("GET", "/api/guest/cart", header=sid))[1] == cart
    item_a, item_b = cart["items"][0]["item_id"], cart["items"][1]["item_id"]
    code, cart = await gh.call("PUT", f"/api/guest/cart/item/{item_b}", {"quantity": 4}, sid=sid)
    assert code == 200 and cart["items"][1]["quantity"] == 4 and cart["total"] == 5 * pa + 4 * pb
    for bad in (0, 100, "2", 1.5, True, None):
        code, err = await gh.call("PUT", f"/api/guest/cart/item/{item_b}", {"quantity": bad}, sid=sid)
        assert (code, err["error"]) == (400, "invalid_quantity"), bad
    code, err = await gh.call("PUT", "/api/guest/cart/item/999999", {"quantity": 1}, sid=sid)
    assert code == 404
    other = await gh.new_session(1)
    code, err = await gh.call("PUT", f"/api/guest/cart/item/{item_a}", {"quantity": 1}, sid=other)
    assert code == 404  # another session's line
    code, err = await gh.call("DELETE", f"/api/guest/cart/item/{item_a}", sid=other)
    assert code == 404
    code, cart = await gh.call("DELETE", f"/api/guest/cart/item/{item_a}", sid=sid)
    assert code == 200 and [i["menu_item_id"] for i in cart["items"]] == [b]
    code, err = await gh.call("DELETE", f"/api/guest/cart/item/{item_a}", sid=sid)
    assert code == 404
    # another store empties the cart (a cart holds one store's items)
    await gh.call("POST", "/api/guest/session/store", {"store_id": 2}, sid=sid)
    assert (await gh.call("GET", "/api/guest/cart", sid=sid))[1] == {"store_id": 2, "items": [], "total": 0}


async def test_add_errors(gh: GuestHarness) -> None:
    sid = await gh.new_session(1)
    a = gh.menu(1)[0]
    code, err = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": "nope"}, sid=sid)
    assert (code, err["error"]) == (404, "item_not_found")
    code, err = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": gh.menu(2)[0]}, sid=sid)
    assert (code, err["error"]) == (422, "wrong_store")
    for bad in (0, 100, -1, "1", 2.5, False):
        code, err = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": bad}, sid=sid)
        assert (code, err["error"]) == (400, "invalid_quantity"), bad
    code, err = await gh.call("POST", "/api/guest/cart/add", {"quantity": 1}, sid=sid)
    assert code == 400
    await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": 90}, sid=sid)
    code, err = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": 10}, sid=sid)
    assert (code, err["error"]) == (400, "invalid_quantity")  # 90 + 10 > 99: refused, unchanged
    assert (await gh.call("GET", "/api/guest/cart", sid=sid))[1]["items"][0]["quantity"] == 90
    off = gh.menu(1)[1]
    await gh.running.services.set_availability(off, False)
    code, err = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": off}, sid=sid)
    assert (code, err["error"]) == (409, "item_unavailable")
    # the cart holds at most max_cart_lines lines (3 in this harness)
    b, c, d = gh.menu(1)[1:4]
    assert (await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": b}, sid=sid))[0] == 200
    assert (await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": c}, sid=sid))[0] == 200
    code, err = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": d}, sid=sid)
    assert (code, err["error"]) == (409, "cart_full")
    assert (await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": b}, sid=sid))[0] == 200  # same line


async def test_fifty_concurrent_adds_of_one_item_give_fifty(gh: GuestHarness) -> None:
    sid = await gh.new_session(1)
    a = gh.menu(1)[0]
    codes = await asyncio.gather(*(gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a}, sid=sid)
                                   for _ in range(50)))
    assert all(code == 200 for code, _ in codes)
    cart = (await gh.call("GET", "/api/guest/cart", sid=sid))[1]
    assert [(i["menu_item_id"], i["quantity"]) for i in cart["items"]] == [(a, 50)]


# -- conversion at login -------------------------------------------------------------------------------------


async def test_register_and_login_with_a_guest_session_keep_and_merge_the_cart(gh: GuestHarness) -> None:
    a, b = gh.menu(1)[:2]
    first = await gh.new_session(1)
    await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": 2}, sid=first)
    code, reg = await gh.call("POST", "/api/users/register",
                              {"name": "Ann", "email": "ann@example.com", "password": PASSWORD}, sid=first)
    assert code == 201 and set(reg) == {"user_id", "token"}
    code, session = await gh.call("GET", "/api/guest/session", sid=first)
    assert session["converted_to_user_id"] == reg["user_id"]
    code, mine = await gh.call("GET", "/api/me/cart", token=reg["token"])
    assert code == 200 and mine["store_id"] == 1
    assert [(i["menu_item_id"], i["quantity"]) for i in mine["items"]] == [(a, 2)]
    # a later login from another guest session merges its cart (quantities added)
    second = await gh.new_session(1)
    await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": 3}, header=second)
    await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": b, "quantity": 1}, header=second)
    code, login = await gh.call("POST", "/api/users/login", {"email": "ann@example.com", "password": PASSWORD},
                                header=second)
    assert code == 200
    code, mine = await gh.call("GET", "/api/me/cart", token=login["token"])
    assert [(i["menu_item_id"], i["quantity"]) for i in mine["items"]] == [(a, 5), (b, 1)]
    assert (await gh.call("GET", "/api/guest/cart", sid=second))[1]["items"] == []  # moved
    # the user's cart stays usable through the guest API with the first session
    assert (await gh.call("GET", "/api/guest/cart", sid=first))[1]["total"] == mine["total"]
    # /api/me/cart by cookie too; without a login 401; a user with no cart sees an empty one
    resp = await gh.fetch("GET", "/api/me/cart")
    assert resp.code == 401
    code, other = await gh.call("POST", "/api/users/register",
                                {"name": "Bo", "email": "bo@example.com", "password": PASSWORD})
    assert (await gh.call("GET", "/api/me/cart", token=other["token"]))[1] == {"store_id": None, "items": [],
                                                                                  "total": 0}
    # a login with an unknown or expired guest id still succeeds
    code, _ = await gh.call("POST", "/api/users/login", {"email": "bo@example.com", "password": PASSWORD},
                            sid="0" * 64)
    assert code == 200
    cookie_login = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{gh.base}/api/me/cart", headers={"Cookie": f"{USER_COOKIE}={login['token']}"}, raise_error=False)
    assert json.loads(cookie_login.body)["total"] == mine["total"]


async def test_a_login_that_merges_points_the_browser_at_the_users_cart(gh: GuestHarness) -> None:
    """A browser (cookie) whose guest lines were merged into the user's older cart at login gets the guest
    cookie of that cart: what ``/api/me/cart`` shows is what its next cart call changes."""
    a, b = gh.menu(1)[:2]
    first = await gh.new_session(1)
    await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a, "quantity": 1}, sid=first)
    code, _ = await gh.call("POST", "/api/users/register",
                            {"name": "Cy", "email": "cy@example.com", "password": PASSWORD}, sid=first)
    assert code == 201
    second = await gh.new_session(1)
    await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": b, "quantity": 1}, sid=second)
    resp = await gh.fetch("POST", "/api/users/login", {"email": "cy@example.com", "password": PASSWORD}, sid=second)
    assert resp.code == 200
    assert guest_cookie(resp) is not None and guest_cookie(resp)[0] == first  # type: ignore[index]
    code, cart = await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": b, "quantity": 1}, sid=first)
    assert code == 200
    token = json.loads(resp.body)["token"]
    code, mine = await gh.call("GET", "/api/me/cart", token=token)
    assert sorted((i["menu_item_id"], i["quantity"]) for i in mine["items"]) == sorted([(a, 1), (b, 2)])


# -- logs ----------------------------------------------------------------------------------------------------


async def test_the_session_id_never_appears_in_a_log_line(gh: GuestHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sid = await gh.new_session(1)
    a = gh.menu(1)[0]
    await gh.call("GET", f"/api/guest/session/{sid}")
    await gh.call("GET", f"/api/guest/session/{sid}?x=1")
    await gh.call("GET", "/api/guest/session", sid=sid)
    await gh.call("GET", "/api/guest/session", header=sid)
    await gh.call("POST", "/api/guest/cart/add", {"menu_item_id": a}, sid=sid)
    await gh.call("GET", f"/api/guest/cart?session_id={sid}", sid=sid)
    await gh.call("PUT", "/api/guest/cart/item/999999", {"quantity": 1}, header=sid)
    await gh.call("POST", "/api/guest/session/store", {"store_id": 1}, sid=sid)
    records = caplog.get_records("call")
    access = [r for r in records if r.name == "tableside.access"]
    assert len(access) >= 8
    assert any("/api/guest/session/[redacted]" in r.getMessage() for r in access)
    assert any("/api/guest/session/store" in r.getMessage() for r in access)  # the store path is kept
    for record in records:
        assert sid not in record.getMessage() + repr(record.__dict__), record.getMessage()
