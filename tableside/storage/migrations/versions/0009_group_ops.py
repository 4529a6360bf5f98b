"""group_ops (the op log of table groups), group_state.snapshot_revision and last_updated

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Cart batches are no longer stored as whole snapshots: each is one row of ``group_ops`` (group_id, revision,
record JSONB), and ``group_state.state`` is a full snapshot of revision ``snapshot_revision``, rewritten every
N changes and when the actor stops cleanly. Activation reads the snapshot plus the records after it.
``group_state.last_updated`` is the group's last activity (``close_idle_groups`` used the snapshot's
``state->>'last_updated'``, which now goes stale between snapshots).

Existing rows are snapshots of their own revision: ``snapshot_revision = revision``, ``last_updated`` taken
from the state.

Downgrade: the old code reads ``state`` as the group's current state, and folding records into a snapshot
needs the application's cart rules (SQL cannot do it). So downgrade refuses while any group has records
after its snapshot; stop the server cleanly first (every actor writes a snapshot when it deactivates), then
the records left are all covered by snapshots and are dropped with the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("group_state", sa.Column("snapshot_revision", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("group_state", sa.Column("last_updated", sa.Double, nullable=False, server_default="0"))
    # jsonb_typeof guards the cast: a snapshot whose last_updated is not a number counts as never active.
    op.execute(
        """
        UPDATE group_state SET snapshot_revision = revision,
            last_updated = CASE WHEN jsonb_typeof(state->'last_updated') = 'number'
                                THEN (state->>'last_updated')::float8 ELSE 0 END
        """
    )
    op.create_table(
        "group_ops",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("revision", sa.BigInteger, primary_key=True),
        sa.Column("record", JSONB, nullable=False),
    )


def downgrade() -> None:
    bind = op.get_bind()
    unfolded = bind.execute(
        sa.text(
            "SELECT count(DISTINCT o.group_id) FROM group_ops o JOIN group_state g ON g.group_id = o.group_id"
            " WHERE o.revision > g.snapshot_revision"
        )
    ).scalar_one()
    if unfolded:
        raise RuntimeError(
            f"{unfolded} table group(s) have cart changes stored only in group_ops (after their snapshot): "
            "start the server on this schema and stop it cleanly (actors write snapshots when they stop), "
            "then downgrade"
        )
    op.drop_table("group_ops")
    op.drop_column("group_state", "last_updated")
    op.drop_column("group_state", "snapshot_revision")
