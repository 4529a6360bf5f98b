"""Kitchen display feed, ticket statuses, menu availability, staff roles, QR admin and cleanup."""

from __future__ import annotations

from typing import Any

import tornado.httpclient
import tornado.websocket

from tableside.server.maintenance import run_cleanup
from tableside.storage.interface import StaffRole
from tests.client import WsClient
from tests.integration.conftest import Harness


async def kitchen_screen(h: Harness, token: str, since: int | None = None) -> WsClient:
    query = f"/ws/kitchen?token={token}" + (f"&since={since}" if since is not None else "")
    conn = await tornado.websocket.websocket_connect(f"{h.ws_base}{query}", subprotocols=["tableside.v1.json"])
    screen = WsClient(conn, False)
    await screen.wait_type("kitchen_snapshot")
    return screen


async def order_something(h: Harness, table: str = "T001", item: str = "gyoza") -> tuple[dict[str, Any], WsClient, str]:
    joined, phone = await h.member(table)
    await phone.request({"type": "add_item", "menu_item_id": item, "qty": 1})
    placed = await phone.request({"type": "place_order"})
    assert placed["type"] == "ack", placed
    await phone.wait_type("order_confirmed", order_id=placed["order_id"])
    return joined, phone, placed["order_id"]


async def test_kitchen_gets_each_order_once_in_order_and_catches_up(harness: Harness) -> None:
    admin = await harness.staff_token()
    screen_a = await kitchen_screen(harness, admin)
    screen_b = await kitchen_screen(harness, admin)
    ids = []
    for table in ("T001", "T002", "T003"):
        ids.append((await order_something(harness, table))[2])
    for screen in (screen_a, screen_b):
        for oid in ids:
            await screen.wait_type("order_placed", order_id=oid)
        placed = screen.of_type("order_placed")
        assert [p["order_id"] for p in placed] == ids  # once each, in order
        seqs = [p["seq"] for p in placed]
        assert seqs == sorted(seqs)
    # A screen that was away reconnects with its cursor and gets only what it missed.
    cursor = screen_a.of_type("order_placed")[0]["seq"]
    await screen_a.close()
    late = await kitchen_screen(harness, admin, since=cursor)
    for oid in ids[1:]:
        await late.wait_type("order_placed", order_id=oid)
    snapshot = late.of_type("kitchen_snapshot")[0]
    assert [t["order_id"] for t in snapshot["tickets"]] == ids[:1]
    assert [p["order_id"] for p in late.of_type("order_placed")] == ids[1:]
    # A fresh screen sees all open tickets in its snapshot and no replays.
    fresh = await kitchen_screen(harness, admin)
    assert [t["order_id"] for t in fresh.of_type("kitchen_snapshot")[0]["tickets"]] == ids
    # No replays: the feed is in seq order, so anything replayed would arrive before a new order.
    newest = (await order_something(harness, "T004"))[2]
    await fresh.wait_type("order_placed", order_id=newest)
    assert [p["order_id"] for p in fresh.of_type("order_placed")] == [newest]


async def test_ticket_status_reaches_screens_and_phones(harness: Harness) -> None:
    admin = await harness.staff_token()
    screen = await kitchen_screen(harness, admin)
    _, phone, oid = await order_something(harness)
    placed = await screen.wait_type("order_placed", order_id=oid)
    ack = await screen.request({"type": "set_status", "order_id": oid, "status": "preparing"})
    assert ack["type"] == "ack" and ack["status"] == "preparing"
    assert ack["revision"] == placed["seq"]  # documented: the ticket's kitchen seq
    await phone.wait_type("order_status", order_id=oid, status="preparing")
    code, body = await harness.http("POST", f"/api/kitchen/orders/{oid}/status", {"status": "ready"}, token=admin)
    assert code == 200 and body["status"] == "ready"
    await phone.wait_type("order_status", order_id=oid, status="ready")
    await screen.wait_type("order_status", order_id=oid, status="ready")
    code, body = await harness.http("POST", f"/api/kitchen/orders/{oid}/status", {"status": "new"}, token=admin)
    assert code == 409 and body["error"] == "invalid_transition"
    code, body = await harness.http("POST", f"/api/kitchen/orders/{oid}/status", {"status": "recall"}, token=admin)
    assert code == 200 and body["status"] == "preparing"
    bad = await screen.request({"type": "set_status", "order_id": "ORD-1-999", "status": "ready"})
    assert bad["type"] == "error" and bad["code"] == "not_found"


async def test_eighty_six_an_item(harness: Harness) -> None:
    admin = await harness.staff_token()
    _, phone = await harness.member()
    ack = await phone.request({"type": "add_item", "menu_item_id": "karaage", "qty": 1})
    assert ack["type"] == "ack"
    code, body = await harness.http("POST", "/api/staff/menu/karaage/availability", {"available": False}, token=admin)
    assert code == 200 and body["available"] is False
    update = await phone.wait_for(
        lambda m: m["type"] == "cart_updated" and m["cart"]["items"] and m["cart"]["items"][0].get("unavailable")
    )
    assert update["cart"]["items"][0]["menu_item_id"] == "karaage"
    assert (await phone.request({"type": "add_item", "menu_item_id": "karaage", "qty": 1}))["code"] == "item_unavailable"
    refused = await phone.request({"type": "place_order"})
    assert refused["code"] == "item_unavailable"
    snap = await phone.request({"type": "get_snapshot"})
    assert snap["cart"]["cart_locked"] is False
    code, menu = await harness.http("GET", "/api/menu")
    assert {i["menu_item_id"]: i["available"] for i in menu["items"]}["karaage"] is False
    code, body = await harness.http("POST", "/api/staff/menu/karaage/availability", {"available": "no"}, token=admin)
    assert code == 400
    code, body = await harness.http("POST", "/api/staff/menu/nope/availability", {"available": True}, token=admin)
    assert code == 404


async def test_roles_are_enforced(harness: Harness) -> None:
    auth = harness.running.services.staff_auth
    await auth.set_user("kim", StaffRole.KITCHEN, "kitchen-pass-1")
    await auth.set_user("sam", StaffRole.SERVER, "server-pass-1")
    kim = await harness.staff_token("kim", "kitchen-pass-1")
    sam = await harness.staff_token("sam", "server-pass-1")
    await harness.join("T001")
    code, body = await harness.http("POST", "/api/staff/tables/T001/checkout", token=kim)
    assert code == 403 and body["error"] == "forbidden"
    code, _ = await harness.http("POST", "/api/staff/tables", {"table_id": "T9"}, token=sam)
    assert code == 403
    try:
        await kitchen_screen(harness, sam)
        raise AssertionError("a server may not open a kitchen screen")
    except tornado.httpclient.HTTPClientError as err:
        assert err.code == 403
    await kitchen_screen(harness, kim)
    code, board = await harness.http("GET", "/api/staff/board", token=kim)
    assert code == 200
    code, _ = await harness.http("POST", "/api/staff/tables/T001/checkout", token=sam)
    assert code == 200


async def test_login_is_rate_limited(harness: Harness) -> None:
    codes = []
    for _ in range(12):
        code, _ = await harness.http("POST", "/api/staff/login", {"username": "admin", "password": "wrong"})
        codes.append(code)
    assert codes[:10] == [401] * 10 and codes[-1] == 429


async def test_board_tables_admin_and_qr_rotation(harness: Harness) -> None:
    admin = await harness.staff_token()
    joined, phone = await harness.member("T002")
    await phone.request({"type": "add_item", "menu_item_id": "asahi", "qty": 2})
    code, board = await harness.http("GET", "/api/staff/board", token=admin)
    row = {r["table_id"]: r for r in board}["T002"]
    assert row["status"] == "occupied" and row["members_online"] == 1 and row["cart_total"] == 1300
    old_secret = await harness.qr_secret("T003")
    code, table = await harness.http("POST", "/api/staff/tables/T003/rotate-qr", token=admin)
    assert code == 200 and not table["join_url"].endswith(old_secret)
    code, _ = await harness.http("POST", "/api/join", {"table_id": "T003", "qr": old_secret})
    assert code == 403
    code, table = await harness.http("POST", "/api/staff/tables", {"table_id": "P1", "name": "Patio 1"}, token=admin)
    assert code == 201 and table["status"] == "vacant"
    code, table = await harness.http("POST", "/api/staff/tables/P1/rename", {"name": "Patio One"}, token=admin)
    assert code == 200 and table["name"] == "Patio One"
    code, _ = await harness.http("DELETE", "/api/staff/tables/T002", token=admin)
    assert code == 409  # occupied
    code, _ = await harness.http("DELETE", "/api/staff/tables/P1", token=admin)
    assert code == 200
    client = tornado.httpclient.AsyncHTTPClient()
    resp = await client.fetch(f"{harness.base}/staff/qr-sheet?token={admin}")
    assert resp.body.count(b"<svg") == 4
    resp = await client.fetch(f"{harness.base}/staff/qr-sheet?token={admin}&format=pdf")
    assert resp.body.startswith(b"%PDF")
    resp = await client.fetch(f"{harness.base}/staff/qr-sheet", raise_error=False)
    assert resp.code == 401


async def test_cleanup_closes_idle_sittings(harness: Harness) -> None:
    _, phone = await harness.member("T004")
    services = harness.running.services
    services.settings.group_idle_hours = -1.0  # everything counts as idle: no real waiting
    report = await run_cleanup(services)
    assert report.extra["idle_groups_closed"] == 1
    closed = await phone.wait_type("session_closed")
    assert closed["reason"] == "expired"
    table = await services.store.get_table("T004")
    assert table is not None and table.status.value == "vacant"
    assert await run_cleanup(services) is not None
