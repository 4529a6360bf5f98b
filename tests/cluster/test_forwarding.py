"""Three real node processes, one Redis, one Postgres: any node serves any phone, forwarding to the owner."""

from __future__ import annotations

import asyncio

from tests.client import eventually
from tests.cluster.harness import Cluster, Phone


async def test_members_on_three_nodes_share_one_cart_through_the_owner(cluster: Cluster) -> None:
    phones = []
    for name in ("a", "b", "c"):
        phone = Phone(cluster, cluster.join("T001", name), name)
        await phone.connect(name)
        phones.append(phone)
    group = phones[0].group_id
    owner = cluster.owner(group)
    assert owner == "a"  # the first member's node activated the group
    acks = []
    for i, phone in enumerate(phones):
        acks.append(await phone.request({"type": "add_item", "menu_item_id": "miso", "qty": i + 1}))
    assert [a["type"] for a in acks] == ["ack"] * 3
    assert [a["revision"] for a in acks] == sorted(a["revision"] for a in acks)
    for phone in phones:
        assert phone.ws is not None
        await phone.ws.wait_for(
            lambda m: m.get("type") == "cart_updated" and len(m["cart"]["items"]) == 3, timeout=5
        )
    health = {name: cluster.health(name) for name in ("a", "b", "c")}
    assert {h["node_id"] for h in health.values()} == {"a", "b", "c"}
    assert all(h["redis"] == "ok" and h["status"] == "ok" for h in health.values())
    assert health["a"]["actors"] == 1 and health["b"]["actors"] == 0
    rows = {r["table_id"]: r for r in cluster.board("c")}
    assert rows["T001"]["owner_node"] == "a" and rows["T001"]["members_online"] == 3
    assert rows["T002"]["owner_node"] is None
    # A resent request id through another node is answered from the owner's memory, not applied twice.
    again = await phones[2].request({"type": "ping"})
    assert again["type"] == "pong"
    placed = await phones[1].request({"type": "place_order"})
    assert placed["type"] == "ack" and placed["order_id"].startswith("ORD-1-")
    for phone in phones:
        assert phone.ws is not None
        await phone.ws.wait_type("order_confirmed", timeout=10, order_id=placed["order_id"])


async def test_checkout_on_any_node_closes_every_phone_on_every_node(cluster: Cluster) -> None:
    phones = []
    for name in ("a", "b", "c"):
        phone = Phone(cluster, cluster.join("T002", name), name)
        await phone.connect(name)
        phones.append(phone)
    token = cluster.staff_token("c")
    loop = asyncio.get_running_loop()
    started = loop.time()
    cluster.call("c", "/api/staff/tables/T002/checkout", {}, token=token)
    for phone in phones:
        assert phone.ws is not None
        await phone.ws.wait_type("session_closed", timeout=2)
        await eventually(lambda p=phone: p.ws is not None and p.ws.closed.is_set(), 2, "socket closed")
    assert loop.time() - started < 1.5
    assert {p.ws.close_code for p in phones if p.ws is not None} == {4001}


async def test_86_reaches_carts_on_every_node(cluster: Cluster) -> None:
    phones = []
    for name in ("b", "c"):
        phone = Phone(cluster, cluster.join("T003", name), name)
        await phone.connect(name)
        phones.append(phone)
    other = Phone(cluster, cluster.join("T004", "c"), "c")
    await other.connect("c")
    await phones[0].request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
    await other.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
    token = cluster.staff_token("a")
    cluster.call("a", "/api/staff/menu/gyoza/availability", {"available": False}, token=token)
    for phone in [*phones, other]:
        assert phone.ws is not None
        await phone.ws.wait_for(
            lambda m: m.get("type") == "cart_updated" and any(i.get("unavailable") for i in m["cart"]["items"]),
            timeout=3,
        )
    refused = await other.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
    assert refused["type"] == "error" and refused["code"] == "item_unavailable"
