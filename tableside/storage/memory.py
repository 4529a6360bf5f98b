"""``Store`` in process memory, with the same semantics as ``PostgresStore`` (one shared test suite).

Used by unit tests and single-process demos. Every method runs to completion without awaiting anything,
so under asyncio each call is atomic - the equivalent of Postgres' transactions and row locks. Records
are copied on the way in and out so callers can never mutate stored state by aliasing.
"""

from __future__ import annotations

import copy
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tableside.storage import till_lines
from tableside.storage.codec import EncodedWrite, dumps, encode_write
from tableside.storage.interface import (
    GUEST_MAX_LINES,
    GUEST_MAX_QUANTITY,
    GUEST_TOUCH_INTERVAL_S,
    OPEN_SESSION_STATUSES,
    Activation,
    BadQrSecret,
    CleanupReport,
    DuplicateUser,
    FencedWrite,
    GroupFull,
    GroupSnapshot,
    GroupWrite,
    GuestCartFull,
    GuestCartLine,
    GuestCartLineNotFound,
    GuestQuantityTooLarge,
    GuestSession,
    GuestSessionNotFound,
    InvalidTransition,
    InvalidWrite,
    JoinRequest,
    JoinResult,
    MenuItem,
    MenuItemNotFound,
    OpenSessionExists,
    OrderNotFound,
    OrderRecord,
    OrderSession,
    OrderSessionChange,
    OrderSessionNotFound,
    OrderSessionStatus,
    OrderStatus,
    Restaurant,
    RestaurantNotFound,
    RevisionMismatch,
    StaffRole,
    StaffSession,
    StaffUser,
    StaleWrite,
    StorageError,
    Tab,
    TabClosed,
    Table,
    TableNotFound,
    TablePaid,
    TableStatus,
    TabNotFound,
    TabStatus,
    TokenInfo,
    Transaction,
    User,
    UserSession,
    replay_group,
    validate_business_hours,
    validate_timezone,
)


def _stale_message(w: GroupWrite) -> str:
    return f"group {w.snapshot.group_id}: stored revision is not {w.expected_revision}"


@dataclass(slots=True)
class _Token:
    table_id: str
    group_id: str
    member_id: str
    created_at: float
    last_used: float
    expires_at: float


@dataclass(slots=True)
class _Session:
    username: str
    role: StaffRole
    expires_at: float


@dataclass(slots=True)
class _UserSession:
    user_id: str
    expires_at: float
    created_at: float


class MemoryStore:
    def __init__(self) -> None:
        self._restaurants: dict[int, Restaurant] = {}
        self._next_order_number: dict[int, int] = {}
        self._tables: dict[str, Table] = {}
        self._menu: dict[str, MenuItem] = {}
        self._tokens: dict[str, _Token] = {}
        # A group's last snapshot (its revision is the snapshot's), its current revision, the op records
        # after the snapshot (oldest first) and its last activity time, as PostgresStore's group_state row
        # and group_ops rows. A row with revision 0 was created by activate_group only (load_group answers
        # None for it).
        self._groups: dict[str, GroupSnapshot] = {}
        self._revisions: dict[str, int] = {}
        self._group_ops: dict[str, list[dict[str, Any]]] = {}
        self._last_updated: dict[str, float] = {}
        self._epochs: dict[str, int] = {}
        self.owner_nodes: dict[str, str] = {}
        self._orders: dict[str, OrderRecord] = {}
        self._kitchen_seq = 0
        self._staff: dict[str, StaffUser] = {}
        self._users: dict[str, User] = {}
        self._user_sessions: dict[str, _UserSession] = {}
        self._sessions: dict[str, _Session] = {}
        # Guest sessions in insertion order (= ascending id, like the Postgres identity) and their carts
        # (lines in insertion order = ascending item_id).
        self._guests: dict[str, GuestSession] = {}
        self._guest_carts: dict[str, list[GuestCartLine]] = {}
        self._next_cart_line = 0
        # Till order sessions, tabs and transactions (ids as the Postgres identities: 1, 2, ...). A tab is
        # stored without its lines (they are computed on read, as in PostgresStore).
        self._order_sessions: dict[int, OrderSession] = {}
        self._tabs: dict[int, Tab] = {}
        self._transactions: dict[int, Transaction] = {}
        self._next_ids = {"session": 0, "tab": 0, "transaction": 0}
        # Counts commit_writes calls, so tests can see group commit batching.
        self.commit_calls = 0

    async def close(self) -> None:
        return None

    # -- restaurants, tables, menu ---------------------------------------------------------------

    async def upsert_restaurant(self, restaurant: Restaurant) -> None:
        hours = validate_business_hours(restaurant.business_hours)
        tz = validate_timezone(restaurant.timezone)
        before = self._restaurants.get(restaurant.restaurant_id)
        if before is not None:
            created = before.created_at
        else:
            created = restaurant.created_at or time.time()
        self._restaurants[restaurant.restaurant_id] = replace(
            restaurant, business_hours=hours, timezone=tz, created_at=created
        )
        self._next_order_number.setdefault(restaurant.restaurant_id, 1)

    async def get_restaurant(self, restaurant_id: int) -> Restaurant | None:
        r = self._restaurants.get(restaurant_id)
        return None if r is None else replace(r, business_hours=copy.deepcopy(r.business_hours))

    async def list_restaurants(self) -> list[Restaurant]:
        return [
            replace(r, business_hours=copy.deepcopy(r.business_hours)) for _, r in sorted(self._restaurants.items())
        ]

    async def add_table(self, table: Table) -> None:
        if table.table_id in self._tables:
            return
        if table.restaurant_id not in self._restaurants:
            raise RestaurantNotFound(f"restaurant {table.restaurant_id} does not exist")
        self._tables[table.table_id] = replace(table, status=TableStatus(table.status))

    async def remove_table(self, table_id: str) -> None:
        self._tables.pop(table_id, None)
        for h in [h for h, t in self._tokens.items() if t.table_id == table_id]:
            del self._tokens[h]

    def _table(self, table_id: str) -> Table:
        t = self._tables.get(table_id)
        if t is None:
            raise TableNotFound(table_id)
        return t

    async def rename_table(self, table_id: str, name: str) -> Table:
        t = self._table(table_id)
        t.name = name
        return replace(t)

    async def get_table(self, table_id: str) -> Table | None:
        t = self._tables.get(table_id)
        return None if t is None else replace(t)

    async def list_tables(self, restaurant_id: int) -> list[Table]:
        return [replace(t) for _, t in sorted(self._tables.items()) if t.restaurant_id == restaurant_id]

    async def rotate_qr_secret(self, table_id: str, new_secret: str, now: float) -> Table:
        t = self._table(table_id)
        t.qr_secret = new_secret
        t.updated_at = now
        return replace(t)

    async def upsert_menu_item(self, item: MenuItem) -> None:
        self._menu[item.menu_item_id] = replace(item)

    async def list_menu(self, restaurant_id: int) -> list[MenuItem]:
        items = [m for m in self._menu.values() if m.restaurant_id == restaurant_id]
        items.sort(key=lambda m: (m.sort_order, m.name, m.menu_item_id))
        return [replace(m) for m in items]

    async def set_item_availability(self, menu_item_id: str, available: bool) -> MenuItem:
        m = self._menu.get(menu_item_id)
        if m is None:
            raise MenuItemNotFound(menu_item_id)
        m.available = available
        return replace(m)

    # -- joining and tokens ----------------------------------------------------------------------

    async def join_table(
        self,
        table_id: str,
        qr_secret: str,
        token_hash: str,
        member_id: str,
        new_group_id: str,
        expires_at: float,
        now: float,
        *,
        max_members: int | None = None,
    ) -> JoinResult:
        request = JoinRequest(table_id, qr_secret, token_hash, member_id, new_group_id, expires_at, now, max_members)
        return self._join(request)

    async def join_tables(self, requests: Sequence[JoinRequest]) -> list[JoinResult | StorageError]:
        # One after another, in order: exactly the batch semantics PostgresStore.join_tables reaches in SQL.
        results: list[JoinResult | StorageError] = []
        for request in requests:
            try:
                results.append(self._join(request))
            except (TableNotFound, BadQrSecret, TablePaid, GroupFull) as exc:
                results.append(exc)
        return results

    def _join(self, r: JoinRequest) -> JoinResult:
        table_id, qr_secret, token_hash, member_id = r.table_id, r.qr_secret, r.token_hash, r.member_id
        new_group_id, expires_at, now, max_members = r.new_group_id, r.expires_at, r.now, r.max_members
        t = self._table(table_id)
        if not hmac.compare_digest(t.qr_secret.encode(), qr_secret.encode("utf-8", "surrogatepass")):
            raise BadQrSecret(table_id)
        if t.status == TableStatus.PAID:
            raise TablePaid(table_id)
        opened = t.status == TableStatus.VACANT or t.current_group_id is None
        if (
            not opened
            and max_members is not None
            and t.current_group_id is not None
            and len(self._live_members(t.current_group_id, now)) >= max_members
        ):
            raise GroupFull(table_id, max_members)
        if opened:
            t.status = TableStatus.OCCUPIED
            t.current_group_id = new_group_id
            t.updated_at = now
            if not any(tab.group_id == new_group_id for tab in self._tabs.values()):
                self._new_tab(t.restaurant_id, t.name, now, table_id=table_id, group_id=new_group_id)
        group_id = t.current_group_id
        assert group_id is not None
        old = self._tokens.get(token_hash)
        self._tokens[token_hash] = _Token(
            table_id=table_id,
            group_id=group_id,
            member_id=member_id,
            created_at=now if old is None else old.created_at,
            last_used=now,
            expires_at=expires_at,
        )
        return JoinResult(
            table_id=table_id,
            restaurant_id=t.restaurant_id,
            group_id=group_id,
            member_id=member_id,
            expires_at=expires_at,
            opened_group=opened,
        )

    async def resolve_token(self, token_hash: str, now: float) -> TokenInfo | None:
        tok = self._tokens.get(token_hash)
        if tok is None or tok.expires_at <= now:
            return None
        table = self._tables.get(tok.table_id)
        if table is None:
            return None
        tok.last_used = now
        return TokenInfo(
            table_id=tok.table_id,
            restaurant_id=table.restaurant_id,
            group_id=tok.group_id,
            member_id=tok.member_id,
            expires_at=tok.expires_at,
        )

    def _live_members(self, group_id: str, now: float) -> set[str]:
        return {tok.member_id for tok in self._tokens.values() if tok.group_id == group_id and tok.expires_at > now}

    async def live_members(self, group_id: str, now: float) -> set[str]:
        return self._live_members(group_id, now)

    async def revoke_member(self, group_id: str, member_id: str) -> int:
        gone = [h for h, tok in self._tokens.items() if tok.group_id == group_id and tok.member_id == member_id]
        for h in gone:
            del self._tokens[h]
        return len(gone)

    def _delete_group_tokens(self, group_id: str) -> None:
        for h in [h for h, tok in self._tokens.items() if tok.group_id == group_id]:
            del self._tokens[h]

    async def open_sitting(self, table_id: str, new_group_id: str, now: float) -> Table:
        t = self._table(table_id)
        if t.status != TableStatus.VACANT or t.current_group_id is not None:
            raise InvalidTransition(f"open a sitting at {t.status} table {table_id}")
        t.status = TableStatus.OCCUPIED
        t.current_group_id = new_group_id
        t.updated_at = now
        if not any(tab.group_id == new_group_id for tab in self._tabs.values()):
            self._new_tab(t.restaurant_id, t.name, now, table_id=table_id, group_id=new_group_id)
        return replace(t)

    async def checkout_table(self, table_id: str, now: float, payment_method: str = "card") -> Table:
        t = self._table(table_id)
        if t.status != TableStatus.OCCUPIED:
            raise InvalidTransition(f"checkout of {t.status} table {table_id}")
        t.status = TableStatus.PAID
        t.updated_at = now
        if t.current_group_id is not None:
            self._delete_group_tokens(t.current_group_id)
            tab = self._group_tab(t.current_group_id)
            if tab is not None and tab.status == TabStatus.OPEN:
                self._close_tab_into_transaction(tab, payment_method, now)
        return replace(t)

    async def reset_table(self, table_id: str, now: float) -> Table:
        """Also accepts a vacant table as a no-op (returned unchanged) so a repeated staff reset is harmless."""
        t = self._table(table_id)
        if t.status == TableStatus.VACANT and t.current_group_id is None:
            return replace(t)
        if t.current_group_id is not None:
            self._delete_group_tokens(t.current_group_id)
            self._close_group_tab_unpaid(t.current_group_id, now)
        t.status = TableStatus.VACANT
        t.current_group_id = None
        t.updated_at = now
        return replace(t)

    def _close_group_tab_unpaid(self, group_id: str, now: float) -> None:
        """A sitting that ends without checkout: its tab (if still open) is closed without a transaction."""
        tab = self._group_tab(group_id)
        if tab is not None and tab.status == TabStatus.OPEN:
            tab.status, tab.closed_at = TabStatus.CLOSED, now

    async def close_idle_groups(self, cutoff: float, now: float) -> list[tuple[str, str]]:
        closed: list[tuple[str, str]] = []
        for t in self._tables.values():
            if t.status != TableStatus.OCCUPIED or t.current_group_id is None:
                continue
            last = self._last_updated.get(t.current_group_id, 0.0)
            if max(t.updated_at, last) >= cutoff:
                continue
            closed.append((t.table_id, t.current_group_id))
            self._delete_group_tokens(t.current_group_id)
            self._close_group_tab_unpaid(t.current_group_id, now)
            t.status, t.current_group_id, t.updated_at = TableStatus.VACANT, None, now
        return closed

    async def delete_expired_tokens(self, now: float) -> int:
        expired = [h for h, tok in self._tokens.items() if tok.expires_at <= now]
        for h in expired:
            del self._tokens[h]
        return len(expired)

    # -- group state -----------------------------------------------------------------------------

    async def activate_group(self, group_id: str, table_id: str, restaurant_id: int, node_id: str) -> Activation:
        if group_id not in self._groups:
            self._groups[group_id] = GroupSnapshot(group_id, table_id, restaurant_id, 0, {})
            self._revisions[group_id] = 0
        epoch = self._epochs.get(group_id, 0) + 1
        self._epochs[group_id] = epoch
        self.owner_nodes[group_id] = node_id
        snap = self._groups[group_id]
        return Activation(
            epoch=epoch,
            snapshot=None if snap.revision == 0 else copy.deepcopy(snap),
            ops=copy.deepcopy(self._group_ops.get(group_id, [])),
        )

    async def load_group(self, group_id: str) -> GroupSnapshot | None:
        g = self._groups.get(group_id)
        if g is None or self._revisions.get(group_id, 0) == 0:
            return None
        return replay_group(copy.deepcopy(g), copy.deepcopy(self._group_ops.get(group_id, [])))

    def _refusal(self, w: GroupWrite) -> StaleWrite | None:
        """Why ``w`` cannot apply now (FencedWrite before StaleWrite, as PostgresStore), or None."""
        gid = w.snapshot.group_id
        if gid not in self._groups:
            # "no row" only matches expected 0 (the row it creates takes the write's epoch)
            return None if w.expected_revision == 0 else StaleWrite(_stale_message(w))
        epoch = self._epochs.get(gid, 0)
        if epoch != w.epoch:
            return FencedWrite(gid, w.epoch, epoch)
        if self._revisions.get(gid, 0) != w.expected_revision:
            return StaleWrite(_stale_message(w))
        return None

    def _numbered(self, w: GroupWrite) -> tuple[GroupWrite, int] | StorageError:
        """The write ``number_order`` makes of ``w`` with the restaurant's next number (not yet consumed)."""
        assert w.number_order is not None
        rid = w.snapshot.restaurant_id
        if rid not in self._restaurants:
            return RestaurantNotFound(str(rid))
        n = self._next_order_number[rid]
        try:
            state, order = w.number_order(n)
        except Exception as e:  # noqa: BLE001 - the caller's bug, refused as that write's own error
            return InvalidWrite(f"group {w.snapshot.group_id}: number_order({n}) failed: {e!r}")
        return replace(w, snapshot=replace(w.snapshot, state=state), order=order, number_order=None, ops=None), n

    async def commit_writes(self, writes: Sequence[GroupWrite]) -> list[StorageError | None]:
        self.commit_calls += 1
        results: list[StorageError | None] = []
        # Applied in submission order; a second write of one group in the same batch sees the first.
        for w in writes:
            # Same JSON rules as PostgresStore, and the decoded copy is what we keep: state round-trips
            # exactly as it would through jsonb (tuples become lists, non-JSON data is refused). A numbered
            # write is encoded once number_order has made its state, after the checks (as in PostgresStore).
            encoded: EncodedWrite | None = None
            if w.number_order is None:
                try:
                    encoded = encode_write(w)
                except InvalidWrite as e:
                    results.append(e)
                    continue
            refused = self._refusal(w)
            if refused is not None:
                results.append(refused)
                continue
            if w.intent_number is not None:
                results.append(self._commit_intent(w, encoded))
                continue
            number: int | None = None
            if w.number_order is not None:
                if w.snapshot.group_id not in self._groups:
                    # PostgresStore creates the row (revision 0) to lock it before taking a number
                    self._groups[w.snapshot.group_id] = replace(w.snapshot, revision=0, state={})
                    self._revisions[w.snapshot.group_id] = 0
                    self._epochs[w.snapshot.group_id] = w.epoch
                numbered = self._numbered(w)
                if isinstance(numbered, StorageError):
                    results.append(numbered)
                    continue
                w, number = numbered
                try:
                    encoded = encode_write(w)
                except InvalidWrite as e:
                    results.append(e)
                    continue
            assert encoded is not None
            gid = w.snapshot.group_id
            if gid not in self._groups:
                self._epochs[gid] = w.epoch
                self._groups[gid] = replace(w.snapshot, revision=0, state={})
            if number is not None:
                self._next_order_number[w.snapshot.restaurant_id] = number + 1
            if encoded.record is not None:
                # An op record: the snapshot stays, the record joins the log after it.
                self._group_ops.setdefault(gid, []).append(json.loads(encoded.record))
            else:
                assert encoded.state is not None
                self._groups[gid] = replace(w.snapshot, state=json.loads(encoded.state))
                self._group_ops.pop(gid, None)  # every record is at or below the snapshot's revision
            self._groups[gid].table_id = w.snapshot.table_id
            self._groups[gid].restaurant_id = w.snapshot.restaurant_id
            self._revisions[gid] = w.snapshot.revision
            self._last_updated[gid] = encoded.last_updated
            if w.order is not None:
                assert encoded.items is not None
                self._upsert_order(w.order, json.loads(encoded.items))
            results.append(None)
        return results

    def _commit_intent(self, w: GroupWrite, encoded: EncodedWrite | None) -> StorageError | None:
        """An order intent (``GroupWrite.intent_number``), as PostgresStore's one statement: the checks
        passed, take the restaurant's next number, log the record with it, insert the order, then tell
        ``intent_number`` (after the "commit")."""
        assert encoded is not None and encoded.record is not None and w.order is not None
        assert w.intent_number is not None
        gid, rid = w.snapshot.group_id, w.snapshot.restaurant_id
        if rid not in self._restaurants:
            return RestaurantNotFound(str(rid))
        n = self._next_order_number[rid]
        self._next_order_number[rid] = n + 1
        if gid not in self._groups:
            self._epochs[gid] = w.epoch
            self._groups[gid] = replace(w.snapshot, revision=0, state={})
        record = json.loads(encoded.record)
        record["n"] = n
        self._group_ops.setdefault(gid, []).append(record)
        self._groups[gid].table_id = w.snapshot.table_id
        self._groups[gid].restaurant_id = rid
        self._revisions[gid] = w.snapshot.revision
        self._last_updated[gid] = encoded.last_updated
        assert encoded.items is not None
        order = replace(w.order, order_id=w.order.order_id + str(n), order_number=n, restaurant_id=rid)
        self._upsert_order(order, json.loads(encoded.items))
        w.intent_number(n)
        return None

    def _upsert_order(self, order: OrderRecord, items: list[dict[str, Any]]) -> None:
        existing = self._orders.get(order.order_id)
        if existing is None:
            rec = replace(order, items=items)
            rec.status = OrderStatus(rec.status)
            rec.kitchen_seq = None  # the store, not the caller, assigns kitchen_seq
            self._orders[order.order_id] = rec
        else:
            # Only the POS outcome changes after insertion (as in PostgresStore).
            rec = existing
            rec.status = OrderStatus(order.status)
            rec.pos_ticket_id = order.pos_ticket_id
            rec.error = order.error
            rec.confirmed_at = order.confirmed_at
        if rec.status == OrderStatus.CONFIRMED and rec.kitchen_seq is None:
            self._kitchen_seq += 1
            rec.kitchen_seq = self._kitchen_seq

    # -- orders ----------------------------------------------------------------------------------

    async def next_order_number(self, restaurant_id: int, count: int = 1) -> int:
        if count < 1:
            raise ValueError("count must be >= 1")
        if restaurant_id not in self._restaurants:
            raise RestaurantNotFound(str(restaurant_id))
        n = self._next_order_number[restaurant_id]
        self._next_order_number[restaurant_id] = n + count
        return n

    async def get_order(self, order_id: str) -> OrderRecord | None:
        o = self._orders.get(order_id)
        return None if o is None else copy.deepcopy(o)

    async def list_group_orders(self, group_id: str) -> list[OrderRecord]:
        found = [o for o in self._orders.values() if o.group_id == group_id]
        found.sort(key=lambda o: (o.created_at, o.order_number))
        return copy.deepcopy(found)

    async def list_orders_by_status(self, status: OrderStatus) -> list[OrderRecord]:
        found = [o for o in self._orders.values() if o.status == status]
        found.sort(key=lambda o: (o.created_at, o.order_id))
        return copy.deepcopy(found)

    async def list_kitchen_orders(self, restaurant_id: int, after_seq: int, limit: int) -> list[OrderRecord]:
        found = [
            o
            for o in self._orders.values()
            if o.restaurant_id == restaurant_id
            and o.status == OrderStatus.CONFIRMED
            and o.kitchen_seq is not None
            and o.kitchen_seq > after_seq
        ]
        found.sort(key=lambda o: o.kitchen_seq or 0)
        return copy.deepcopy(found[: max(limit, 0)])

    async def set_kitchen_status(self, order_id: str, status: str) -> OrderRecord:
        o = self._orders.get(order_id)
        if o is None:
            raise OrderNotFound(order_id)
        o.kitchen_status = status
        return copy.deepcopy(o)

    # -- staff -----------------------------------------------------------------------------------

    async def upsert_staff(self, user: StaffUser) -> None:
        if user.store_id is not None and user.store_id not in self._restaurants:
            raise RestaurantNotFound(f"store {user.store_id} does not exist")
        self._staff[user.username] = replace(user, role=StaffRole(user.role))

    async def get_staff(self, username: str) -> StaffUser | None:
        u = self._staff.get(username)
        return None if u is None else replace(u)

    async def list_staff(self) -> list[StaffUser]:
        return [replace(u) for _, u in sorted(self._staff.items())]

    async def create_staff_session(
        self, token_hash: str, username: str, role: StaffRole, expires_at: float
    ) -> None:
        self._sessions[token_hash] = _Session(username=username, role=StaffRole(role), expires_at=expires_at)

    async def resolve_staff_session(self, token_hash: str, now: float) -> StaffSession | None:
        """None when expired, or when the user has since been removed or deactivated (that ends sessions)."""
        sess = self._sessions.get(token_hash)
        if sess is None or sess.expires_at <= now:
            return None
        user = self._staff.get(sess.username)
        if user is None or not user.active:
            return None
        return StaffSession(
            username=sess.username, role=sess.role, expires_at=sess.expires_at, store_id=user.store_id
        )

    async def delete_expired_staff_sessions(self, now: float) -> int:
        expired = [h for h, sess in self._sessions.items() if sess.expires_at <= now]
        for h in expired:
            del self._sessions[h]
        return len(expired)

    async def delete_staff_session(self, token_hash: str) -> None:
        self._sessions.pop(token_hash, None)

    async def delete_staff_sessions_for_user(self, username: str) -> int:
        ended = [h for h, sess in self._sessions.items() if sess.username == username]
        for h in ended:
            del self._sessions[h]
        return len(ended)

    async def remove_staff(self, username: str) -> bool:
        if username in self._staff:
            # Their open sessions go; completed and assigned ones stay (history, money taken).
            for sid in [sid for sid, o in self._order_sessions.items()
                        if o.user_id == username and o.status in OPEN_SESSION_STATUSES]:
                del self._order_sessions[sid]
        await self.delete_staff_sessions_for_user(username)
        return self._staff.pop(username, None) is not None

    # -- customer accounts ---------------------------------------------------------------------------

    async def create_user(self, user: User) -> None:
        for field in ("email", "phone", "line_id"):
            value = getattr(user, field)
            if value is not None and any(getattr(u, field) == value for u in self._users.values()):
                raise DuplicateUser(field)
        if user.user_id in self._users:
            raise StorageError(f"user {user.user_id} exists")
        self._users[user.user_id] = replace(user)

    async def get_user(self, user_id: str) -> User | None:
        u = self._users.get(user_id)
        return None if u is None else replace(u)

    async def get_user_by_email(self, email: str) -> User | None:
        for u in self._users.values():
            if u.email == email:
                return replace(u)
        return None

    async def create_user_session(self, token_hash: str, user_id: str, expires_at: float, now: float) -> None:
        if user_id not in self._users:
            raise StorageError(f"no user {user_id}")  # Postgres: the foreign key
        self._user_sessions[token_hash] = _UserSession(user_id, expires_at, now)

    async def resolve_user_session(self, token_hash: str, now: float) -> UserSession | None:
        sess = self._user_sessions.get(token_hash)
        if sess is None or sess.expires_at <= now or sess.user_id not in self._users:
            return None
        return UserSession(sess.user_id, sess.expires_at)

    async def delete_user_session(self, token_hash: str) -> None:
        self._user_sessions.pop(token_hash, None)

    async def delete_expired_user_sessions(self, now: float) -> int:
        expired = [h for h, s in self._user_sessions.items() if s.expires_at <= now]
        for h in expired:
            del self._user_sessions[h]
        return len(expired)

    def remove_user(self, user_id: str) -> None:
        """Test support (no API deletes accounts yet): the user and, as Postgres' CASCADE, their sessions."""
        self._users.pop(user_id, None)
        for h in [h for h, s in self._user_sessions.items() if s.user_id == user_id]:
            del self._user_sessions[h]
        for g in self._guests.values():  # Postgres: ON DELETE SET NULL
            if g.converted_to_user_id == user_id:
                g.converted_to_user_id = None

    # -- guest sessions and guest carts (seed 001); no awaits inside: each call is atomic -----------

    async def create_guest_session(self, session: GuestSession) -> None:
        if session.session_id in self._guests:
            raise StorageError("guest session exists")
        if session.selected_store_id is not None and session.selected_store_id not in self._restaurants:
            raise StorageError(f"no store {session.selected_store_id}")
        self._guests[session.session_id] = replace(session)
        self._guest_carts[session.session_id] = []

    def _live_guest(self, session_id: str, now: float) -> GuestSession | None:
        g = self._guests.get(session_id)
        return g if g is not None and g.expires_at > now else None

    def _require_guest(self, session_id: str, now: float) -> GuestSession:
        g = self._live_guest(session_id, now)
        if g is None:
            raise GuestSessionNotFound("guest session unknown or expired")
        return g

    async def get_guest_session(self, session_id: str, now: float, *, include_expired: bool = False) -> GuestSession | None:
        g = self._guests.get(session_id) if include_expired else self._live_guest(session_id, now)
        return None if g is None else replace(g)

    async def touch_guest_session(self, session_id: str, now: float, expires_at: float) -> bool:
        g = self._live_guest(session_id, now)
        if g is None or not g.last_accessed_at < now - GUEST_TOUCH_INTERVAL_S:
            return False
        g.expires_at, g.last_accessed_at = expires_at, now
        return True

    async def select_guest_store(self, session_id: str, store_id: int, now: float) -> GuestSession:
        g = self._require_guest(session_id, now)
        if store_id not in self._restaurants:
            raise RestaurantNotFound(f"store {store_id} does not exist")
        if g.selected_store_id != store_id:
            self._guest_carts[session_id] = []
            g.selected_store_id = store_id
        return replace(g)

    async def add_guest_cart_item(self, session_id: str, menu_item_id: str, quantity: int, now: float, *,
                                  max_lines: int = GUEST_MAX_LINES) -> GuestCartLine:
        self._require_guest(session_id, now)
        if menu_item_id not in self._menu:
            raise MenuItemNotFound(menu_item_id)  # Postgres: the foreign key
        if not 1 <= quantity <= GUEST_MAX_QUANTITY:
            raise GuestQuantityTooLarge(f"a quantity is 1..{GUEST_MAX_QUANTITY}")
        lines = self._guest_carts[session_id]
        for line in lines:
            if line.menu_item_id == menu_item_id:
                if line.quantity + quantity > GUEST_MAX_QUANTITY:
                    raise GuestQuantityTooLarge(f"a line holds at most {GUEST_MAX_QUANTITY}")
                line.quantity += quantity
                line.updated_at = now
                return replace(line)
        if len(lines) >= max_lines:
            raise GuestCartFull(f"a guest cart holds at most {max_lines} lines")
        self._next_cart_line += 1
        line = GuestCartLine(self._next_cart_line, menu_item_id, quantity, now, now)
        lines.append(line)
        return replace(line)

    def _line(self, session_id: str, item_id: int) -> GuestCartLine | None:
        return next((x for x in self._guest_carts.get(session_id, []) if x.item_id == item_id), None)

    async def set_guest_cart_quantity(self, session_id: str, item_id: int, quantity: int, now: float) -> GuestCartLine:
        if not 1 <= quantity <= GUEST_MAX_QUANTITY:
            raise GuestQuantityTooLarge(f"a quantity is 1..{GUEST_MAX_QUANTITY}")
        line = self._line(session_id, item_id)
        if line is None:
            raise GuestCartLineNotFound(f"no cart line {item_id}")
        line.quantity, line.updated_at = quantity, now
        return replace(line)

    async def delete_guest_cart_item(self, session_id: str, item_id: int) -> bool:
        line = self._line(session_id, item_id)
        if line is None:
            return False
        self._guest_carts[session_id].remove(line)
        return True

    async def list_guest_cart(self, session_id: str) -> list[GuestCartLine]:
        return [replace(x) for x in self._guest_carts.get(session_id, [])]

    async def count_guest_cart_lines(self, session_id: str) -> int:
        return len(self._guest_carts.get(session_id, []))

    async def take_guest_cart(self, session_id: str) -> list[GuestCartLine]:
        lines = self._guest_carts.get(session_id)
        if not lines:
            return []
        self._guest_carts[session_id] = []
        return lines

    async def get_user_cart_session(self, user_id: str, now: float) -> GuestSession | None:
        g = self._user_cart(user_id, now)
        return None if g is None else replace(g)

    def _user_cart(self, user_id: str, now: float) -> GuestSession | None:
        return next(
            (g for g in self._guests.values() if g.converted_to_user_id == user_id and g.expires_at > now), None
        )

    async def convert_guest_session(self, session_id: str, user_id: str, now: float) -> GuestSession | None:
        if user_id not in self._users:
            raise StorageError(f"no user {user_id}")
        g = self._require_guest(session_id, now)
        if g.converted_to_user_id not in (None, user_id):
            return None
        target = self._user_cart(user_id, now)
        g.converted_to_user_id = user_id
        if target is None or target is g:
            return replace(g)
        if g.selected_store_id is not None:
            if target.selected_store_id is None:
                target.selected_store_id = g.selected_store_id
            if target.selected_store_id == g.selected_store_id:
                into = self._guest_carts[target.session_id]
                kept: list[GuestCartLine] = []
                for line in self._guest_carts[session_id]:
                    same = next((x for x in into if x.menu_item_id == line.menu_item_id), None)
                    if same is not None:
                        same.quantity = min(same.quantity + line.quantity, GUEST_MAX_QUANTITY)
                        same.updated_at = now
                    elif len(into) < GUEST_MAX_LINES:
                        self._next_cart_line += 1
                        into.append(GuestCartLine(self._next_cart_line, line.menu_item_id, line.quantity, now, now))
                    else:
                        kept.append(line)
                self._guest_carts[session_id] = kept
        return replace(target)

    async def delete_expired_guest_sessions(self, now: float) -> int:
        expired = [sid for sid, g in self._guests.items() if g.expires_at <= now]
        for sid in expired:
            del self._guests[sid]
            self._guest_carts.pop(sid, None)  # Postgres: ON DELETE CASCADE
        return len(expired)

    # -- till order sessions, tabs, transactions (seed 002); no awaits inside: each call is atomic -----

    def _next_id(self, kind: str) -> int:
        self._next_ids[kind] += 1
        return self._next_ids[kind]

    @staticmethod
    def _json_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What jsonb would store and return (a copy; non-JSON data is a StorageError, as in Postgres)."""
        try:
            out: list[dict[str, Any]] = json.loads(dumps(items))
        except (TypeError, ValueError) as e:
            raise StorageError(f"order session items are not JSON: {e}") from e
        return out

    def _open_session_of(self, user_id: str) -> OrderSession | None:
        return next(
            (
                o
                for o in self._order_sessions.values()
                if o.user_id == user_id and o.status in (OrderSessionStatus.ACTIVE, OrderSessionStatus.PENDING_LOGOUT)
            ),
            None,
        )

    def _session(self, session_id: int) -> OrderSession:
        o = self._order_sessions.get(session_id)
        if o is None:
            raise OrderSessionNotFound(f"order session {session_id}")
        return o

    async def create_order_session(
        self, user_id: str, store_id: int, items: list[dict[str, Any]], till_id: str | None, now: float
    ) -> OrderSession:
        if store_id not in self._restaurants:
            raise RestaurantNotFound(f"store {store_id} does not exist")
        current = self._open_session_of(user_id)
        if current is not None:
            raise OpenSessionExists(copy.deepcopy(current))
        stored = self._json_items(items)
        o = OrderSession(
            session_id=self._next_id("session"),
            user_id=user_id,
            store_id=store_id,
            items=stored,
            status=OrderSessionStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            revision=1,
            till_id=till_id,
        )
        self._order_sessions[o.session_id] = o
        return copy.deepcopy(o)

    async def get_order_session(self, session_id: int) -> OrderSession | None:
        o = self._order_sessions.get(session_id)
        return None if o is None else copy.deepcopy(o)

    async def get_open_order_session(self, user_id: str) -> OrderSession | None:
        o = self._open_session_of(user_id)
        return None if o is None else copy.deepcopy(o)

    async def list_order_sessions(
        self, store_id: int, *, status: OrderSessionStatus | None = None, user_id: str | None = None,
        limit: int = 200,
    ) -> list[OrderSession]:
        found = [
            o
            for o in self._order_sessions.values()
            if o.store_id == store_id
            and (status is None or o.status == status)
            and (user_id is None or o.user_id == user_id)
        ]
        found.sort(key=lambda o: o.session_id, reverse=True)
        return copy.deepcopy(found[: max(limit, 0)])

    async def update_order_session(
        self, session_id: int, expected_revision: int, change: OrderSessionChange, now: float
    ) -> OrderSession:
        o = self._session(session_id)
        if o.revision != expected_revision:
            raise RevisionMismatch(copy.deepcopy(o))
        if o.status not in (OrderSessionStatus.ACTIVE, OrderSessionStatus.PENDING_LOGOUT):
            raise InvalidTransition(f"order session {session_id} is {o.status}")
        new_status: OrderSessionStatus | None = None
        if change.status is not None:
            new_status = OrderSessionStatus(change.status)
            if new_status not in (OrderSessionStatus.ACTIVE, OrderSessionStatus.PENDING_LOGOUT):
                raise InvalidTransition(f"order session status {new_status} is not set by an update")
        items = None if change.items is None else self._json_items(change.items)
        if items is not None:
            o.items = items
        if new_status is not None:
            if new_status == OrderSessionStatus.PENDING_LOGOUT and o.status != new_status:
                o.logout_time = now
            elif new_status == OrderSessionStatus.ACTIVE:
                o.logout_time = None
            o.status = new_status
        if change.till_id is not None:
            o.till_id = change.till_id
        o.revision += 1
        o.updated_at = now
        return copy.deepcopy(o)

    def _make_ticket(self, o: OrderSession, table_id: str, now: float) -> OrderRecord:
        """The session's kitchen ticket: the store's next order number, confirmed, a kitchen_seq."""
        n = self._next_order_number[o.store_id]
        self._next_order_number[o.store_id] = n + 1
        rec = till_lines.ticket(o, n, table_id, now)
        self._kitchen_seq += 1
        rec.kitchen_seq = self._kitchen_seq
        self._orders[rec.order_id] = rec
        return rec

    def _check_payable(self, o: OrderSession, expected_revision: int | None) -> None:
        if expected_revision is not None and o.revision != expected_revision:
            raise RevisionMismatch(copy.deepcopy(o))
        if o.status != OrderSessionStatus.ACTIVE:
            raise InvalidTransition(f"order session {o.session_id} is {o.status}")
        if not o.items:
            raise InvalidTransition(f"order session {o.session_id} has no items")

    async def complete_order_session(
        self, session_id: int, expected_revision: int | None, payment_method: str, now: float
    ) -> tuple[OrderSession, Transaction, OrderRecord]:
        o = self._session(session_id)
        if o.status == OrderSessionStatus.COMPLETED:
            assert o.transaction_id is not None and o.order_id is not None
            return (
                copy.deepcopy(o),
                copy.deepcopy(self._transactions[o.transaction_id]),
                copy.deepcopy(self._orders[o.order_id]),
            )
        self._check_payable(o, expected_revision)
        if o.store_id not in self._restaurants:
            raise RestaurantNotFound(str(o.store_id))
        rec = self._make_ticket(o, "", now)
        lines = till_lines.session_lines(o)
        tx = Transaction(
            transaction_id=self._next_id("transaction"),
            store_id=o.store_id,
            lines=lines,
            total=till_lines.lines_total(lines),
            payment_method=payment_method,
            created_at=now,
            order_session_id=o.session_id,
        )
        self._transactions[tx.transaction_id] = tx
        o.status = OrderSessionStatus.COMPLETED
        o.transaction_id = tx.transaction_id
        o.order_id = rec.order_id
        o.revision += 1
        o.updated_at = now
        return copy.deepcopy(o), copy.deepcopy(tx), copy.deepcopy(rec)

    async def assign_order_session_to_tab(
        self, session_id: int, tab_id: int, expected_revision: int | None, now: float
    ) -> tuple[OrderSession, OrderRecord]:
        o = self._session(session_id)
        if o.status == OrderSessionStatus.ASSIGNED_TO_TAB:
            if o.tab_id != tab_id:
                raise InvalidTransition(f"order session {session_id} is on tab {o.tab_id}")
            assert o.order_id is not None
            return copy.deepcopy(o), copy.deepcopy(self._orders[o.order_id])
        tab = self._tabs.get(tab_id)
        if tab is None or tab.store_id != o.store_id:
            raise TabNotFound(f"tab {tab_id}")
        if tab.status != TabStatus.OPEN:
            raise TabClosed(self._tab_view(tab))
        self._check_payable(o, expected_revision)
        rec = self._make_ticket(o, tab.table_id or "", now)
        o.status = OrderSessionStatus.ASSIGNED_TO_TAB
        o.tab_id = tab_id
        o.order_id = rec.order_id
        o.revision += 1
        o.updated_at = now
        return copy.deepcopy(o), copy.deepcopy(rec)

    async def delete_order_session(self, session_id: int) -> bool:
        o = self._order_sessions.get(session_id)
        if o is None:
            return False
        if o.status not in (OrderSessionStatus.ACTIVE, OrderSessionStatus.PENDING_LOGOUT):
            raise InvalidTransition(f"order session {session_id} is {o.status}")
        del self._order_sessions[session_id]
        return True

    async def park_stale_order_sessions(self, cutoff: float, now: float) -> list[OrderSession]:
        parked: list[OrderSession] = []
        for o in self._order_sessions.values():
            if o.status == OrderSessionStatus.ACTIVE and o.updated_at < cutoff:
                o.status = OrderSessionStatus.PENDING_LOGOUT
                o.logout_time = now
                o.updated_at = now
                o.revision += 1
                parked.append(copy.deepcopy(o))
        parked.sort(key=lambda o: o.session_id)
        return parked

    def _new_tab(
        self, store_id: int, name: str, now: float, *, table_id: str | None = None, group_id: str | None = None
    ) -> Tab:
        tab = Tab(
            tab_id=self._next_id("tab"),
            store_id=store_id,
            name=name,
            status=TabStatus.OPEN,
            created_at=now,
            table_id=table_id,
            group_id=group_id,
        )
        self._tabs[tab.tab_id] = tab
        return tab

    def _group_tab(self, group_id: str) -> Tab | None:
        return next((t for t in self._tabs.values() if t.group_id == group_id), None)

    def _tab_lines(self, tab: Tab) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        if tab.group_id is not None:
            orders = [
                o
                for o in self._orders.values()
                if o.group_id == tab.group_id and o.status == OrderStatus.CONFIRMED
            ]
            orders.sort(key=lambda o: (o.kitchen_seq or 0, o.created_at, o.order_id))
            for order in orders:
                lines.extend(till_lines.order_line(order.order_id, item) for item in order.items)
        sessions = sorted(
            (
                o
                for o in self._order_sessions.values()
                if o.tab_id == tab.tab_id and o.status == OrderSessionStatus.ASSIGNED_TO_TAB
            ),
            key=lambda o: o.session_id,
        )
        for s in sessions:
            lines.extend(till_lines.session_lines(s))
        return copy.deepcopy(lines)

    def _tab_view(self, tab: Tab) -> Tab:
        tx = next((t.transaction_id for t in self._transactions.values() if t.tab_id == tab.tab_id), None)
        return replace(tab, lines=self._tab_lines(tab), transaction_id=tx)

    def _close_tab_into_transaction(self, tab: Tab, payment_method: str, now: float) -> Transaction:
        lines = self._tab_lines(tab)
        tx = Transaction(
            transaction_id=self._next_id("transaction"),
            store_id=tab.store_id,
            lines=lines,
            total=till_lines.lines_total(lines),
            payment_method=payment_method,
            created_at=now,
            tab_id=tab.tab_id,
        )
        self._transactions[tx.transaction_id] = tx
        tab.status, tab.closed_at = TabStatus.CLOSED, now
        return tx

    async def create_tab(self, store_id: int, name: str, now: float) -> Tab:
        if store_id not in self._restaurants:
            raise RestaurantNotFound(f"store {store_id} does not exist")
        return self._tab_view(self._new_tab(store_id, name, now))

    async def get_tab(self, tab_id: int) -> Tab | None:
        tab = self._tabs.get(tab_id)
        return None if tab is None else self._tab_view(tab)

    async def get_group_tab(self, group_id: str) -> Tab | None:
        tab = self._group_tab(group_id)
        return None if tab is None else self._tab_view(tab)

    async def list_tabs(self, store_id: int, *, status: TabStatus | None = None, limit: int = 200) -> list[Tab]:
        found = [t for t in self._tabs.values() if t.store_id == store_id and (status is None or t.status == status)]
        found.sort(key=lambda t: t.tab_id, reverse=True)
        return [self._tab_view(t) for t in found[: max(limit, 0)]]

    async def close_tab(self, tab_id: int, payment_method: str, now: float) -> tuple[Tab, Transaction]:
        tab = self._tabs.get(tab_id)
        if tab is None:
            raise TabNotFound(f"tab {tab_id}")
        if tab.status == TabStatus.CLOSED:
            tx = next((t for t in self._transactions.values() if t.tab_id == tab_id), None)
            if tx is None:  # closed by a reset without checkout: there is no transaction to return
                raise TabClosed(self._tab_view(tab))
            return self._tab_view(tab), copy.deepcopy(tx)
        tx = self._close_tab_into_transaction(tab, payment_method, now)
        return self._tab_view(tab), copy.deepcopy(tx)

    async def get_transaction(self, transaction_id: int) -> Transaction | None:
        tx = self._transactions.get(transaction_id)
        return None if tx is None else copy.deepcopy(tx)

    async def list_transactions(self, store_id: int, *, limit: int = 200) -> list[Transaction]:
        found = [t for t in self._transactions.values() if t.store_id == store_id]
        found.sort(key=lambda t: t.transaction_id, reverse=True)
        return copy.deepcopy(found[: max(limit, 0)])

    async def cleanup(self, now: float) -> CleanupReport:
        return CleanupReport(
            expired_tokens=await self.delete_expired_tokens(now),
            expired_staff_sessions=await self.delete_expired_staff_sessions(now),
            expired_user_sessions=await self.delete_expired_user_sessions(now),
            expired_guest_sessions=await self.delete_expired_guest_sessions(now),
        )
