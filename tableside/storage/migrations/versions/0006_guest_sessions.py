"""guest_sessions and guest_cart_items (seed 001: a visitor's session and cart before login)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Seed 001's tables with its columns, types, constraints and indexes: ``guest_sessions`` (integer id, unique
indexed 64-character ``session_id``, ``selected_store_id`` → stores, ``created_at``, indexed ``expires_at``,
``converted_to_user_id`` → users, ``last_accessed_at``; TIMESTAMP WITH TIME ZONE) and ``guest_cart_items``
(``session_id`` → guest_sessions.session_id ON DELETE CASCADE, indexed; ``menu_item_id`` → menu_items;
``quantity`` default 1, CHECK 1..99; ``added_at``, ``updated_at``; unique (session_id, menu_item_id)).
Deviations from the seed, forced by the schema it joins: users.id is a UUID and menu_items' key is the
text ``menu_item_id``. An index on ``converted_to_user_id`` finds a user's cart.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guest_sessions",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("selected_store_id", sa.Integer, sa.ForeignKey("stores.store_id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("converted_to_user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("last_accessed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_guest_sessions_session_id", "guest_sessions", ["session_id"], unique=True)
    op.create_index("ix_guest_sessions_expires_at", "guest_sessions", ["expires_at"])
    op.create_index("ix_guest_sessions_converted_to_user_id", "guest_sessions", ["converted_to_user_id"])
    op.create_table(
        "guest_cart_items",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey("guest_sessions.session_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("menu_item_id", sa.Text, sa.ForeignKey("menu_items.menu_item_id"), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False, server_default="1"),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("quantity BETWEEN 1 AND 99", name="ck_guest_cart_items_quantity"),
        sa.UniqueConstraint("session_id", "menu_item_id", name="uq_guest_cart_items_session_item"),
    )
    op.create_index("ix_guest_cart_items_session_id", "guest_cart_items", ["session_id"])


def downgrade() -> None:
    op.drop_table("guest_cart_items")
    op.drop_table("guest_sessions")
