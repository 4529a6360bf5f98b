"""Kitchen screens on any node: every confirmed order exactly once, in ``kitchen_seq`` order, whichever node
owned the table that placed it; ``since`` works as on one node; a logout on one node closes that session's
screen on another."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import tornado.websocket

from tableside.storage.urls import to_plain_url
from tests.client import WsClient, eventually
from tests.cluster.harness import Cluster, Phone


async def confirmed_in_db(cluster: Cluster) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(to_plain_url(cluster.db))
    try:
        rows = await conn.fetch("SELECT order_id, kitchen_seq FROM orders WHERE status = 'confirmed' ORDER BY kitchen_seq")
    finally:
        await conn.close()
    return [(r["order_id"], r["kitchen_seq"]) for r in rows]


def placed(screen: WsClient, start: int = 0) -> list[tuple[str, int]]:
    return [(m["order_id"], m["seq"]) for m in screen.messages[start:] if m.get("type") == "order_placed"]


async def order(phone: Phone, note: str) -> str:
    ack = await phone.request({"type": "add_item", "menu_item_id": "miso", "qty": 1, "note": note})
    assert ack["type"] == "ack", ack
    reply = await phone.request({"type": "place_order"})
    assert reply["type"] == "ack", reply
    order_id = str(reply["order_id"])
    assert phone.ws is not None
    await phone.ws.wait_type("order_confirmed", timeout=15, order_id=order_id)
    return order_id


async def settle(screens: dict[str, WsClient], count: int, starts: dict[str, int] | None = None) -> None:
    for name, screen in screens.items():
        start = (starts or {}).get(name, 0)
        await eventually(lambda s=screen, b=start: len(placed(s, b)) >= count, 10, f"{count} orders on screen {name}")
    await asyncio.sleep(1.2)  # past the lease loop's periodic wake (0.5 s): a duplicate would show by now


async def test_screens_on_every_node_get_every_order_once_in_seq_order(cluster: Cluster) -> None:
    screens = {name: await cluster.kitchen(name, since=0) for name in ("a", "b", "c")}
    for screen in screens.values():
        snap = screen.of_type("kitchen_snapshot")[0]
        assert snap["tickets"] == [] and snap["cursor"] == 0
    phones = {}
    for table, node in (("T001", "a"), ("T002", "b"), ("T003", "c")):
        phone = Phone(cluster, cluster.join(table, node), node)
        await phone.connect(node)
        phones[node] = phone
        assert cluster.owner(phone.group_id) == node
    for rnd in range(2):  # the three tables order at once, twice
        await asyncio.gather(*(order(p, f"{n}-{rnd}") for n, p in phones.items()))
    db = await confirmed_in_db(cluster)
    assert len(db) == 6
    await settle(screens, len(db))
    for name, screen in screens.items():
        got = placed(screen)
        assert got == db, f"screen on {name}: {got} != db {db}"

    # A screen that drops and comes back with ``since`` gets exactly what it missed, in order.
    last_seen = placed(screens["b"])[-1][1]
    await screens["b"].close()
    for node in ("a", "c"):
        await order(phones[node], f"{node}-missed")
    screens["b"] = await cluster.kitchen("b", since=last_seen)
    snap = screens["b"].of_type("kitchen_snapshot")[0]
    assert snap["cursor"] == last_seen
    assert all(t["seq"] <= last_seen for t in snap["tickets"])
    db = await confirmed_in_db(cluster)
    missed = [row for row in db if row[1] > last_seen]
    assert len(missed) == 2
    starts = {"a": 0, "b": 0, "c": 0}
    await settle({"b": screens["b"]}, len(missed))
    await settle({"a": screens["a"], "c": screens["c"]}, len(db))
    assert placed(screens["b"]) == missed
    for name in ("a", "c"):
        assert placed(screens[name]) == db, name
    # One more order from b's table reaches all three screens once.
    await order(phones["b"], "b-after")
    db = await confirmed_in_db(cluster)
    await settle({"a": screens["a"], "c": screens["c"]}, len(db), starts)
    await eventually(lambda: len(placed(screens["b"])) >= 3, 10, "b: the new order")
    assert placed(screens["b"]) == missed + db[-1:]
    for name in ("a", "c"):
        assert placed(screens[name]) == db, name
    for screen in screens.values():
        await screen.close()


async def test_logout_on_one_node_closes_that_sessions_screen_on_another(cluster: Cluster) -> None:
    token = cluster.staff_token("c")
    other_token = cluster.staff_token("c")
    screens: list[WsClient] = []
    for tok in (token, other_token):
        conn = await tornado.websocket.websocket_connect(
            f"{cluster.nodes['c'].live.ws}/ws/kitchen?token={tok}", subprotocols=["tableside.v1.json"]
        )
        screen = WsClient(conn, False)
        await screen.wait_type("kitchen_snapshot", timeout=10)
        screens.append(screen)
    started = time.monotonic()
    logout: Any = await asyncio.to_thread(_logout, cluster, "a", token)
    assert logout == 204
    await screens[0].wait_type("session_closed", timeout=2, reason="logged_out")
    await eventually(lambda: screens[0].closed.is_set(), 2, "the screen closed")
    took = time.monotonic() - started
    assert screens[0].close_code == 4001
    assert took < 1.5, took
    # Another session's screen is untouched.
    assert not screens[1].closed.is_set()
    pong = await screens[1].request({"type": "ping"})
    assert pong["type"] == "pong"
    await screens[1].close()


def _logout(cluster: Cluster, node: str, token: str) -> int:
    import urllib.request

    req = urllib.request.Request(
        cluster.nodes[node].live.base + "/api/staff/logout", data=b"{}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


async def test_orders_reach_screens_on_other_nodes_while_redis_is_down(cluster: Cluster) -> None:
    """Cross-node wake-ups travel over Redis; without it each node's lease loop still wakes its kitchen
    feed every renew interval (0.5 s here), and the feed reads from Postgres: screens keep up."""
    screens = {name: await cluster.kitchen(name, since=0) for name in ("a", "b", "c")}
    phone = Phone(cluster, cluster.join("T001", "a"), "a")
    await phone.connect("a")
    assert cluster.owner(phone.group_id) == "a"
    await order(phone, "before")
    cluster.redis.kill()
    try:
        started = time.monotonic()
        await order(phone, "during")  # the owner is local to a: no routing needed
        db = await confirmed_in_db(cluster)
        assert len(db) == 2
        for name, screen in screens.items():
            await eventually(lambda s=screen: len(placed(s)) >= 2, 3, f"screen {name} during the outage")
        took = time.monotonic() - started
    finally:
        cluster.redis.start()
    await order(phone, "after")
    db = await confirmed_in_db(cluster)
    await settle(screens, len(db))
    print(f"\norder during the Redis outage on every screen after {took:.2f}s")
    for name, screen in screens.items():
        assert placed(screen) == db, (name, placed(screen), db)
    for screen in screens.values():
        await screen.close()
