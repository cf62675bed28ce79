"""The hub's tables, in SQLAlchemy Core: the write path builds plain rows, no ORM.

Money columns are BIGINT VND. Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (no time zones) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; the hub only handles aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = UtcDateTime

payments = Table(
    "payments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("portal_id", String(64), nullable=False),
    Column("dossier_code", String(64), nullable=False),
    Column("procedure_code", String(64)),
    Column("agency_code", String(64), nullable=False),
    Column("agency_name", String(255)),
    Column("payer_name", String(255), nullable=False),
    Column("payer_id_number", String(16)),
    Column("payer_phone", String(16)),
    Column("items", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", String(255)),
    Column("return_url", Text, nullable=False),
    Column("bank", String(64), nullable=False),
    Column("bank_reference", String(40), nullable=False, unique=True),
    Column("bank_transaction_id", String(64)),
    Column("payment_url", Text),
    Column("qr", Text),
    Column("status", String(16), nullable=False),
    Column("failure_code", String(32)),
    Column("refunded_amount", BigInteger, nullable=False, default=0),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("paid_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    # recovery: when the bank is next asked about this payment (NULL: never again) and
    # how many times a recovery worker has claimed it (its claim token)
    Column("next_query_at", Timestamp),
    Column("query_attempts", Integer, nullable=False, default=0, server_default=text("0")),
    # portal + dossier + status: the overpaid check after each success reads only the
    # dossier's succeeded payments; listing a dossier uses the first two columns.
    Index("ix_payments_portal_dossier_status", "portal_id", "dossier_code", "status"),
    Index("ix_payments_status_expires", "status", "expires_at"),
    Index("ix_payments_next_query_at", "next_query_at"),
    # a business day's payments at one bank (reconciliation's missing_at_bank)
    Index("ix_payments_bank_paid_at", "bank", "paid_at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("portal_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("scope", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("resource_id", String(40), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(40), nullable=False, unique=True),
    Column("portal_id", String(64), nullable=False),
    Column("type", String(40), nullable=False),
    Column("payment_id", String(40)),
    Column("payload", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("delivery_state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp),
    Index("ix_events_portal_seq", "portal_id", "seq"),
    Index("ix_events_delivery", "delivery_state", "next_attempt_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(80), nullable=False),
    Column("action", String(40), nullable=False),
    Column("payment_id", String(40)),
    Column("from_status", String(16)),
    Column("to_status", String(16)),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_payment", "payment_id"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    # The last event sequence number: allocated under this row's lock, so events are
    # numbered in commit order across hub processes (gap-free ``after=`` paging).
    Column("event_seq", BigInteger, nullable=False, server_default=text("0")),
)

nonces = Table(
    "nonces",
    metadata,
    Column("keyid", String(64), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("expires_at", Timestamp, nullable=False),
    Index("ix_nonces_expires", "expires_at"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("payment_id", String(40), nullable=False),
    Column("portal_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("bank_refund_id", String(64)),
    Column("failure_code", String(32)),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("next_query_at", Timestamp),
    Column("query_attempts", Integer, nullable=False, default=0, server_default=text("0")),
    Index("ix_refunds_payment", "payment_id"),
    Index("ix_refunds_next_query_at", "next_query_at"),
    Index("ix_refunds_status", "status", "created_at"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", String(255)),
    Index("ix_delivery_attempts_event", "event_id", "attempt"),
)
"""Every webhook attempt: which event, when, the answer (or the error) and how long it took."""

portal_endpoints = Table(
    "portal_endpoints",
    metadata,
    Column("portal_id", String(64), primary_key=True),
    Column("disabled_at", Timestamp, nullable=False),
    Column("reason", String(255), nullable=False),
)
"""Portals whose callback answered ``410 Gone``: nothing is sent to them until re-enabled."""


# -- reconciliation (issue 8) -------------------------------------------------------------

reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("bank", String(64), nullable=False),
    Column("business_date", String(10), nullable=False),
    Column("statement_format", String(32), nullable=False),
    Column("statement_sha256", String(64)),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("line_count", BigInteger, nullable=False, default=0),
    Column("counts", Text, nullable=False, default="{}"),
    Column("totals", Text, nullable=False, default="{}"),
    Column("summary", Text, nullable=False, default="{}"),
    Column("created_by", String(80), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("completed_at", Timestamp),
    Index("ix_reconciliation_runs_day", "bank", "business_date", "statement_sha256"),
)

reconciliation_items = Table(
    "reconciliation_items",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("line_no", BigInteger),
    Column("reference", String(64)),
    Column("amount", BigInteger),
    Column("fee", BigInteger),
    Column("settled", Integer),
    Column("booked_at", Timestamp),
    Column("bank_transaction_id", String(64)),
    Column("text", Text),
    Column("payment_id", String(40)),
    Column("class", String(24)),
)

reconciliation_exceptions = Table(
    "reconciliation_exceptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("run_id", String(40), nullable=False),
    Column("item_seq", BigInteger, nullable=False),
    Column("class", String(24), nullable=False),
    Column("bank", String(64), nullable=False),
    Column("business_date", String(10), nullable=False),
    Column("payment_id", String(40)),
    Column("reference", String(64)),
    Column("amount", BigInteger),
    Column("status", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_reconciliation_exceptions_run", "run_id", "class"),
    Index("ix_reconciliation_exceptions_status", "status", "bank"),
)

reconciliation_resolutions = Table(
    "reconciliation_resolutions",
    metadata,
    Column("exception_id", String(40), primary_key=True),
    Column("resolution", String(64), nullable=False),
    Column("note", Text, nullable=False),
    Column("resolved_by", String(80), nullable=False),
    Column("resolved_at", Timestamp, nullable=False),
)

__all__ = [
    "audit_head",
    "audit_log",
    "delivery_attempts",
    "events",
    "idempotency_keys",
    "metadata",
    "nonces",
    "payments",
    "portal_endpoints",
    "reconciliation_exceptions",
    "reconciliation_items",
    "reconciliation_resolutions",
    "reconciliation_runs",
    "refunds",
]
