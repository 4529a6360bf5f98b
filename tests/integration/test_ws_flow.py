"""End to end over real websockets against the real server, Postgres and the POS simulator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from tests.client import WsClient, t
from tests.exactly_once import assert_submitted_once
from tests.integration.conftest import Harness
from tests.protocol.corpus import malformed_frames


async def add(client: WsClient, item: str = "gyoza", qty: int = 1) -> dict[str, Any]:
    answer = await client.request({"type": "add_item", "menu_item_id": item, "qty": qty})
    assert answer["type"] == "ack", answer
    return answer


async def test_two_phones_share_cart_and_one_order_reaches_pos_once(harness: Harness) -> None:
    a_join, a = await harness.member()
    b_join, b = await harness.member(msgpack_codec=True)  # the binary subprotocol, same maps
    assert a_join["group_id"] == b_join["group_id"]
    ack = await add(a, "ramen-tonkotsu", 2)
    seen = await b.wait_for(lambda m: m["type"] == "cart_updated" and m["cart"]["revision"] == ack["revision"])
    line = seen["cart"]["items"][0]
    assert line["added_by"] == a_join["member_id"] and line["unit_price"] == 1590 and seen["cart"]["total"] == 3180

    placed = await b.request({"type": "place_order", "total": 3180})
    assert placed["type"] == "ack" and placed["order_id"].startswith("ORD-1-")
    for phone in (a, b):
        locked = await phone.wait_type("cart_locked")
        assert locked["order_id"] == placed["order_id"] and locked["locked_by_member"] == b_join["member_id"]
        confirmed = await phone.wait_type("order_confirmed")
        assert confirmed["order_id"] == placed["order_id"] and confirmed["total"] == 3180
    assert harness.sim.stats()["tickets"] == 1
    assert_submitted_once(harness.sim.request_log(), placed["order_id"])
    code, orders = await harness.http("GET", "/api/orders", token=a_join["token"])
    assert code == 200 and [o["order_id"] for o in orders["orders"]] == [placed["order_id"]]
    code, cart = await harness.http("GET", "/api/cart", token=a_join["token"])
    assert code == 200 and cart["items"] == [] and cart["cart_locked"] is False
    # After the confirmation the cart takes edits again.
    await add(a, "miso")


async def test_twenty_phones_press_place_order_together_fifty_rounds(harness: Harness) -> None:
    members = [await harness.member("T002") for _ in range(20)]
    clients = [c for _, c in members]
    order_ids: list[str] = []
    for round_no in range(50):
        ack = await add(clients[round_no % 20], "green-tea")
        await asyncio.gather(
            *(c.wait_for(lambda m, r=ack["revision"]: m["type"] == "cart_updated" and m["cart"]["revision"] >= r)
              for c in clients)
        )
        rid = f"round-{round_no}"
        await asyncio.gather(*(c.send({"type": "place_order", "id": rid}) for c in clients))
        answers = await asyncio.gather(*(c.wait_for(lambda m, r=rid: m.get("id") == r) for c in clients))
        acks = [x for x in answers if x["type"] == "ack"]
        assert len(acks) == 1, answers
        assert {x["code"] for x in answers if x["type"] == "error"} == {"order_in_progress"}
        order_id = acks[0]["order_id"]
        confirmations = await asyncio.gather(
            *(c.wait_for(lambda m, o=order_id: m["type"] == "order_confirmed" and m["order_id"] == o) for c in clients)
        )
        assert {c["order_id"] for c in confirmations} == {order_id}
        order_ids.append(order_id)
    stats = harness.sim.stats()
    assert stats["tickets"] == 50
    log = harness.sim.request_log()
    for order_id in order_ids:
        assert_submitted_once(log, order_id)
    orders = await harness.running.services.store.list_group_orders(members[0][0]["group_id"])
    assert len({o.order_id for o in orders}) == 50


async def test_cart_edits_from_twenty_phones_converge(harness: Harness) -> None:
    clients = [c for _, c in [await harness.member("T003") for _ in range(20)]]
    items = ["edamame", "gyoza", "miso", "mochi"]

    async def edits(i: int, c: WsClient) -> None:
        for k in range(4):
            ack = await add(c, items[(i + k) % 4], 1 + k)
            assert ack["type"] == "ack"

    await asyncio.gather(*(edits(i, c) for i, c in enumerate(clients)))
    # Some members change and remove lines added by others.
    snapshot = await clients[0].request({"type": "get_snapshot"})
    lines = snapshot["cart"]["items"]
    await asyncio.gather(
        *(clients[i].request({"type": "update_item", "line_id": lines[i]["line_id"], "qty": 9}) for i in range(10)),
        *(clients[i].request({"type": "remove_item", "line_id": lines[i + 10]["line_id"]}) for i in range(10)),
    )
    final = await clients[0].request({"type": "get_snapshot"})
    revision = final["cart"]["revision"]
    views = await asyncio.gather(
        *(c.wait_for(lambda m: m["type"] == "cart_updated" and m["cart"]["revision"] == revision) for c in clients)
    )
    assert all(v["cart"]["items"] == final["cart"]["items"] for v in views)
    assert len(final["cart"]["items"]) == 70
    assert final["cart"]["total"] == sum(line["qty"] * line["unit_price"] for line in final["cart"]["items"])


async def test_resent_request_id_after_reconnect_changes_nothing(harness: Harness) -> None:
    joined, a = await harness.member()
    await a.send({"type": "add_item", "id": "once", "menu_item_id": "mochi", "qty": 1})
    first = await a.wait_for(lambda m: m.get("id") == "once")
    await a.close()
    b = await WsClient.connect(harness.ws_base, joined["token"])
    await b.wait_type("welcome")
    await b.send({"type": "add_item", "id": "once", "menu_item_id": "mochi", "qty": 1})
    again = await b.wait_for(lambda m: m.get("id") == "once")
    assert again == first
    snap = await b.request({"type": "get_snapshot"})
    assert len(snap["cart"]["items"]) == 1


async def test_order_rules_errors(harness: Harness) -> None:
    _, a = await harness.member()
    assert (await a.request({"type": "place_order"}))["code"] == "empty_cart"
    assert (await a.request({"type": "add_item", "menu_item_id": "caviar", "qty": 1}))["code"] == "unknown_item"
    await add(a, "asahi", 2)
    wrong = await a.request({"type": "place_order", "total": 1})
    assert wrong["code"] == "total_mismatch"
    assert (await a.request({"type": "add_item", "menu_item_id": "asahi", "qty": 1, "note": "x" * 201}))["code"] == "bad_request"
    long_instructions = {"type": "place_order", "special_instructions": "y" * 501}
    assert (await a.request(long_instructions))["code"] == "bad_request"
    pong = await a.request({"type": "ping"})
    assert pong["type"] == "pong"


async def test_malformed_corpus_gets_errors_and_server_stays_up(harness: Harness) -> None:
    joined, _ = await harness.member()
    clients: dict[str, WsClient] = {}

    async def client_for(codec: str) -> WsClient:
        c = clients.get(codec)
        if c is None or c.closed.is_set():
            c = await WsClient.connect(harness.ws_base, joined["token"], msgpack_codec=codec == "msgpack")
            await c.wait_type("welcome")
            clients[codec] = c
        return c

    cases = malformed_frames()
    assert len(cases) >= 200
    for case in cases:
        c = await client_for(case.codec)
        start = len(c.messages)
        await c.send_raw(case.frame)
        reply = await c.wait_for(lambda m: m["type"] == "error", start=start)
        assert reply["code"] == case.expected_code, (case.note, reply)
        if case.fatal:
            await asyncio.wait_for(c.closed.wait(), t(2))
        else:
            assert not c.closed.is_set(), case.note
    # Still serving, the actor still alive and the cart intact.
    c = await client_for("json")
    assert (await c.request({"type": "ping"}))["type"] == "pong"
    await add(c, "miso")
    code, _ = await harness.http("GET", "/healthz")
    assert code == 200


async def test_rate_limit_answers_rate_limited(harness: Harness) -> None:
    harness.running.services.settings.limits.messages_per_second = 1
    harness.running.services.settings.limits.burst = 3
    _, a = await harness.member()
    for i in range(10):
        await a.send({"type": "ping", "id": f"p{i}"})
    await a.wait_for(lambda m: m.get("code") == "rate_limited")
    assert len(a.of_type("pong")) <= 4


async def test_unknown_or_revoked_token_gets_401_everywhere(harness: Harness) -> None:
    for path in ("/api/cart", "/api/orders"):
        code, body = await harness.http("GET", path, token="not-a-token")
        assert code == 401 and body["error"] == "unauthorized"
    try:
        await WsClient.connect(harness.ws_base, "not-a-token")
        raise AssertionError("handshake should fail")
    except tornado.httpclient.HTTPClientError as err:
        assert err.code == 401


async def test_foreign_origin_is_refused(harness: Harness) -> None:
    joined = await harness.join()
    try:
        await WsClient.connect(harness.ws_base, joined["token"], headers={"Origin": "https://evil.example"})
        raise AssertionError("handshake should fail")
    except tornado.httpclient.HTTPClientError as err:
        assert err.code == 403
    ok = await WsClient.connect(
        harness.ws_base, joined["token"], headers={"Origin": harness.base}
    )
    await ok.wait_type("welcome")


async def test_join_errors(harness: Harness) -> None:
    code, body = await harness.http("POST", "/api/join", {"table_id": "T999", "qr": "x"})
    assert code == 404
    code, body = await harness.http("POST", "/api/join", {"table_id": "T001", "qr": "wrong"})
    assert code == 403
    code, body = await harness.http("POST", "/api/join", b"not json")
    assert code == 400 and body["error"] == "bad_request"
    code, body = await harness.http("POST", "/api/join", {"table_id": 5})
    assert code == 400


async def test_checkout_closes_sockets_within_a_second_and_revokes_tokens(harness: Harness) -> None:
    members = [await harness.member("T004") for _ in range(3)]
    staff = await harness.staff_token()
    started = time.monotonic()
    code, table = await harness.http("POST", "/api/staff/tables/T004/checkout", token=staff)
    assert code == 200 and table["status"] == "paid"
    for _, c in members:
        closed = await c.wait_type("session_closed", timeout=1)
        assert closed["reason"] == "checked_out"
        await asyncio.wait_for(c.closed.wait(), t(1))
    assert time.monotonic() - started < t(1.5)
    token = members[0][0]["token"]
    code, _ = await harness.http("GET", "/api/cart", token=token)
    assert code == 401
    try:
        await WsClient.connect(harness.ws_base, token)
        raise AssertionError("revoked token must be refused")
    except tornado.httpclient.HTTPClientError as err:
        assert err.code == 401
    # Paid table: nobody joins until staff resets it; then a new group, old tokens stay dead.
    code, body = await harness.http("POST", "/api/join", {"table_id": "T004", "qr": await harness.qr_secret("T004")})
    assert code == 409
    code, table = await harness.http("POST", "/api/staff/tables/T004/reset", token=staff)
    assert code == 200 and table["status"] == "vacant"
    fresh = await harness.join("T004")
    assert fresh["group_id"] != members[0][0]["group_id"]
    code, _ = await harness.http("GET", "/api/cart", token=token)
    assert code == 401


async def test_staff_endpoints_need_login(harness: Harness) -> None:
    code, _ = await harness.http("GET", "/api/staff/tables")
    assert code == 401
    code, _ = await harness.http("POST", "/api/staff/login", {"username": "admin", "password": "nope"})
    assert code == 401
    staff = await harness.staff_token()
    code, tables = await harness.http("GET", "/api/staff/tables", token=staff)
    assert code == 200 and {t["table_id"] for t in tables} == {"T001", "T002", "T003", "T004"}
    assert all(t["join_url"].endswith(f"/q/{t['table_id']}/" + t["join_url"].rsplit("/", 1)[1]) for t in tables)


async def test_qr_link_sets_cookie_and_redirects(harness: Harness) -> None:
    client = tornado.httpclient.AsyncHTTPClient()
    secret = await harness.qr_secret("T001")
    resp = await client.fetch(f"{harness.base}/q/T001/{secret}", follow_redirects=False, raise_error=False)
    assert resp.code == 303 and resp.headers["Location"] == "/guest"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    code, cart = await harness.http("GET", "/api/cart", headers={"Cookie": f"tableside_token={token}"})
    assert code == 200 and "items" in cart
    conn = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(f"{harness.ws_base}/ws", headers={"Cookie": f"tableside_token={token}"})
    )
    first = await conn.read_message()
    assert first is not None and '"welcome"' in str(first)
    conn.close()


async def test_a_database_outage_is_a_503_the_client_retries(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """While Postgres cannot be reached, HTTP calls and websocket handshakes get 503 ``unavailable`` with
    ``Retry-After`` (typed JSON, a warning in the log, no traceback), not a 500."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from tableside.storage.postgres import PostgresStore

    joined = await harness.join()
    dead = PostgresStore(create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing"))
    try:
        monkeypatch.setattr(harness.running.services.store, "resolve_token", dead.resolve_token)
        code, body = await harness.http("GET", "/api/cart", token=joined["token"])
        assert code == 503 and body["error"] == "unavailable", body
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await WsClient.connect(harness.ws_base, joined["token"])
        assert refused.value.code == 503
        monkeypatch.undo()
        code, body = await harness.http("GET", "/api/cart", token=joined["token"])
        assert code == 200  # back as soon as the database is
    finally:
        await dead.close()
