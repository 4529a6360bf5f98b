"""The process's collaborators, built once and injected into every handler (``initialize(services=...)``)."""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, field
from typing import Any

import structlog
import tornado.web

from tableside.accounts import CustomerAccounts
from tableside.actors.base import ActorDead
from tableside.actors.directory import ActorDirectory
from tableside.actors.messages import CloseSession, Command, ImportedLine, ImportLines, TableMessage
from tableside.actors.table import TableContext
from tableside.actors.till import TillDirectory
from tableside.auth import LoginThrottle, StaffAuth, new_id, new_token, token_hash
from tableside.clock import Clock
from tableside.cluster.router import Router, RoutingUnavailable
from tableside.cluster.session_cache import GuestSessions
from tableside.config import Settings
from tableside.menu import MenuCatalog
from tableside.metrics import METRICS, Metrics
from tableside.pos.interface import PosAdapter
from tableside.pos.submitter import RetryPolicy
from tableside.protocol import Leave, Limits, TokenBucket
from tableside.reservations import ReservationService
from tableside.server.customer_hub import CustomerHub
from tableside.server.keepalive import KeepAlive
from tableside.server.kitchen import KitchenHub
from tableside.server.till_hub import TillHub
from tableside.storage.committer import GroupCommitter
from tableside.storage.interface import JoinResult, MenuItem, Restaurant, Store, Table, TableStatus, TokenInfo

log = structlog.get_logger("tableside.server")


class ServiceUnavailable(tornado.web.HTTPError):
    """A request that needs a table group which cannot be reached now (cluster routing down, the owner
    gone): HTTP 503 ``unavailable`` with ``Retry-After``; the client retries."""

    def __init__(self, message: str) -> None:
        super().__init__(503)
        self.message = message


@dataclass(slots=True)
class KeyedRateLimiter:
    """Token buckets per key (client IP, username), bounded in how many keys it remembers."""

    rate: float
    burst: int
    max_keys: int = 10_000
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.allow(now)

    @classmethod
    def per_minute(cls, limit: int) -> KeyedRateLimiter:
        """``limit`` events a minute per key, all of them available at once."""
        return cls(limit / 60.0, limit)

    def retry_after(self, key: str) -> int:
        """Whole seconds a refused ``key`` should wait before its next try (HTTP ``Retry-After``)."""
        bucket = self._buckets.get(key)
        return max(math.ceil(bucket.wait_s()), 1) if bucket is not None else 1


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    committer: GroupCommitter
    menu: MenuCatalog
    pos: PosAdapter
    clock: Clock
    staff_auth: StaffAuth
    kitchen: KitchenHub
    directory: ActorDirectory  # this node's actors
    router: Router  # any group, here or on its owner node
    limits: Limits
    join_limiter: KeyedRateLimiter  # new members per client IP (limits.join_per_minute_per_ip)
    table_join_limiter: KeyedRateLimiter  # new members per table (limits.join_per_minute_per_table)
    accounts: CustomerAccounts  # customer accounts (seed 003's users)
    register_limiter: KeyedRateLimiter  # registrations per client IP (limits.register_per_minute_per_ip)
    guest_sessions: GuestSessions  # guest-session reads and changes, through the Redis cache when configured
    till: TillDirectory  # this node's till actors, one per staff user (docs/till.md)
    till_hub: TillHub  # this node's staff sockets, by username
    reservations: ReservationService  # bookings, payments, waitlist, chat, seating (docs/reservations.md)
    customer_hub: CustomerHub  # this node's customer sockets (/ws/me), by user id
    keepalive: KeepAlive = field(default_factory=KeepAlive)
    metrics: Metrics = METRICS
    # Failed logins per IP and per (username, IP); see LoginThrottle. Never locks the account itself.
    staff_login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # The same for customer logins, keyed by the normalised email instead of the username; its own counts.
    user_login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # New guest sessions per client IP (guest.sessions_per_minute_per_ip).
    guest_session_limiter: KeyedRateLimiter = field(default_factory=lambda: KeyedRateLimiter.per_minute(30))

    # -- stores (issue 11) ----------------------------------------------------------------------------
    async def stores(self) -> list[Restaurant]:
        """Every store of the deployment, by id."""
        return await self.store.list_restaurants()

    async def default_store_id(self) -> int:
        """The first store (lowest id): what ``/api/menu`` serves and where staff without a store and an
        admin who picked none work. Before any store exists: the configured ``demo.restaurant_id``."""
        stores = await self.store.list_restaurants()
        return stores[0].restaurant_id if stores else self.settings.demo.restaurant_id

    # -- table lifecycle (seed 000) ------------------------------------------------------------------
    def table_join_allowed(self, table_id: str, qr: str) -> bool:
        """The per-table join rate. Keyed by table *and* QR secret, so requests with a wrong secret
        (refused anyway) cannot use up the budget of the guests actually sitting at the table."""
        return self.table_join_limiter.allow(self._table_key(table_id, qr), self.clock.monotonic())

    def table_join_retry_after(self, table_id: str, qr: str) -> int:
        return self.table_join_limiter.retry_after(self._table_key(table_id, qr))

    @staticmethod
    def _table_key(table_id: str, qr: str) -> str:
        return f"{table_id}\n{qr}"

    async def join(self, table_id: str, qr: str) -> tuple[str, JoinResult]:
        """A new member of the table's group, or GroupFull when it already has
        ``limits.max_members_per_group`` live members (decided atomically by the store)."""
        token = new_token()
        now = self.clock.now()
        result = await self.store.join_table(
            table_id,
            qr,
            token_hash(token),
            new_id("m"),
            new_id("g"),
            now + self.settings.tokens.ttl_hours * 3600,
            now,
            max_members=self.settings.limits.max_members_per_group,
        )
        self.metrics.joins.inc()
        return token, result

    async def current_member(self, token: str | None, table_id: str, qr: str) -> TokenInfo | None:
        """The member ``token`` already is at this table's current sitting, if the join link (``table_id``,
        ``qr``) is opened again with it: a valid token of this table whose group is still the table's open
        group, and the right QR secret. None means: join as a new member."""
        info = await self.resolve_guest(token)
        if info is None or info.table_id != table_id:
            return None
        table = await self.store.get_table(table_id)
        if table is None or table.status != TableStatus.OCCUPIED or table.current_group_id != info.group_id:
            return None
        if not hmac.compare_digest(table.qr_secret.encode(), qr.encode()):
            return None
        return info

    async def leave(self, info: TokenInfo) -> dict[str, Any]:
        """The member leaves the group for good (the ``leave`` message, sent by the table actor): their
        tokens are revoked and their place is free. Returns the actor's answer (``ack`` or ``error``)."""
        answer: dict[str, Any] = await self.ask_group(info, Command(info.member_id, None, Leave(None)))
        return answer

    async def ask_group(self, info: TokenInfo, message: TableMessage) -> Any:
        """Ask the member's group actor, wherever it runs. A group that cannot be reached now (Redis down,
        the owner gone) is a 503 the client may retry, never a hang."""
        try:
            ref = await self.router.ref_for(info.group_id, info.table_id, info.restaurant_id)
            return await ref.ask(message)
        except (RoutingUnavailable, ActorDead) as exc:
            raise ServiceUnavailable(str(exc)) from exc

    async def bring_guest_cart(
        self, member_id: str, group_id: str, table_id: str, store_id: int, session_id: str | None
    ) -> dict[str, Any] | None:
        """The bridge (issue 11): a guest session of this table's store brings its cart into the table's
        shared cart as this member's lines, through the table's actor (one commit, one ``cart_updated``),
        then the guest cart is emptied. The import key names the session and the exact lines, so a retry
        after a crash between the import and the emptying is answered by the actor, not applied twice.
        None when there was nothing to bring (no session, another store, an empty cart)."""
        if not session_id or len(session_id) > 128:
            return None
        session = await self.guest_sessions.get(session_id, self.clock.now())
        if session is None or session.selected_store_id != store_id:
            return None
        lines = await self.store.list_guest_cart(session_id)
        if not lines:
            return None
        fingerprint = ";".join(f"{line.item_id}:{line.quantity}:{line.updated_at!r}" for line in lines)
        key = "guest:" + hashlib.sha256(f"{session_id}\n{fingerprint}".encode()).hexdigest()[:32]
        ref = await self.router.ref_for(group_id, table_id, store_id)
        imported = tuple(ImportedLine(line.menu_item_id, line.quantity) for line in lines)
        answer: dict[str, Any] = await ref.ask(ImportLines(member_id, imported, key))
        if "error" in answer:
            return answer
        for line in lines:  # the lines that were brought over (skipped ones too: they were reported)
            await self.store.delete_guest_cart_item(session_id, line.item_id)
        log.info("guest_cart_brought_to_table", table_id=table_id, member_id=member_id, lines=answer.get("lines"))
        return answer

    async def resolve_guest(self, token: str | None) -> TokenInfo | None:
        if not token or len(token) > 128:
            return None
        return await self.store.resolve_token(token_hash(token), self.clock.now())

    async def checkout(self, table_id: str, payment_method: str = "card") -> Table:
        table = await self.store.checkout_table(table_id, self.clock.now(), payment_method)
        if table.current_group_id:
            await self._close_group(table.current_group_id, "checked_out")
        return table

    async def _close_group(self, group_id: str, reason: str) -> None:
        # The tokens are gone already (the store's checkout/reset), so nobody can rejoin; this closes the
        # open sockets at once, on whichever node owns the group.
        try:
            await self.router.tell_group(group_id, CloseSession(reason))
        except RoutingUnavailable:
            log.warning("close_not_delivered", group_id=group_id, reason=reason)

    async def reset(self, table_id: str) -> Table:
        before = await self.store.get_table(table_id)
        table = await self.store.reset_table(table_id, self.clock.now())
        if before is not None and before.current_group_id:
            await self._close_group(before.current_group_id, "table_reset")
        return table

    async def set_availability(self, menu_item_id: str, available: bool) -> MenuItem:
        item = await self.menu.set_availability(menu_item_id, available)
        self.router.menu_changed((menu_item_id,))
        return item

    def join_url(self, table: Table) -> str:
        return table_join_url(self.settings, table)


def table_join_url(settings: Settings, table: Table) -> str:
    """What a table's QR code carries."""
    return f"{settings.base_url()}/q/{table.table_id}/{table.qr_secret}"


def build_table_context(
    settings: Settings,
    store: Store,
    committer: GroupCommitter,
    menu: MenuCatalog,
    pos: PosAdapter,
    clock: Clock,
    kitchen: KitchenHub,
) -> TableContext:
    return TableContext(
        store=store,
        commit=committer.commit,
        menu=menu,
        pos=pos,
        retry=RetryPolicy(settings.pos.timeout_s, settings.pos.max_retries, settings.pos.backoff_s),
        clock=clock,
        on_order_confirmed=kitchen.notify,
        node_id=settings.node_id,
        idle_seconds=settings.idle_actor_seconds,
        snapshot_every=settings.snapshot_every,
        max_cart_lines=settings.limits.max_cart_lines,
        max_members=settings.limits.max_members_per_group,
    )
