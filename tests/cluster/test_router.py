"""``ClusterRouter`` on the in-memory bus: two nodes in one process sharing one ``MemoryStore`` and one
``MemoryBroker`` (Redis). Fast, deterministic checks of routing, forwarding, fencing and the failure paths;
the same behaviour across real processes is in the other files of this folder."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest

from tableside.actors.base import StopReason
from tableside.actors.directory import ActorDirectory
from tableside.actors.messages import CloseSession, Command, Connect, Disconnect, GetCart
from tableside.actors.table import TableContext
from tableside.clock import FakeClock
from tableside.cluster import wire
from tableside.cluster.memory_bus import MemoryBroker, MemoryBus
from tableside.cluster.remote import RemoteGroup
from tableside.cluster.router import ClusterHooks, ClusterRouter, RoutingUnavailable
from tableside.config import ClusterSettings
from tableside.demo import seed_demo
from tableside.menu import MenuCatalog
from tableside.pos.dummy import DummyPosAdapter
from tableside.pos.submitter import RetryPolicy
from tableside.protocol import AddItem, JsonCodec, Limits, OutboundFrame, PlaceOrder
from tableside.storage.committer import GroupCommitter
from tableside.storage.memory import MemoryStore


class Sock:
    _ids = 1000

    def __init__(self) -> None:
        Sock._ids += 1
        self.connection_id = Sock._ids
        self.codec = JsonCodec(Limits())
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, frame: OutboundFrame) -> None:
        self.messages.append(json.loads(frame.encoded(self.codec)))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]


async def settle(turns: int = 60) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


class World:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = FakeClock()
        self.broker = MemoryBroker(self.clock)
        self.committer = GroupCommitter(self.store)
        self.nodes: dict[str, ClusterRouter] = {}
        self.menus: dict[str, MenuCatalog] = {}
        self.kitchen_wakes: dict[str, list[int]] = {}

    async def node(self, name: str) -> ClusterRouter:
        menu = MenuCatalog(self.store)
        await menu.load([1])
        wakes: list[int] = []
        ctx = TableContext(
            store=self.store,
            commit=self.committer.commit,
            menu=menu,
            pos=DummyPosAdapter(0, 1.0, clock=self.clock),
            retry=RetryPolicy(10.0, 3, 2.0),
            clock=self.clock,
            on_order_confirmed=lambda rid: None,
            node_id=name,
        )
        directory = ActorDirectory(ctx)
        hooks = ClusterHooks(
            menu_changed=lambda _ids: menu.reload(),
            kitchen_wake=wakes.append,
            kitchen_message=lambda rid, msg: None,
            sessions_ended=lambda sessions, reason: None,
        )
        router = ClusterRouter(
            name, directory, MemoryBus(self.broker), self.store, self.clock,
            ClusterSettings(lease_ttl_s=2.0, renew_interval_s=0.5, forward_timeout_s=1.0), hooks, Limits(),
        )
        ctx.on_order_confirmed = router.order_confirmed
        await router.start()
        self.nodes[name], self.menus[name], self.kitchen_wakes[name] = router, menu, wakes
        return router

    async def join(self, table_id: str = "T001") -> Any:
        table = await self.store.get_table(table_id)
        assert table is not None
        return await self.store.join_table(
            table_id, table.qr_secret, secrets.token_hex(8), "m_" + secrets.token_hex(4), "g_" + secrets.token_hex(4),
            self.clock.now() + 3600, self.clock.now(),
        )


@pytest.fixture
async def world() -> Any:
    w = World()
    await seed_demo(w.store, 1, "Demo", 4)
    w.committer.start()
    yield w
    for router in w.nodes.values():
        await router.stop()
    await w.committer.stop()


async def connect(router: ClusterRouter, j: Any) -> tuple[Any, Sock]:
    ref = await router.ref_for(j.group_id, j.table_id, j.restaurant_id)
    sock = Sock()
    await ref.ask(Connect(j.member_id, sock))
    await settle()
    return ref, sock


async def test_the_first_node_owns_the_group_and_the_second_forwards(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join(), await world.join()
    ref_a, sock_a = await connect(a, j1)
    ref_b, sock_b = await connect(b, j2)
    assert not isinstance(ref_a, RemoteGroup) and isinstance(ref_b, RemoteGroup) and ref_b.owner == "a"
    assert world.broker.holder(wire.lease_key(j1.group_id)) == "a"
    assert sock_b.of_type("welcome") and sock_b.of_type("welcome")[0]["member_id"] == j2.member_id
    ref_b.tell(Command(j2.member_id, sock_b, AddItem("r1", "miso", 2)))
    await settle()
    assert sock_b.of_type("ack")[0]["id"] == "r1"
    carts_a, carts_b = sock_a.of_type("cart_updated"), sock_b.of_type("cart_updated")
    assert carts_a[-1] == carts_b[-1] and carts_b[-1]["cart"]["items"][0]["qty"] == 2
    # An HTTP-style ask through the forwarding node answers like a local one.
    assert (await ref_b.ask(GetCart()))["items"] == carts_a[-1]["cart"]["items"]
    # The same request id again through b is answered from the owner's memory, not applied twice.
    ref_b.tell(Command(j2.member_id, sock_b, AddItem("r1", "miso", 2)))
    await settle()
    assert len(sock_b.of_type("ack")) == 2 and len((await ref_a.ask(GetCart()))["items"]) == 1
    assert (await b.owners([j1.group_id])) == {j1.group_id: "a"}
    assert b.actors == 0 and a.actors == 1


async def test_a_broadcast_crosses_once_per_node_not_once_per_member(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    joins = [await world.join() for _ in range(5)]
    await connect(a, joins[0])
    socks = [(await connect(b, j))[1] for j in joins[1:]]
    sent: list[dict[str, Any]] = []
    original = a._bus.publish
    a._bus.publish = lambda ch, data: (sent.append(wire.decode(data)), original(ch, data))[1]  # type: ignore[method-assign]
    ref = await a.ref_for(joins[0].group_id, "T001", 1)
    await ref.ask(Command(joins[0].member_id, None, AddItem("x", "gyoza", 1)))
    await settle()
    outs = [m for m in sent if m["k"] == wire.OUT]
    assert len(outs) == 1  # one message to node b for the whole broadcast
    items = outs[0]["i"]
    assert [kind for kind, _, _ in items] == [wire.FRAME]
    assert sorted(items[0][2]) == sorted(s.connection_id for s in socks)  # the frame once, with every socket
    assert all(s.of_type("cart_updated")[-1]["cart"]["items"][0]["menu_item_id"] == "gyoza" for s in socks)


async def test_a_gap_in_the_relayed_stream_brings_the_whole_cart_again(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join(), await world.join()
    ref_a, _ = await connect(a, j1)
    ref_b, sock_b = await connect(b, j2)
    assert isinstance(ref_b, RemoteGroup)
    ref_b._next_seq += 5  # as if five messages from the owner were lost on the way
    await ref_a.ask(Command(j1.member_id, None, AddItem("x", "edamame", 1)))
    await settle()
    carts = sock_b.of_type("cart_updated")
    assert len(carts) >= 2  # the broadcast, then the resent whole cart
    assert carts[-1]["cart"]["items"][0]["menu_item_id"] == "edamame"


async def test_a_node_that_lost_the_lease_deactivates_and_its_members_reconnect(world: World) -> None:
    a = await world.node("a")
    await world.node("b")
    j = await world.join()
    ref_a, sock = await connect(a, j)
    key = wire.lease_key(j.group_id)
    world.broker.set(key, "b", 10.0)  # e.g. a was paused past its TTL and b took the group
    await a._renew_once()
    assert await asyncio.wait_for(ref_a.wait_stopped(), 1) == StopReason.RELOCATED
    assert sock.closed == (4002, "reconnect")
    assert a.actors == 0


async def test_a_dead_owners_lease_is_taken_over_at_once(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join(), await world.join()
    ref_a, sock_a = await connect(a, j1)
    await ref_a.ask(Command(j1.member_id, sock_a, AddItem("x", "miso", 1)))
    await a._bus.close()  # a's process is gone: its inbox has no subscriber (the lease is still there)
    world.nodes.pop("a")
    ref_b, sock_b = await connect(b, j2)
    assert not isinstance(ref_b, RemoteGroup)  # b took over without waiting for the TTL
    assert world.broker.holder(wire.lease_key(j1.group_id)) == "b"
    assert sock_b.of_type("welcome")[0]["cart"]["items"][0]["menu_item_id"] == "miso"  # restored from the store
    # a's actor is still in memory (a paused process): its next write is fenced, not applied.
    with pytest.raises(Exception, match="fenced"):
        await ref_a.ask(Command(j1.member_id, sock_a, AddItem("y", "gyoza", 1)))
    assert [i["menu_item_id"] for i in (await ref_b.ask(GetCart()))["items"]] == ["miso"]


async def test_sockets_of_a_node_that_is_gone_are_forgotten_by_the_owner(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join(), await world.join()
    ref_a, _ = await connect(a, j1)
    await connect(b, j2)
    info = await a.table_info(j1.group_id)
    assert info[0] == "a" and info[1] is not None and info[1]["members_online"] == 2
    await b._bus.close()
    world.nodes.pop("b")
    await a._renew_once()
    await settle()
    info = await a.table_info(j1.group_id)
    assert info[1] is not None and info[1]["members_online"] == 1


async def test_without_redis_routing_is_a_clear_error_and_local_groups_keep_working(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join("T001"), await world.join("T002")
    ref_a, sock_a = await connect(a, j1)
    world.broker.down()
    assert a.redis_status == "down"
    with pytest.raises(RoutingUnavailable):
        await b.ref_for(j1.group_id, "T001", 1)
    with pytest.raises(RoutingUnavailable):
        await a.ref_for(j2.group_id, "T002", 1)  # a new group needs a lease
    # The owner still serves its own members: every write is fenced by the epoch, not by Redis.
    await ref_a.ask(Command(j1.member_id, sock_a, AddItem("x", "miso", 1)))
    assert sock_a.of_type("ack")
    world.broker.up_again()
    await a._renew_once()  # the owner takes its lease back
    assert world.broker.holder(wire.lease_key(j1.group_id)) == "a"
    ref_b, sock_b = await connect(b, j2)
    assert sock_b.of_type("welcome")


async def test_close_and_kitchen_wakes_reach_the_owner_and_every_node(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join(), await world.join()
    _, sock_a = await connect(a, j1)
    _, sock_b = await connect(b, j2)
    await b.tell_group(j1.group_id, CloseSession("checked_out"))
    await settle()
    assert sock_a.closed == (4001, "session closed") and sock_b.closed == (4001, "session closed")
    assert sock_b.of_type("session_closed")[0]["reason"] == "checked_out"
    b.order_confirmed(1)
    await settle()
    assert world.kitchen_wakes["a"][-1:] == [1] and world.kitchen_wakes["b"][-1:] == [1]


async def test_a_graceful_stop_releases_leases_and_relocates_members(world: World) -> None:
    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join(), await world.join()
    ref_a, sock_a = await connect(a, j1)
    _, sock_b = await connect(b, j2)
    world.nodes.pop("a")
    await a.stop()
    await settle()
    assert world.broker.holder(wire.lease_key(j1.group_id)) is None
    assert sock_a.closed == (4002, "reconnect") and sock_b.closed is not None and sock_b.closed[0] == 4002
    ref, sock = await connect(b, j2)
    assert not isinstance(ref, RemoteGroup)  # b owns it now
    await ref.ask(Command(j2.member_id, sock, PlaceOrder("p", None, "")))  # empty cart: a typed error
    assert sock.of_type("error")[0]["code"] == "empty_cart"
    ref.tell(Disconnect(j2.member_id, sock))


async def test_a_node_restarted_under_the_same_id_is_a_new_peer(world: World) -> None:
    """A node that died and came back as the same node id starts its connection ids from 1 again: the owner
    must not mistake a new socket for a dead one (another member, maybe another group), and frames for the
    dead process must not reach the new one's sockets."""
    a, b = await world.node("a"), await world.node("b")
    j1, j2, j3 = await world.join(), await world.join(), await world.join()
    await connect(a, j1)
    ref_b, old_sock = await connect(b, j2)
    assert isinstance(ref_b, RemoteGroup)
    # b is killed (no disconnect reaches a) and a new process starts as "b" before a notices.
    await b._bus.close()
    world.nodes.pop("b")
    b2 = await world.node("b")
    assert b2.incarnation != b.incarnation
    new_sock = Sock()
    new_sock.connection_id = old_sock.connection_id  # the same connection id, a different member
    ref_b2 = await b2.ref_for(j3.group_id, j3.table_id, j3.restaurant_id)
    await ref_b2.ask(Connect(j3.member_id, new_sock))
    await settle()
    welcome = new_sock.of_type("welcome")
    assert welcome and welcome[0]["member_id"] == j3.member_id  # not the dead member j2
    info = await a.table_info(j1.group_id)
    assert info[1] is not None and info[1]["members_online"] == 2  # j1 and j3; j2's dead socket is forgotten
    ref_b2.tell(Command(j3.member_id, new_sock, AddItem("n1", "miso", 1)))
    await settle()
    assert new_sock.of_type("ack")[0]["id"] == "n1"
    assert not old_sock.of_type("ack")


async def test_a_guest_cart_import_through_another_node_is_one_update_and_idempotent(world: World) -> None:
    from tableside.actors.messages import ImportedLine, ImportLines

    a, b = await world.node("a"), await world.node("b")
    j1, j2 = await world.join(), await world.join()
    _, sock_a = await connect(a, j1)
    ref_b = await b.ref_for(j2.group_id, j2.table_id, j2.restaurant_id)
    assert isinstance(ref_b, RemoteGroup)
    before = len(sock_a.of_type("cart_updated"))
    lines = (ImportedLine("miso", 2, "n"), ImportedLine("nope", 1))
    answer = await ref_b.ask(ImportLines(j2.member_id, lines, "guest:x"))
    assert answer["lines"] == 1 and answer["skipped"][0]["reason"] == "unknown_item"
    await settle()
    assert len(sock_a.of_type("cart_updated")) == before + 1
    assert (await ref_b.ask(ImportLines(j2.member_id, lines, "guest:x")))["duplicate"] is True


async def test_sockets_routed_at_the_same_moment_share_one_remote_group(world: World) -> None:
    """Two sockets of one group routed concurrently on a forwarding node (both awaiting Redis) must end up
    on one RemoteGroup: frames are delivered to the registered one only, so a second would leave its
    sockets silent (seen in the cluster state machine after a node restart)."""
    a, b = await world.node("a"), await world.node("b")
    j1, j2, j3 = await world.join(), await world.join(), await world.join()
    await connect(a, j1)
    refs = await asyncio.gather(
        b.ref_for(j2.group_id, j2.table_id, j2.restaurant_id), b.ref_for(j3.group_id, j3.table_id, j3.restaurant_id)
    )
    assert refs[0] is refs[1]
    socks = [Sock(), Sock()]
    for ref, j, sock in zip(refs, (j2, j3), socks, strict=True):
        await ref.ask(Connect(j.member_id, sock))
    await settle()
    for ref, j, sock in zip(refs, (j2, j3), socks, strict=True):
        ref.tell(Command(j.member_id, sock, AddItem(f"r-{j.member_id}", "miso", 1)))
    await settle()
    assert all(sock.of_type("welcome") and sock.of_type("ack") for sock in socks)
