"""The till's order sessions (docs/till.md): one ``TillActor`` per staff user on a node serialises every
change of that user's sessions, from every till of the user and from managers.

Nothing is cached: each message reads the session from the store and makes at most one conditional write
(the revision check of the store decides between nodes); the answer is given only after the write
returned, and the change is then published (``order_session_updated``, ``session_moved``) to the user's
staff sockets on every node through ``TillContext.publish``."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from tableside.actors.base import Actor, ActorDead, ActorRef, StopReason
from tableside.actors.directory import ActorRegistry
from tableside.clock import Clock
from tableside.menu import MenuCatalog
from tableside.protocol import server_messages as sm
from tableside.protocol.till import TillLine, session_view
from tableside.storage.interface import (
    OPEN_SESSION_STATUSES,
    InvalidTransition,
    OpenSessionExists,
    OrderRecord,
    OrderSession,
    OrderSessionChange,
    OrderSessionNotFound,
    OrderSessionStatus,
    Store,
    Tab,
    Transaction,
)

log = structlog.get_logger("tableside.till")


# -- errors the handlers map to HTTP ---------------------------------------------------------------------


class TillError(Exception):
    """An expected refusal (the actor keeps running)."""


class TillMoved(TillError):
    """The session's own user wrote from another till than the session's ``till_id`` (409 ``moved``)."""

    def __init__(self, session: OrderSession) -> None:
        super().__init__(f"order session {session.session_id} is on till {session.till_id}")
        self.session = session


class IfMatchRequired(TillError):
    """An update of an existing session without ``If-Match`` (428)."""

    def __init__(self, session: OrderSession) -> None:
        super().__init__(f"order session {session.session_id} exists: send If-Match with its revision")
        self.session = session


class ItemRejected(TillError):
    """A line names no menu item of the session's store (``unknown_item``) or a sold-out one newly added
    (``item_unavailable``)."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# -- messages --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the staff username, and the till it writes from (None: no ``X-Till-Id``)."""

    username: str
    till_id: str | None = None


@dataclass(frozen=True, slots=True)
class SaveOpen:
    """``POST /api/order-sessions``: create the user's open session, or update it (``expected_revision``
    required then)."""

    caller: Caller
    store_id: int
    lines: tuple[TillLine, ...]
    expected_revision: int | None


@dataclass(frozen=True, slots=True)
class Update:
    """``PUT``: ``lines`` and/or ``status`` (None: unchanged)."""

    caller: Caller
    session_id: int
    expected_revision: int
    lines: tuple[TillLine, ...] | None = None
    status: OrderSessionStatus | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    caller: Caller
    session_id: int
    expected_revision: int | None
    payment_method: str


@dataclass(frozen=True, slots=True)
class AssignToTab:
    caller: Caller
    session_id: int
    tab_id: int
    expected_revision: int | None


@dataclass(frozen=True, slots=True)
class TakeOver:
    caller: Caller  # till_id required (checked by the handler)
    session_id: int


@dataclass(frozen=True, slots=True)
class Delete:
    caller: Caller
    session_id: int


@dataclass(frozen=True, slots=True)
class LoginRecover:
    """At login: a ``pending_logout`` session comes back ``active`` on this till; an ``active`` one on
    another till stays and is reported (``active_on_other_till``)."""

    caller: Caller


@dataclass(frozen=True, slots=True)
class LogoutPark:
    """At logout: the ``active`` session becomes ``pending_logout`` when this till is its till (or none is
    named)."""

    caller: Caller


@dataclass(frozen=True, slots=True)
class _IdleCheck:
    pass


TillMessage = SaveOpen | Update | Complete | AssignToTab | TakeOver | Delete | LoginRecover | LogoutPark | _IdleCheck


@dataclass(frozen=True, slots=True)
class Saved:
    session: OrderSession
    created: bool = False


@dataclass(frozen=True, slots=True)
class Completed:
    session: OrderSession
    transaction: Transaction
    order: OrderRecord


@dataclass(frozen=True, slots=True)
class Assigned:
    session: OrderSession
    order: OrderRecord
    tab: Tab | None


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    session: OrderSession | None
    warning: dict[str, Any] | None = None


@dataclass(slots=True)
class TillContext:
    store: Store
    menu: MenuCatalog
    clock: Clock
    publish: Callable[[str, dict[str, Any]], None]  # (username, server message) to the user's staff sockets
    on_order_confirmed: Callable[[int], None]  # a kitchen ticket was made in this store: wake the feeds
    idle_seconds: float = 300.0


# -- pricing ---------------------------------------------------------------------------------------------


def price_lines(
    lines: tuple[TillLine, ...], current: list[dict[str, Any]], store_id: int, menu: MenuCatalog
) -> list[dict[str, Any]]:
    """The session's new items: a line that stays (same ``line_id``, same menu item) keeps its name and
    unit price; a new line is priced from the menu and must be an available item of ``store_id``."""
    kept = {str(line["line_id"]): line for line in current if line.get("line_id")}
    out: list[dict[str, Any]] = []
    used: set[str] = set()
    for i, line in enumerate(lines):
        old = kept.get(line.line_id) if line.line_id is not None else None
        if old is not None and old.get("menu_item_id") == line.menu_item_id:
            out.append({**_stored(old), "qty": line.qty, "note": line.note})
            used.add(str(old["line_id"]))
            continue
        item = menu.get(line.menu_item_id)
        where = f"items[{i}].menu_item_id"
        if item is None or item.restaurant_id != store_id:
            raise ItemRejected("unknown_item", f"no menu item {line.menu_item_id!r} in this store", where)
        if not item.available:
            raise ItemRejected("item_unavailable", f"{item.name} is sold out", where)
        line_id = line.line_id if line.line_id is not None and line.line_id not in kept else None
        while line_id is None or line_id in used or line_id in kept:
            line_id = "l" + secrets.token_hex(5)
        used.add(line_id)
        out.append({"line_id": line_id, "menu_item_id": item.menu_item_id, "name": item.name,
                    "unit_price": item.price, "qty": line.qty, "note": line.note})
    return out


def _stored(line: dict[str, Any]) -> dict[str, Any]:
    return {k: line.get(k) for k in ("line_id", "menu_item_id", "name", "unit_price", "qty", "note")}


# -- the actor -------------------------------------------------------------------------------------------


class TillActor(Actor[TillMessage]):
    def __init__(self, username: str, ctx: TillContext) -> None:
        super().__init__(f"till:{username}", mailbox_limit=1000)
        self.username = username
        self._ctx = ctx
        self._last = ctx.clock.monotonic()
        self._idle_task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        self._schedule_idle_check()

    async def on_stop(self, reason: StopReason) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()

    async def on_failure(self, message: TillMessage, exc: Exception) -> StopReason | None:
        return None  # every answer is read from the store again: nothing here can be left wrong

    async def on_receive(self, message: TillMessage) -> Any:
        if isinstance(message, _IdleCheck):
            self._on_idle_check()
            return None
        self._last = self._ctx.clock.monotonic()
        match message:
            case SaveOpen():
                return await self._save_open(message)
            case Update():
                return await self._update(message)
            case Complete():
                return await self._complete(message)
            case AssignToTab():
                return await self._assign(message)
            case TakeOver():
                return await self._take_over(message)
            case Delete():
                return await self._delete(message)
            case LoginRecover():
                return await self._login(message)
            case LogoutPark():
                return await self._logout(message)
        raise TypeError(f"unknown till message {message!r}")

    # -- handlers --------------------------------------------------------------------------------------
    async def _read(self, session_id: int) -> OrderSession:
        session = await self._ctx.store.get_order_session(session_id)
        if session is None:
            raise OrderSessionNotFound(str(session_id))
        return session

    def _check_till(self, session: OrderSession, caller: Caller) -> str | None:
        """The ``till_id`` the write should set (None: unchanged); TillMoved when the session's own user
        writes from another till while the session is active there."""
        if caller.username != session.user_id or caller.till_id is None:
            return None
        if session.till_id is not None and session.till_id != caller.till_id:
            if session.status == OrderSessionStatus.ACTIVE:
                raise TillMoved(session)
            if session.status in OPEN_SESSION_STATUSES:
                return caller.till_id  # a parked session is picked up by the till that writes it
            return None
        if session.till_id is None and session.status in OPEN_SESSION_STATUSES:
            return caller.till_id
        return None

    async def _save_open(self, m: SaveOpen) -> Saved:
        now = self._ctx.clock.now()
        current = await self._ctx.store.get_open_order_session(self.username)
        if current is None:
            items = price_lines(m.lines, [], m.store_id, self._ctx.menu)
            try:
                session = await self._ctx.store.create_order_session(
                    self.username, m.store_id, items, m.caller.till_id, now
                )
            except OpenSessionExists as exc:  # made on another node a moment ago
                current = exc.current
            else:
                self._changed(session)
                return Saved(session, created=True)
        if m.expected_revision is None:
            raise IfMatchRequired(current)
        return Saved(await self._write(current, m.caller, m.expected_revision, m.lines, None))

    async def _update(self, m: Update) -> Saved:
        session = await self._read(m.session_id)
        return Saved(await self._write(session, m.caller, m.expected_revision, m.lines, m.status))

    async def _write(
        self,
        session: OrderSession,
        caller: Caller,
        expected_revision: int,
        lines: tuple[TillLine, ...] | None,
        status: OrderSessionStatus | None,
    ) -> OrderSession:
        if session.status not in OPEN_SESSION_STATUSES:
            raise InvalidTransition(f"order session {session.session_id} is {session.status}")
        till = self._check_till(session, caller)
        if status is not None and status not in OPEN_SESSION_STATUSES:
            raise InvalidTransition(f"status may only move between active and pending_logout, not to {status}")
        items = price_lines(lines, session.items, session.store_id, self._ctx.menu) if lines is not None else None
        change = OrderSessionChange(items=items, status=status, till_id=till)
        updated = await self._ctx.store.update_order_session(
            session.session_id, expected_revision, change, self._ctx.clock.now()
        )
        self._changed(updated)
        return updated

    async def _complete(self, m: Complete) -> Completed:
        session = await self._read(m.session_id)
        if session.status == OrderSessionStatus.ACTIVE:
            self._check_till(session, m.caller)
        done, txn, order = await self._ctx.store.complete_order_session(
            m.session_id, m.expected_revision, m.payment_method, self._ctx.clock.now()
        )
        if done.revision != session.revision:  # this call completed it (not a retry)
            self._ctx.on_order_confirmed(done.store_id)
            self._changed(done)
        return Completed(done, txn, order)

    async def _assign(self, m: AssignToTab) -> Assigned:
        session = await self._read(m.session_id)
        if session.status == OrderSessionStatus.ACTIVE:
            self._check_till(session, m.caller)
        done, order = await self._ctx.store.assign_order_session_to_tab(
            m.session_id, m.tab_id, m.expected_revision, self._ctx.clock.now()
        )
        if done.revision != session.revision:
            self._ctx.on_order_confirmed(done.store_id)
            self._changed(done)
        return Assigned(done, order, await self._ctx.store.get_tab(m.tab_id))

    async def _take_over(self, m: TakeOver) -> Saved:
        session = await self._read(m.session_id)
        if session.status not in OPEN_SESSION_STATUSES:
            raise InvalidTransition(f"order session {session.session_id} is {session.status}")
        if session.status == OrderSessionStatus.ACTIVE and session.till_id == m.caller.till_id:
            return Saved(session)  # already here
        old_till = session.till_id
        updated = await self._ctx.store.update_order_session(
            session.session_id,
            session.revision,
            OrderSessionChange(status=OrderSessionStatus.ACTIVE, till_id=m.caller.till_id),
            self._ctx.clock.now(),
        )
        if old_till is not None and old_till != updated.till_id:
            self._ctx.publish(updated.user_id, sm.session_moved(updated.session_id, updated.till_id))
        self._changed(updated)
        return Saved(updated)

    async def _delete(self, m: Delete) -> bool:
        session = await self._read(m.session_id)
        if session.status not in OPEN_SESSION_STATUSES:
            raise InvalidTransition(f"order session {session.session_id} is {session.status}: it stays as history")
        self._check_till(session, m.caller)
        if not await self._ctx.store.delete_order_session(m.session_id):
            raise OrderSessionNotFound(str(m.session_id))
        self._ctx.publish(session.user_id, sm.order_session_updated(None, session.session_id))
        return True

    async def _login(self, m: LoginRecover) -> LoginAnswer:
        session = await self._ctx.store.get_open_order_session(self.username)
        if session is None:
            return LoginAnswer(None)
        till = m.caller.till_id
        if session.status == OrderSessionStatus.PENDING_LOGOUT:
            change = OrderSessionChange(status=OrderSessionStatus.ACTIVE, till_id=till)
            updated = await self._ctx.store.update_order_session(
                session.session_id, session.revision, change, self._ctx.clock.now()
            )
            self._changed(updated)
            return LoginAnswer(updated)
        if till is not None and session.till_id is not None and session.till_id != till:
            return LoginAnswer(session, {
                "code": "active_on_other_till",
                "till_id": session.till_id,
                "message": f"Your order is open on till {session.till_id}; take it over to carry on here.",
            })
        if till is not None and session.till_id is None:
            updated = await self._ctx.store.update_order_session(
                session.session_id, session.revision, OrderSessionChange(till_id=till), self._ctx.clock.now()
            )
            self._changed(updated)
            return LoginAnswer(updated)
        return LoginAnswer(session)

    async def _logout(self, m: LogoutPark) -> OrderSession | None:
        session = await self._ctx.store.get_open_order_session(self.username)
        if session is None or session.status != OrderSessionStatus.ACTIVE:
            return None
        till = m.caller.till_id
        if till is not None and session.till_id is not None and session.till_id != till:
            return None  # another till's session: it stays active there
        updated = await self._ctx.store.update_order_session(
            session.session_id,
            session.revision,
            OrderSessionChange(status=OrderSessionStatus.PENDING_LOGOUT),
            self._ctx.clock.now(),
        )
        self._changed(updated)
        return updated

    def _changed(self, session: OrderSession) -> None:
        self._ctx.publish(session.user_id, sm.order_session_updated(session_view(session)))

    # -- idle ------------------------------------------------------------------------------------------
    def _schedule_idle_check(self) -> None:
        self._idle_task = self.tell_later(self._ctx.clock.sleep, self._ctx.idle_seconds, _IdleCheck())

    def _on_idle_check(self) -> None:
        if self._ctx.clock.monotonic() - self._last >= self._ctx.idle_seconds and not self._mailbox:
            self.request_stop(StopReason.IDLE)
            return
        self._schedule_idle_check()


class TillDirectory(ActorRegistry[TillActor]):
    """The till actors of this node, one per staff username, made on first use; an idle one stops."""

    def __init__(self, ctx: TillContext) -> None:
        super().__init__()
        self._ctx = ctx

    def ref_for(self, username: str) -> ActorRef[TillMessage]:
        actor = self._running(username)
        if actor is None:
            actor = TillActor(username, self._ctx)
            self._start(username, actor)
        return actor.ref

    async def ask(self, username: str, message: TillMessage) -> Any:
        """Ask the user's actor. An actor that stopped (idle) just before the message was queued never saw
        it, so the message goes to a new one."""
        for attempt in range(3):
            try:
                return await self.ref_for(username).ask(message)
            except ActorDead:
                actor = self._actors.get(username)
                if actor is not None and not actor.ref.alive:
                    self._forget(username, actor)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
