"""Reconciliation: runs, their statement lines (staging and report), exceptions, resolutions.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-28 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("bank", sa.String(length=64), nullable=False),
        sa.Column("business_date", sa.String(length=10), nullable=False),
        sa.Column("statement_format", sa.String(length=32), nullable=False),
        sa.Column("statement_sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("line_count", sa.BigInteger(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_index(
        "ix_reconciliation_runs_day",
        "reconciliation_runs",
        ["bank", "business_date", "statement_sha256"],
    )
    op.create_table(
        "reconciliation_items",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("line_no", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("fee", sa.BigInteger(), nullable=True),
        sa.Column("settled", sa.Integer(), nullable=True),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bank_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("class", sa.String(length=24), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_reconciliation_items")),
    )
    op.create_table(
        "reconciliation_exceptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("item_seq", sa.BigInteger(), nullable=False),
        sa.Column("class", sa.String(length=24), nullable=False),
        sa.Column("bank", sa.String(length=64), nullable=False),
        sa.Column("business_date", sa.String(length=10), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_exceptions")),
    )
    op.create_index(
        "ix_reconciliation_exceptions_run", "reconciliation_exceptions", ["run_id", "class"]
    )
    op.create_index(
        "ix_reconciliation_exceptions_status", "reconciliation_exceptions", ["status", "bank"]
    )
    op.create_table(
        "reconciliation_resolutions",
        sa.Column("exception_id", sa.String(length=40), nullable=False),
        sa.Column("resolution", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.String(length=80), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("exception_id", name=op.f("pk_reconciliation_resolutions")),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_resolutions")
    op.drop_index("ix_reconciliation_exceptions_status", "reconciliation_exceptions")
    op.drop_index("ix_reconciliation_exceptions_run", "reconciliation_exceptions")
    op.drop_table("reconciliation_exceptions")
    op.drop_table("reconciliation_items")
    op.drop_index("ix_reconciliation_runs_day", "reconciliation_runs")
    op.drop_table("reconciliation_runs")
