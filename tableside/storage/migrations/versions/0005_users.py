"""users and user_sessions (customer accounts, seed 003's ``users``)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Seed 003's ``users`` with its columns and types (UUID id, VARCHAR(255) name and email, VARCHAR(20) phone,
VARCHAR(50) line_id, created_at/updated_at defaulting to now(); TIMESTAMP WITH TIME ZONE), each of email,
phone and line_id under a unique index, plus the argon2id ``password_hash``. ``user_sessions`` holds the
SHA-256 of each login token, deleted with its user (ON DELETE CASCADE) and by the periodic cleanup once
``expires_at`` (indexed) has passed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("line_id", sa.String(50), nullable=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_users_email", "users", ["email"], unique=True)
    op.create_index("ix_users_phone", "users", ["phone"], unique=True)
    op.create_index("ix_users_line_id", "users", ["line_id"], unique=True)
    op.create_table(
        "user_sessions",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])
    op.create_index("ix_user_sessions_expires_at", "user_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("user_sessions")
    op.drop_table("users")
