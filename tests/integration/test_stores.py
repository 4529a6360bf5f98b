"""Several stores in one deployment (issue 11, "Stores"): the public store endpoints, the demo's two
stores, and staff scoping: a staff user sees and changes only their store, an admin every store."""

from __future__ import annotations

import asyncio

import tornado.httpclient
import tornado.websocket

from tableside.storage.interface import StaffRole, TableStatus
from tests.integration.conftest import Harness
from tests.integration.test_staff_kitchen import kitchen_screen, order_something


async def staff_of(h: Harness, name: str, role: StaffRole, store_id: int | None) -> str:
    await h.running.services.staff_auth.set_user(name, role, f"{name}-pass-1", store_id)
    return await h.staff_token(name, f"{name}-pass-1")


async def test_public_store_list_and_store_menus_of_the_two_demo_stores(harness: Harness) -> None:
    code, body = await harness.http("GET", "/api/stores")  # public: no token
    assert code == 200
    stores = body["stores"]
    assert [s["store_id"] for s in stores] == [1, 2]
    assert set(stores[0]) == {"store_id", "name", "address", "phone", "business_hours", "timezone"}
    assert stores[0]["name"] == "Tableside Demo Bistro" and stores[1]["name"] == "Tableside Demo Trattoria"
    assert stores[1]["business_hours"]["mon"] == [] and stores[1]["business_hours"]["tue"] == [
        ["12:00", "15:00"], ["18:00", "23:00"]
    ]
    assert stores[0]["timezone"] == "UTC"

    code, menu1 = await harness.http("GET", "/api/stores/1/menu")
    assert code == 200
    code, guest_menu = await harness.http("GET", "/api/menu")
    assert menu1 == guest_menu  # /api/menu is the first store's menu, in the same shape
    code, menu2 = await harness.http("GET", "/api/stores/2/menu")
    assert code == 200
    ids1 = {i["menu_item_id"] for i in menu1["items"]}
    ids2 = {i["menu_item_id"] for i in menu2["items"]}
    assert "gyoza" in ids1 and "s2-margherita" in ids2 and not ids1 & ids2
    assert set(menu2["items"][0]) == {"menu_item_id", "name", "category", "price", "available"}
    for missing in ("/api/stores/99/menu", "/api/stores/0/menu"):
        code, body = await harness.http("GET", missing)
        assert code == 404 and body["error"] == "store_not_found", (missing, body)
    code, _ = await harness.http("GET", "/api/stores/abc/menu")
    assert code == 404

    # the demo's staff: manager/server/kitchen work in store 1, manager2/kitchen2 in store 2, admin everywhere
    store = harness.running.services.store
    bound = {u.username: u.store_id for u in await store.list_staff()}
    assert bound == {"admin": None, "manager": 1, "server": 1, "kitchen": 1, "manager2": 2, "kitchen2": 2}

    # each store has its own tables; a guest of store 2 orders from store 2's menu only
    tables2 = await harness.running.services.store.list_tables(2)
    assert [t.table_id for t in tables2] == ["S2-T001", "S2-T002", "S2-T003", "S2-T004"]
    joined, phone, order_id = await order_something(harness, "S2-T001", "s2-margherita")
    assert order_id.startswith("ORD-2-")
    # the guest page's /api/menu (with the guest's token or cookie) is the menu of the table's store
    code, own_menu = await harness.http("GET", "/api/menu", token=joined["token"])
    assert code == 200 and own_menu == menu2
    code, own_menu = await harness.http("GET", "/api/menu", headers={"Cookie": f"tableside_token={joined['token']}"})
    assert code == 200 and own_menu == menu2
    refused = await phone.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
    assert refused["type"] == "error"
    await phone.close()


async def test_a_store_manager_sees_and_changes_only_their_store(harness: Harness) -> None:
    m1 = await staff_of(harness, "m1", StaffRole.MANAGER, 1)
    m2 = await staff_of(harness, "m2", StaffRole.MANAGER, 2)
    for token, store_id, prefix in ((m1, 1, "T"), (m2, 2, "S2-T")):
        for path in ("/api/staff/tables", "/api/staff/board"):
            code, rows = await harness.http("GET", path, token=token)
            assert code == 200 and rows, (path, rows)
            assert {r["store_id"] for r in rows} == {store_id}
            assert all(r["table_id"].startswith(prefix) for r in rows)
        code, menu = await harness.http("GET", "/api/staff/menu", token=token)
        assert code == 200 and all(i["menu_item_id"].startswith("s2-") == (store_id == 2) for i in menu["items"])
    # asking for another store is forbidden; one's own store is fine
    for path in ("/api/staff/tables?store_id=2", "/api/staff/board?store_id=2", "/api/kitchen/tickets?store_id=2",
                 "/api/staff/menu?store_id=2"):
        code, body = await harness.http("GET", path, token=m1)
        assert code == 403 and body["error"] == "forbidden", (path, body)
    code, _ = await harness.http("GET", "/api/staff/tables?store_id=1", token=m1)
    assert code == 200

    # store 2 has an occupied table with a confirmed order
    _, phone, order2 = await order_something(harness, "S2-T001", "s2-margherita")
    store = harness.running.services.store
    before = await store.get_table("S2-T001")
    assert before is not None and before.status == TableStatus.OCCUPIED
    # manager of store 1 acting on store 2's table, item or order: not found, and nothing changes
    for method, path, body in (
        ("POST", "/api/staff/tables/S2-T001/checkout", None),
        ("POST", "/api/staff/tables/S2-T002/reset", None),
        ("POST", "/api/staff/tables/S2-T002/rename", {"name": "mine now"}),
        ("POST", "/api/staff/tables/S2-T002/rotate-qr", None),
        ("DELETE", "/api/staff/tables/S2-T002", None),
        ("POST", "/api/staff/menu/s2-tiramisu/availability", {"available": False}),
        ("POST", f"/api/kitchen/orders/{order2}/status", {"status": "preparing"}),
    ):
        code, answer = await harness.http(method, path, body, token=m1)
        assert code == 404, (path, code, answer)
    after = await store.get_table("S2-T001")
    assert after is not None and after.status == TableStatus.OCCUPIED
    t2 = await store.get_table("S2-T002")
    assert t2 is not None and t2.name == "Table 2" and t2.qr_secret == (await harness.qr_secret("S2-T002"))
    item = harness.running.services.menu.get("s2-tiramisu")
    assert item is not None and item.available
    assert (await store.get_order(order2)).kitchen_status == "new"  # type: ignore[union-attr]
    code, tickets = await harness.http("GET", "/api/kitchen/tickets", token=m1)
    assert code == 200 and order2 not in {t["order_id"] for t in tickets["tickets"]}
    code, qr = await harness.http("GET", "/staff/qr-sheet", token=m1)
    assert code == 200 and "S2-T001" not in qr and "T001" in qr

    # manager of store 2 may: a ticket, 86 an item, add a table (it goes to store 2), check out
    code, _ = await harness.http("POST", f"/api/kitchen/orders/{order2}/status", {"status": "preparing"}, token=m2)
    assert code == 200
    code, _ = await harness.http("POST", "/api/staff/menu/s2-tiramisu/availability", {"available": False}, token=m2)
    assert code == 200
    code, _ = await harness.http("POST", "/api/staff/menu/gyoza/availability", {"available": False}, token=m2)
    assert code == 404  # store 1's item
    code, made = await harness.http("POST", "/api/staff/tables", {"table_id": "S2-T099"}, token=m2)
    assert code == 201 and made["store_id"] == 2
    assert (await store.get_table("S2-T099")).restaurant_id == 2  # type: ignore[union-attr]
    code, _ = await harness.http("POST", "/api/staff/tables/S2-T001/checkout", token=m2)
    assert code == 200
    await phone.close()


async def test_admin_sees_every_store_and_picks_one_with_store_id(harness: Harness) -> None:
    admin = await harness.staff_token()
    code, rows = await harness.http("GET", "/api/staff/tables", token=admin)
    assert code == 200 and {r["store_id"] for r in rows} == {1}  # default: the first store
    code, rows = await harness.http("GET", "/api/staff/tables?store_id=2", token=admin)
    assert code == 200 and {r["store_id"] for r in rows} == {2} and len(rows) == 4
    code, board = await harness.http("GET", "/api/staff/board?store_id=2", token=admin)
    assert code == 200 and {r["store_id"] for r in board} == {2}
    code, body = await harness.http("GET", "/api/staff/tables?store_id=99", token=admin)
    assert code == 404 and body["error"] == "store_not_found"
    code, body = await harness.http("GET", "/api/staff/tables?store_id=x", token=admin)
    assert code == 400
    # an admin may act on any store's table by its id
    _, phone, _ = await order_something(harness, "S2-T002", "s2-espresso")
    code, _ = await harness.http("POST", "/api/staff/tables/S2-T002/checkout", token=admin)
    assert code == 200
    # ... but an admin who picked store 1 acts in store 1 only
    code, _ = await harness.http("POST", "/api/staff/tables/S2-T002/reset?store_id=1", token=admin)
    assert code == 404
    code, _ = await harness.http("POST", "/api/staff/tables/S2-T002/reset?store_id=2", token=admin)
    assert code == 200
    # an admin bound to a store is a store's admin: other stores are forbidden
    a2 = await staff_of(harness, "a2", StaffRole.ADMIN, 2)
    code, _ = await harness.http("GET", "/api/staff/tables?store_id=1", token=a2)
    assert code == 403
    await phone.close()


async def test_a_kitchen_screen_of_store_2_never_gets_store_1_orders(harness: Harness) -> None:
    k1 = await staff_of(harness, "k1", StaffRole.KITCHEN, 1)
    k2 = await staff_of(harness, "k2", StaffRole.KITCHEN, 2)
    _, p0, early1 = await order_something(harness, "T002")  # before the screens open: in store 1's snapshot
    screen1 = await kitchen_screen(harness, k1)
    screen2 = await kitchen_screen(harness, k2)
    assert [t["order_id"] for t in screen1.of_type("kitchen_snapshot")[0]["tickets"]] == [early1]
    assert screen2.of_type("kitchen_snapshot")[0]["tickets"] == []
    _, p1, o1 = await order_something(harness, "T001")
    _, p2, o2 = await order_something(harness, "S2-T001", "s2-burrata")
    _, p3, o3 = await order_something(harness, "T003")
    await screen2.wait_type("order_placed", order_id=o2)
    await screen1.wait_type("order_placed", order_id=o3)
    await asyncio.sleep(0.2)
    assert [m["order_id"] for m in screen2.of_type("order_placed")] == [o2]
    assert [m["order_id"] for m in screen1.of_type("order_placed")] == [o1, o3]
    # a status change of store 1's ticket is not sent to store 2's screen, and store 2 cannot make one
    code, _ = await harness.http("POST", f"/api/kitchen/orders/{o1}/status", {"status": "preparing"}, token=k1)
    assert code == 200
    await screen1.wait_type("order_status", order_id=o1)
    bad = await screen2.request({"type": "set_status", "order_id": o1, "status": "ready"})
    assert bad["type"] == "error" and bad["code"] == "not_found"
    await asyncio.sleep(0.2)
    assert not [m for m in screen2.of_type("order_status") if m["order_id"] == o1]
    # a store-2 screen asking for store 1 is refused
    try:
        await tornado.websocket.websocket_connect(
            f"{harness.ws_base}/ws/kitchen?token={k2}&store_id=1", subprotocols=["tableside.v1.json"]
        )
        raise AssertionError("a kitchen screen of store 2 opened store 1")
    except tornado.httpclient.HTTPClientError as exc:
        assert exc.code == 403
    # an admin screen picks store 2 and sees store 2's tickets only
    admin = await harness.staff_token()
    screen_a = await kitchen_screen(harness, admin + "&store_id=2")
    assert [t["order_id"] for t in screen_a.of_type("kitchen_snapshot")[0]["tickets"]] == [o2]
    for c in (screen1, screen2, screen_a, p0, p1, p2, p3):
        await c.close()



