"""``Router.customer_event`` (docs/reservations.md, the customer websocket ``/ws/me`` on any node): the local
hook at once, other nodes through the broadcast channel (``wire.CUSTOMER``), on the in-memory bus."""

from __future__ import annotations

import asyncio
from typing import Any

from tableside.actors.directory import ActorDirectory
from tableside.actors.table import TableContext
from tableside.clock import FakeClock
from tableside.cluster import wire
from tableside.cluster.memory_bus import MemoryBroker, MemoryBus
from tableside.cluster.router import ClusterHooks, ClusterRouter, LocalRouter
from tableside.config import ClusterSettings
from tableside.menu import MenuCatalog
from tableside.pos.dummy import DummyPosAdapter
from tableside.pos.submitter import RetryPolicy
from tableside.protocol import Limits
from tableside.storage.committer import GroupCommitter
from tableside.storage.memory import MemoryStore


def hooks(seen: list[tuple[str, dict[str, Any]]]) -> ClusterHooks:
    async def reload(_ids: list[str]) -> None:
        return None

    return ClusterHooks(
        menu_changed=reload,
        kitchen_wake=lambda _rid: None,
        kitchen_message=lambda _rid, _msg: None,
        sessions_ended=lambda _sessions, _reason: None,
        customer_event=lambda user, msg: seen.append((user, msg)),
    )


def directory(store: MemoryStore, clock: FakeClock, committer: GroupCommitter, name: str) -> ActorDirectory:
    return ActorDirectory(TableContext(
        store=store, commit=committer.commit, menu=MenuCatalog(store), pos=DummyPosAdapter(0, 1.0, clock=clock),
        retry=RetryPolicy(10.0, 3, 2.0), clock=clock, on_order_confirmed=lambda _rid: None, node_id=name,
    ))


async def test_customer_events_reach_every_node_once() -> None:
    store, clock = MemoryStore(), FakeClock()
    broker, committer = MemoryBroker(clock), GroupCommitter(store)
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = {"a": [], "b": []}
    routers = {
        name: ClusterRouter(name, directory(store, clock, committer, name), MemoryBus(broker), store, clock,
                            ClusterSettings(lease_ttl_s=2.0, renew_interval_s=0.5), hooks(seen[name]), Limits())
        for name in ("a", "b")
    }
    for router in routers.values():
        await router.start()
    try:
        message = {"type": "reservation_updated", "reservation": {"status": "confirmed"}}
        routers["a"].customer_event("u-1", message)
        assert seen["a"] == [("u-1", message)]  # here at once
        for _ in range(100):
            if seen["b"]:
                break
            await asyncio.sleep(0)
        assert seen["b"] == [("u-1", message)]
        assert seen["a"] == [("u-1", message)]  # its own broadcast is not applied twice
    finally:
        for router in routers.values():
            await router.stop()


def test_the_local_router_calls_the_hook_and_the_kind_is_known() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    router = LocalRouter("solo", None, hooks(seen))  # type: ignore[arg-type]
    router.customer_event("u-1", {"type": "waitlist_offer"})
    assert seen == [("u-1", {"type": "waitlist_offer"})]
    assert wire.decode(wire.encode({"k": wire.CUSTOMER, "n": "a", "u": "u-1", "msg": {}}))["u"] == "u-1"


def test_hooks_without_a_customer_event_ignore_it() -> None:
    plain = ClusterHooks(menu_changed=lambda _ids: None,  # type: ignore[arg-type,return-value]
                         kitchen_wake=lambda _rid: None, kitchen_message=lambda _r, _m: None,
                         sessions_ended=lambda _s, _r: None)
    plain.customer_event("u-1", {})
