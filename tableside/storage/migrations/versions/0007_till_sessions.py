"""order_sessions, tabs and transactions (seed 002, issue 12: till order sessions)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

``tabs`` (open bills; a table's sitting has one: ``group_id`` unique when set), ``order_sessions`` (a staff
user's order in progress at a till; at most one ``active`` or ``pending_logout`` session per user, a partial
unique index) and ``transactions`` (money taken for exactly one tab or one order session, each at most once:
the CHECK and the two unique constraints make completing and closing exactly-once in the database). Times
are epoch seconds (DOUBLE PRECISION), money BIGINT minor units, items and lines JSONB (docs/till.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tabs",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("store_id", sa.Integer, sa.ForeignKey("stores.store_id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("table_id", sa.Text, nullable=True),
        sa.Column("group_id", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("closed_at", sa.Double, nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_tabs_status"),
    )
    op.create_index("ix_tabs_store_id_status", "tabs", ["store_id", "status"])
    op.create_index(
        "ix_tabs_group_id", "tabs", ["group_id"], unique=True, postgresql_where=sa.text("group_id IS NOT NULL")
    )
    op.create_table(
        "order_sessions",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),  # no FK: an audit trail outlives the staff user
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
            "status IN ('active', 'assigned_to_tab', 'completed', 'pending_logout')",
            name="ck_order_sessions_status",
        ),
    )
    op.create_index("ix_order_sessions_user_id_status", "order_sessions", ["user_id", "status"])
    op.create_index("ix_order_sessions_store_id", "order_sessions", ["store_id"])
    op.create_index("ix_order_sessions_tab_id", "order_sessions", ["tab_id"])
    op.create_index(
        "uq_order_sessions_open_user",
        "order_sessions",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('active', 'pending_logout')"),
    )
    op.create_table(
        "transactions",
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
    )
    op.create_index("ix_transactions_store_id", "transactions", ["store_id"])


def downgrade() -> None:
    op.drop_table("transactions")
    op.drop_table("order_sessions")
    op.drop_table("tabs")
