"""Events numbered in commit order; the overpaid check served by an index.

``audit_head.event_seq`` holds the last event sequence number. The ledger allocates
event numbers under the audit head's row lock, so numbers follow commit order across
hub processes and ``GET /v1/events?after=`` cannot skip an event that commits late.

``ix_payments_portal_dossier_status`` replaces ``ix_payments_portal_dossier``: SQLite,
without statistics, planned the overpaid check (portal, dossier, status) on the status
index and walked every succeeded payment.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("event_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    op.execute("UPDATE audit_head SET event_seq = (SELECT COALESCE(MAX(seq), 0) FROM events)")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_portal_dossier")
        batch_op.create_index(
            "ix_payments_portal_dossier_status",
            ["portal_id", "dossier_code", "status"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_portal_dossier_status")
        batch_op.create_index(
            "ix_payments_portal_dossier", ["portal_id", "dossier_code"], unique=False
        )
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("event_seq")
