"""Refund recovery: each pending refund's next bank query and its claim counter.

A refund whose bank did not answer (a timeout, a lost answer, the hub stopping between
reserving it and asking) stays ``pending``; recovery asks the bank again on a schedule,
as it does for payments. Existing pending refunds are due at once. Pending refunds are
indexed by status for the operator's list (``payhub refunds pending``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_query_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("query_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.create_index("ix_refunds_next_query_at", ["next_query_at"], unique=False)
        batch_op.create_index("ix_refunds_status", ["status", "created_at"], unique=False)
    op.execute("UPDATE refunds SET next_query_at = updated_at WHERE status = 'pending'")


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_status")
        batch_op.drop_index("ix_refunds_next_query_at")
        batch_op.drop_column("query_attempts")
        batch_op.drop_column("next_query_at")
