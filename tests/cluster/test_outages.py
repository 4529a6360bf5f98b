"""Outages of the shared services under live traffic: Redis killed and restarted empty, Postgres restarted.

The contract: nothing acknowledged is lost; while Redis is away, requests that need routing get a clear,
bounded 503 ``unavailable`` (never a hang) and ``/healthz`` says so; service is back within seconds after
Redis returns; while Postgres is away members get errors (not acks that are later lost) and acks resume."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from tests.client import WsClient, t
from tests.cluster.harness import Cluster, Phone, RedisChild
from tests.procs import Proc

WRITE_ERRORS = (AssertionError, TimeoutError, OSError, tornado.websocket.WebSocketClosedError,
                tornado.httpclient.HTTPClientError)


@pytest.fixture
def roomy_cluster(cluster_db: str, redis_child: RedisChild, pos_sim: Proc) -> Iterator[Cluster]:
    """The standard cluster with room for a few hundred cart lines (continuous writers fill a cart)."""
    c = Cluster(cluster_db, redis_child, pos_sim.base, TABLESIDE_LIMITS__MAX_CART_LINES="5000")
    c.start_all()
    yield c
    c.stop_all()


class PinnedPhone(Phone):
    """A member who stays on one node (to measure that node's service, not another node's)."""

    async def connect(self, node: str | None = None, timeout: float = 15.0) -> WsClient:
        if node is not None:
            self.node = node
        ws = await WsClient.connect(self.cluster.nodes[self.node].live.ws, self.token)
        await ws.wait_type("welcome", timeout=t(3))
        self.ws = ws
        return ws


class Writers:
    """One member per node adding uniquely-noted lines, one at a time, with a bound on each attempt."""

    def __init__(self, phones: dict[str, Phone], gated: set[str] | None = None) -> None:
        self.phones = phones
        # Members behind a load balancer that sends them to their node only while its /healthz says
        # Redis is "ok" (so a node that never says "ok" again never gets its traffic back).
        self.gated = gated or set()
        self.acked: dict[str, float] = {}  # note -> when acked (monotonic)
        self.acked_by: dict[str, list[float]] = {name: [] for name in phones}
        self.errors: dict[str, list[tuple[float, str]]] = {name: [] for name in phones}
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write(name, phone)) for name, phone in self.phones.items()]

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*self._tasks)

    async def _write(self, name: str, phone: Phone) -> None:
        i = 0
        while not self.stopping:
            if name in self.gated:
                health = await asyncio.to_thread(self.phones[name].cluster.health, name)
                if health["redis"] != "ok":
                    if phone.ws is not None:
                        await phone.ws.close()
                        phone.ws = None
                    await asyncio.sleep(0.1)
                    continue
            i += 1
            note = f"{name}-{i}"
            try:
                reply = await asyncio.wait_for(
                    phone.request({"type": "add_item", "menu_item_id": "miso", "qty": 1, "note": note}, timeout=3),
                    t(4),
                )
            except WRITE_ERRORS as exc:
                kind = type(exc).__name__
                if isinstance(exc, tornado.httpclient.HTTPClientError):
                    kind = f"HTTP {exc.code}"
                self.errors[name].append((time.monotonic(), kind))
                if phone.ws is not None and not phone.ws.closed.is_set():
                    await phone.ws.close()  # a fresh connection (and routing) next time
                phone.ws = None
                await asyncio.sleep(0.1)
                continue
            now = time.monotonic()
            if reply.get("type") == "ack":
                self.acked[note] = now
                self.acked_by[name].append(now)
            else:
                self.errors[name].append((now, str(reply.get("code"))))
            await asyncio.sleep(0.05)

    def acks_between(self, name: str, start: float, end: float) -> int:
        return sum(1 for at in self.acked_by[name] if start <= at <= end)


async def final_cart(cluster: Cluster, joined: dict[str, Any], node: str) -> dict[str, Any]:
    """The cart as a brand-new connection sees it (welcome, then get_snapshot)."""
    reader = Phone(cluster, joined, node)
    await reader.connect(node, timeout=20)
    snap = await reader.request({"type": "get_snapshot"})
    await reader.close()
    cart = snap.get("cart") or snap
    assert "items" in cart, snap
    return dict(cart)


async def probe_new_socket(cluster: Cluster, node: str, token: str) -> tuple[str, float]:
    """Open a websocket to ``node``; 'ok', '503:unavailable' or another failure, and how long it took."""
    started = time.monotonic()
    try:
        ws = await asyncio.wait_for(WsClient.connect(cluster.nodes[node].live.ws, token), t(5))
    except tornado.httpclient.HTTPClientError as exc:
        body = exc.response.body if exc.response is not None and exc.response.body else b"{}"
        code = json.loads(body).get("error") if body else None
        return f"{exc.code}:{code}", time.monotonic() - started
    except (TimeoutError, OSError, tornado.websocket.WebSocketError) as exc:
        return f"failed:{exc!r}", time.monotonic() - started
    try:
        await ws.wait_type("welcome", timeout=5)
        return "ok", time.monotonic() - started
    except AssertionError as exc:
        return f"no-welcome:{exc}", time.monotonic() - started
    finally:
        await ws.close()


async def test_redis_killed_and_restarted_mid_traffic(roomy_cluster: Cluster) -> None:
    cluster = roomy_cluster
    phones = {}
    for name in ("a", "b", "c"):
        phone = PinnedPhone(cluster, cluster.join("T001", name), name)
        await phone.connect(name)
        phones[name] = phone
    group = phones["a"].group_id
    assert cluster.owner(group) == "a"
    spare = cluster.join("T001", "a")  # a member who only ever opens probe sockets
    writers = Writers(phones, gated={"c"})
    writers.start()
    await asyncio.sleep(1.0)
    assert all(writers.acked_by[n] for n in phones), writers.errors

    killed_at = time.monotonic()
    cluster.redis.kill()
    # While Redis is away: /healthz says so on every node, and a new socket on a non-owner node is
    # refused with a prompt 503 "unavailable".
    probes: list[tuple[str, float]] = []
    healths: dict[str, set[str]] = {n: set() for n in phones}
    while time.monotonic() - killed_at < 3.0:
        for name in phones:
            healths[name].add(cluster.health(name)["redis"])
        probes.append(await probe_new_socket(cluster, "b", str(spare["token"])))
        await asyncio.sleep(0.2)
    restarted_at = time.monotonic()
    cluster.redis.start()
    health_ok_after: dict[str, float] = {}

    async def watch_health() -> None:
        deadline = time.monotonic() + t(10)
        while time.monotonic() < deadline and len(health_ok_after) < 3:
            for name in phones:
                if name not in health_ok_after and (await asyncio.to_thread(cluster.health, name))["redis"] == "ok":
                    health_ok_after[name] = time.monotonic() - restarted_at
            await asyncio.sleep(0.05)

    health_watch = asyncio.get_running_loop().create_task(watch_health())

    # Service is back: a member on a non-owner node gets an ack again.
    recovered: dict[str, float] = {}
    while time.monotonic() - restarted_at < t(15) and not {"b", "c"} <= set(recovered):
        for name in ("b", "c"):
            if name not in recovered and writers.acks_between(name, restarted_at, float("inf")):
                recovered[name] = min(a for a in writers.acked_by[name] if a >= restarted_at) - restarted_at
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    await writers.stop()
    await health_watch
    print("health ok after restart (s):", health_ok_after)
    if len(health_ok_after) < 3:
        for name in set(phones) - set(health_ok_after):
            with open(str(cluster.nodes[name].live.stderr_path)) as f:
                print(name, "LOG", [ln[:300] for ln in f if '"path"' not in ln][-30:])

    print(f"\nredis outage: probes {probes}\nrecovery after restart (s): {recovered}\n"
          f"acked {len(writers.acked)}; errors per node { {n: len(e) for n, e in writers.errors.items()} }; "
          f"kinds { {n: sorted({k for _, k in e}) for n, e in writers.errors.items()} }")
    assert {"down"} <= healths["b"] and {"down"} <= healths["c"] and {"down"} <= healths["a"], healths
    assert set(health_ok_after) == {"a", "b", "c"} and max(health_ok_after.values()) < 5.0, health_ok_after
    # Every probe after the first second of the outage is a clear 503, each one bounded in time.
    assert probes, "no probe ran"
    assert all(took < t(4) for _, took in probes), probes
    late = [p for p in probes[len(probes) // 3:]]
    assert late and all(outcome == "503:unavailable" for outcome, _ in late), probes
    hangs = {n: [k for _, k in e if k == "TimeoutError"] for n, e in writers.errors.items()}
    assert not any(hangs.values()), f"attempts that hung instead of failing: {hangs}"
    assert set(recovered) == {"b", "c"}, (recovered, writers.errors)
    assert max(recovered.values()) < 5.0, recovered

    cart = await final_cart(cluster, spare, "c")
    notes = {line["note"] for line in cart["items"]}
    lost = sorted(set(writers.acked) - notes)
    assert not lost, f"acknowledged adds missing from the cart: {lost[:20]} (of {len(writers.acked)})"
    for phone in phones.values():
        await phone.close()


@pytest.fixture
def owned_postgres() -> Iterator[tuple[str, Path]]:
    """A Postgres server only this test uses (embedded, on a unix socket in its own data dir), so the
    test may stop and start it; never the shared server."""
    from tableside.storage.embedded import start_embedded_postgres, stop_embedded_postgres
    from tableside.storage.migrate import upgrade_to_head_sync

    data_dir = Path(tempfile.mkdtemp(prefix="tableside-owned-pg-"))
    url = start_embedded_postgres(data_dir)
    upgrade_to_head_sync(url)
    yield url, data_dir
    stop_embedded_postgres(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


async def test_postgres_restarted_mid_traffic(
    owned_postgres: tuple[str, Path], redis_child: RedisChild, pos_sim: Proc
) -> None:
    from tableside.storage.embedded import start_embedded_postgres, stop_embedded_postgres

    url, data_dir = owned_postgres
    cluster = Cluster(url, redis_child, pos_sim.base, TABLESIDE_LIMITS__MAX_CART_LINES="5000")
    cluster.start_all()
    try:
        phones = {}
        for name in ("a", "b", "c"):
            phone = PinnedPhone(cluster, cluster.join("T001", name), name)
            await phone.connect(name)
            phones[name] = phone
        spare = cluster.join("T001", "b")
        writers = Writers(phones)
        writers.start()
        await asyncio.sleep(1.0)
        assert all(writers.acked_by[n] for n in phones), writers.errors

        await asyncio.to_thread(stop_embedded_postgres, data_dir)
        down_at = time.monotonic()
        await asyncio.sleep(3.0)
        up_begin = time.monotonic()
        await asyncio.to_thread(start_embedded_postgres, data_dir)
        up_at = time.monotonic()
        resumed: dict[str, float] = {}
        while time.monotonic() - up_at < t(20) and len(resumed) < 3:
            for name in phones:
                after = [a for a in writers.acked_by[name] if a >= up_at]
                if name not in resumed and after:
                    resumed[name] = min(after) - up_at
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await writers.stop()
        # Stretched by a few hundred ms on each side for acks in flight when the server went / came.
        acked_while_down = [n for n, at in writers.acked.items() if down_at + 0.5 < at < up_begin]
        errors_while_down = {
            n: sorted({kind for at, kind in errs if down_at <= at <= up_at}) for n, errs in writers.errors.items()
        }
        print(f"\npostgres restart took {up_at - up_begin:.2f}s; acks resumed after (s): {resumed}; "
              f"acked {len(writers.acked)}; errors while down {errors_while_down}")
        assert not acked_while_down, acked_while_down
        assert all(errors_while_down.values()), errors_while_down
        assert set(resumed) == {"a", "b", "c"}, (resumed, writers.errors)
        assert max(resumed.values()) < 10.0, resumed
        for phone in phones.values():
            await phone.close()

        # Nothing acknowledged was only in memory: every node dies, a fresh one reads the group from Postgres.
        for name in ("a", "b", "c"):
            cluster.kill9(name)
        cluster.start("b")
        cart = await final_cart(cluster, spare, "b")
        notes = {line["note"] for line in cart["items"]}
        lost = sorted(set(writers.acked) - notes)
        assert not lost, f"acknowledged adds missing after the restart: {lost[:20]} (of {len(writers.acked)})"
    finally:
        cluster.stop_all()
