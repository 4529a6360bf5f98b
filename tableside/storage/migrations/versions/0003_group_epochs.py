"""group_state.epoch and owner_node (fencing for multi-node actors)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Activating a table group on a node increments its epoch (``Store.activate_group``); every write of the
actor carries that epoch and applies only while it is still the stored one, so a stale owner (paused or
partitioned, still believing it owns the group) can never write. ``owner_node`` records which node
activated it last (for operators; safety rests on the epoch alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("group_state", sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("group_state", sa.Column("owner_node", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("group_state", "owner_node")
    op.drop_column("group_state", "epoch")
