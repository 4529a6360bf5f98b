"""staff_sessions.username index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Ending every session of a user (logout everywhere, password change, removal) deletes by username; without
an index that scans every session of every user.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_staff_sessions_username", "staff_sessions", ["username"])


def downgrade() -> None:
    op.drop_index("ix_staff_sessions_username", table_name="staff_sessions")
