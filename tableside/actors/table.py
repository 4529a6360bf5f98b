"""``TableActor``: the one owner of a table group's cart, lock status and member connections.

Everything that changes the group goes through this actor's mailbox, one message at a time, so two
phones pressing "Place order" together are simply two messages in a row: the first locks, the second
finds the cart locked. Each change is committed (group commit) before it is acknowledged or broadcast;
the POS call runs beside the actor and its outcome comes back as a ``PosResult`` message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from tableside.actors.base import Actor, StopReason
from tableside.actors.cart import (
    IMPORT_KEYS,
    CartLine,
    GroupState,
    LineState,
    PendingOrder,
    ProcessingStatus,
    apply_ops,
    iso,
    op_record,
)
from tableside.actors.messages import (
    CloseSession,
    Command,
    Connect,
    Disconnect,
    GetCart,
    GetTableInfo,
    IdleCheck,
    ImportLines,
    KitchenStatusChanged,
    MemberSink,
    MenuChanged,
    PosResult,
    SendCart,
    TableMessage,
)
from tableside.clock import Clock
from tableside.menu import MenuCatalog
from tableside.metrics import METRICS
from tableside.pos.interface import Accepted, PosAdapter, PosOrder, Rejected, Unknown
from tableside.pos.submitter import RetryPolicy, submit_exactly_once
from tableside.protocol import (
    AddItem,
    ErrorCode,
    GetSnapshot,
    Leave,
    OutboundFrame,
    Ping,
    PlaceOrder,
    RemoveItem,
    UpdateItem,
)
from tableside.protocol import (
    server_messages as sm,
)
from tableside.protocol.delta import cart_delta
from tableside.storage.interface import (
    FencedWrite,
    GroupSnapshot,
    GroupWrite,
    MenuItem,
    OrderRecord,
    OrderStatus,
    StaleWrite,
    Store,
    TableStatus,
)

log = structlog.get_logger("tableside.table")

# Close codes sent to member sockets (4000-4999 are for applications).
CLOSE_SESSION_ENDED = 4001
CLOSE_RELOCATED = 4002  # the group moved (another activation owns it): reconnect
CLOSE_LEFT = 4003  # the member left the group (``leave``): the token is revoked, do not reconnect
LEFT_MESSAGE = "you left this table; scan the QR code to join again"


class CommandRejected(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class TableContext:
    """Collaborators a table actor needs; built once per process and shared by every actor."""

    store: Store
    commit: Callable[[GroupWrite], Awaitable[None]]
    menu: MenuCatalog
    pos: PosAdapter
    retry: RetryPolicy
    clock: Clock
    on_order_confirmed: Callable[[int], None]  # restaurant_id: wake kitchen feeds
    node_id: str = "local"  # recorded with each activation (group_state.owner_node)
    idle_seconds: float = 300.0
    max_cart_lines: int = 100
    max_members: int = 50
    # Cart batches are stored as op records; a full snapshot is written once this many changes (revisions)
    # piled up after the last one, so an activation replays at most about this many.
    snapshot_every: int = 64


class TableActor(Actor[TableMessage]):
    def __init__(self, group_id: str, table_id: str, restaurant_id: int, ctx: TableContext) -> None:
        super().__init__(f"table:{table_id}:{group_id}")
        self.group_id = group_id
        self.table_id = table_id
        self.restaurant_id = restaurant_id
        self._ctx = ctx
        self._state = GroupState()
        self._stored_revision = 0
        self._snapshot_revision = 0  # the revision of the last full snapshot stored (op records follow it)
        self._epoch = 0  # taken at activation; every write is conditional on it (fencing)
        self._closed = False
        self._sinks: dict[int, tuple[str, MemberSink]] = {}  # connection_id -> (member_id, sink)
        # The cart as last broadcast: the base of the next ``cart_delta`` (v2 members hold this cart).
        self._sent_cart: dict[str, Any] | None = None
        # member_id -> what their guest-cart import did, told once in their next welcome (memory only).
        self._import_reports: dict[str, dict[str, Any]] = {}
        # Members who left this sitting while this activation ran: a connect of theirs is checked with the
        # store even when the handshake checked their token (memory only; see ``_on_connect``).
        self._departed: set[str] = set()
        self._pos_task: asyncio.Task[None] | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._log = log.bind(table_id=table_id, group_id=group_id)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        # Activation takes the next epoch in Postgres: from here on, writes of any earlier activation of
        # this group (a paused or partitioned node) are refused, and ours until the next activation.
        activation = await self._ctx.store.activate_group(
            self.group_id, self.table_id, self.restaurant_id, self._ctx.node_id
        )
        self._epoch = activation.epoch
        snap = activation.snapshot
        if snap is not None:
            self._state = GroupState.from_snapshot(snap.revision, snap.state)
        self._snapshot_revision = self._state.revision
        for record in activation.ops:  # the cart batches committed after that snapshot
            apply_ops(self._state, record)
        self._stored_revision = self._state.revision
        self._sent_cart = self._cart()
        table = await self._ctx.store.get_table(self.table_id)
        # The table no longer points at this group (checked out, reset, removed): the sitting is over.
        self._closed = (
            table is None or table.current_group_id != self.group_id or table.status != TableStatus.OCCUPIED
        )
        if self._state.pending is not None:
            # Crash recovery: an intent was committed but its outcome never stored. Ask the POS by key
            # (also for a sitting closed meanwhile: the order must still settle exactly once).
            self._launch_pos(self._state.pending, resume=True)
        self._schedule_idle_check()
        METRICS.active_actors.inc()
        self._log.info("actor_started", revision=self._state.revision, closed=self._closed, epoch=self._epoch)

    async def on_stop(self, reason: StopReason) -> None:
        METRICS.active_actors.dec()
        if reason in (StopReason.IDLE, StopReason.SESSION_CLOSED, StopReason.SHUTDOWN):
            await self._compact()
        if self._idle_task:
            self._idle_task.cancel()
        if self._pos_task and not self._pos_task.done():
            # The intent is durable; whoever activates the group next resumes it by key.
            self._pos_task.cancel()
        if reason in (StopReason.STORAGE_CONFLICT, StopReason.FAILED, StopReason.SHUTDOWN, StopReason.RELOCATED):
            for _, sink in list(self._sinks.values()):
                sink.close(CLOSE_RELOCATED, "reconnect")
        self._sinks.clear()
        self._log.info("actor_stopped", reason=reason.value)

    async def on_failure(self, message: TableMessage, exc: Exception) -> StopReason | None:
        if isinstance(exc, FencedWrite):
            # A newer activation (another node) owns the group: deactivate at once, members reconnect.
            METRICS.fenced_writes.inc()
            self._log.warning("write_fenced", error=str(exc), epoch=self._epoch)
            return StopReason.STORAGE_CONFLICT
        if isinstance(exc, StaleWrite):
            return StopReason.STORAGE_CONFLICT
        self._log.error("table_actor_error", error=repr(exc), message=type(message).__name__)
        # The in-memory state may be ahead of what is stored: drop it; the next activation reloads.
        return StopReason.FAILED

    async def _compact(self) -> None:
        """A clean deactivation stores the state as a snapshot when op records follow the last one, so the
        next activation reads one row. Best effort: the records replay just as well (and a stop after a
        failure never writes: its state may be ahead of what is stored)."""
        if self._stored_revision <= self._snapshot_revision or self._state.revision != self._stored_revision:
            return
        try:
            await self._write()
        except Exception as exc:  # noqa: BLE001 - fenced, stale, database down: the log stays valid
            self._log.warning("snapshot_on_stop_failed", error=repr(exc))

    # -- dispatch -------------------------------------------------------------------------------------
    async def on_receive(self, message: TableMessage) -> Any:
        match message:
            case Command():
                return await self._on_command(message)
            case Connect():
                return await self._on_connect(message)
            case Disconnect():
                self._on_disconnect(message)
            case PosResult():
                await self._on_pos_result(message)
            case GetCart():
                return self._cart()
            case GetTableInfo():
                online = {member for member, _ in self._sinks.values()}
                return {"cart": self._cart(), "members_online": len(online)}
            case CloseSession():
                await self._on_close_session(message.reason)
            case MenuChanged():
                if any(line.menu_item_id in message.menu_item_ids for line in self._state.lines.values()):
                    self._broadcast_cart()
            case KitchenStatusChanged():
                self._broadcast(sm.order_status(message.order_id, message.status))
            case IdleCheck():
                self._on_idle_check()
            case ImportLines():
                return await self._on_import(message)
            case SendCart():
                frame = OutboundFrame(sm.cart_updated(self._cart()))
                for conn_id in message.connection_ids:
                    entry = self._sinks.get(conn_id)
                    if entry is not None:
                        entry[1].send(frame)
        return None

    # -- membership -----------------------------------------------------------------------------------
    def _members(self) -> list[dict[str, Any]]:
        online = {member for member, _ in self._sinks.values()}
        return [
            {"member_id": m, "name": name, "online": m in online} for m, name in self._state.members.items()
        ]

    async def _on_connect(self, msg: Connect) -> bool:
        if self._closed:
            msg.sink.send(OutboundFrame(sm.session_closed("checked_out")))
            msg.sink.close(CLOSE_SESSION_ENDED, "session closed")
            return False
        first_time = msg.member_id not in self._state.members
        if first_time:
            # The store decided at join time whether there was a place (``join_table(max_members=...)``):
            # a member whose join was accepted is never refused for lack of room here. The token must still
            # be valid (a second tab of a member who just left is not let back in): the websocket handshake
            # resolved it a moment ago (``token_checked``), so the store is asked only when nobody checked,
            # when this member left this sitting since (their handshake may have raced the leave), or when
            # the list is at the cap: then offline members whose token expired or was revoked are forgotten
            # (they no longer count there).
            at_cap = len(self._state.members) >= self._ctx.max_members
            if not msg.token_checked or at_cap or msg.member_id in self._departed:
                live = await self._ctx.store.live_members(self.group_id, self._ctx.clock.now())
                if msg.member_id not in live:
                    msg.sink.send(OutboundFrame(sm.error(None, ErrorCode.UNAUTHORIZED, "token expired or revoked")))
                    msg.sink.close(1008, "token expired or revoked")
                    return False
                if at_cap:
                    self._forget_departed_members(live)
            # In memory only, no commit of its own before the welcome: the membership is written with the
            # group's next write (a snapshot carries the member list, an op record the journaled add_member).
            # A member is only a name here: the store holds what matters (their token, which is their place
            # at the table and their right to connect). If the actor stops before that write (a crash, or an
            # idle stop of a sitting where nobody changed anything yet), the member is added again when they
            # reconnect with their token; "Guest N" numbers are then handed out again in reconnect order, so
            # a guest who only looked may come back under another number. A member who changed anything was
            # written with that change. The revision does not move: v2 members keep their delta base.
            self._state.add_member(msg.member_id)
        was_online = any(m == msg.member_id for m, _ in self._sinks.values())
        self._sinks[msg.sink.connection_id] = (msg.member_id, msg.sink)
        if self._idle_task is not None:
            # Somebody is here: no idle timer while connected (one task less per busy table).
            self._idle_task.cancel()
            self._idle_task = None
        cart = self._cart()
        if len(self._sinks) == 1:
            # Nobody else holds an older cart: the welcome's cart is the base of the next delta (so a lone
            # first member is not sent a delta from before their own join's commit).
            self._sent_cart = cart
        msg.sink.send(
            OutboundFrame(
                sm.welcome(
                    msg.member_id,
                    self.table_id,
                    self.group_id,
                    self._members(),
                    cart,
                    imported=self._import_reports.pop(msg.member_id, None),
                )
            )
        )
        if not was_online:
            self._broadcast(sm.member_joined(msg.member_id, self._members()), skip=msg.sink.connection_id)
        return True

    async def _on_import(self, msg: ImportLines) -> dict[str, Any]:
        """A guest cart brought in (``ImportLines``): one commit, one broadcast, a report for the member."""
        if msg.key in self._state.imports:
            return {"lines": 0, "skipped": [], "duplicate": True}
        # Refusals are answers, not exceptions (an exception would stop the actor): nothing is imported.
        if self._closed:
            return {"error": ErrorCode.SESSION_CLOSED.value, "message": "this sitting is closed"}
        if msg.member_id not in self._state.members:
            live = await self._ctx.store.live_members(self.group_id, self._ctx.clock.now())
            if msg.member_id not in live:
                return {"error": ErrorCode.UNAUTHORIZED.value, "message": "token expired or revoked"}
            self._state.add_member(msg.member_id)
        added = 0
        skipped: list[dict[str, Any]] = []
        for line in msg.lines:
            item = self._ctx.menu.get(line.menu_item_id)
            if item is None or item.restaurant_id != self.restaurant_id:
                reason = "unknown_item"
            elif not item.available:
                reason = "item_unavailable"
            elif self._state.pending is not None:
                reason = "cart_locked"
            elif len(self._state.lines) >= self._ctx.max_cart_lines:
                reason = "cart_full"
            elif not 1 <= line.qty <= 99:
                reason = "bad_quantity"
            else:
                self._new_line(item, line.qty, line.note, msg.member_id)  # the menu's price, not the guest cart's
                added += 1
                continue
            skipped.append({"menu_item_id": line.menu_item_id, "name": item.name if item else "", "reason": reason})
        if added and self._state.status in (ProcessingStatus.CONFIRMED, ProcessingStatus.FAILED):
            self._state.status = ProcessingStatus.IDLE
        self._state.imports = [*self._state.imports, msg.key][-IMPORT_KEYS:]
        await self._commit()
        if added:
            self._broadcast_cart()
        report = {"lines": added, "skipped": skipped}
        self._import_reports[msg.member_id] = report
        self._log.info("guest_cart_imported", member_id=msg.member_id, lines=added, skipped=len(skipped))
        return {**report, "duplicate": False}

    def _forget_departed_members(self, live: set[str]) -> None:
        online = {member for member, _ in self._sinks.values()}
        gone = [m for m in self._state.members if m not in live and m not in online]
        for member_id in gone:
            self._state.remove_member(member_id)
        if gone:
            self._log.info("members_expired", count=len(gone))
            for member_id in gone:
                self._broadcast(sm.member_left(member_id, self._members()))

    async def _on_leave(self, cmd: Command) -> dict[str, Any]:
        """``leave``: revoke the member's token(s) (their place is free at once), drop them from the members
        list, answer, close every socket of theirs with ``session_closed {reason: "left"}`` and tell the
        others ``member_left``. Idempotent: leaving twice answers ``ack`` again and changes nothing."""
        member_id = cmd.member_id
        rid = cmd.message.request_id
        if self._closed:
            return self._reply(cmd, sm.error(rid, ErrorCode.SESSION_CLOSED, "this sitting is closed"))
        await self._ctx.store.revoke_member(self.group_id, member_id)
        self._departed.add(member_id)
        if self._state.remove_member(member_id):
            await self._commit()
        answer = self._reply(cmd, sm.ack(rid, self._state.revision))
        frame = OutboundFrame(sm.session_closed("left"))
        for conn_id, (m, sink) in list(self._sinks.items()):
            if m == member_id:
                del self._sinks[conn_id]
                sink.send(frame)
                sink.close(CLOSE_LEFT, "left the table")
        self._log.info("member_left_group", member_id=member_id)
        self._broadcast(sm.member_left(member_id, self._members()))
        if not self._sinks:
            self._schedule_idle_check()
        return answer

    def _on_disconnect(self, msg: Disconnect) -> None:
        if self._sinks.pop(msg.sink.connection_id, None) is None:
            return
        if not any(m == msg.member_id for m, _ in self._sinks.values()):
            self._broadcast(sm.member_left(msg.member_id, self._members()))
        if not self._sinks:
            self._schedule_idle_check()

    # -- commands ---------------------------------------------------------------------------------
    def is_batchable(self, message: TableMessage) -> bool:
        # Cart edits (and reads) queued behind each other share one commit and one broadcast;
        # place_order stays on its own because it talks to the order counter and the POS, leave because it
        # revokes the member's token in the store.
        return isinstance(message, Command) and not isinstance(message.message, PlaceOrder | Leave)

    async def on_receive_batch(self, messages: list[TableMessage]) -> list[Any]:
        answers: list[tuple[Command, dict[str, Any] | None]] = []
        changed = False
        for message in messages:
            assert isinstance(message, Command)
            answer, mutated = self._apply_cart_command(message)
            answers.append((message, answer))
            changed = changed or mutated
        if changed:
            await self._write_ops()
            cart = self._broadcast_cart()
            # A snapshot asked for within the batch shows the batch's end (what the broadcast told): a v2
            # client that waits for it is then in step with the deltas that follow.
            answers = [
                (cmd, sm.snapshot(cmd.message.request_id, cart) if isinstance(cmd.message, GetSnapshot) else answer)
                for cmd, answer in answers
            ]
        return [self._reply(cmd, answer) for cmd, answer in answers]

    async def _on_command(self, cmd: Command) -> dict[str, Any]:
        msg = cmd.message
        if isinstance(msg, Leave):
            return await self._on_leave(cmd)
        if isinstance(msg, PlaceOrder):
            if self._closed:
                return self._reply(cmd, sm.error(msg.request_id, ErrorCode.SESSION_CLOSED, "this sitting is closed"))
            if cmd.member_id not in self._state.members:
                return self._reply(cmd, sm.error(msg.request_id, ErrorCode.FORBIDDEN, LEFT_MESSAGE))
            previous = self._state.answered(cmd.member_id, msg.request_id)
            if previous is not None:
                METRICS.duplicate_requests.inc()
                return self._reply(cmd, previous)
            try:
                return await self._place_order(cmd, msg)
            except CommandRejected as rej:
                METRICS.errors.labels(code=rej.code.value).inc()
                return self._reply(cmd, sm.error(msg.request_id, rej.code, rej.message))
        results = await self.on_receive_batch([cmd])
        return dict(results[0])

    def _apply_cart_command(self, cmd: Command) -> tuple[dict[str, Any] | None, bool]:
        """Apply one cart command in memory. Returns (answer, changed); the caller commits before
        sending any answer, so an ``ack`` always means committed."""
        msg = cmd.message
        rid = msg.request_id
        if isinstance(msg, Ping):
            return sm.pong(rid), False
        if isinstance(msg, GetSnapshot):
            return sm.snapshot(rid, self._cart()), False
        if self._closed:
            return sm.error(rid, ErrorCode.SESSION_CLOSED, "this sitting is closed"), False
        if cmd.member_id not in self._state.members:
            # A frame that was on its way while the member left (their sockets are being closed).
            return sm.error(rid, ErrorCode.FORBIDDEN, LEFT_MESSAGE), False
        previous = self._state.answered(cmd.member_id, rid)
        if previous is not None:
            METRICS.duplicate_requests.inc()
            return previous, False
        try:
            match msg:
                case AddItem():
                    self._add_item(cmd.member_id, msg)
                case UpdateItem():
                    self._update_item(msg.line_id, msg.qty)
                case RemoveItem():
                    self._update_item(msg.line_id, 0)
                case _:
                    raise CommandRejected(ErrorCode.UNKNOWN_TYPE, "not a cart command")
        except CommandRejected as rej:
            METRICS.errors.labels(code=rej.code.value).inc()
            return sm.error(rid, rej.code, rej.message), False
        revision = self._bump()
        if rid is None:
            return None, True
        answer = sm.ack(rid, revision)
        self._state.remember(cmd.member_id, rid, answer)
        return answer, True

    def _reply(self, cmd: Command, answer: dict[str, Any] | None) -> dict[str, Any]:
        if answer is None:
            return {}
        if cmd.sink is not None and cmd.message.request_id is not None:
            cmd.sink.send(OutboundFrame(answer))
        return answer

    def _require_unlocked(self) -> None:
        pending = self._state.pending  # the cart is locked exactly while an order is pending
        if pending is not None:
            raise CommandRejected(
                ErrorCode.CART_LOCKED, f"Order being processed by {self._state.member_name(pending.placed_by)}"
            )

    def _add_item(self, member_id: str, msg: AddItem) -> None:
        self._require_unlocked()
        item = self._ctx.menu.get(msg.menu_item_id)
        if item is None or item.restaurant_id != self.restaurant_id:
            raise CommandRejected(ErrorCode.UNKNOWN_ITEM, f"no menu item {msg.menu_item_id!r}")
        if not item.available:
            raise CommandRejected(ErrorCode.ITEM_UNAVAILABLE, f"{item.name} is not available right now")
        if len(self._state.lines) >= self._ctx.max_cart_lines:
            raise CommandRejected(ErrorCode.BAD_REQUEST, "the cart is full")
        self._new_line(item, msg.qty, msg.note, member_id)
        if self._state.status in (ProcessingStatus.CONFIRMED, ProcessingStatus.FAILED):
            self._state.set_status(ProcessingStatus.IDLE)

    def _new_line(self, item: MenuItem, qty: int, note: str, member_id: str) -> CartLine:
        """A cart line of ``item`` priced from the menu (never from the client)."""
        return self._state.add_line(item.menu_item_id, item.name, qty, item.price, note, member_id)

    def _update_item(self, line_id: str, qty: int) -> None:
        self._require_unlocked()
        line = self._state.lines.get(line_id)
        if line is None:
            raise CommandRejected(ErrorCode.NOT_FOUND, f"no cart line {line_id!r}")
        if qty == 0:
            self._state.remove_line(line_id)
        else:
            self._state.set_qty(line_id, qty)

    # -- place_order ----------------------------------------------------------------------------------
    async def _place_order(self, cmd: Command, msg: PlaceOrder) -> dict[str, Any]:
        started = time.perf_counter()
        rid = msg.request_id
        pending = self._state.pending
        if pending is not None:
            if pending.unresolved and (self._pos_task is None or self._pos_task.done()):
                # The POS outcome was never learned: a retry resumes the same intent under the same key,
                # so at most one ticket can ever exist for it.
                pending.unresolved = False
                self._state.status = ProcessingStatus.PROCESSING
                answer = sm.ack(rid, self._state.revision + 1, order_id=pending.order_id)
                await self._commit(cmd.member_id, rid, answer)
                reply = self._reply(cmd, answer)  # the ack first: nothing else runs between commit and ack
                self._broadcast_locked(pending)
                self._launch_pos(pending, resume=True)
                return reply
            raise CommandRejected(
                ErrorCode.ORDER_IN_PROGRESS,
                f"Order {pending.order_id} is being processed by {self._state.member_name(pending.placed_by)}",
            )
        lines = self._state.orderable_lines()
        if not lines:
            raise CommandRejected(ErrorCode.EMPTY_CART, "the cart is empty")
        unavailable = [line.name for line in lines if line.menu_item_id in self._ctx.menu.unavailable]
        if unavailable:
            raise CommandRejected(ErrorCode.ITEM_UNAVAILABLE, "not available right now: " + ", ".join(unavailable))
        total = sum(line.qty * line.unit_price for line in lines)
        if msg.total is not None and msg.total != total:
            raise CommandRejected(ErrorCode.TOTAL_MISMATCH, f"the cart total is {total}, not {msg.total}")

        now = self._ctx.clock.now()
        # The number is taken by the store in the intent's one statement (``intent_number``), so numbers of a
        # restaurant increase in the order intents commit, across nodes, and a refused or failed commit
        # consumes none. The intent is written as an op record that leaves the number to the store; until
        # the commit answers, the pending order has no id.
        pending = PendingOrder(
            order_id="",
            order_number=0,
            placed_by=cmd.member_id,
            special_instructions=msg.special_instructions,
            total=total,
            started_at=now,
        )
        prefix = f"ORD-{self.restaurant_id}-"
        self._state.start_intent(prefix, pending, [line.line_id for line in lines])
        revision = self._bump()
        self._state.journal_intent_ack(cmd.member_id, rid, revision)
        answers: list[dict[str, Any]] = []

        def intent_number(number: int) -> None:
            pending.order_id = f"{prefix}{number}"
            pending.order_number = number
            answer = sm.ack(rid, revision, order_id=pending.order_id)
            self._state.remember(cmd.member_id, rid, answer)
            answers.append(answer)

        # The intent (order row, status processing, idempotency key = order id) is durable before the POS
        # hears of it: a crash from here on is recovered by asking the POS about this key.
        await self._write_intent(replace(self._order_record(pending, OrderStatus.PROCESSING), order_id=prefix), intent_number)
        # The ack goes out first, right after the commit; the broadcasts' encodings, the metrics and the log
        # line follow it instead of delaying it.
        reply = self._reply(cmd, answers[0])
        METRICS.place_order_seconds.observe(time.perf_counter() - started)
        self._launch_pos(pending, resume=False)
        self._broadcast_locked(pending)
        self._log.info("order_intent", order_id=pending.order_id, member_id=cmd.member_id, total=total)
        return reply

    def _broadcast_locked(self, pending: PendingOrder) -> None:
        name = self._state.member_name(pending.placed_by)
        self._broadcast(
            sm.cart_locked(
                pending.placed_by,
                pending.order_id,
                f"Order being processed by {name}",
                iso(self._ctx.clock.now()),
            )
        )
        self._broadcast_cart()

    def _order_items(self) -> list[dict[str, Any]]:
        return [
            {
                "line_id": line.line_id,
                "menu_item_id": line.menu_item_id,
                "name": line.name,
                "qty": line.qty,
                "unit_price": line.unit_price,
                "note": line.note,
                "added_by": line.added_by,
            }
            for line in self._state.lines.values()
            if line.state == LineState.LOCKED
        ]

    def _order_record(self, pending: PendingOrder, status: OrderStatus, **changes: Any) -> OrderRecord:
        record = OrderRecord(
            order_id=pending.order_id,
            order_number=pending.order_number,
            restaurant_id=self.restaurant_id,
            table_id=self.table_id,
            group_id=self.group_id,
            status=status,
            items=self._order_items(),
            total=pending.total,
            special_instructions=pending.special_instructions,
            placed_by=pending.placed_by,
            created_at=pending.started_at,
        )
        for key, value in changes.items():
            setattr(record, key, value)
        return record

    def _launch_pos(self, pending: PendingOrder, *, resume: bool) -> None:
        order = PosOrder(
            order_id=pending.order_id,
            order_number=pending.order_number,
            restaurant_id=self.restaurant_id,
            table_id=self.table_id,
            items=[
                {k: item[k] for k in ("menu_item_id", "name", "qty", "unit_price", "note")}
                for item in self._order_items()
            ],
            total=pending.total,
            special_instructions=pending.special_instructions,
        )
        ref = self.ref
        ctx = self._ctx
        order_log = self._log.bind(order_id=pending.order_id)

        async def call_pos() -> None:
            # Runs beside the actor: the mailbox keeps flowing (edits get cart_locked meanwhile).
            try:
                outcome = await submit_exactly_once(ctx.pos, order, ctx.retry, ctx.clock, resume=resume, log=order_log)
            except Exception as exc:  # an adapter bug must still settle the order
                outcome = Unknown(f"adapter error: {exc!r}")
            ref.tell(PosResult(order.order_id, outcome))

        self._pos_task = asyncio.get_running_loop().create_task(call_pos(), name=f"pos:{order.order_id}")

    async def _on_pos_result(self, msg: PosResult) -> None:
        await self._settle(msg)
        if self._closed:
            self.request_stop(StopReason.SESSION_CLOSED)

    async def _settle(self, msg: PosResult) -> None:
        pending = self._state.pending
        if pending is None or pending.order_id != msg.order_id:
            return  # a late answer for an order that was settled already
        outcome = msg.outcome
        now = self._ctx.clock.now()
        if isinstance(outcome, Accepted):
            order = self._order_record(
                pending, OrderStatus.CONFIRMED, pos_ticket_id=outcome.ticket_id, confirmed_at=now
            )
            items = order.items
            for line_id in [i["line_id"] for i in items]:
                del self._state.lines[line_id]
            self._state.pending = None
            self._state.status = ProcessingStatus.CONFIRMED
            self._state.last_order_id = pending.order_id
            await self._commit(order=order)
            METRICS.orders.labels(outcome="confirmed").inc()
            self._log.info("order_confirmed", order_id=pending.order_id, ticket_id=outcome.ticket_id)
            self._broadcast(
                sm.order_confirmed(
                    pending.order_id, pending.order_number, "Order placed successfully!", pending.total, items
                )
            )
            self._broadcast_cart()
            self._ctx.on_order_confirmed(self.restaurant_id)
        elif isinstance(outcome, Rejected):
            order = self._order_record(pending, OrderStatus.FAILED, error=outcome.reason)
            for line in self._state.lines.values():
                if line.state == LineState.LOCKED:
                    line.state = LineState.PENDING
            self._state.pending = None
            self._state.status = ProcessingStatus.FAILED
            self._state.last_error = outcome.reason
            await self._commit(order=order)
            METRICS.orders.labels(outcome="failed").inc()
            self._log.info("order_failed", order_id=pending.order_id, error=outcome.reason)
            self._broadcast(
                sm.order_failed(
                    pending.order_id, outcome.reason, f"Order failed: {outcome.reason}. Tap to retry.", True
                )
            )
            self._broadcast_cart()
        else:
            # Outcome unknown after every retry: keep the lines locked and the intent open, so the only
            # way forward is resuming this same key (never a second ticket).
            pending.unresolved = True
            self._state.status = ProcessingStatus.FAILED
            self._state.last_error = outcome.reason
            await self._commit()
            METRICS.orders.labels(outcome="unknown").inc()
            self._log.warning("order_outcome_unknown", order_id=pending.order_id, reason=outcome.reason)
            self._broadcast(
                sm.order_failed(
                    pending.order_id,
                    "pos_unreachable",
                    "We could not confirm your order yet. Tap to retry.",
                    True,
                )
            )
            self._broadcast_cart()

    # -- session end ------------------------------------------------------------------------------------
    async def _on_close_session(self, reason: str) -> None:
        self._closed = True
        frame = OutboundFrame(sm.session_closed(reason))
        for _, sink in list(self._sinks.values()):
            sink.send(frame)
            sink.close(CLOSE_SESSION_ENDED, "session closed")
        self._sinks.clear()
        if self._pos_task is None or self._pos_task.done():
            self.request_stop(StopReason.SESSION_CLOSED)
        # else: stay until the POS answers so the order settles; _on_pos_result stops us then.

    def _schedule_idle_check(self) -> None:
        if self._idle_task is not None and not self._idle_task.done():
            return
        self._idle_task = self.tell_later(self._ctx.clock.sleep, self._ctx.idle_seconds, IdleCheck())

    def _on_idle_check(self) -> None:
        busy = self._sinks or (self._pos_task is not None and not self._pos_task.done())
        if busy:
            self._idle_task = None
            if not self._sinks:
                self._schedule_idle_check()
            return
        self.request_stop(StopReason.IDLE)

    # -- helpers ----------------------------------------------------------------------------------------
    def _cart(self) -> dict[str, Any]:
        return self._state.view(self._ctx.menu.unavailable)

    def _broadcast_cart(self) -> dict[str, Any]:
        """Tell every member the cart: v1 sockets the whole cart (``cart_updated``), v2 sockets what changed
        since the cart broadcast before (``cart_delta``); one frame, each form encoded at most once."""
        cart = self._cart()
        before = self._sent_cart
        self._sent_cart = cart
        full = sm.cart_updated(cart)
        if before is None:
            self._broadcast(full)  # no base (not reached after on_start): v2 sockets take the whole cart too
        else:
            delta = sm.cart_delta(cart["revision"], before["revision"], cart_delta(before, cart))
            self._broadcast(full, v2=delta)
        return cart

    def _broadcast(self, message: dict[str, Any], skip: int | None = None, v2: dict[str, Any] | None = None) -> None:
        frame = OutboundFrame(message, v2)  # encoded once per wire format and form, shared by every member
        for conn_id, (_, sink) in self._sinks.items():
            if conn_id != skip:
                sink.send(frame)
        METRICS.broadcasts.inc()

    def _bump(self) -> int:
        """Advance the in-memory revision for one change; ``_write`` makes it durable."""
        return self._state.touch(self._ctx.clock.now())

    async def _write_ops(self) -> None:
        """Commit a cart batch: as an op record (the journal since the last write), or as a full snapshot
        when ``snapshot_every`` changes piled up since the last one."""
        if self._state.revision - self._snapshot_revision >= self._ctx.snapshot_every:
            await self._write()
            return
        await self._write_record(op_record(self._state, self._stored_revision))

    async def _write_intent(self, order: OrderRecord, intent_number: Callable[[int], None]) -> None:
        """Commit an order intent: the journal (ending with the intent's ops) as one op record whose ``n``
        the store fills in, with ``order`` (its id the prefix) numbered by the store in the same statement."""
        record = op_record(self._state, self._stored_revision)
        record["n"] = None
        await self._write_record(record, order=order, intent_number=intent_number)
        # ``intent_number`` remembered the ack (journaled again): the record holds it already.
        self._state.take_ops()

    async def _write_record(
        self,
        record: dict[str, Any],
        *,
        order: OrderRecord | None = None,
        intent_number: Callable[[int], None] | None = None,
    ) -> None:
        """Commit one op record (no snapshot: its state is left empty) with the stored revision as the
        expected ETag and this activation's epoch as the fence."""
        await self._ctx.commit(
            GroupWrite(
                snapshot=GroupSnapshot(self.group_id, self.table_id, self.restaurant_id, self._state.revision, {}),
                expected_revision=self._stored_revision,
                epoch=self._epoch,
                ops=record,
                order=order,
                intent_number=intent_number,
            )
        )
        self._stored_revision = self._state.revision

    async def _write(
        self,
        *,
        order: OrderRecord | None = None,
    ) -> None:
        """Commit the current state as a full snapshot (and an order row) with the stored revision as the
        expected ETag and this activation's epoch as the fence."""
        self._state.take_ops()  # the snapshot holds every journaled change
        snapshot = GroupSnapshot(
            group_id=self.group_id,
            table_id=self.table_id,
            restaurant_id=self.restaurant_id,
            revision=self._state.revision,
            state=self._state.to_snapshot(),
        )
        await self._ctx.commit(
            GroupWrite(
                snapshot=snapshot,
                expected_revision=self._stored_revision,
                order=order,
                epoch=self._epoch,
            )
        )
        self._stored_revision = self._snapshot_revision = self._state.revision

    async def _commit(
        self,
        member_id: str | None = None,
        request_id: str | None = None,
        answer: dict[str, Any] | None = None,
        *,
        order: OrderRecord | None = None,
    ) -> None:
        """One change as its own durable step: revision + 1, remember the answer, write."""
        self._bump()
        if member_id is not None and answer is not None:
            self._state.remember(member_id, request_id, answer)
        await self._write(order=order)
