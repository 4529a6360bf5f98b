"""The Postgres schema as SQLAlchemy Core tables.

This module is the single description of the schema used by queries in ``postgres.py``. Migrations in
``migrations/versions`` create the same tables explicitly (they must never depend on this module changing
under them); ``tests/storage`` checks that the two agree. Times are epoch seconds as DOUBLE PRECISION and
money is integer minor units, matching ``interface.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, ExcludeConstraint

metadata = sa.MetaData()

# kitchen_seq is assigned from this sequence when an order first becomes confirmed. A sequence (not
# max()+1) so concurrent batches never collide; gaps are harmless because the kitchen reads by cursor.
kitchen_seq_seq = sa.Sequence("kitchen_seq_seq", metadata=metadata, start=1)

# The restaurants of the deployment (migration 0004 renamed ``restaurants`` to ``stores`` and its key to
# ``store_id``). The other tables keep their column name ``restaurant_id`` for the same integer id.
stores = sa.Table(
    "stores",
    metadata,
    sa.Column("store_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    # The next order number to hand out; bumped by a single UPDATE ... RETURNING so it is never reused.
    sa.Column("next_order_number", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    sa.Column("phone", sa.Text, nullable=False, server_default=""),
    # {"mon": [["11:00", "22:00"]], ..., "closed_dates": ["2026-12-31"]} (interface.validate_business_hours)
    sa.Column("business_hours", JSONB, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("created_at", sa.Double, nullable=False),
)
restaurants = stores  # the old name, for code that still says restaurant

tables = sa.Table(
    "tables",
    metadata,
    sa.Column("table_id", sa.Text, primary_key=True),
    sa.Column(
        "restaurant_id",
        sa.Integer,
        sa.ForeignKey("stores.store_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="vacant"),
    sa.Column("current_group_id", sa.Text, nullable=True),
    sa.Column("qr_secret", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

menu_items = sa.Table(
    "menu_items",
    metadata,
    sa.Column("menu_item_id", sa.Text, primary_key=True),
    sa.Column("restaurant_id", sa.Integer, nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("available", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("sort_order", sa.Integer, nullable=False, server_default="0"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    # Only a hash of the guest token is stored so a database leak does not leak usable tokens.
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("table_id", sa.Text, nullable=False),
    sa.Column("group_id", sa.Text, nullable=False, index=True),
    sa.Column("member_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("last_used", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
)

group_state = sa.Table(
    "group_state",
    metadata,
    sa.Column("group_id", sa.Text, primary_key=True),
    sa.Column("table_id", sa.Text, nullable=False),
    sa.Column("restaurant_id", sa.Integer, nullable=False),
    # Optimistic-concurrency revision (the ETag): a write applies only if this equals its expected value.
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("state", JSONB, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    # Fencing token: bumped by every activation (Store.activate_group); a write applies only while its
    # epoch is still this one, so an owner that lost the group (paused, partitioned) can never write.
    sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
    # The node that activated the group last (informational; safety rests on the epoch).
    sa.Column("owner_node", sa.Text, nullable=True),
    # The op log (migration 0009): ``state`` is the snapshot of revision ``snapshot_revision``; the cart
    # batches after it are rows of ``group_ops`` (revision > snapshot_revision), replayed on activation.
    sa.Column("snapshot_revision", sa.BigInteger, nullable=False, server_default="0"),
    # The group's last activity (the newest write's clock time): ``state`` goes stale between snapshots,
    # so the idle sweep reads this instead of state->>'last_updated'.
    sa.Column("last_updated", sa.Double, nullable=False, server_default="0"),
)

# One row per cart batch committed after the group's snapshot: ``record`` = {"b", "rev", "t", "ops"} (see
# tableside/actors/cart.py). A snapshot write deletes the rows it covers. No foreign key: group_state rows are
# never deleted (only truncated in tests), and an FK check would cost a lookup per cart batch.
group_ops = sa.Table(
    "group_ops",
    metadata,
    sa.Column("group_id", sa.Text, primary_key=True),
    sa.Column("revision", sa.BigInteger, primary_key=True),
    sa.Column("record", JSONB, nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("order_number", sa.BigInteger, nullable=False),
    sa.Column("restaurant_id", sa.Integer, nullable=False),
    sa.Column("table_id", sa.Text, nullable=False),
    sa.Column("group_id", sa.Text, nullable=False, index=True),
    sa.Column("status", sa.Text, nullable=False, index=True),
    sa.Column("items", JSONB, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("special_instructions", sa.Text, nullable=False, server_default=""),
    sa.Column("placed_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("pos_ticket_id", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("confirmed_at", sa.Double, nullable=True),
    sa.Column("kitchen_seq", sa.BigInteger, nullable=True, unique=True),
    sa.Column("kitchen_status", sa.Text, nullable=False, server_default="new"),
    # The kitchen display polls "confirmed orders of restaurant R after cursor S".
    sa.Index("ix_orders_restaurant_kitchen_seq", "restaurant_id", "kitchen_seq"),
)

staff_users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("username", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    # NULL: every store (admin); else the one store the user sees and changes.
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id"), nullable=True),
)

staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("username", sa.Text, nullable=False, index=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
)

# Customer accounts: seed 003's ``users`` (its column names and types; its TIMESTAMPs are stored WITH TIME
# ZONE so no reader can mistake the zone), plus the argon2id password hash. Email, phone and line_id are
# each unique when set (NULLs never clash); the email is stored normalised, so the index is the lookup.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("email", sa.String(255), nullable=True),
    sa.Column("phone", sa.String(20), nullable=True),
    sa.Column("line_id", sa.String(50), nullable=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_users_email", "email", unique=True),
    sa.Index("ix_users_phone", "phone", unique=True),
    sa.Index("ix_users_line_id", "line_id", unique=True),
)

# A customer's login sessions: only the SHA-256 of the token is stored (as for guests and staff). Times
# are epoch seconds like every other session table; deleting a user deletes their sessions.
user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("created_at", sa.Double, nullable=False),
)

# Guest sessions (seed 001): a visitor's server-side session before login and its cart. The seed's columns
# and types: an integer id, the 64-character ``session_id`` (unique index), TIMESTAMP WITH TIME ZONE times,
# ``expires_at`` indexed for the cleanup. Deviations: ``converted_to_user_id`` is a UUID (users.id is one)
# and the menu column is ``menu_item_id`` TEXT (menu_items' key). A cart row is unique per (session, item)
# so adding an item again is one ``INSERT ... ON CONFLICT`` and its quantity is CHECKed to 1..99.
guest_sessions = sa.Table(
    "guest_sessions",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("selected_store_id", sa.Integer, sa.ForeignKey("stores.store_id"), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("converted_to_user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("last_accessed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_guest_sessions_session_id", "session_id", unique=True),
    sa.Index("ix_guest_sessions_expires_at", "expires_at"),
    sa.Index("ix_guest_sessions_converted_to_user_id", "converted_to_user_id"),
)

guest_cart_items = sa.Table(
    "guest_cart_items",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("session_id", sa.String(64), sa.ForeignKey("guest_sessions.session_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("menu_item_id", sa.Text, sa.ForeignKey("menu_items.menu_item_id"), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False, server_default="1"),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("quantity BETWEEN 1 AND 99", name="ck_guest_cart_items_quantity"),
    sa.UniqueConstraint("session_id", "menu_item_id", name="uq_guest_cart_items_session_item"),
    sa.Index("ix_guest_cart_items_session_id", "session_id"),
)

# Till order sessions, tabs and transactions (seed 002, issue 12; docs/till.md). ``order_sessions.user_id`` is
# the staff username. At most one open (``active`` / ``pending_logout``) session per user: a partial unique
# index, so two concurrent creates make one session. A table's sitting has one tab (``group_id`` unique when
# set). A transaction is money taken for exactly one tab or one order session, and each of those has at most
# one transaction (the unique constraints): that is what makes completing / closing exactly-once.
ORDER_SESSION_STATUSES = ("active", "assigned_to_tab", "completed", "pending_logout")

tabs = sa.Table(
    "tabs",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("table_id", sa.Text, nullable=True),
    sa.Column("group_id", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("closed_at", sa.Double, nullable=True),
    sa.CheckConstraint("status IN ('open', 'closed')", name="ck_tabs_status"),
    sa.Index("ix_tabs_store_id_status", "store_id", "status"),
    sa.Index("ix_tabs_group_id", "group_id", unique=True, postgresql_where=sa.text("group_id IS NOT NULL")),
)

order_sessions = sa.Table(
    "order_sessions",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    # The staff username, without a foreign key on purpose: sessions are an audit trail (completed and
    # assigned ones stay when the user is removed; remove_staff deletes only their open ones).
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
    sa.Column("items", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("logout_time", sa.Double, nullable=True),
    sa.Column("tab_id", sa.Integer, sa.ForeignKey("tabs.id"), nullable=True),
    sa.Column("till_id", sa.Text, nullable=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("transaction_id", sa.Integer, nullable=True),
    sa.Column("order_id", sa.Text, nullable=True),
    sa.CheckConstraint(
        "status IN ('active', 'assigned_to_tab', 'completed', 'pending_logout')", name="ck_order_sessions_status"
    ),
    sa.Index("ix_order_sessions_user_id_status", "user_id", "status"),
    sa.Index("ix_order_sessions_store_id", "store_id"),
    sa.Index("ix_order_sessions_tab_id", "tab_id"),
    sa.Index(
        "uq_order_sessions_open_user",
        "user_id",
        unique=True,
        postgresql_where=sa.text("status IN ('active', 'pending_logout')"),
    ),
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
    sa.Column("tab_id", sa.Integer, sa.ForeignKey("tabs.id"), nullable=True),
    sa.Column("order_session_id", sa.Integer, sa.ForeignKey("order_sessions.id"), nullable=True),
    sa.Column("lines", JSONB, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("payment_method", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.CheckConstraint("(tab_id IS NULL) <> (order_session_id IS NULL)", name="ck_transactions_one_source"),
    sa.UniqueConstraint("tab_id", name="uq_transactions_tab_id"),
    sa.UniqueConstraint("order_session_id", name="uq_transactions_order_session_id"),
    sa.Index("ix_transactions_store_id", "store_id"),
)

# Reservations (seed 003, issue 13; tableside/storage/reservations.py). The seed's staff / menus / reservations /
# payments with its column names; store ids are INTEGER (stores.store_id, migration 0004) where the seed says
# UUID, money is BIGINT minor units where it says DECIMAL(10,2), and its TIMESTAMPs are WITH TIME ZONE.
# ``staff`` is the *bookable* staff (a chef, a sommelier: someone a reservation is made with), not a login
# (those are ``staff_users``); ``menus`` are the bookable courses (``menu_items`` is the ordering menu).
RESERVATION_STATUSES = ("pending", "confirmed", "canceled", "seated", "no_show")
PAYMENT_STATUSES = ("pending", "completed", "failed")
WAITLIST_STATUSES = ("waiting", "offered", "accepted", "expired", "canceled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


staff = sa.Table(
    "staff",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("role", sa.String(50), nullable=False),
    sa.Column("bookable", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_staff_store_id", "store_id"),
)

menus = sa.Table(
    "menus",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("price", sa.BigInteger, nullable=False),
    sa.Column("duration", sa.Integer, nullable=False),
    sa.Column("bookable", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("sort_order", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint("duration BETWEEN 1 AND 1440", name="ck_menus_duration"),
    sa.CheckConstraint("price >= 0", name="ck_menus_price"),
    sa.Index("ix_menus_store_id", "store_id"),
)

# No double booking: the exclusion constraint refuses a second reservation of one staff member whose
# half-open time range [start_time, end_time) overlaps one that is not canceled (btree_gist gives the
# uuid "=" its GiST operator class). Concurrent inserts are decided by Postgres: the loser waits for the
# winner's commit and then fails with SQLSTATE 23P01 (``SlotTaken``).
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id"), nullable=False),
    sa.Column("staff_id", UUID(as_uuid=False), sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("menu_id", UUID(as_uuid=False), sa.ForeignKey("menus.id"), nullable=False),
    sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("notes", sa.Text, nullable=True),
    sa.Column("party_size", sa.Integer, nullable=False, server_default="2"),
    sa.Column("table_id", sa.Text, nullable=True),
    sa.Column("group_id", sa.Text, nullable=True),
    sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(_in("status", RESERVATION_STATUSES), name="ck_reservations_status"),
    sa.CheckConstraint("party_size BETWEEN 1 AND 50", name="ck_reservations_party_size"),
    sa.CheckConstraint("end_time > start_time", name="ck_reservations_time_order"),
    sa.Index("ix_reservations_store_id_start_time", "store_id", "start_time"),
    sa.Index("ix_reservations_user_id", "user_id"),
    ExcludeConstraint(
        (sa.column("staff_id"), "="),
        (sa.func.tstzrange(sa.column("start_time"), sa.column("end_time"), sa.text("'[)'")), "&&"),
        name="ex_reservations_staff_time",
        using="gist",
        where=sa.text("status <> 'canceled'"),
    ),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("reservation_id", UUID(as_uuid=False), sa.ForeignKey("reservations.id"), nullable=False),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(_in("status", PAYMENT_STATUSES), name="ck_payments_status"),
    sa.CheckConstraint("amount >= 0", name="ck_payments_amount"),
    sa.UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
    sa.Index("ix_payments_reservation_id", "reservation_id"),
)

# The seed's Redis waitlist, durable: one row per customer waiting for a slot (store, course, start time,
# optionally one staff member). A customer waits for a slot once at a time (the partial unique index).
waitlist = sa.Table(
    "waitlist",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
    sa.Column("menu_id", UUID(as_uuid=False), sa.ForeignKey("menus.id", ondelete="CASCADE"), nullable=False),
    sa.Column("staff_id", UUID(as_uuid=False), nullable=True),
    sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="waiting"),
    sa.Column("offered_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("offered_staff_id", UUID(as_uuid=False), nullable=True),
    sa.Column("reservation_id", UUID(as_uuid=False), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(_in("status", WAITLIST_STATUSES), name="ck_waitlist_status"),
    sa.Index("ix_waitlist_slot", "store_id", "menu_id", "start_time", "status"),
    sa.Index("ix_waitlist_user_id", "user_id"),
    sa.Index(
        "uq_waitlist_open_entry",
        "user_id",
        "store_id",
        "menu_id",
        "start_time",
        unique=True,
        postgresql_where=sa.text("status IN ('waiting', 'offered')"),
    ),
)

# The seed's MongoDB documents, as JSONB documents: ``reservation_history`` one per user
# ({"history": [...]}) and ``chat_logs`` one per user and channel ({"logs": [...]} as the column ``logs``, an
# array). Appends are one INSERT ... ON CONFLICT DO UPDATE, keeping the newest entries only (bounded).
reservation_history = sa.Table(
    "reservation_history",
    metadata,
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("doc", JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

chat_logs = sa.Table(
    "chat_logs",
    metadata,
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("logs", JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

ALL_TABLES: tuple[sa.Table, ...] = (
    stores,
    tables,
    menu_items,
    tokens,
    group_state,
    group_ops,
    orders,
    staff_users,
    staff_sessions,
    users,
    user_sessions,
    guest_sessions,
    guest_cart_items,
    tabs,
    order_sessions,
    transactions,
    staff,
    menus,
    reservations,
    payments,
    waitlist,
    reservation_history,
    chat_logs,
)
