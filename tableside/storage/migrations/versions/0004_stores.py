"""stores: the restaurant table becomes ``stores`` (several restaurants in one deployment)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

``restaurants`` is renamed to ``stores`` and its key ``restaurant_id`` to ``store_id``; the integer ids stay
(so order ids ``ORD-{store}-{n}`` keep their meaning and every counter continues where it was). New
columns: address, phone, business_hours (JSONB), timezone, created_at; the existing row(s) get every day
11:00-22:00, timezone UTC and the migration time. The other tables keep their ``restaurant_id`` columns (the
same integer, now a store id); ``tables.restaurant_id`` still references the key (Postgres follows the
rename). ``staff_users`` gains a nullable ``store_id``: existing non-admin users are bound to the first
store (admins stay NULL = every store). Downgrade restores the old shape (data of every store kept;
the staff store binding and the new columns are dropped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out (not imported from interface.py) so this migration never changes under a later edit.
_HOURS = {day: [["11:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
_DEFAULT_HOURS = json.dumps({**_HOURS, "closed_dates": []})


def upgrade() -> None:
    op.rename_table("restaurants", "stores")
    op.alter_column("stores", "restaurant_id", new_column_name="store_id")
    op.execute("ALTER INDEX restaurants_pkey RENAME TO stores_pkey")
    op.add_column("stores", sa.Column("address", sa.Text, nullable=False, server_default=""))
    op.add_column("stores", sa.Column("phone", sa.Text, nullable=False, server_default=""))
    # Added with defaults so existing rows are filled, then the defaults of the JSONB / time columns are
    # dropped: the application always writes them.
    op.add_column(
        "stores",
        sa.Column("business_hours", JSONB, nullable=False, server_default=sa.text(f"'{_DEFAULT_HOURS}'::jsonb")),
    )
    op.add_column("stores", sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"))
    op.add_column(
        "stores",
        sa.Column("created_at", sa.Double, nullable=False, server_default=sa.text("EXTRACT(EPOCH FROM now())")),
    )
    op.alter_column("stores", "business_hours", server_default=None)
    op.alter_column("stores", "created_at", server_default=None)

    op.add_column("staff_users", sa.Column("store_id", sa.Integer, nullable=True))
    op.create_foreign_key("staff_users_store_id_fkey", "staff_users", "stores", ["store_id"], ["store_id"])
    op.execute(
        "UPDATE staff_users SET store_id = (SELECT min(store_id) FROM stores) WHERE role <> 'admin'"
    )


def downgrade() -> None:
    op.drop_constraint("staff_users_store_id_fkey", "staff_users", type_="foreignkey")
    op.drop_column("staff_users", "store_id")
    for column in ("created_at", "timezone", "business_hours", "phone", "address"):
        op.drop_column("stores", column)
    op.execute("ALTER INDEX stores_pkey RENAME TO restaurants_pkey")
    op.alter_column("stores", "store_id", new_column_name="restaurant_id")
    op.rename_table("stores", "restaurants")
