"""Events for one user's sockets on every node: ``Router.till_event`` (docs/till.md, "Changes are published
to the user's staff sockets on every node") and ``Router.customer_event`` (docs/reservations.md, the
customer websocket ``/ws/me`` on any node). The local hook at once, other nodes through the broadcast channel
(``wire.TILL`` / ``wire.CUSTOMER``), on the in-memory bus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

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

# (router method and hook name, wire kind, user, message)
KINDS = [
    ("till_event", wire.TILL, "sam", {"type": "session_moved", "session_id": 7, "till_id": "B"}),
    ("customer_event", wire.CUSTOMER, "u-1", {"type": "reservation_updated", "reservation": {"status": "confirmed"}}),
]


def hooks(kind: str, seen: list[tuple[str, dict[str, Any]]]) -> ClusterHooks:
    async def reload(_ids: list[str]) -> None:
        return None

    return ClusterHooks(
        menu_changed=reload,
        kitchen_wake=lambda _rid: None,
        kitchen_message=lambda _rid, _msg: None,
        sessions_ended=lambda _sessions, _reason: None,
        **{kind: lambda user, msg: seen.append((user, msg))},  # type: ignore[arg-type]
    )


def directory(store: MemoryStore, clock: FakeClock, committer: GroupCommitter, name: str) -> ActorDirectory:
    return ActorDirectory(TableContext(
        store=store, commit=committer.commit, menu=MenuCatalog(store), pos=DummyPosAdapter(0, 1.0, clock=clock),
        retry=RetryPolicy(10.0, 3, 2.0), clock=clock, on_order_confirmed=lambda _rid: None, node_id=name,
    ))


@pytest.mark.parametrize(("kind", "wire_kind", "user", "message"), KINDS, ids=[k[0] for k in KINDS])
async def test_user_events_reach_every_node_once(kind: str, wire_kind: str, user: str, message: dict[str, Any]) -> None:
    store, clock = MemoryStore(), FakeClock()
    broker, committer = MemoryBroker(clock), GroupCommitter(store)
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = {"a": [], "b": []}
    routers = {
        name: ClusterRouter(name, directory(store, clock, committer, name), MemoryBus(broker), store, clock,
                            ClusterSettings(lease_ttl_s=2.0, renew_interval_s=0.5), hooks(kind, seen[name]), Limits())
        for name in ("a", "b")
    }
    for router in routers.values():
        await router.start()
    try:
        getattr(routers["a"], kind)(user, message)
        assert seen["a"] == [(user, message)]  # here at once
        for _ in range(100):
            if seen["b"]:
                break
            await asyncio.sleep(0)
        assert seen["b"] == [(user, message)]
        assert seen["a"] == [(user, message)]  # its own broadcast is not applied twice
    finally:
        for router in routers.values():
            await router.stop()


@pytest.mark.parametrize(("kind", "wire_kind", "user", "message"), KINDS, ids=[k[0] for k in KINDS])
def test_the_local_router_calls_the_hook_and_the_kind_is_known(
    kind: str, wire_kind: str, user: str, message: dict[str, Any]
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    router = LocalRouter("solo", None, hooks(kind, seen))  # type: ignore[arg-type]
    getattr(router, kind)(user, message)
    assert seen == [(user, message)]
    assert wire.decode(wire.encode({"k": wire_kind, "n": "a", "u": user, "msg": {}}))["u"] == user


@pytest.mark.parametrize("kind", [k[0] for k in KINDS])
def test_hooks_without_the_event_ignore_it(kind: str) -> None:
    plain = ClusterHooks(menu_changed=lambda _ids: None,  # type: ignore[arg-type,return-value]
                         kitchen_wake=lambda _rid: None, kitchen_message=lambda _r, _m: None,
                         sessions_ended=lambda _s, _r: None)
    getattr(plain, kind)("someone", {})
