"""Routing a table group to its owner: this node (a local actor) or another node (forwarding).

``LocalRouter`` is one node with no Redis: every group is local, exactly as before the cluster existed.
``ClusterRouter`` adds the Redis lease per group (``ts:lease:{group}`` = owner node id, SET NX PX, renewed),
an inbox channel per node and the broadcast channel. Handlers only see the ``Router`` interface and
``GroupRef``s; neither knows whether the actor is here."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog

from tableside.actors.base import ActorRef, StopReason
from tableside.actors.directory import ActorDirectory
from tableside.actors.messages import (
    CloseSession,
    Command,
    Connect,
    Disconnect,
    GetCart,
    GetTableInfo,
    ImportedLine,
    ImportLines,
    KitchenStatusChanged,
    MenuChanged,
    SendCart,
    TableMessage,
)
from tableside.clock import Clock
from tableside.cluster import wire
from tableside.cluster.bus import Bus, BusUnavailable
from tableside.cluster.remote import CLOSE_RELOCATED, Outbox, RemoteGroup, RemoteSink, RemoteUnavailable
from tableside.config import ClusterSettings
from tableside.metrics import METRICS
from tableside.protocol import ErrorCode, Limits, ProtocolError, parse_client_message
from tableside.protocol import server_messages as sm
from tableside.storage.interface import OrderStatus, Store

log = structlog.get_logger("tableside.cluster")

RedisStatus = Literal["ok", "down", "off"]


class GroupRef(Protocol):
    """What callers hold for a group: a local ``ActorRef`` or a ``RemoteGroup``."""

    @property
    def alive(self) -> bool: ...
    def tell(self, message: TableMessage) -> None: ...
    async def ask(self, message: TableMessage) -> Any: ...


class RoutingUnavailable(Exception):
    """The group's owner cannot be found or reached now (Redis down): a clear, retryable error."""


@dataclass(slots=True)
class ClusterHooks:
    """What other nodes' broadcasts do on this node (wired by the server; the cluster knows no handlers)."""

    menu_changed: Callable[[list[str]], Awaitable[None]]  # reload these items into the menu cache
    kitchen_wake: Callable[[int], None]  # confirmed orders may be waiting: wake the kitchen feed
    kitchen_message: Callable[[int, dict[str, Any]], None]  # send to this node's kitchen screens
    sessions_ended: Callable[[set[str], str], None]  # staff sessions (token hashes) ended elsewhere
    # A message for one staff user's till sockets on this node (username, server message).
    till_event: Callable[[str, dict[str, Any]], None] = field(default=lambda _user, _message: None)
    # A message for one customer's ``/ws/me`` sockets on this node (user id, server message).
    customer_event: Callable[[str, dict[str, Any]], None] = field(default=lambda _user, _message: None)


class Router(Protocol):
    node_id: str

    @property
    def redis_status(self) -> RedisStatus: ...
    @property
    def actors(self) -> int: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def ref_for(self, group_id: str, table_id: str, restaurant_id: int) -> GroupRef: ...
    async def claim(self, group_id: str, table_id: str, restaurant_id: int) -> bool:
        """Activate the group here if nobody owns it (crash recovery of open orders); True if it is here."""

    async def tell_group(self, group_id: str, message: CloseSession | KitchenStatusChanged) -> None:
        """Deliver to the group's actor wherever it runs; nothing when it is not active anywhere."""

    async def table_info(self, group_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """(owner node, ``GetTableInfo`` answer) for the staff board; (None, None) when not active."""

    async def owners(self, group_ids: list[str]) -> dict[str, str | None]: ...
    def menu_changed(self, menu_item_ids: tuple[str, ...]) -> None: ...
    def order_confirmed(self, restaurant_id: int) -> None: ...
    def kitchen_message(self, restaurant_id: int, message: dict[str, Any]) -> None: ...
    def sessions_ended(self, sessions: set[str], reason: str) -> None: ...
    def till_event(self, username: str, message: dict[str, Any]) -> None:
        """Send ``message`` to the staff sockets of ``username`` on every node (docs/till.md)."""

    def customer_event(self, user_id: str, message: dict[str, Any]) -> None:
        """Send ``message`` to the customer sockets (``/ws/me``) of ``user_id`` on every node
        (docs/reservations.md)."""


class LocalRouter:
    """One node, no Redis: every group lives here."""

    def __init__(self, node_id: str, directory: ActorDirectory, hooks: ClusterHooks) -> None:
        self.node_id = node_id
        self._directory = directory
        self._hooks = hooks

    @property
    def redis_status(self) -> RedisStatus:
        return "off"

    @property
    def actors(self) -> int:
        return self._directory.active_count

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self._directory.stop_all()

    async def ref_for(self, group_id: str, table_id: str, restaurant_id: int) -> GroupRef:
        return self._directory.ref_for(group_id, table_id, restaurant_id)

    async def claim(self, group_id: str, table_id: str, restaurant_id: int) -> bool:
        self._directory.ref_for(group_id, table_id, restaurant_id)
        return True

    async def tell_group(self, group_id: str, message: CloseSession | KitchenStatusChanged) -> None:
        self._directory.tell_if_active(group_id, message)

    async def table_info(self, group_id: str) -> tuple[str | None, dict[str, Any] | None]:
        ref = self._directory.find(group_id)
        if ref is None:
            return None, None
        return self.node_id, await ref.ask(GetTableInfo())

    async def owners(self, group_ids: list[str]) -> dict[str, str | None]:
        return {g: self.node_id if self._directory.find(g) is not None else None for g in group_ids}

    def menu_changed(self, menu_item_ids: tuple[str, ...]) -> None:
        self._directory.broadcast_to_all(MenuChanged(menu_item_ids))

    def order_confirmed(self, restaurant_id: int) -> None:
        self._hooks.kitchen_wake(restaurant_id)

    def kitchen_message(self, restaurant_id: int, message: dict[str, Any]) -> None:
        self._hooks.kitchen_message(restaurant_id, message)

    def sessions_ended(self, sessions: set[str], reason: str) -> None:
        self._hooks.sessions_ended(sessions, reason)

    def till_event(self, username: str, message: dict[str, Any]) -> None:
        self._hooks.till_event(username, message)

    def customer_event(self, user_id: str, message: dict[str, Any]) -> None:
        self._hooks.customer_event(user_id, message)


class ClusterRouter:
    def __init__(
        self,
        node_id: str,
        directory: ActorDirectory,
        bus: Bus,
        store: Store,
        clock: Clock,
        settings: ClusterSettings,
        hooks: ClusterHooks,
        limits: Limits,
    ) -> None:
        self.node_id = node_id
        self._directory = directory
        self._bus = bus
        self._store = store
        self._clock = clock
        self._settings = settings
        self._hooks = hooks
        self._limits = limits
        self._inbox = wire.inbox(node_id)
        self._leased: dict[str, tuple[str, int]] = {}  # group -> (table_id, restaurant_id) while active here
        self._remote: dict[str, RemoteGroup] = {}  # groups owned elsewhere that our sockets use
        # A node id names a place; the incarnation names one process there. A node restarted under the same id
        # reuses connection ids from 1: keying by incarnation keeps its new sockets apart from the dead ones.
        self.incarnation = secrets.token_hex(6)
        self._incarnations: dict[str, str] = {}  # node -> the incarnation last heard from
        self._sinks: dict[tuple[str, str, int], RemoteSink] = {}  # (node, incarnation, their conn id) -> sink
        self._outbox = Outbox(self._publish_message)
        self._asks: dict[int, asyncio.Future[Any]] = {}
        self._ask_ids = itertools.count(1)
        self._streams = itertools.count(1)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- status --------------------------------------------------------------------------------------
    @property
    def redis_status(self) -> RedisStatus:
        return "ok" if self._bus.up else "down"

    @property
    def actors(self) -> int:
        return self._directory.active_count

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._bus.start(
            [self._inbox, wire.BROADCAST_CHANNEL],
            self._on_bus_message,
            on_published=self._on_published,
            on_reconnect=self._on_reconnect,
        )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._inbox_loop(), name="cluster-inbox"))

    def background_loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """Long-lived loops for the server's supervisor (restarted if they die)."""
        return {"cluster-leases": self._lease_loop, "cluster-orphans": self._orphan_loop}

    async def stop(self) -> None:
        """Graceful: stop the actors (their members, here and on other nodes, get the relocation code),
        send what is queued, release our leases, tell the others we are gone."""
        self._stopping = True
        for remote in list(self._remote.values()):
            remote.close_all("node stopping")
        self._remote.clear()
        leased = list(self._leased)
        await self._directory.stop_all()
        self._outbox.flush()
        try:
            await self._bus.release([wire.lease_key(g) for g in leased], self.node_id)
        except BusUnavailable:
            pass  # they expire after the TTL
        self._publish_message(wire.BROADCAST_CHANNEL, {"k": wire.GONE, "n": self.node_id})
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fut in self._asks.values():
            if not fut.done():
                fut.set_exception(RemoteUnavailable("*", "node stopping"))
        await self._bus.close()

    # -- routing -------------------------------------------------------------------------------------
    async def ref_for(self, group_id: str, table_id: str, restaurant_id: int) -> GroupRef:
        local = self._directory.find(group_id)
        if local is not None:
            return local
        remote = self._remote.get(group_id)
        if remote is not None and remote.alive:
            return remote
        key = wire.lease_key(group_id)
        try:
            for _ in range(3):
                holder = (await self._bus.holders([key]))[0]
                if holder is None or holder == self.node_id:
                    if await self._bus.acquire(key, self.node_id, self._settings.lease_ttl_s):
                        return self._activate(group_id, table_id, restaurant_id)
                    continue  # taken meanwhile: look again
                if await self._bus.receivers(wire.inbox(holder)) == 0:
                    # The holder's inbox has no subscriber: its process is gone. Safe to take over early
                    # (its writes are fenced by the epoch we take at activation anyway).
                    if await self._bus.take_over(key, holder, self.node_id, self._settings.lease_ttl_s):
                        METRICS.takeovers.inc()
                        log.info("lease_taken_over", group_id=group_id, dead_node=holder)
                        return self._activate(group_id, table_id, restaurant_id)
                    continue
                # Another socket of this group may have been routed while we awaited Redis: share its
                # RemoteGroup. Two would each hold sockets, but frames are delivered to the registered one
                # only, so the other's sockets would go silent.
                existing = self._remote.get(group_id)
                if existing is not None and existing.alive and existing.owner == holder:
                    return existing
                remote = RemoteGroup(self, group_id, table_id, restaurant_id, holder, self._clock.monotonic())
                self._remote[group_id] = remote
                return remote
        except BusUnavailable as exc:
            raise RoutingUnavailable("cluster routing unavailable (Redis unreachable); retry shortly") from exc
        raise RoutingUnavailable(f"group {group_id}: its lease keeps changing hands; retry")

    async def claim(self, group_id: str, table_id: str, restaurant_id: int) -> bool:
        if self._directory.find(group_id) is not None:
            return True
        key = wire.lease_key(group_id)
        try:
            holder = (await self._bus.holders([key]))[0]
            if holder not in (None, self.node_id) and await self._bus.receivers(wire.inbox(holder)) > 0:
                return False
            taken = (
                await self._bus.take_over(key, holder, self.node_id, self._settings.lease_ttl_s)
                if holder is not None
                else await self._bus.acquire(key, self.node_id, self._settings.lease_ttl_s)
            )
        except BusUnavailable:
            return False
        if taken:
            self._activate(group_id, table_id, restaurant_id)
        return taken

    def _activate(self, group_id: str, table_id: str, restaurant_id: int) -> ActorRef[TableMessage]:
        ref = self._directory.ref_for(group_id, table_id, restaurant_id)
        if group_id not in self._leased:
            self._leased[group_id] = (table_id, restaurant_id)
            self._outbox.new_stream(group_id, f"{self.node_id}/{next(self._streams)}")
            ref.on_stopped(lambda reason: self._deactivated(group_id, ref, reason))
        return ref

    def _deactivated(self, group_id: str, ref: ActorRef[TableMessage], reason: StopReason | None) -> None:
        if self._directory.find(group_id) is not None:
            return  # already active again (a newer actor): keep the lease
        self._leased.pop(group_id, None)
        self._outbox.flush()  # the closes the actor sent its remote members go out before the lease does
        self._outbox.forget_group(group_id)
        for key in [k for k, s in self._sinks.items() if s.group_id == group_id]:
            del self._sinks[key]
        if self._stopping or reason in (StopReason.RELOCATED, StopReason.STORAGE_CONFLICT):
            return  # not ours any more (or released in one go by stop())
        asyncio.get_running_loop().create_task(self._release(group_id))

    async def _release(self, group_id: str) -> None:
        if group_id in self._leased:
            return  # activated here again meanwhile: the lease is still ours
        try:
            await self._bus.release([wire.lease_key(group_id)], self.node_id)
        except BusUnavailable:
            pass  # it expires after the TTL

    def forget_remote(self, remote: RemoteGroup) -> None:
        if self._remote.get(remote.group_id) is remote and not remote.sockets:
            del self._remote[remote.group_id]

    # -- group messages from handlers ------------------------------------------------------------------
    async def tell_group(self, group_id: str, message: CloseSession | KitchenStatusChanged) -> None:
        if self._directory.tell_if_active(group_id, message):
            return
        try:
            holder = (await self._bus.holders([wire.lease_key(group_id)]))[0]
        except BusUnavailable as exc:
            raise RoutingUnavailable("cluster routing unavailable (Redis unreachable); retry shortly") from exc
        if holder is None or holder == self.node_id:
            return  # not active anywhere (our own lease with no actor: it is stopping)
        if isinstance(message, CloseSession):
            body: dict[str, Any] = {"what": "close", "reason": message.reason}
        else:
            body = {"what": "kitchen_status", "order_id": message.order_id, "status": message.status}
        self._publish_message(wire.inbox(holder), {"k": wire.TELL, "g": group_id, **body})

    async def table_info(self, group_id: str) -> tuple[str | None, dict[str, Any] | None]:
        local = self._directory.find(group_id)
        if local is not None:
            return self.node_id, await local.ask(GetTableInfo())
        try:
            holder = (await self._bus.holders([wire.lease_key(group_id)]))[0]
        except BusUnavailable:
            return None, None
        if holder is None or holder == self.node_id:
            return None, None
        remote = RemoteGroup(self, group_id, "", 0, holder, self._clock.monotonic())
        try:
            info: dict[str, Any] = await remote.ask(GetTableInfo())
        except RemoteUnavailable:
            return holder, None
        return holder, info

    async def owners(self, group_ids: list[str]) -> dict[str, str | None]:
        try:
            holders = await self._bus.holders([wire.lease_key(g) for g in group_ids])
        except BusUnavailable:
            return {g: self.node_id if self._directory.find(g) is not None else None for g in group_ids}
        return dict(zip(group_ids, holders, strict=True))

    def menu_changed(self, menu_item_ids: tuple[str, ...]) -> None:
        self._directory.broadcast_to_all(MenuChanged(menu_item_ids))
        self._publish_message(wire.BROADCAST_CHANNEL, {"k": wire.MENU, "n": self.node_id, "items": list(menu_item_ids)})

    def order_confirmed(self, restaurant_id: int) -> None:
        self._hooks.kitchen_wake(restaurant_id)
        self._publish_message(wire.BROADCAST_CHANNEL, {"k": wire.KITCHEN, "n": self.node_id, "r": restaurant_id})

    def kitchen_message(self, restaurant_id: int, message: dict[str, Any]) -> None:
        self._hooks.kitchen_message(restaurant_id, message)
        self._publish_message(
            wire.BROADCAST_CHANNEL, {"k": wire.KITCHEN_MSG, "n": self.node_id, "r": restaurant_id, "msg": message}
        )

    def sessions_ended(self, sessions: set[str], reason: str) -> None:
        self._hooks.sessions_ended(sessions, reason)
        self._publish_message(
            wire.BROADCAST_CHANNEL,
            {"k": wire.END_SESSIONS, "n": self.node_id, "sessions": sorted(sessions), "reason": reason},
        )

    def till_event(self, username: str, message: dict[str, Any]) -> None:
        self._hooks.till_event(username, message)
        self._publish_message(wire.BROADCAST_CHANNEL, {"k": wire.TILL, "n": self.node_id, "u": username, "msg": message})

    def customer_event(self, user_id: str, message: dict[str, Any]) -> None:
        self._hooks.customer_event(user_id, message)
        self._publish_message(
            wire.BROADCAST_CHANNEL, {"k": wire.CUSTOMER, "n": self.node_id, "u": user_id, "msg": message}
        )

    # -- sending -------------------------------------------------------------------------------------
    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self._publish_message(channel, message)

    def _publish_message(self, channel: str, message: dict[str, Any]) -> None:
        METRICS.forwarded.labels(kind=message["k"]).inc()
        self._bus.publish(channel, wire.encode(message))

    async def ask_remote(self, remote: RemoteGroup, message: dict[str, Any]) -> Any:
        qid = next(self._ask_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._asks[qid] = fut
        try:
            self._publish_message(wire.inbox(remote.owner), {**message, "q": qid})
            return await asyncio.wait_for(fut, self._settings.forward_timeout_s)
        except TimeoutError as exc:
            raise RemoteUnavailable(remote.group_id, f"{remote.owner}: no answer in time") from exc
        finally:
            self._asks.pop(qid, None)

    def _on_published(self, channel: str, receivers: int) -> None:
        if receivers > 0 or self._stopping or not channel.startswith("ts:node:"):
            return
        node = channel.removeprefix("ts:node:")
        if node == self.node_id:
            return
        # Nobody listens on that node's inbox (0) or Redis could not be reached (-1): what we sent there
        # is lost. Its members here reconnect (and are routed again); its sockets on us are forgotten.
        why = "owner gone" if receivers == 0 else "redis unreachable"
        self._relocate_remotes_of(node, why)
        if receivers == 0:
            self._node_gone(node)

    def _node_gone(self, node: str, *, except_incarnation: str | None = None) -> None:
        """Forget the sockets of a node that is gone (or of its previous process, when it came back under
        the same id): their members are offline for the actor."""
        for key, sink in list(self._sinks.items()):
            if key[0] == node and key[1] != except_incarnation:
                del self._sinks[key]
                sink.closed = True
                self._directory.tell_if_active(sink.group_id, Disconnect(sink.member_id, sink))

    def _relocate_remotes_of(self, node: str, why: str) -> None:
        """The owner ``node`` is gone or unreachable: our sockets of its groups reconnect and are routed again."""
        for remote in [r for r in self._remote.values() if r.owner == node]:
            self._remote.pop(remote.group_id, None)
            remote.close_all(why)

    def _heard_from(self, node: str, incarnation: str) -> None:
        if self._incarnations.get(node) != incarnation:
            if node in self._incarnations:
                log.info("node_restarted", node=node)
                self._node_gone(node, except_incarnation=incarnation)
            self._incarnations[node] = incarnation

    def _on_reconnect(self) -> None:
        # The subscription was down: relayed frames may be missing. Every forwarded socket reconnects and
        # gets a full welcome; our own leases are re-taken by the lease loop (or moved, and then fenced).
        for remote in list(self._remote.values()):
            remote.close_all("redis reconnected")
        self._remote.clear()

    # -- receiving -----------------------------------------------------------------------------------
    def _on_bus_message(self, channel: str, data: bytes) -> None:
        try:
            message = wire.decode(data)
        except wire.BadWireMessage as exc:
            log.error("bad_cluster_message", channel=channel, error=str(exc))
            return
        if message.get("n") == self.node_id and channel == wire.BROADCAST_CHANNEL:
            return  # our own broadcast, already applied here
        self._queue.put_nowait(message)

    async def _inbox_loop(self) -> None:
        # One message at a time, in arrival order: a member's connect, messages and disconnect reach the
        # actor in the order the member's node sent them.
        while True:
            message = await self._queue.get()
            try:
                await self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad or unexpected message never stops the inbox
                log.error("cluster_message_failed", kind=message.get("k"), error=repr(exc))

    async def _handle(self, m: dict[str, Any]) -> None:
        kind = m["k"]
        if kind == wire.OUT:
            if m.get("x") != self.incarnation:
                return  # frames for this node's previous process (same node id): not our sockets
            remote = self._remote.get(m["g"])
            if remote is not None:
                remote.deliver(m)
            return
        if kind == wire.REPLY:
            if m.get("x") != self.incarnation:
                return  # an answer to this node's previous process
            fut = self._asks.get(m["q"])
            if fut is not None and not fut.done():
                if m.get("ok"):
                    fut.set_result(m.get("v"))
                else:
                    fut.set_exception(RemoteUnavailable(str(m.get("g", "")), str(m.get("v"))))
            return
        if kind == wire.MENU:
            await self._hooks.menu_changed([str(i) for i in m["items"]])
            self._directory.broadcast_to_all(MenuChanged(tuple(str(i) for i in m["items"])))
            return
        if kind == wire.KITCHEN:
            self._hooks.kitchen_wake(int(m["r"]))
            return
        if kind == wire.KITCHEN_MSG:
            self._hooks.kitchen_message(int(m["r"]), m["msg"])
            return
        if kind == wire.END_SESSIONS:
            self._hooks.sessions_ended({str(s) for s in m["sessions"]}, str(m["reason"]))
            return
        if kind == wire.TILL:
            self._hooks.till_event(str(m["u"]), m["msg"])
            return
        if kind == wire.CUSTOMER:
            self._hooks.customer_event(str(m["u"]), m["msg"])
            return
        if kind == wire.GONE:
            node = str(m["n"])
            self._node_gone(node)
            self._relocate_remotes_of(node, "owner stopped")
            return
        await self._handle_for_owner(kind, m)

    async def _owned_ref(self, m: dict[str, Any]) -> ActorRef[TableMessage] | None:
        """The local actor for a forwarded message; activated again if the lease is still ours (it went
        idle, say); None when the group is not ours."""
        group_id = m["g"]
        ref = self._directory.find(group_id)
        if ref is not None:
            return ref
        if "t" not in m or self._stopping:
            return None
        try:
            if await self._bus.acquire(wire.lease_key(group_id), self.node_id, self._settings.lease_ttl_s):
                return self._activate(group_id, str(m["t"]), int(m["r"]))
        except BusUnavailable:
            pass
        return None

    def _sink(self, m: dict[str, Any]) -> RemoteSink | None:
        conn = m.get("c")
        if conn is None:
            return None
        key = (str(m["n"]), str(m.get("x", "")), int(conn))
        sink = self._sinks.get(key)
        if sink is None or sink.closed:
            sink = RemoteSink(self._outbox, key[0], key[1], key[2], m["g"], str(m["m"]))
            self._sinks[key] = sink
        return sink

    def _reply(self, m: dict[str, Any], ok: bool, value: Any) -> None:
        if m.get("q") is not None:
            self._publish_message(
                wire.inbox(str(m["n"])),
                {"k": wire.REPLY, "q": m["q"], "x": m.get("x"), "g": m["g"], "ok": ok, "v": value},
            )

    async def _handle_for_owner(self, kind: str, m: dict[str, Any]) -> None:
        if "x" in m:
            self._heard_from(str(m["n"]), str(m["x"]))
        if kind == wire.TELL:
            if m["what"] == "close":
                self._directory.tell_if_active(m["g"], CloseSession(str(m["reason"])))
            else:
                self._directory.tell_if_active(m["g"], KitchenStatusChanged(str(m["order_id"]), str(m["status"])))
            return
        if kind == wire.DISCONNECT:
            sink = self._sinks.pop((str(m["n"]), str(m.get("x", "")), int(m["c"])), None)
            if sink is not None:
                sink.closed = True
                self._directory.tell_if_active(m["g"], Disconnect(sink.member_id, sink))
            return
        if kind == wire.RESYNC:
            peer = (str(m["n"]), str(m.get("x", "")))
            conns = tuple(s.connection_id for (n, x, _), s in self._sinks.items() if (n, x) == peer and s.group_id == m["g"])
            self._directory.tell_if_active(m["g"], SendCart(conns))
            return
        ref = await self._owned_ref(m)
        if ref is None:
            # The forwarding node's idea of the owner is out of date: its socket reconnects and is routed
            # again; an HTTP ask gets a retryable error.
            sink = self._sink(m)
            if sink is not None:
                sink.close(CLOSE_RELOCATED, "reconnect")
                self._sinks.pop((sink.node, sink.incarnation, sink.remote_conn), None)
                self._outbox.flush()
            self._reply(m, False, "group not active here")
            return
        if kind == wire.CONNECT:
            sink = self._sink(m)
            assert sink is not None
            ref.tell(Connect(sink.member_id, sink))
        elif kind == wire.CMD:
            try:
                msg = parse_client_message(m["msg"], self._limits)
            except ProtocolError as err:  # validated on the member's node already; never trust, though
                self._reply(m, True, sm.error(err.request_id, err.code, err.message))
                return
            sink = self._sink(m)
            if m.get("q") is None:
                ref.tell(Command(str(m["m"]), sink, msg))
            else:
                self._answer_later(m, ref, Command(str(m["m"]), None, msg), msg.request_id)
        elif kind == wire.GET:
            self._answer_later(m, ref, GetCart() if m["what"] == "cart" else GetTableInfo(), None)
        elif kind == wire.IMPORT:
            lines = tuple(ImportedLine(str(i), int(q), str(n)) for i, q, n in m["lines"])
            self._answer_later(m, ref, ImportLines(str(m["m"]), lines, str(m["key"])), None)

    def _answer_later(
        self, m: dict[str, Any], ref: ActorRef[TableMessage], message: TableMessage, request_id: str | None
    ) -> None:
        """An ask from another node: put it in the actor's mailbox now (order kept), and reply when it is
        answered, without holding up the inbox (one slow actor must not delay every forwarded message)."""
        try:
            reply = ref.ask_later(message)
        except Exception as exc:  # noqa: BLE001 - a full mailbox, a stopped actor: the asker is told
            self._reply(m, False, repr(exc))
            return

        def done(fut: asyncio.Future[Any]) -> None:
            exc = fut.exception() if not fut.cancelled() else RemoteUnavailable(str(m["g"]), "cancelled")
            if exc is None:
                self._reply(m, True, fut.result())
            elif request_id is not None or isinstance(message, Command):
                self._reply(m, True, sm.error(request_id, ErrorCode.INTERNAL, f"table unavailable: {exc}"))
            else:
                self._reply(m, False, repr(exc))

        reply.add_done_callback(done)

    # -- background loops --------------------------------------------------------------------------------
    async def _lease_loop(self) -> None:
        """Every ``renew_interval_s``: renew our leases (a group whose lease another node holds now is
        deactivated at once); check that the owners of the groups we forward to still hold them; forget
        sockets of nodes that are gone; wake the kitchen feed in case a wake-up was lost."""
        while True:
            await self._clock.sleep(self._settings.renew_interval_s)
            await self._renew_once()

    async def _renew_once(self) -> None:
        groups = list(self._leased)
        try:
            held = await self._bus.renew([wire.lease_key(g) for g in groups], self.node_id, self._settings.lease_ttl_s)
        except BusUnavailable:
            held = [True] * len(groups)  # unknown: keep serving; our writes are fenced if we were replaced
        for group_id, ok in zip(groups, held, strict=True):
            if not ok:
                METRICS.leases_lost.inc()
                log.warning("lease_lost", group_id=group_id)
                ref = self._directory.find(group_id)
                if ref is not None:
                    ref.stop(StopReason.RELOCATED)
        now = self._clock.monotonic()
        for remote in [r for r in self._remote.values() if not r.sockets and now - r.created > 2 * self._settings.renew_interval_s]:
            self.forget_remote(remote)  # routed for an HTTP ask or a socket that never opened
        remotes = list(self._remote.values())
        if remotes:
            try:
                holders = await self._bus.holders([wire.lease_key(r.group_id) for r in remotes])
            except BusUnavailable:
                holders = [r.owner for r in remotes]
            for remote, holder in zip(remotes, holders, strict=True):
                if holder != remote.owner:
                    self._remote.pop(remote.group_id, None)
                    remote.close_all("owner changed")
        for node in {n for n, _, _ in self._sinks}:
            try:
                if await self._bus.receivers(wire.inbox(node)) == 0:
                    self._node_gone(node)
            except BusUnavailable:
                break
        self._hooks.kitchen_wake(0)

    async def _orphan_loop(self) -> None:
        """Every lease TTL: open orders (intent committed, POS outcome not stored) whose group nobody owns
        are claimed here, so a dead owner's POS call is resumed by key even if no member reconnects."""
        while True:
            await self._clock.sleep(self._settings.lease_ttl_s)
            await self.claim_orphans()

    async def claim_orphans(self) -> int:
        orders = await self._store.list_orders_by_status(OrderStatus.PROCESSING)
        claimed = 0
        for order in orders:
            if await self.claim(order.group_id, order.table_id, order.restaurant_id):
                claimed += 1
        return claimed
