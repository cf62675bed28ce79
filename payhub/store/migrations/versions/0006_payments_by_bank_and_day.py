"""Payments by bank and paid time: reconciliation finds a day's payments without the others.

``missing_at_bank`` looks for the payments a bank settled on business day D that its
statement does not list. Without this index the planner reached them through the status
index, every succeeded payment the hub ever stored, so a run's cost grew with the hub's
history instead of with the day.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 19:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_payments_bank_paid_at", "payments", ["bank", "paid_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_payments_bank_paid_at", table_name="payments")
