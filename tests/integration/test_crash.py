"""kill -9 the server at the worst moments; restart; nothing acknowledged is lost, nothing is duplicated."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.client import WsClient
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import Proc, free_port, start_pos_sim, start_tableside

ADMIN = "crash-test-admin-pw"


@pytest.fixture
def crash_db() -> Iterator[str]:
    url = create_database_sync("ts_crash")
    yield url
    drop_database_sync(url)


@pytest.fixture
def pos_sim() -> Iterator[Proc]:
    sim = start_pos_sim("--latency-ms", "0")
    yield sim
    sim.stop()


class Cluster:
    def __init__(self, db: str, sim: Proc) -> None:
        self.db, self.sim = db, sim
        self.port = free_port()
        self.server: Proc | None = None

    def start(self) -> Proc:
        self.server = start_tableside(
            self.db,
            port=self.port,
            TABLESIDE_ADMIN_PASSWORD=ADMIN,
            TABLESIDE_DEMO__TABLES="3",
            TABLESIDE_POS__ADAPTER="http",
            TABLESIDE_POS__URL=self.sim.base,
            TABLESIDE_POS__TIMEOUT_S="1.5",
            TABLESIDE_POS__BACKOFF_S="0.2",
            TABLESIDE_LIMITS__MESSAGES_PER_SECOND="1000",
            TABLESIDE_LIMITS__BURST="1000",
        )
        return self.server

    def kill9(self) -> None:
        assert self.server is not None
        self.server.kill9()

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def join(self, table_id: str = "T001") -> dict[str, Any]:
        assert self.server is not None
        req = urllib.request.Request(
            self.server.base + "/api/staff/login",
            data=json.dumps({"username": "admin", "password": ADMIN}).encode(),
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            staff = json.loads(resp.read())["token"]
        req = urllib.request.Request(self.server.base + "/api/staff/tables", headers={"Authorization": f"Bearer {staff}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            tables = {t["table_id"]: t for t in json.loads(resp.read())}
        qr = tables[table_id]["join_url"].rsplit("/", 1)[1]
        return dict(self.server.post_json("/api/join", {"table_id": table_id, "qr": qr}))

    async def member(self, token: str) -> WsClient:
        client = await WsClient.connect(self.ws, token)
        await client.wait_type("welcome", timeout=10)
        return client


@pytest.fixture
def cluster(crash_db: str, pos_sim: Proc) -> Iterator[Cluster]:
    c = Cluster(crash_db, pos_sim)
    c.start()
    yield c
    c.stop()


async def test_kill_right_after_acks_loses_no_cart_op(cluster: Cluster) -> None:
    a, b = cluster.join(), cluster.join()
    ca, cb = await cluster.member(a["token"]), await cluster.member(b["token"])
    sent = []
    for i in range(15):
        for c in (ca, cb):
            rid = c.next_id()
            sent.append(rid)
            await c.send({"type": "add_item", "id": rid, "menu_item_id": "miso", "qty": 1 + i % 3})
    answers = [await (ca if n % 2 == 0 else cb).wait_for(lambda m, r=rid: m.get("id") == r) for n, rid in enumerate(sent)]
    assert all(x["type"] == "ack" for x in answers)
    cluster.kill9()  # immediately after the last ack
    cluster.start()
    again = await cluster.member(a["token"])
    cart = again.of_type("welcome")[0]["cart"]
    assert len(cart["items"]) == 30
    assert cart["revision"] >= max(x["revision"] for x in answers)
    # Acked ids are remembered across the crash: resending one changes nothing.
    await again.send({"type": "add_item", "id": sent[0], "menu_item_id": "miso", "qty": 1})
    dup = await again.wait_for(lambda m: m.get("id") == sent[0])
    assert dup == answers[0]
    snap = await again.request({"type": "get_snapshot"})
    assert len(snap["cart"]["items"]) == 30


async def _place_and_kill(cluster: Cluster, control: dict[str, Any], wait_for_ticket: bool) -> tuple[dict[str, Any], str]:
    a = cluster.join("T002")
    ca = await cluster.member(a["token"])
    await ca.request({"type": "add_item", "menu_item_id": "katsu-curry", "qty": 2})
    cluster.sim.post_json("/control", control)
    placed = await ca.request({"type": "place_order"})
    assert placed["type"] == "ack"
    await ca.wait_type("cart_locked")
    if wait_for_ticket:
        for _ in range(100):
            if cluster.sim.get_json("/stats")["tickets"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert cluster.sim.get_json("/stats")["tickets"] == 1
    else:
        await asyncio.sleep(0.2)
    cluster.kill9()
    return a, placed["order_id"]


async def _restart_and_check(cluster: Cluster, a: dict[str, Any], order_id: str) -> None:
    cluster.sim.post_json("/control", {"latency_ms": 0, "timeout_next": 0})
    cluster.start()
    client = await cluster.member(a["token"])
    welcome = client.of_type("welcome")[0]
    if welcome["cart"]["pending_order_id"] == order_id:
        await client.wait_for(lambda m: m["type"] == "order_confirmed" and m["order_id"] == order_id, timeout=15)
    for _ in range(100):
        snap = await client.request({"type": "get_snapshot"})
        if not snap["cart"]["cart_locked"]:
            break
        await asyncio.sleep(0.1)
    assert snap["cart"]["items"] == [] and snap["cart"]["order_processing_status"] == "confirmed"
    stats = cluster.sim.get_json("/stats")
    assert stats["tickets"] == 1, stats
    tickets = cluster.sim.get_json("/tickets")
    assert [t["order_id"] for t in tickets] == [order_id]
    req = urllib.request.Request(cluster.server.base + "/api/orders", headers={"Authorization": f"Bearer {a['token']}"})  # type: ignore[union-attr]
    with urllib.request.urlopen(req, timeout=10) as resp:
        orders = json.loads(resp.read())["orders"]
    assert [o["order_id"] for o in orders] == [order_id]


async def test_kill_while_pos_call_in_flight(cluster: Cluster) -> None:
    a, order_id = await _place_and_kill(cluster, {"latency_ms": 1500}, wait_for_ticket=False)
    await _restart_and_check(cluster, a, order_id)


async def test_kill_after_pos_accepted_before_confirmation_stored(cluster: Cluster) -> None:
    # The simulator creates the ticket, then holds the response past our timeout: we are killed while
    # the POS has the order and our database still says "processing".
    a, order_id = await _place_and_kill(cluster, {"timeout_next": 1, "hang_ms": 20000}, wait_for_ticket=True)
    await _restart_and_check(cluster, a, order_id)
