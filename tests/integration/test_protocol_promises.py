"""Promises of docs/protocol.md that no other test pinned down (issue 9): close codes, caps and rate
limits with their error code strings, token expiry on the injected clock, presence, requests without
``id``, and the documented bodies of the guest endpoints. The promise → test table is in tests/README.md.

Real server in-process on a fresh Postgres; ``clocked`` runs it on a ``FakeClock`` (default limits) so
expiry and the per-connection token bucket move only when a test says so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import tornado.httpclient

from tableside.actors.base import StopReason
from tableside.auth import token_hash
from tableside.clock import FakeClock
from tableside.config import HttpSettings, LimitSettings, Settings, TokenSettings
from tableside.server.ws import GuestSocket
from tests.client import WsClient, eventually, t
from tests.integration.conftest import Harness, start_on_clock
from tests.integration.test_staff_hardening import oversized_bodies_are_413


class ClockedHarness(Harness):
    clock: FakeClock


@pytest.fixture
async def clocked(database_url: str) -> AsyncIterator[ClockedHarness]:
    clock = FakeClock()
    # Default limits and token lifetime (the documented ones); no cleanup run or idle close in between.
    h = await start_on_clock(database_url, clock, cls=ClockedHarness, cleanup_interval_s=10**9,
                             idle_actor_seconds=10**9)
    running = h.running
    h.clock = clock
    yield h
    await running.stop()


async def handshake_refusal(base_ws: str, token: str | None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await WsClient.connect(base_ws, token, **kwargs)
    response = refused.value.response
    assert response is not None
    return refused.value.code, json.loads(response.body)


async def qr_open(h: Harness, table_id: str, cookie: str | None = None) -> Any:
    headers = {"Cookie": f"tableside_token={cookie}"} if cookie else {}
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{h.base}/q/{table_id}/{await h.qr_secret(table_id)}", headers=headers, follow_redirects=False,
        raise_error=False)


def cookie_token(resp: Any) -> str | None:
    cookie = resp.headers.get("Set-Cookie")
    return None if cookie is None else str(cookie.split(";")[0].split("=", 1)[1])


async def cart_of(h: Harness, token: str) -> dict[str, Any]:
    code, cart = await h.http("GET", "/api/cart", token=token)
    assert code == 200, cart
    return dict(cart)


@pytest.mark.parametrize(("env", "value", "read"), [
    ("TABLESIDE_TOKENS__TTL_HOURS", "1", lambda s: s.tokens.ttl_hours),
    ("TABLESIDE_LIMITS__MAX_MEMBERS_PER_GROUP", "7", lambda s: s.limits.max_members_per_group),
    ("TABLESIDE_LIMITS__JOIN_PER_MINUTE_PER_TABLE", "7", lambda s: s.limits.join_per_minute_per_table),
    ("TABLESIDE_LIMITS__MESSAGES_PER_SECOND", "7", lambda s: s.limits.messages_per_second),
    ("TABLESIDE_LIMITS__BURST", "7", lambda s: s.limits.burst),
    ("TABLESIDE_HTTP__MAX_WEBSOCKETS_PER_TOKEN", "7", lambda s: s.http.max_websockets_per_token),
    ("TABLESIDE_HTTP__MAX_CONNECTIONS_PER_IP", "7", lambda s: s.http.max_connections_per_ip),
    ("TABLESIDE_ALLOWED_ORIGINS", '["https://app.example"]', lambda s: s.allowed_origins),
])
def test_the_documented_environment_variables(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, read: Any
) -> None:
    monkeypatch.setenv(env, value)
    assert read(Settings()) == (json.loads(value) if value.startswith("[") else float(value))


def test_the_documented_defaults() -> None:
    """The numbers docs/protocol.md states: the code's defaults, and the settings as loaded (the shipped
    config.yaml when run from the repository)."""
    for limits, http, tokens in ((LimitSettings(), HttpSettings(), TokenSettings()),
                                 (Settings().limits, Settings().http, Settings().tokens)):
        assert (limits.messages_per_second, limits.burst) == (20, 50)
        assert (limits.max_members_per_group, limits.max_cart_lines, limits.max_frame_bytes) == (50, 100, 65536)
        assert (limits.join_per_minute_per_ip, limits.join_per_minute_per_table) == (600, 120)
        assert http.max_websockets_per_token == 5 and tokens.ttl_hours == 12


# -- tokens -------------------------------------------------------------------------------------------


async def test_expired_and_unknown_tokens_get_401_unauthorized_on_every_endpoint_and_the_handshake(
    clocked: ClockedHarness,
) -> None:
    joined = await clocked.join("T001")
    token = joined["token"]
    assert joined["expires_at"] == pytest.approx(clocked.clock.now() + 12 * 3600)  # default 12 h, epoch seconds
    await clocked.clock.advance(12 * 3600 - 60)
    assert (await cart_of(clocked, token))["items"] == []  # not yet
    await clocked.clock.advance(120)
    for bad in (token, "not-a-token"):
        for method, path in (("GET", "/api/cart"), ("GET", "/api/orders"), ("POST", "/api/leave")):
            code, body = await clocked.http(method, path, token=bad)
            assert (code, body["error"]) == (401, "unauthorized"), (bad, path, code, body)
        code, cookie_body = await clocked.http("GET", "/api/cart", headers={"Cookie": f"tableside_token={bad}"})
        assert (code, cookie_body["error"]) == (401, "unauthorized")
        assert await handshake_refusal(clocked.ws_base, bad) == (
            401, {"error": "unauthorized", "message": "token unknown, expired or revoked"})
    # An expired bearer on POST /api/join is ignored: a new member (201), not the old one.
    code, body = await clocked.http("POST", "/api/join", {"table_id": "T001", "qr": await clocked.qr_secret("T001")},
                                    token=token)
    assert code == 201 and body["member_id"] != joined["member_id"] and body["token"] != token


# -- per-connection rate limit ----------------------------------------------------------------------------


async def test_rate_limit_default_burst_and_rate_then_fifty_refused_in_a_row_close_1008(
    clocked: ClockedHarness,
) -> None:
    joined, phone = await clocked.member("T001")

    async def pings(prefix: str, n: int) -> None:
        for i in range(n):
            await phone.send({"type": "ping", "id": f"{prefix}{i}"})

    def refused() -> int:
        return sum(1 for m in phone.messages if m.get("code") == "rate_limited")

    await pings("burst", 50)  # bursts of 50 (the fake clock stands still: no refill)
    await phone.wait_type("pong", id="burst49")
    await phone.send({"type": "add_item", "id": "over", "menu_item_id": "miso", "qty": 1})
    over = await phone.wait_for(lambda m: m.get("code") == "rate_limited")
    assert over["type"] == "error" and "id" not in over
    await clocked.clock.advance(1.0)  # 20 msg/s sustained
    await pings("second", 21)
    await phone.wait_type("pong", id="second19")
    await eventually(lambda: refused() == 2, what="the 21st refused")
    assert all(m.get("id") != "second20" for m in phone.of_type("pong"))
    # 48 more refused: 49 in a row, still open (the frame after a refill is answered and resets the count).
    await pings("strike", 48)
    await eventually(lambda: refused() == 50, what="49 refused in a row")
    await clocked.clock.advance(0.05)
    await phone.send({"type": "ping", "id": "still-open"})
    await phone.wait_type("pong", id="still-open")
    # Now 50 refused frames in a row: the connection is closed with 1008.
    await pings("abuse", 50)
    await asyncio.wait_for(phone.closed.wait(), t(5))
    assert phone.close_code == 1008
    assert refused() == 100
    assert len(phone.of_type("pong")) == 50 + 20 + 1
    assert not [m for m in phone.messages if m.get("id") in ("over", "second20") or "abuse" in str(m.get("id"))]
    assert (await cart_of(clocked, joined["token"]))["items"] == []  # the refused add_item changed nothing


def padded(message: dict[str, Any], size: int) -> dict[str, Any]:
    """``message`` with an unknown field ``pad`` (strings within the 4096-character bound) so that its
    JSON is exactly ``size`` bytes."""
    pad: list[str] = []
    while len(json.dumps({**message, "pad": pad})) + 4006 < size:
        pad.append("x" * 4000)
    pad.append("")
    pad[-1] = "x" * (size - len(json.dumps({**message, "pad": pad})))
    out = {**message, "pad": pad}
    assert len(json.dumps(out)) == size
    return out


# -- frame size ---------------------------------------------------------------------------------------


async def test_a_frame_over_64_kib_gets_too_large_then_close_1009_and_changes_nothing(harness: Harness) -> None:
    joined, phone = await harness.member("T001")
    ok = padded({"type": "add_item", "id": "fits", "menu_item_id": "miso", "qty": 1}, 65536)
    assert len(json.dumps(ok).encode()) == 65536
    await phone.send(ok)  # 64 KiB exactly is fine (the unknown field is ignored)
    assert (await phone.wait_for(lambda m: m.get("id") == "fits"))["type"] == "ack"
    big = padded({"type": "add_item", "id": "big", "menu_item_id": "miso", "qty": 1}, 65537)
    await phone.send(big)
    err = await phone.wait_type("error")
    assert err["code"] == "too_large" and "id" not in err
    await asyncio.wait_for(phone.closed.wait(), t(5))
    assert phone.close_code == 1009
    assert len((await cart_of(harness, joined["token"]))["items"]) == 1


# -- requests without id -----------------------------------------------------------------------------------


async def test_a_message_without_id_is_applied_unanswered_but_broadcast(harness: Harness) -> None:
    _, a = await harness.member("T001")
    _, b = await harness.member("T001")
    await a.send({"type": "add_item", "menu_item_id": "miso", "qty": 1})
    for phone in (a, b):
        await phone.wait_for(lambda m: m["type"] == "cart_updated" and len(m["cart"]["items"]) == 1)
    # Refused by the table (unknown item, unknown line) or a read: no answer at all without an id.
    await a.send({"type": "add_item", "menu_item_id": "caviar", "qty": 1})
    await a.send({"type": "remove_item", "line_id": "L999"})
    await a.send({"type": "get_snapshot"})
    # Still answered without an id: a ping (pong), and a frame refused before it reaches the table.
    await a.send({"type": "ping"})
    await a.wait_for(lambda m: m["type"] == "pong" and "id" not in m)
    await a.send({"type": "add_item", "menu_item_id": "miso", "qty": 0})
    bad = await a.wait_type("error")
    assert bad["code"] == "bad_request" and "id" not in bad
    await a.send({"type": "dance"})
    assert (await a.wait_type("error", code="unknown_type")).get("id") is None
    fence = await a.request({"type": "get_snapshot"})  # the table answered everything sent before it
    assert len(fence["cart"]["items"]) == 1
    assert [m["type"] for m in a.messages if m["type"] in ("ack", "snapshot", "error")] == [
        "error", "error", "snapshot"]
    assert not [m for m in a.messages if m.get("type") == "error" and m.get("code") in ("unknown_item", "not_found")]
    assert b.of_type("ack") == [] and b.of_type("error") == []


# -- presence -------------------------------------------------------------------------------------------


async def test_welcome_first_then_member_joined_online_and_member_left_on_last_socket(harness: Harness) -> None:
    a_join, a = await harness.member("T002")
    welcome = a.messages[0]
    assert welcome["type"] == "welcome"
    assert {k for k in welcome if k != "type"} == {"member_id", "table_id", "group_id", "members", "cart"}
    assert (welcome["member_id"], welcome["table_id"], welcome["group_id"]) == (
        a_join["member_id"], "T002", a_join["group_id"])
    assert welcome["members"] == [{"member_id": a_join["member_id"], "name": "Guest 1", "online": True}]

    b_join, b = await harness.member("T002")
    assert b.messages[0]["type"] == "welcome"
    joined = await a.wait_type("member_joined", member_id=b_join["member_id"])
    assert joined["members"] == [
        {"member_id": a_join["member_id"], "name": "Guest 1", "online": True},
        {"member_id": b_join["member_id"], "name": "Guest 2", "online": True},
    ]
    # The same member in a second tab: no second member_joined (the snapshot answer comes after it would).
    b2 = await WsClient.connect(harness.ws_base, b_join["token"])
    await b2.wait_type("welcome")
    await a.request({"type": "get_snapshot"})
    assert len(a.of_type("member_joined")) == 1
    # Closing one of two tabs is no member_left; closing the last is (any earlier one would arrive first).
    await b.close()
    await b2.close()
    left = await a.wait_for(lambda m: m["type"] == "member_left" and not m["members"][1]["online"])
    assert len(a.of_type("member_left")) == 1
    # Disconnecting is not leaving: still a member, shown offline.
    assert left["member_id"] == b_join["member_id"]
    assert left["members"][1] == {"member_id": b_join["member_id"], "name": "Guest 2", "online": False}
    assert b.of_type("member_joined") == [] and b2.of_type("member_joined") == []  # never to the joiner


# -- session end and table restarts: close codes ----------------------------------------------------------


@pytest.mark.parametrize(("action", "reason"), [("checkout", "checked_out"), ("reset", "table_reset")])
async def test_session_closed_then_close_4001(harness: Harness, action: str, reason: str) -> None:
    joined, phone = await harness.member("T003")
    staff = await harness.staff_token()
    code, _ = await harness.http("POST", f"/api/staff/tables/T003/{action}", token=staff)
    assert code == 200
    assert (await phone.wait_type("session_closed"))["reason"] == reason
    await asyncio.wait_for(phone.closed.wait(), t(2))
    assert phone.close_code == 4001
    code, body = await harness.http("GET", "/api/cart", token=joined["token"])
    assert (code, body["error"]) == (401, "unauthorized")


async def test_a_table_actor_that_stops_closes_its_sockets_4002_and_a_late_frame_gets_internal_1012(
    harness: Harness,
) -> None:
    joined, phone = await harness.member("T001")
    directory = harness.running.services.directory
    ref = directory.find(joined["group_id"])
    assert ref is not None
    ref.stop(StopReason.FAILED)  # e.g. an exception in the actor: its members reconnect
    await asyncio.wait_for(phone.closed.wait(), t(5))
    assert phone.close_code == 4002
    again = await WsClient.connect(harness.ws_base, joined["token"])  # reactivated from the snapshot
    await again.wait_type("welcome")
    # A socket whose table stopped without closing it (a race with an idle stop): the next frame.
    ref = directory.find(joined["group_id"])
    assert ref is not None
    ref.stop(StopReason.IDLE)
    await ref.wait_stopped()
    await again.send({"type": "add_item", "id": "late", "menu_item_id": "miso", "qty": 1})
    err = await again.wait_for(lambda m: m.get("id") == "late")
    assert err["type"] == "error" and err["code"] == "internal"
    await asyncio.wait_for(again.closed.wait(), t(5))
    assert again.close_code == 1012


async def test_a_full_node_refuses_the_handshake_503_overloaded(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    joined, phone = await harness.member("T001")
    limits = harness.running.services.settings.limits
    limits.max_connections = 1  # the count is process-wide; this test's open socket alone reaches it
    assert await handshake_refusal(harness.ws_base, joined["token"]) == (
        503, {"error": "overloaded", "message": "too many connections"})
    # Load shedding is logged, but not as a server fault.
    assert [r.levelname for r in caplog.records if "status=503" in r.getMessage()] == ["WARNING"]
    open_now = GuestSocket.open_count
    await phone.close()
    await eventually(lambda: GuestSocket.open_count < open_now, what="the socket closed")
    limits.max_connections = GuestSocket.open_count + 1  # one place below the limit: accepted
    ok = await WsClient.connect(harness.ws_base, joined["token"])
    await ok.wait_type("welcome")
    await ok.close()


async def test_a_full_mailbox_answers_rate_limited_keeps_the_socket_and_changes_nothing(harness: Harness) -> None:
    joined, phone = await harness.member("T001")
    actor = harness.running.services.directory._actors[joined["group_id"]]
    limit = actor._mailbox_limit
    actor._mailbox_limit = 0  # as if 10 000 messages were queued
    try:
        err = await phone.request({"type": "add_item", "menu_item_id": "miso", "qty": 1})
        assert err["type"] == "error" and err["code"] == "rate_limited"
        assert not phone.closed.is_set()
        # A ping is answered without touching the table.
        assert (await phone.request({"type": "ping"}))["type"] == "pong"
        # A new socket whose table cannot take its connection: internal, then 1011.
        tab = await WsClient.connect(harness.ws_base, joined["token"])
        await asyncio.wait_for(tab.closed.wait(), t(5))
        assert [(m["type"], m["code"], "id" in m) for m in tab.messages] == [("error", "internal", False)]
        assert tab.close_code == 1011
    finally:
        actor._mailbox_limit = limit
    assert (await phone.request({"type": "get_snapshot"}))["cart"]["items"] == []
    assert limit == 10_000


# -- leave ------------------------------------------------------------------------------------------------


async def test_leave_keeps_the_cart_lines_and_http_leave_clears_the_cookie(harness: Harness) -> None:
    a_join, a = await harness.member("T002")
    b_join, b = await harness.member("T002")
    assert (await b.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1}))["type"] == "ack"
    ack = await b.request({"type": "leave"})
    assert ack["type"] == "ack"
    closed = await b.wait_type("session_closed")
    assert b.messages.index(ack) < b.messages.index(closed)  # ack first, then session_closed
    await asyncio.wait_for(b.closed.wait(), t(5))
    assert b.close_code == 4003
    await a.wait_type("member_left", member_id=b_join["member_id"])
    lines = (await cart_of(harness, a_join["token"]))["items"]
    assert [(line["menu_item_id"], line["added_by"]) for line in lines] == [("gyoza", b_join["member_id"])]
    # A second socket of the leaver cannot connect: the token is revoked.
    assert (await handshake_refusal(harness.ws_base, b_join["token"]))[0] == 401

    # POST /api/leave with the cookie: the documented body, and the cookie is cleared.
    resp = await qr_open(harness, "T002")
    token = cookie_token(resp)
    assert token
    info = await harness.running.services.resolve_guest(token)
    assert info is not None
    left = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{harness.base}/api/leave", method="POST", body=b"", raise_error=False,
        headers={"Cookie": f"tableside_token={token}"})
    assert left.code == 200
    assert json.loads(left.body) == {"left": True, "table_id": "T002", "group_id": info.group_id,
                                     "member_id": info.member_id}
    code, body = await harness.http("POST", "/api/leave", token=b_join["token"])
    assert (code, body["error"]) == (401, "unauthorized")  # leaving again over HTTP: the token is gone
    # Like every endpoint: a body over 16 KiB is 413 too_large, refused before auth.
    await oversized_bodies_are_413(harness, "/api/leave", b_join["token"])  # type: ignore[arg-type]
    cleared = left.headers["Set-Cookie"]
    assert cleared.startswith("tableside_token=") and ("Max-Age=0" in cleared or "expires=" in cleared.lower())
    assert cookie_token(left) in ("", '""')


# -- guest HTTP endpoints -----------------------------------------------------------------------------------


async def test_guest_endpoints_answer_the_documented_bodies(harness: Harness) -> None:
    staff = await harness.staff_token()
    code, body = await harness.http("POST", "/api/join", {"table_id": "T004", "qr": await harness.qr_secret("T004")})
    assert code == 201 and set(body) == {"token", "table_id", "group_id", "member_id", "expires_at"}
    assert isinstance(body["expires_at"], (int, float)) and body["table_id"] == "T004"
    assert len(body["token"]) == 32  # 192 bits, URL-safe base64
    store, now = harness.running.services.store, harness.running.services.clock.now()
    assert await store.resolve_token(token_hash(body["token"]), now) is not None
    assert await store.resolve_token(body["token"], now) is None  # only the SHA-256 is stored
    code, tables = await harness.http("GET", "/api/staff/tables", token=staff)
    assert {t["table_id"]: t["status"] for t in tables}["T004"] == "occupied"  # first join opens the sitting

    code, menu = await harness.http("GET", "/api/menu")
    assert code == 200 and set(menu) == {"items"} and menu["items"]
    assert all(set(i) == {"menu_item_id", "name", "category", "price", "available"} for i in menu["items"])
    assert all(isinstance(i["price"], int) for i in menu["items"])

    phone = await WsClient.connect(harness.ws_base, body["token"])
    await phone.wait_type("welcome")
    cart = await cart_of(harness, body["token"])
    assert set(cart) == {"items", "total", "cart_locked", "pending_order_id", "order_processing_status",
                         "locked_by_member", "revision", "last_updated"}
    assert cart["order_processing_status"] == "idle"
    placed = []
    for item in ("miso", "gyoza"):
        await phone.request({"type": "add_item", "menu_item_id": item, "qty": 1})
        placed.append(await phone.request({"type": "place_order"}))
        await phone.wait_type("order_confirmed", order_id=placed[-1]["order_id"])
    cart = await cart_of(harness, body["token"])
    assert datetime.fromisoformat(cart["last_updated"]).utcoffset() == timedelta(0)  # ISO 8601 UTC
    code, orders = await harness.http("GET", "/api/orders", token=body["token"])
    assert code == 200 and set(orders) == {"orders"}
    assert [o["order_id"] for o in orders["orders"]] == [p["order_id"] for p in placed]  # oldest first
    for o in orders["orders"]:
        assert set(o) == {"order_id", "order_number", "status", "kitchen_status", "items", "total",
                          "special_instructions", "placed_by", "created_at", "confirmed_at"}
        assert o["status"] == "confirmed" and isinstance(o["created_at"], (int, float))
        assert o["order_id"] == f"ORD-1-{o['order_number']}"

    code, health = await harness.http("GET", "/healthz")
    active = harness.running.services.directory.active_count
    assert code == 200 and health == {
        "status": "ok",
        "node_id": harness.running.services.settings.node_id,
        "actors": active,
        "redis": "off",  # one node, no Redis configured
        "active_tables": active,
    }
    metrics = await tornado.httpclient.AsyncHTTPClient().fetch(f"{harness.base}/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain") and b"# TYPE " in metrics.body
    await phone.close()


async def test_api_join_does_not_use_the_guest_cookie(harness: Harness) -> None:
    token = cookie_token(await qr_open(harness, "T001"))
    code, body = await harness.http("POST", "/api/join", {"table_id": "T001", "qr": await harness.qr_secret("T001")},
                                    headers={"Cookie": f"tableside_token={token}"})
    assert code == 201 and body["token"] != token  # a new member: the HttpOnly cookie never reaches a body


async def test_join_errors_carry_their_code_strings(harness: Harness) -> None:
    async def join(table_id: str, qr: str) -> tuple[int, str]:
        code, body = await harness.http("POST", "/api/join", {"table_id": table_id, "qr": qr})
        assert set(body) == {"error", "message"}
        return code, body["error"]

    assert await join("T999", "x") == (404, "table_not_found")
    assert await join("T001", "wrong") == (403, "forbidden")
    await harness.join("T001")
    staff = await harness.staff_token()
    assert (await harness.http("POST", "/api/staff/tables/T001/checkout", token=staff))[0] == 200
    assert await join("T001", await harness.qr_secret("T001")) == (409, "table_paid")


async def test_the_qr_link_cookie_is_secure_when_configured(harness: Harness) -> None:
    plain = (await qr_open(harness, "T001")).headers["Set-Cookie"]
    assert "Secure" not in plain
    harness.running.services.settings.cookie_secure = True
    cookie = (await qr_open(harness, "T002")).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


async def test_origins_listed_in_allowed_origins_may_open_the_websocket(harness: Harness) -> None:
    joined = await harness.join("T001")
    assert await handshake_refusal(harness.ws_base, joined["token"], headers={"Origin": "https://app.example"}) == (
        403, {"error": "forbidden", "message": "cross-origin websockets are not allowed"})
    harness.running.services.settings.allowed_origins = ["https://app.example"]
    ok = await WsClient.connect(harness.ws_base, joined["token"], headers={"Origin": "https://app.example"})
    await ok.wait_type("welcome")
    await ok.close()


# -- join rate limits ---------------------------------------------------------------------------------------


async def test_joins_per_address_are_rate_limited_and_the_message_names_the_limit(database_url: str) -> None:
    h = await start_on_clock(database_url, FakeClock(), limits={"join_per_minute_per_ip": 2})
    running = h.running
    try:
        await h.join("T001")
        await h.join("T002")  # per address, whatever the table
        code, body = await h.http("POST", "/api/join", {"table_id": "T001", "qr": await h.qr_secret("T001")})
        assert (code, body["error"]) == (429, "rate_limited")
        assert "this address" in body["message"] and "2 per minute" in body["message"]
        resp = await qr_open(h, "T002")
        assert resp.code == 429 and "this address" in resp.body.decode()
        # The wait is known (a token every 30 s at 2 per minute): Retry-After says it, on the page too.
        assert resp.headers["Retry-After"] == "30"
        raw = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"{h.base}/api/join", method="POST", raise_error=False,
            body=json.dumps({"table_id": "T001", "qr": await h.qr_secret("T001")}),
        )
        assert raw.code == 429 and raw.headers["Retry-After"] == "30"
    finally:
        await running.stop()


async def test_opening_the_link_again_as_the_same_guest_does_not_use_the_table_budget(harness: Harness) -> None:
    from tableside.server.services import KeyedRateLimiter

    services = harness.running.services
    services.settings.limits.join_per_minute_per_table = 1
    services.table_join_limiter = KeyedRateLimiter(1 / 60.0, 1)
    first = await qr_open(harness, "T001")
    token = cookie_token(first)
    assert first.code == 303 and token
    for _ in range(3):
        again = await qr_open(harness, "T001", cookie=token)
        assert again.code == 303 and cookie_token(again) is None
        code, body = await harness.http("POST", "/api/join",
                                        {"table_id": "T001", "qr": await harness.qr_secret("T001")}, token=token)
        assert code == 200 and body["token"] == token
    code, body = await harness.http("POST", "/api/join", {"table_id": "T001", "qr": await harness.qr_secret("T001")})
    assert (code, body["error"]) == (429, "rate_limited")  # a new guest: the budget (1) was used once


# -- place_order ------------------------------------------------------------------------------------------


async def test_place_order_acks_then_cart_locked_then_cart_updated_to_everyone(harness: Harness) -> None:
    a_join, a = await harness.member("T003")
    _, b = await harness.member("T003")
    await a.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 2})
    # Other fields (the seed's cart_items) are ignored; the client's total is only compared.
    placed = await a.request({"type": "place_order", "total": 1360, "cart_items": [{"x": 1}]})
    assert set(placed) == {"type", "id", "revision", "order_id"}
    assert placed["order_id"].startswith("ORD-1-")
    for phone in (a, b):
        confirmed = await phone.wait_type("order_confirmed", order_id=placed["order_id"])
        locked = phone.of_type("cart_locked")[-1]
        after = phone.messages[phone.messages.index(locked) + 1]
        assert after["type"] == "cart_updated" and after["cart"]["cart_locked"] is True
        assert after["cart"]["pending_order_id"] == placed["order_id"]
        assert all(line["state"] == "locked" for line in after["cart"]["items"])
        assert phone.messages.index(locked) < phone.messages.index(confirmed)
        assert (locked["order_id"], locked["locked_by_member"]) == (placed["order_id"], a_join["member_id"])
        assert datetime.fromisoformat(locked["timestamp"].replace("Z", "+00:00")).utcoffset() == timedelta(0)
        assert set(confirmed) == {"type", "order_id", "order_number", "message", "total", "items"}
        assert confirmed["total"] == 1360 and placed["order_id"] == f"ORD-1-{confirmed['order_number']}"
    assert a.messages.index(placed) < a.messages.index(a.of_type("cart_locked")[-1])  # the ack comes first
