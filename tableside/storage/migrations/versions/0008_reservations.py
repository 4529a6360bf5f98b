"""staff, menus, reservations, payments, waitlist, reservation_history, chat_logs (seed 003, issue 13)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Seed 003's reservation tables with its column names: ``staff`` (bookable staff: store, name, free-text role,
bookable flag), ``menus`` (bookable courses: price in minor units, ``duration`` minutes CHECKed 1..1440),
``reservations`` (UUID ids, TIMESTAMP WITH TIME ZONE start/end CHECKed end > start, status CHECKed to the five
statuses, party_size 1..50, table_id / group_id of the sitting when seated, the pending hold's expiry) with
the **exclusion constraint** ``ex_reservations_staff_time`` (no two reservations of one staff member that are
not canceled overlap in ``[start_time, end_time)``; needs the ``btree_gist`` extension), ``payments``
(status pending / completed / failed, unique idempotency key), ``waitlist`` (one open entry per customer and
slot: a partial unique index), and the seed's MongoDB documents as JSONB rows: ``reservation_history`` (one
document per user) and ``chat_logs`` (one per user and channel). Store ids are INTEGER (stores.store_id),
money BIGINT minor units (the seed's DECIMAL(10,2)).

Downgrade drops the tables but keeps the ``btree_gist`` extension: it is database-wide, may have existed
before this migration and may be used by other objects, and keeping it is harmless (upgrade creates it IF
NOT EXISTS).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.create_table(
        "staff",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(50), nullable=False),
        sa.Column("bookable", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_staff_store_id", "staff", ["store_id"])
    op.create_table(
        "menus",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("price", sa.BigInteger, nullable=False),
        sa.Column("duration", sa.Integer, nullable=False),
        sa.Column("bookable", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("sort_order", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("duration BETWEEN 1 AND 1440", name="ck_menus_duration"),
        sa.CheckConstraint("price >= 0", name="ck_menus_price"),
    )
    op.create_index("ix_menus_store_id", "menus", ["store_id"])
    op.create_table(
        "reservations",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id"), nullable=False),
        sa.Column("staff_id", UUID(as_uuid=False), sa.ForeignKey("staff.id"), nullable=False),
        sa.Column("menu_id", UUID(as_uuid=False), sa.ForeignKey("menus.id"), nullable=False),
        sa.Column("start_time", _TS, nullable=False),
        sa.Column("end_time", _TS, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("notes", sa.Text, nullable=True),
        sa.Column("party_size", sa.Integer, nullable=False, server_default="2"),
        sa.Column("table_id", sa.Text, nullable=True),
        sa.Column("group_id", sa.Text, nullable=True),
        sa.Column("hold_expires_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'canceled', 'seated', 'no_show')", name="ck_reservations_status"
        ),
        sa.CheckConstraint("party_size BETWEEN 1 AND 50", name="ck_reservations_party_size"),
        sa.CheckConstraint("end_time > start_time", name="ck_reservations_time_order"),
    )
    op.create_index("ix_reservations_store_id_start_time", "reservations", ["store_id", "start_time"])
    op.create_index("ix_reservations_user_id", "reservations", ["user_id"])
    op.execute(
        "ALTER TABLE reservations ADD CONSTRAINT ex_reservations_staff_time EXCLUDE USING gist"
        " (staff_id WITH =, tstzrange(start_time, end_time, '[)') WITH &&) WHERE (status <> 'canceled')"
    )
    op.create_table(
        "payments",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("reservation_id", UUID(as_uuid=False), sa.ForeignKey("reservations.id"), nullable=False),
        sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('pending', 'completed', 'failed')", name="ck_payments_status"),
        sa.CheckConstraint("amount >= 0", name="ck_payments_amount"),
        sa.UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
    )
    op.create_index("ix_payments_reservation_id", "payments", ["reservation_id"])
    op.create_table(
        "waitlist",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
        sa.Column("menu_id", UUID(as_uuid=False), sa.ForeignKey("menus.id", ondelete="CASCADE"), nullable=False),
        sa.Column("staff_id", UUID(as_uuid=False), nullable=True),
        sa.Column("start_time", _TS, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="waiting"),
        sa.Column("offered_until", _TS, nullable=True),
        sa.Column("offered_staff_id", UUID(as_uuid=False), nullable=True),
        sa.Column("reservation_id", UUID(as_uuid=False), nullable=True),
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "status IN ('waiting', 'offered', 'accepted', 'expired', 'canceled')", name="ck_waitlist_status"
        ),
    )
    op.create_index("ix_waitlist_slot", "waitlist", ["store_id", "menu_id", "start_time", "status"])
    op.create_index("ix_waitlist_user_id", "waitlist", ["user_id"])
    op.create_index(
        "uq_waitlist_open_entry",
        "waitlist",
        ["user_id", "store_id", "menu_id", "start_time"],
        unique=True,
        postgresql_where=sa.text("status IN ('waiting', 'offered')"),
    )
    op.create_table(
        "reservation_history",
        sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("doc", JSONB, nullable=False),
        sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "chat_logs",
        sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("logs", JSONB, nullable=False),
        sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("chat_logs")
    op.drop_table("reservation_history")
    op.drop_table("waitlist")
    op.drop_table("payments")
    op.drop_table("reservations")
    op.drop_table("menus")
    op.drop_table("staff")
    # btree_gist stays (see the module docstring).
