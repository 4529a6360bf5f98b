"""The storage contract: domain records and the ``Store`` interface.

Two implementations pass one shared test suite (``tests/storage/``): ``PostgresStore`` (SQLAlchemy 2 async +
asyncpg, schema by Alembic) and ``MemoryStore``. Everything the server persists goes through this interface.
All timestamps are epoch seconds (float) from the injected clock; money is integer minor units.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class TableStatus(StrEnum):
    VACANT = "vacant"
    OCCUPIED = "occupied"
    PAID = "paid"


class OrderStatus(StrEnum):
    PROCESSING = "processing"  # intent committed, POS outcome not known yet
    CONFIRMED = "confirmed"  # the POS accepted it; kitchen_seq assigned
    FAILED = "failed"  # the POS definitely refused it; never a ticket


class StaffRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    SERVER = "server"
    KITCHEN = "kitchen"


class StorageError(Exception):
    """Base of every typed storage failure."""


class TableNotFound(StorageError):
    pass


class BadQrSecret(StorageError):
    pass


class TablePaid(StorageError):
    """The table was checked out and awaits a staff reset; nobody may join."""


class GroupFull(StorageError):
    """A join refused because the table's open group already has ``max_members`` live members (members
    with an unexpired, unrevoked token)."""

    def __init__(self, table_id: str, max_members: int) -> None:
        super().__init__(f"table {table_id}: the group has {max_members} members")
        self.table_id = table_id
        self.max_members = max_members


class InvalidTransition(StorageError):
    """A table status change that the lifecycle does not allow (e.g. checkout of a vacant table)."""


class StaleWrite(StorageError):
    """A group snapshot write whose expected revision is not the stored one (another activation wrote)."""


class FencedWrite(StaleWrite):
    """A group write refused because its epoch is not the stored one: the group was activated again
    (on this or another node) after the writer's activation, so the writer no longer owns it. A
    ``StaleWrite``, so code that handles stale writes handles this too."""

    def __init__(self, group_id: str, write_epoch: int, stored_epoch: int) -> None:
        super().__init__(
            f"group {group_id}: write epoch {write_epoch} is fenced off, the stored epoch is {stored_epoch}"
        )
        self.group_id = group_id
        self.write_epoch = write_epoch
        self.stored_epoch = stored_epoch


class StorageUnavailable(StorageError):
    """The database cannot be reached now (down, restarting, a connection lost mid-call). Nothing was
    acknowledged; the caller may retry (HTTP 503 ``unavailable``)."""


class InvalidWrite(StorageError):
    """Added by the storage layer: a GroupWrite whose state/items are not JSON (refused on its own)."""


class RestaurantNotFound(StorageError):
    """Added by the storage layer: next_order_number / add_table for a restaurant that does not exist."""


class InvalidStoreData(StorageError):
    """A store (restaurant) write with a malformed ``business_hours`` or an unknown ``timezone``."""


class MenuItemNotFound(StorageError):
    """Added by the storage layer: set_item_availability of an unknown menu item."""


class OrderNotFound(StorageError):
    """Added by the storage layer: set_kitchen_status of an unknown order."""


WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def default_business_hours() -> dict[str, Any]:
    """Every day 11:00-22:00, no closed dates (what migration 0004 gives the existing restaurant)."""
    hours: dict[str, Any] = {day: [["11:00", "22:00"]] for day in WEEKDAYS}
    hours["closed_dates"] = []
    return hours


_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")
_DATE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


def validate_business_hours(hours: Any) -> dict[str, Any]:
    """Check (and return a normalised copy of) ``business_hours``: ``{"mon": [["11:00", "14:00"], ["17:00",
    "22:00"]], ..., "closed_dates": ["2026-12-31"]}``. A weekday that is missing or has ``[]`` is closed; the
    pairs of a day are ``HH:MM`` (00:00-24:00), open before close, ascending and not overlapping. Anything
    else is ``InvalidStoreData``."""
    if not isinstance(hours, dict):
        raise InvalidStoreData("business_hours must be an object")
    unknown = set(hours) - set(WEEKDAYS) - {"closed_dates"}
    if unknown:
        raise InvalidStoreData(f"business_hours: unknown keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    for day in WEEKDAYS:
        pairs = hours.get(day, [])
        if not isinstance(pairs, list):
            raise InvalidStoreData(f"business_hours.{day} must be a list of [open, close] pairs")
        last = ""
        clean: list[list[str]] = []
        for pair in pairs:
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(t, str) and _HHMM.match(t) for t in pair)
            ):
                raise InvalidStoreData(f"business_hours.{day}: {pair!r} is not an [\"HH:MM\", \"HH:MM\"] pair")
            opens, closes = pair
            if not opens < closes:
                raise InvalidStoreData(f"business_hours.{day}: {opens} is not before {closes}")
            if opens < last:
                raise InvalidStoreData(f"business_hours.{day}: pairs overlap or are not in order")
            last = closes
            clean.append([opens, closes])
        out[day] = clean
    dates = hours.get("closed_dates", [])
    if not isinstance(dates, list) or not all(isinstance(d, str) and _DATE.match(d) for d in dates):
        raise InvalidStoreData("business_hours.closed_dates must be a list of YYYY-MM-DD dates")
    out["closed_dates"] = sorted(set(dates))
    return out


def validate_timezone(name: Any) -> str:
    """An IANA zone name ``zoneinfo`` knows (``UTC``, ``Asia/Tokyo``); else ``InvalidStoreData``."""
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith("/") or ".." in name:
        raise InvalidStoreData(f"unknown timezone {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidStoreData(f"unknown timezone {name!r}") from exc
    return name


class DuplicateUser(StorageError):
    """``create_user`` refused: another customer account already has this ``field`` (``"email"``,
    ``"phone"`` or ``"line_id"``; the first one found when several clash)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"a user with this {field} already exists")
        self.field = field


@dataclass(slots=True)
class Restaurant:
    """A store: one restaurant of the deployment (table ``stores``; ``restaurant_id`` is its ``store_id``,
    the ``{store}`` of order ids ``ORD-{store}-{n}``)."""

    restaurant_id: int
    name: str
    address: str = ""
    phone: str = ""
    business_hours: dict[str, Any] = field(default_factory=default_business_hours)
    timezone: str = "UTC"
    created_at: float = field(default=0.0, compare=False)  # set by the store on first insert when 0

    @property
    def store_id(self) -> int:
        return self.restaurant_id


StoreInfo = Restaurant  # the name used by the multi-store API (``Store`` is the storage interface)


@dataclass(slots=True)
class Table:
    table_id: str
    restaurant_id: int
    name: str
    status: TableStatus
    current_group_id: str | None
    qr_secret: str
    updated_at: float


@dataclass(slots=True)
class MenuItem:
    menu_item_id: str
    restaurant_id: int
    name: str
    category: str
    price: int
    available: bool = True
    sort_order: int = 0


@dataclass(slots=True)
class TokenInfo:
    """What a valid guest token stands for."""

    table_id: str
    restaurant_id: int
    group_id: str
    member_id: str
    expires_at: float


@dataclass(slots=True)
class JoinResult:
    table_id: str
    restaurant_id: int
    group_id: str
    member_id: str
    expires_at: float
    opened_group: bool  # True when this join turned a vacant table into an occupied one


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """One guest's join, as ``Store.join_table`` takes it; ``join_tables`` decides a batch of them at once."""

    table_id: str
    qr_secret: str
    token_hash: str
    member_id: str
    new_group_id: str  # the group opened when the table is vacant (unused otherwise)
    expires_at: float
    now: float
    max_members: int | None = None


@dataclass(slots=True)
class GroupSnapshot:
    """The whole durable state of one table group's actor. ``state`` is a JSON-able dict owned by the actor."""

    group_id: str
    table_id: str
    restaurant_id: int
    revision: int
    state: dict[str, Any]


@dataclass(slots=True)
class OrderRecord:
    order_id: str  # ORD-{restaurant_id}-{order_number}; also the POS idempotency key
    order_number: int
    restaurant_id: int
    table_id: str
    group_id: str
    status: OrderStatus
    items: list[dict[str, Any]]  # [{line_id, menu_item_id, name, qty, unit_price, note, added_by}]
    total: int
    special_instructions: str
    placed_by: str  # member_id
    created_at: float
    pos_ticket_id: str | None = None
    error: str | None = None
    confirmed_at: float | None = None
    kitchen_seq: int | None = None  # assigned by the store when the order first becomes CONFIRMED
    kitchen_status: str = "new"


@dataclass(slots=True)
class Activation:
    """What ``Store.activate_group`` returns: the group's new epoch (every write of this activation must
    carry it), its last stored snapshot (None when no snapshot was ever written) and the op records written
    after that snapshot, oldest first: the group's state is the snapshot with the records replayed on it."""

    epoch: int
    snapshot: GroupSnapshot | None
    ops: list[dict[str, Any]] = field(default_factory=list)


# Replaying op records needs the actors' ``GroupState`` (``tableside.actors.cart``), which storage may not
# import; the cart module registers its replay here when it is imported (every process that writes op records
# has), so ``load_group`` can answer the current state, as it did when every write was a snapshot.
GroupReplay = Callable[[int, dict[str, Any], list[dict[str, Any]]], tuple[int, dict[str, Any]]]
_group_replay: list[GroupReplay] = []


def register_group_replay(replay: GroupReplay) -> None:
    """``replay(snapshot_revision, snapshot_state, records) -> (revision, state)``."""
    _group_replay[:] = [replay]


def replay_group(snapshot: GroupSnapshot, records: list[dict[str, Any]]) -> GroupSnapshot:
    """``snapshot`` with ``records`` (op records after it, oldest first) folded in."""
    if not records:
        return snapshot
    if not _group_replay:
        raise RuntimeError("op records to replay but no replay registered (import tableside.actors.cart)")
    revision, state = _group_replay[0](snapshot.revision, snapshot.state, records)
    return GroupSnapshot(snapshot.group_id, snapshot.table_id, snapshot.restaurant_id, revision, state)


@dataclass(slots=True)
class GroupWrite:
    """One actor's durable step: the new snapshot plus, optionally, an order row to insert or update.

    ``expected_revision`` is the revision the actor last read or wrote (0 for a group never written).
    ``epoch`` is the one ``activate_group`` returned to the writer (0: a group never activated). The write
    applies atomically, or not at all: with ``FencedWrite`` when the stored epoch differs (a newer
    activation owns the group), else with ``StaleWrite`` when the stored revision differs. A write that
    creates the group's row stores its epoch.

    ``number_order`` (an order intent): the store takes the restaurant's next order number ``n`` inside the
    write's transaction, only once the write is known to apply (group row locked, epoch and revision
    checked), and writes ``number_order(n)`` = ``(state, order)`` instead of ``snapshot.state`` / ``order``.
    So per restaurant numbers increase in commit order across every process, and a refused or rolled-back
    write consumes no number (no gaps). It must be pure and synchronous; it is not called for a refused
    write, and if it raises (or returns non-JSON data) the write is refused with ``InvalidWrite`` and the
    number is not consumed.

    ``ops`` (the op log): an op record instead of a full state. The store then keeps its snapshot and
    appends the record (``{"b": expected, "rev": revision, "t": last_updated, "ops": [...]}``: JSON, the
    store reads only ``t``) under ``snapshot.revision``; ``snapshot.state`` is ignored. A write with a state
    becomes the group's new snapshot and drops the records it covers. Not with ``number_order``.

    ``intent_number`` (an order intent in one statement): ``ops`` is the intent's op record with ``"n": null``
    and ``order`` the order row with ``order_id`` the id's prefix (``"ORD-<restaurant>-"``) and
    ``order_number`` 0. In the statement that applies the write (group row checked: epoch, revision) the store
    takes the restaurant's next number ``n``, stores the record with ``"n": n`` and the order as
    ``order_id = prefix + str(n)``, ``order_number = n``; after the commit it calls ``intent_number(n)`` (it
    must not raise: the write is committed by then). What is written never depends on the callback, so no
    lock is held across a round trip, and as with ``number_order`` numbers increase in commit order per
    restaurant and a refused write takes none."""

    snapshot: GroupSnapshot
    expected_revision: int
    order: OrderRecord | None = None
    epoch: int = 0
    number_order: Callable[[int], tuple[dict[str, Any], OrderRecord]] | None = None
    ops: dict[str, Any] | None = None
    intent_number: Callable[[int], None] | None = None


@dataclass(slots=True)
class StaffUser:
    username: str
    role: StaffRole
    password_hash: str
    active: bool = True
    # The store the user works in; None = every store (meant for admin; a non-admin without a store is
    # scoped to the first store by the server).
    store_id: int | None = None


@dataclass(slots=True)
class StaffSession:
    username: str
    role: StaffRole
    expires_at: float
    store_id: int | None = None  # the user's store now (read with the session, so a change applies at once)


@dataclass(slots=True)
class User:
    """A customer account (seed 003's ``users``). ``user_id`` is a UUID in its canonical text form;
    ``email`` is stored normalised (``tableside.accounts.normalise_email``), so it is the lookup key."""

    user_id: str
    name: str
    email: str | None
    phone: str | None
    line_id: str | None
    password_hash: str
    created_at: float
    updated_at: float


@dataclass(slots=True)
class UserSession:
    """What a valid customer session token stands for."""

    user_id: str
    expires_at: float


@dataclass(slots=True)
class GuestSession:
    """A visitor's server-side session before login (seed 001's ``guest_sessions``). ``session_id`` is 64
    hex characters from a CSPRNG (``secrets.token_hex(32)``); times are epoch seconds (stored as TIMESTAMP
    WITH TIME ZONE in Postgres). ``converted_to_user_id``: the account it was converted to at login."""

    session_id: str
    created_at: float
    expires_at: float
    last_accessed_at: float
    selected_store_id: int | None = None
    converted_to_user_id: str | None = None


@dataclass(slots=True)
class GuestCartLine:
    """One line of a guest cart (seed 001's ``guest_cart_items``): one row per (session, menu item).
    ``item_id`` is the row's id (the ``{item_id}`` of ``/api/guest/cart/item/{item_id}``)."""

    item_id: int
    menu_item_id: str
    quantity: int
    added_at: float
    updated_at: float


class GuestSessionNotFound(StorageError):
    """A guest cart or session change for a session that does not exist or has expired."""


class GuestCartFull(StorageError):
    """``add_guest_cart_item`` of a new menu item when the cart already has ``max_lines`` lines."""


class GuestQuantityTooLarge(StorageError):
    """``add_guest_cart_item`` that would take a line over ``GUEST_MAX_QUANTITY``: refused, nothing changes
    (merging carts at login caps at the maximum instead; see ``convert_guest_session``)."""


class GuestCartLineNotFound(StorageError):
    """No line with this ``item_id`` in this session's cart."""


GUEST_MAX_QUANTITY = 99  # the CHECK of guest_cart_items.quantity (1..99)
GUEST_MAX_LINES = 100  # lines per guest cart (the API's limit; a parameter of add_guest_cart_item)
GUEST_TOUCH_INTERVAL_S = 60.0  # a session's expiry is slid (written) at most once a minute


# -- till order sessions, tabs, transactions (seed 002, issue 12) -----------------------------------


class OrderSessionStatus(StrEnum):
    ACTIVE = "active"
    ASSIGNED_TO_TAB = "assigned_to_tab"
    COMPLETED = "completed"
    PENDING_LOGOUT = "pending_logout"


OPEN_SESSION_STATUSES = (OrderSessionStatus.ACTIVE, OrderSessionStatus.PENDING_LOGOUT)  # at most one per user


class TabStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


TILL_MAX_LINES = 100  # lines per order session
TILL_MAX_QUANTITY = 99  # per line
TILL_MAX_NOTE = 200  # characters of a line's note
PAYMENT_METHODS = ("card", "cash", "other")


@dataclass(slots=True)
class OrderSession:
    """The order a staff member is ringing up at a till (seed 002's ``OrderSession``). ``user_id`` is the
    staff user's username; ``items`` are ``[{line_id, menu_item_id, name, unit_price, qty, note}]`` with
    the name and unit price taken from the menu when the line was first added (never from the client).
    ``revision`` starts at 1 and grows by one with every change (the ``If-Match`` of the API); ``till_id``
    is the till that may write (None: none claimed it yet). ``transaction_id`` / ``order_id`` are set once
    the session is completed (``order_id``: its kitchen ticket, also set by assign-to-tab)."""

    session_id: int
    user_id: str
    store_id: int
    items: list[dict[str, Any]]
    status: OrderSessionStatus
    created_at: float
    updated_at: float
    revision: int
    logout_time: float | None = None
    tab_id: int | None = None
    till_id: str | None = None
    transaction_id: int | None = None
    order_id: str | None = None

    @property
    def total(self) -> int:
        return sum(int(line["unit_price"]) * int(line["qty"]) for line in self.items)


@dataclass(slots=True)
class OrderSessionChange:
    """A partial update of an open session (None: unchanged). ``status`` may only move between ``active``
    and ``pending_logout`` here (to ``pending_logout`` sets ``logout_time`` = now, back to ``active`` clears
    it); completion and tab assignment have their own calls."""

    items: list[dict[str, Any]] | None = None
    status: OrderSessionStatus | None = None
    till_id: str | None = None


@dataclass(slots=True)
class Tab:
    """An open bill. A table's sitting has one (``table_id`` and ``group_id`` set, opened with the sitting
    by ``join_table``); others are opened at the till. ``lines``/``total`` are filled by ``get_tab`` and
    ``list_tabs``: every confirmed order of the sitting's group, then the items of every order session
    assigned to the tab, as ``[{source: "order"|"till", ref: order_id|session_id, menu_item_id, name,
    unit_price, qty, note}]``."""

    tab_id: int
    store_id: int
    name: str
    status: TabStatus
    created_at: float
    table_id: str | None = None
    group_id: str | None = None
    closed_at: float | None = None
    transaction_id: int | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(int(line["unit_price"]) * int(line["qty"]) for line in self.lines)


@dataclass(slots=True)
class Transaction:
    """Money taken: a completed order session or a closed tab (exactly one of the two ids is set)."""

    transaction_id: int
    store_id: int
    lines: list[dict[str, Any]]
    total: int
    payment_method: str
    created_at: float
    tab_id: int | None = None
    order_session_id: int | None = None


class OrderSessionNotFound(StorageError):
    pass


class OpenSessionExists(StorageError):
    """The user already has an ``active`` or ``pending_logout`` session (the partial unique index)."""

    def __init__(self, current: OrderSession) -> None:
        super().__init__(f"user {current.user_id} already has open order session {current.session_id}")
        self.current = current


class RevisionMismatch(StorageError):
    """A conditional write named another revision than the stored one; ``current`` is the stored session."""

    def __init__(self, current: OrderSession) -> None:
        super().__init__(f"order session {current.session_id} is at revision {current.revision}")
        self.current = current


class TabNotFound(StorageError):
    pass


class TabClosed(StorageError):
    def __init__(self, tab: Tab) -> None:
        super().__init__(f"tab {tab.tab_id} is closed")
        self.tab = tab


@dataclass(slots=True)
class CleanupReport:
    expired_tokens: int = 0
    expired_staff_sessions: int = 0
    expired_user_sessions: int = 0
    expired_guest_sessions: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Store(Protocol):
    # -- lifecycle ---------------------------------------------------------------------------
    async def close(self) -> None: ...

    # -- restaurants, tables, menu -------------------------------------------------------------
    async def upsert_restaurant(self, restaurant: Restaurant) -> None:
        """Insert or update a store (name, address, phone, business_hours, timezone; ``created_at`` and
        the order counter are kept). Raises InvalidStoreData for bad business_hours or timezone."""

    async def get_restaurant(self, restaurant_id: int) -> Restaurant | None: ...
    async def list_restaurants(self) -> list[Restaurant]:
        """Every store, by ascending id (the first one is the deployment's default store)."""
    async def add_table(self, table: Table) -> None:
        """Insert a table; an existing table_id is left untouched (idempotent seeding)."""

    async def remove_table(self, table_id: str) -> None: ...
    async def rename_table(self, table_id: str, name: str) -> Table: ...
    async def get_table(self, table_id: str) -> Table | None: ...
    async def list_tables(self, restaurant_id: int) -> list[Table]: ...
    async def rotate_qr_secret(self, table_id: str, new_secret: str, now: float) -> Table: ...
    async def upsert_menu_item(self, item: MenuItem) -> None: ...
    async def list_menu(self, restaurant_id: int) -> list[MenuItem]: ...
    async def set_item_availability(self, menu_item_id: str, available: bool) -> MenuItem: ...

    # -- joining and tokens (seed 000) -----------------------------------------------------------
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
        """Atomically: check the table and secret (constant-time compare), open a group with
        ``new_group_id`` if the table is vacant (status -> occupied), store the token hash bound to the
        group and member. With ``max_members``, a join of an open group that already has that many live
        members (distinct members with a token that has not expired at ``now`` and was not revoked) is
        refused with GroupFull; the count is taken under the same lock as the join, so concurrent joins
        never overshoot. Opening a group also opens the sitting's tab (``tabs`` row named after the table,
        ``table_id`` and ``group_id`` set) in the same transaction. Raises TableNotFound, BadQrSecret,
        TablePaid, GroupFull."""

    async def join_tables(self, requests: Sequence[JoinRequest]) -> list[JoinResult | StorageError]:
        """Decide many joins at once (the join committer's batch): for each request, in order, exactly what
        ``join_table`` would have returned or raised had the requests run one after another in this order:
        the secret is checked first (constant-time), a paid table is refused, a vacant table is opened
        once (by its first acceptable request; the others of the batch join that group) and the member cap
        is exact, counting the batch's earlier accepted joins of the same group. The result list is parallel
        to ``requests``: a JoinResult or the error (TableNotFound, BadQrSecret, TablePaid, GroupFull) for
        that request. Other failures (StorageUnavailable) are raised for the whole batch."""

    async def live_members(self, group_id: str, now: float) -> set[str]:
        """Members of the group holding a token that has not expired at ``now`` (and was not revoked):
        the members that count toward the group's cap."""

    async def revoke_member(self, group_id: str, member_id: str) -> int:
        """A member leaves: delete every token of that member in that group (their place is free at once).
        Returns how many tokens were deleted (0 when already gone)."""

    async def resolve_token(self, token_hash: str, now: float) -> TokenInfo | None:
        """The token's binding if it exists and has not expired (updates last_used); else None."""

    async def open_sitting(self, table_id: str, new_group_id: str, now: float) -> Table:
        """Seat a party without a phone (a reservation seated by staff, issue 13): a vacant table becomes
        occupied with the group ``new_group_id`` and the sitting's tab, exactly as the first join would open
        it, but no token is made (the party's phones join with the table's QR as usual). Raises
        TableNotFound, and InvalidTransition when the table is not vacant."""

    async def checkout_table(self, table_id: str, now: float, payment_method: str = "card") -> Table:
        """occupied -> paid; deletes every token of the current group and closes the sitting's open tab into
        a transaction (``payment_method``), in the same database transaction. Returns the table as it was
        checked out (``current_group_id`` still set; ``get_group_tab`` gives the closed tab and its
        ``transaction_id``). Raises TableNotFound, InvalidTransition."""

    async def reset_table(self, table_id: str, now: float) -> Table:
        """paid (or occupied) -> vacant, ``current_group_id`` cleared and that group's tokens deleted. A tab
        still open (a sitting reset without checkout) is closed without a transaction."""

    async def delete_expired_tokens(self, now: float) -> int: ...
    async def close_idle_groups(self, cutoff: float, now: float) -> list[tuple[str, str]]:
        """Fail-safe for abandoned sittings: every occupied table whose group saw no activity since
        ``cutoff`` (the later of the table's change and the group's ``last_updated``) goes back to
        vacant and its tokens are deleted, in one conditional step so several nodes may run it at once.
        Returns ``(table_id, group_id)`` of the groups closed by this call."""

    # -- group state -----------------------------------------------------------------------------
    async def activate_group(self, group_id: str, table_id: str, restaurant_id: int, node_id: str) -> Activation:
        """Take ownership of a group: atomically increment its epoch (creating the row with revision 0,
        state ``{}`` and epoch 1 when there is none), record ``node_id`` as its owner, and return the new
        epoch with the last stored snapshot (None when no snapshot was written) and the op records after it.
        Serialised with writes of the group: a write of the previous epoch either committed before (and is
        in the returned snapshot or records) or is refused with FencedWrite."""

    async def load_group(self, group_id: str) -> GroupSnapshot | None:
        """The group's current state: the last snapshot with the op records after it replayed
        (``replay_group``); None for an unknown group or one only activated (revision 0)."""

    async def commit_writes(self, writes: Sequence[GroupWrite]) -> list[StorageError | None]:
        """Apply many actors' writes in one transaction (group commit). Each write is all-or-nothing
        on its own; the result has one entry per write: None when applied, FencedWrite (wrong epoch) or
        StaleWrite (wrong revision) when refused, InvalidWrite for non-JSON data, RestaurantNotFound for a
        numbered write of an unknown restaurant. Writes are applied in submission order; numbered writes
        of one restaurant in one batch get consecutive numbers in that order."""

    # -- orders ------------------------------------------------------------------------------------
    async def next_order_number(self, restaurant_id: int, count: int = 1) -> int:
        """Per-restaurant counter: reserves ``count`` numbers and returns the first. Strictly increasing,
        never reused, even across crashes (numbers reserved but not used are skipped, never reissued)."""

    async def get_order(self, order_id: str) -> OrderRecord | None: ...
    async def list_group_orders(self, group_id: str) -> list[OrderRecord]:
        """Orders of a group, oldest first (all statuses)."""

    async def list_orders_by_status(self, status: OrderStatus) -> list[OrderRecord]: ...
    async def list_kitchen_orders(self, restaurant_id: int, after_seq: int, limit: int) -> list[OrderRecord]:
        """Confirmed orders with kitchen_seq > after_seq, ascending by kitchen_seq."""

    async def set_kitchen_status(self, order_id: str, status: str) -> OrderRecord: ...

    # -- staff -----------------------------------------------------------------------------------
    async def upsert_staff(self, user: StaffUser) -> None:
        """Create or replace a user; RestaurantNotFound when ``store_id`` names no store."""

    async def get_staff(self, username: str) -> StaffUser | None: ...
    async def list_staff(self) -> list[StaffUser]: ...
    async def create_staff_session(self, token_hash: str, username: str, role: StaffRole, expires_at: float) -> None: ...
    async def resolve_staff_session(self, token_hash: str, now: float) -> StaffSession | None:
        """None when unknown or expired, or when its user has been removed or deactivated."""

    async def delete_expired_staff_sessions(self, now: float) -> int: ...

    # -- added by the storage layer -------------------------------------------------------------------
    async def delete_staff_session(self, token_hash: str) -> None:
        """Log out: forget one staff session (no error when it does not exist)."""

    async def delete_staff_sessions_for_user(self, username: str) -> int:
        """End every session of a user (password or role changed); returns how many there were."""

    async def remove_staff(self, username: str) -> bool:
        """Delete a user and every session of theirs; False when there was no such user."""

    # -- customer accounts (seed 003's users) -----------------------------------------------------------
    async def create_user(self, user: User) -> None:
        """Insert a new account. Raises DuplicateUser naming the field when its email, phone or line_id
        (each unique when set) belongs to another account; nothing is stored then."""

    async def get_user(self, user_id: str) -> User | None: ...
    async def get_user_by_email(self, email: str) -> User | None:
        """By the normalised email (an exact match: callers normalise first)."""

    async def create_user_session(self, token_hash: str, user_id: str, expires_at: float, now: float) -> None: ...
    async def resolve_user_session(self, token_hash: str, now: float) -> UserSession | None:
        """None when unknown, expired at ``now``, or its user is gone."""

    async def delete_user_session(self, token_hash: str) -> None:
        """Log out: forget one customer session (no error when it does not exist)."""

    async def delete_expired_user_sessions(self, now: float) -> int: ...

    # -- guest sessions and guest carts (seed 001) ----------------------------------------------------
    async def create_guest_session(self, session: GuestSession) -> None:
        """Insert a new session (its id is fresh from a CSPRNG; a clash is a StorageError)."""

    async def get_guest_session(self, session_id: str, now: float, *, include_expired: bool = False) -> GuestSession | None:
        """The session; None when unknown or (unless ``include_expired``) expired at ``now``. An expired
        session is found with ``include_expired`` until the cleanup deletes it (the API tells
        ``session_expired`` from ``unknown_session`` this way)."""

    async def touch_guest_session(self, session_id: str, now: float, expires_at: float) -> bool:
        """Sliding expiry: set ``expires_at`` and ``last_accessed_at = now`` of a live session, but only
        when ``last_accessed_at`` is more than GUEST_TOUCH_INTERVAL_S before ``now`` (one conditional
        UPDATE: at most one write a minute per session, however many requests). True when written."""

    async def select_guest_store(self, session_id: str, store_id: int, now: float) -> GuestSession:
        """Pick the session's store. A cart holds one store's items: picking another store than the
        current one empties the cart (same transaction). Raises GuestSessionNotFound (unknown or expired),
        RestaurantNotFound."""

    async def add_guest_cart_item(self, session_id: str, menu_item_id: str, quantity: int, now: float, *,
                                  max_lines: int = GUEST_MAX_LINES) -> GuestCartLine:
        """Add ``quantity`` of an item: a new line, or (same item again) the line's quantity grows by
        ``quantity``, atomically (one ``INSERT ... ON CONFLICT DO UPDATE``: concurrent adds never lose an
        update). A sum over GUEST_MAX_QUANTITY is refused (GuestQuantityTooLarge, nothing changed); a new
        line when ``max_lines`` exist is GuestCartFull (checked under the session's row lock, so
        concurrent adds never overshoot). Raises GuestSessionNotFound. The caller checks the item's store
        and availability."""

    async def set_guest_cart_quantity(self, session_id: str, item_id: int, quantity: int, now: float) -> GuestCartLine:
        """Set a line's quantity (1..GUEST_MAX_QUANTITY). Raises GuestCartLineNotFound."""

    async def delete_guest_cart_item(self, session_id: str, item_id: int) -> bool:
        """Remove a line; False when the session has no such line."""

    async def list_guest_cart(self, session_id: str) -> list[GuestCartLine]:
        """The lines, oldest first (ascending ``item_id``)."""

    async def count_guest_cart_lines(self, session_id: str) -> int: ...

    async def take_guest_cart(self, session_id: str) -> list[GuestCartLine]:
        """Return the cart's lines and delete them, in one transaction (the hand-over into a table's
        cart): two concurrent calls never both get a line."""

    async def get_user_cart_session(self, user_id: str, now: float) -> GuestSession | None:
        """The session holding the user's cart: the oldest live session converted to the user."""

    async def convert_guest_session(self, session_id: str, user_id: str, now: float) -> GuestSession | None:
        """Login with a guest session, one transaction serialised per user (the user's row is locked):
        the session is marked ``converted_to_user_id``. When the user has no cart session yet it becomes
        the user's cart. Otherwise its lines are merged into the user's cart (quantities added, capped at
        GUEST_MAX_QUANTITY; a cart without a store takes the session's store) and leave this session;
        lines of another store than the user's cart, or beyond GUEST_MAX_LINES, stay where they were.
        Returns the user's cart session; None (nothing changed) when the session was already converted to
        another account. Raises GuestSessionNotFound."""

    async def delete_expired_guest_sessions(self, now: float) -> int:
        """One DELETE of every session expired at ``now`` (their cart lines go by ON DELETE CASCADE); safe
        on several nodes at once (each row is deleted, and counted, by exactly one of them)."""

    # -- till order sessions, tabs, transactions (seed 002) -------------------------------------
    async def create_order_session(
        self, user_id: str, store_id: int, items: list[dict[str, Any]], till_id: str | None, now: float
    ) -> OrderSession:
        """A new ``active`` session at revision 1. Raises OpenSessionExists (with the open one) when the user
        has an ``active`` or ``pending_logout`` session: decided by the database (partial unique index), so
        two concurrent creates make one session."""

    async def get_order_session(self, session_id: int) -> OrderSession | None: ...

    async def get_open_order_session(self, user_id: str) -> OrderSession | None:
        """The user's ``active`` or ``pending_logout`` session, if any."""

    async def list_order_sessions(
        self, store_id: int, *, status: OrderSessionStatus | None = None, user_id: str | None = None,
        limit: int = 200,
    ) -> list[OrderSession]:
        """Sessions of a store, newest first (by id), optionally of one status and/or one user."""

    async def update_order_session(
        self, session_id: int, expected_revision: int, change: OrderSessionChange, now: float
    ) -> OrderSession:
        """Apply ``change`` only if the stored revision is ``expected_revision`` (else RevisionMismatch with
        the stored session) and the session is open (else InvalidTransition); revision + 1, ``updated_at``
        = now. Raises OrderSessionNotFound, and InvalidTransition for a ``status`` other than active or
        pending_logout."""

    async def complete_order_session(
        self, session_id: int, expected_revision: int | None, payment_method: str, now: float
    ) -> tuple[OrderSession, Transaction, OrderRecord]:
        """Pay an ``active`` session, in one database transaction (the session row locked): its kitchen
        ticket (an ``orders`` row, ``ORD-{store}-{n}`` from the store's counter, status confirmed, a
        ``kitchen_seq`` under the store's kitchen lock, ``table_id`` "", ``group_id`` ``till:{session_id}``,
        ``placed_by`` the user), the transaction, and status ``completed`` (revision + 1). Exactly once: a
        session already completed returns its stored session, transaction and ticket unchanged, whatever
        ``expected_revision`` says. Raises OrderSessionNotFound; RevisionMismatch when ``expected_revision``
        is given and differs; InvalidTransition when the session is not active (pending_logout, assigned) or
        has no items."""

    async def assign_order_session_to_tab(
        self, session_id: int, tab_id: int, expected_revision: int | None, now: float
    ) -> tuple[OrderSession, OrderRecord]:
        """Put an ``active`` session on an open tab of its store, in one database transaction: its kitchen
        ticket (as ``complete_order_session``, ``table_id`` the tab's table or ""), status
        ``assigned_to_tab``, ``tab_id`` set. Exactly once: a session already assigned to this tab returns the
        stored session and ticket. Raises OrderSessionNotFound, TabNotFound (or a tab of another store),
        TabClosed, RevisionMismatch, InvalidTransition (not active, no items, or assigned to another tab)."""

    async def delete_order_session(self, session_id: int) -> bool:
        """Delete an open session (a cleared order); False when there is none. Completed and assigned
        sessions are history: InvalidTransition."""

    async def park_stale_order_sessions(self, cutoff: float, now: float) -> list[OrderSession]:
        """Every ``active`` session not changed since ``cutoff`` becomes ``pending_logout`` (``logout_time``
        = now, revision + 1; never deleted). Returns them as stored now. Safe on several nodes at once."""

    async def create_tab(self, store_id: int, name: str, now: float) -> Tab:
        """A new open tab at the till (no table)."""

    async def get_tab(self, tab_id: int) -> Tab | None:
        """The tab with its ``lines``."""

    async def get_group_tab(self, group_id: str) -> Tab | None:
        """The tab of a table's sitting (open or closed), with its ``lines``."""

    async def list_tabs(self, store_id: int, *, status: TabStatus | None = None, limit: int = 200) -> list[Tab]:
        """Tabs of a store, newest first, with their ``lines``."""

    async def close_tab(self, tab_id: int, payment_method: str, now: float) -> tuple[Tab, Transaction]:
        """Close an open tab into a transaction of its lines (one database transaction, the tab row locked).
        Exactly once: a closed tab returns its stored transaction. Raises TabNotFound. A table's tab is
        closed by ``checkout_table`` (this call closes it as well; the table itself is not changed)."""

    async def get_transaction(self, transaction_id: int) -> Transaction | None: ...

    async def list_transactions(self, store_id: int, *, limit: int = 200) -> list[Transaction]:
        """Newest first."""

    async def cleanup(self, now: float) -> CleanupReport:
        """Periodic housekeeping: delete expired guest tokens, staff sessions, customer sessions and guest
        sessions."""
