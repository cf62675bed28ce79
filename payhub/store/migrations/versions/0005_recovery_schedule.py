"""Recovery: each payment's next bank query and its claim counter, indexed by due time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_query_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("query_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.create_index("ix_payments_next_query_at", ["next_query_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_next_query_at")
        batch_op.drop_column("query_attempts")
        batch_op.drop_column("next_query_at")
