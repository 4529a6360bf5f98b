"""kill -9 the server at the worst moments; restart; nothing acknowledged is lost, nothing is duplicated.

Every kill is timed by an event, never a sleep: the POS simulator's request log says when the POS call is
in flight (``GET /_sim/log`` waits for it), and a fault-injecting wrapper (``tests/crashpoint.py``) kills
the server at an exact point. Every exactly-once check asserts on that log, not on the ticket count (the
simulator merges a same-key resubmission into one ticket): the key was submitted once, then only looked
up. The POS timeout is long (60 s) so nothing on the server moves on by itself while a kill is lined up."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tableside.storage.interface import OrderStatus
from tableside.storage.postgres import PostgresStore
from tests.client import WsClient, kitchen_screen, t
from tests.exactly_once import assert_submitted_once, calls_for
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import Proc, start_tableside

ADMIN = "crash-test-admin-pw"


@pytest.fixture
def crash_db() -> Iterator[str]:
    url = create_database_sync("ts_crash")
    yield url
    drop_database_sync(url)


async def sim_log(sim: Proc, **wait_for: str) -> dict[str, Any]:
    """The simulator's request log; with filters (key, kind, outcome, in_flight) once a request matches."""
    query = urllib.parse.urlencode({**wait_for, "wait_s": str(t(30))}) if wait_for else ""
    try:
        return dict(await asyncio.to_thread(sim.get_json, f"/_sim/log?{query}", t(40)))
    except urllib.error.HTTPError as err:
        raise AssertionError(f"the POS simulator never saw {wait_for}: {err.read()[-2000:]!r}") from None


class Cluster:
    def __init__(self, db: str, sim: Proc) -> None:
        self.db, self.sim = db, sim
        self.server: Proc | None = None

    def start(self, *, module: str = "tableside", **env: str) -> Proc:
        if self.server is not None:
            self.server.stop()  # a killed one: only its stderr file is left to drop
        self.server = start_tableside(
            self.db,
            module=module,
            TABLESIDE_ADMIN_PASSWORD=ADMIN,
            TABLESIDE_DEMO__TABLES="3",
            TABLESIDE_POS__ADAPTER="http",
            TABLESIDE_POS__URL=self.sim.base,
            TABLESIDE_POS__TIMEOUT_S="60",
            TABLESIDE_POS__BACKOFF_S="0.2",
            TABLESIDE_LIMITS__MESSAGES_PER_SECOND="1000",
            TABLESIDE_LIMITS__BURST="1000",
            **env,
        )
        return self.server

    @property
    def live(self) -> Proc:
        assert self.server is not None
        return self.server

    def kill9(self) -> None:
        self.live.kill9()

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def _call(self, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.live.base + path, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=t(10)) as resp:
            return json.loads(resp.read())

    def staff_token(self) -> str:
        return str(self._call("/api/staff/login", {"username": "admin", "password": ADMIN})["token"])

    def join(self, table_id: str = "T001") -> dict[str, Any]:
        tables = {row["table_id"]: row for row in self._call("/api/staff/tables", token=self.staff_token())}
        qr = tables[table_id]["join_url"].rsplit("/", 1)[1]
        return dict(self._call("/api/join", {"table_id": table_id, "qr": qr}))

    def orders(self, guest_token: str) -> list[dict[str, Any]]:
        return list(self._call("/api/orders", token=guest_token)["orders"])

    async def member(self, token: str) -> WsClient:
        client = await WsClient.connect(self.live.ws, token)
        await client.wait_type("welcome", timeout=10)
        return client

    async def kitchen(self, since: int | None = None) -> WsClient:
        return await kitchen_screen(self.live.ws, self.staff_token(), since)


@pytest.fixture
def cluster(crash_db: str, pos_sim: Proc) -> Iterator[Cluster]:
    c = Cluster(crash_db, pos_sim)
    c.start()
    yield c
    c.stop()


@pytest.fixture
async def store(crash_db: str) -> AsyncIterator[PostgresStore]:
    """The test's own view of the database, to see what the crash left behind."""
    s = await PostgresStore.connect(crash_db)
    yield s
    await s.close()


async def order_status(store: PostgresStore, order_id: str) -> tuple[OrderStatus, int | None]:
    order = await store.get_order(order_id)
    assert order is not None
    return order.status, order.kitchen_seq


async def place(cluster: Cluster, table_id: str, item: str = "katsu-curry") -> tuple[dict[str, Any], WsClient, str]:
    joined = cluster.join(table_id)
    phone = await cluster.member(joined["token"])
    await phone.request({"type": "add_item", "menu_item_id": item, "qty": 2})
    placed = await phone.request({"type": "place_order"})
    assert placed["type"] == "ack", placed
    return joined, phone, str(placed["order_id"])


async def kitchen_gets_exactly_once(cluster: Cluster, screen: WsClient, order_id: str) -> None:
    """``screen`` (reconnected with its cursor from before the crash) gets ``order_id`` once. A later order
    is the barrier: the feed is in seq order, so a repeat of ``order_id`` would show before it."""
    await screen.wait_type("order_placed", timeout=30, order_id=order_id)
    _, phone, later = await place(cluster, "T003", item="miso")
    await phone.wait_type("order_confirmed", timeout=15, order_id=later)
    await screen.wait_type("order_placed", timeout=15, order_id=later)
    shown = [m["order_id"] for m in screen.of_type("order_placed")]
    shown += [tk["order_id"] for tk in screen.of_type("kitchen_snapshot")[0]["tickets"]]
    assert sorted(shown) == sorted([order_id, later]), shown
    assert_submitted_once(await sim_log(cluster.sim), later)
    # A screen that starts fresh lists it once too.
    fresh = await cluster.kitchen()
    assert [tk["order_id"] for tk in fresh.of_type("kitchen_snapshot")[0]["tickets"]] == [order_id, later]
    await fresh.close()


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


async def test_startup_recovery_confirms_an_inflight_order_with_no_client(cluster: Cluster, store: PostgresStore) -> None:
    """kill -9 while the POS holds the submit (ticket made, reply not sent); restart; nobody reconnects.
    Start-up recovery alone must bring the order to ``confirmed``: one ticket, one submit then a lookup,
    the kitchen gets it once."""
    kitchen_cursor = (await cluster.kitchen()).of_type("kitchen_snapshot")[0]["cursor"]
    cluster.sim.post_json("/control", {"timeout_next": 1, "hang_ms": 600_000})
    joined, phone, order_id = await place(cluster, "T002")
    await sim_log(cluster.sim, key=order_id, kind="submit", outcome="created", in_flight="true")
    cluster.kill9()  # the POS call is provably in flight
    await phone.closed.wait()
    assert phone.of_type("order_confirmed") == []
    assert await order_status(store, order_id) == (OrderStatus.PROCESSING, None)

    cluster.start()  # no phone connects from here on
    screen = await cluster.kitchen(since=kitchen_cursor)
    await screen.wait_type("order_placed", timeout=30, order_id=order_id)
    status, seq = await order_status(store, order_id)
    assert status == OrderStatus.CONFIRMED and seq is not None
    log = await sim_log(cluster.sim)
    assert_submitted_once(log, order_id)
    assert [c["kind"] for c in calls_for(log, order_id)] == ["submit", "lookup"]
    assert [tk["order_id"] for tk in cluster.sim.get_json("/tickets")] == [order_id]
    ticket = cluster.sim.get_json(f"/orders/{order_id}")
    assert (await store.get_order(order_id)).pos_ticket_id == ticket["ticket_id"]  # type: ignore[union-attr]
    await kitchen_gets_exactly_once(cluster, screen, order_id)
    # The guest finds it settled: cart empty and unlocked, the order listed once.
    assert [o["order_id"] for o in cluster.orders(joined["token"])] == [order_id]
    back = await cluster.member(joined["token"])
    cart = back.of_type("welcome")[0]["cart"]
    assert cart["items"] == [] and not cart["cart_locked"] and cart["order_processing_status"] == "confirmed"


async def test_kill_while_pos_call_in_flight(cluster: Cluster, store: PostgresStore) -> None:
    """kill -9 while the POS has received the submit but not yet handled it (its latency); the POS then
    makes the ticket for a client that is gone. The restarted server and the guest's phone both find it
    by lookup: never a second submit."""
    cluster.sim.post_json("/control", {"latency_ms": 600_000})
    joined, phone, order_id = await place(cluster, "T002")
    await sim_log(cluster.sim, key=order_id, kind="submit", outcome="received", in_flight="true")
    cluster.kill9()
    await phone.closed.wait()
    # The POS finishes what it received (latency cut short): ticket made, reply lost.
    cluster.sim.post_json("/control", {"latency_ms": 0, "release": True})
    await sim_log(cluster.sim, key=order_id, kind="submit", outcome="created", in_flight="false")
    assert await order_status(store, order_id) == (OrderStatus.PROCESSING, None)
    cluster.start()
    await restart_and_check(cluster, joined, order_id)


async def test_kill_after_pos_accepted_before_confirmation_stored(cluster: Cluster, store: PostgresStore) -> None:
    # The simulator creates the ticket, then holds the response: we are killed while the POS has the
    # order and our database still says "processing". The guest reconnects at once.
    cluster.sim.post_json("/control", {"timeout_next": 1, "hang_ms": 600_000})
    joined, phone, order_id = await place(cluster, "T002")
    await sim_log(cluster.sim, key=order_id, kind="submit", outcome="created", in_flight="true")
    cluster.kill9()
    await phone.closed.wait()
    assert await order_status(store, order_id) == (OrderStatus.PROCESSING, None)
    cluster.start()
    await restart_and_check(cluster, joined, order_id)


async def restart_and_check(cluster: Cluster, joined: dict[str, Any], order_id: str) -> None:
    client = await cluster.member(joined["token"])
    welcome = client.of_type("welcome")[0]
    if welcome["cart"]["pending_order_id"] == order_id:
        await client.wait_type("order_confirmed", timeout=30, order_id=order_id)
    snap = await client.request({"type": "get_snapshot"})
    assert snap["cart"]["items"] == [] and not snap["cart"]["cart_locked"]
    assert snap["cart"]["order_processing_status"] == "confirmed"
    log = await sim_log(cluster.sim)
    assert_submitted_once(log, order_id)
    assert [c["kind"] for c in calls_for(log, order_id)] == ["submit", "lookup"]
    assert [tk["order_id"] for tk in cluster.sim.get_json("/tickets")] == [order_id]
    assert [o["order_id"] for o in cluster.orders(joined["token"])] == [order_id]


async def test_crash_between_confirmation_and_kitchen_push(cluster: Cluster, store: PostgresStore) -> None:
    """The server dies right after the transaction that confirms the order (kitchen_seq assigned) and
    before anyone is told: no order_confirmed, no kitchen push. After the restart the kitchen screen,
    reconnecting with its cursor, gets the order exactly once, and the POS is not called again."""
    cluster.stop()
    cluster.start(module="tests.crashpoint", TABLESIDE_TEST_CRASH_AT="after_confirm_commit")
    screen = await cluster.kitchen()
    cursor = screen.of_type("kitchen_snapshot")[0]["cursor"]
    joined, phone, order_id = await place(cluster, "T001")
    exit_code = await asyncio.to_thread(cluster.live.proc.wait, t(30))
    assert exit_code == -9, cluster.live.stderr()[-2000:]
    await phone.closed.wait()
    await screen.closed.wait()
    assert phone.of_type("order_confirmed") == [] and screen.of_type("order_placed") == []
    status, seq = await order_status(store, order_id)
    assert status == OrderStatus.CONFIRMED and seq is not None and seq > cursor

    cluster.start()
    again = await cluster.kitchen(since=cursor)
    await kitchen_gets_exactly_once(cluster, again, order_id)
    log = await sim_log(cluster.sim)
    assert_submitted_once(log, order_id)
    assert [c["kind"] for c in calls_for(log, order_id)] == ["submit"]  # confirmed: never asked again
    back = await cluster.member(joined["token"])
    cart = back.of_type("welcome")[0]["cart"]
    assert cart["items"] == [] and not cart["cart_locked"] and cart["order_processing_status"] == "confirmed"
