"""Reading payments, refunds and events back into domain objects."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payhub.domain.payment import Payment, Refund
from payhub.domain.states import PaymentStatus
from payhub.store.tables import events, idempotency_keys, payments, refunds


def payment_from_row(row: Mapping[Any, Any]) -> Payment:
    dossier = {
        "code": row["dossier_code"],
        "procedure_code": row["procedure_code"],
        "agency_code": row["agency_code"],
        "agency_name": row["agency_name"],
    }
    return Payment(
        id=row["id"],
        portal_id=row["portal_id"],
        dossier=dossier,
        items=json.loads(row["items"]),
        amount=int(row["amount"]),
        currency=row["currency"],
        bank=row["bank"],
        bank_reference=row["bank_reference"],
        payment_url=row["payment_url"],
        qr=row["qr"],
        status=PaymentStatus(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        paid_at=row["paid_at"],
        refunded_amount=int(row["refunded_amount"]),
        failure_code=row["failure_code"],
        description=row["description"],
        bank_transaction_id=row["bank_transaction_id"],
    )


def refund_from_row(row: Mapping[Any, Any]) -> Refund:
    return Refund(
        id=row["id"],
        payment_id=row["payment_id"],
        amount=int(row["amount"]),
        status=row["status"],
        created_at=row["created_at"],
        reason=row["reason"],
    )


async def get_payment(
    conn: AsyncConnection, payment_id: str, *, portal_id: str | None = None
) -> Payment | None:
    query = select(payments).where(payments.c.id == payment_id)
    if portal_id is not None:
        query = query.where(payments.c.portal_id == portal_id)
    row = (await conn.execute(query)).mappings().first()
    return payment_from_row(row) if row else None


async def get_payment_by_reference(
    conn: AsyncConnection, bank: str, bank_reference: str
) -> Payment | None:
    query = select(payments).where(
        payments.c.bank_reference == bank_reference, payments.c.bank == bank
    )
    row = (await conn.execute(query)).mappings().first()
    return payment_from_row(row) if row else None


async def list_dossier_payments(
    conn: AsyncConnection, portal_id: str, dossier_code: str
) -> list[Payment]:
    query = (
        select(payments)
        .where(payments.c.portal_id == portal_id, payments.c.dossier_code == dossier_code)
        .order_by(payments.c.created_at, payments.c.id)
    )
    return [payment_from_row(r) for r in (await conn.execute(query)).mappings()]


async def get_idempotency_record(
    conn: AsyncConnection, portal_id: str, key: str
) -> RowMapping | None:
    query = select(idempotency_keys).where(
        idempotency_keys.c.portal_id == portal_id, idempotency_keys.c.key == key
    )
    return (await conn.execute(query)).mappings().first()


async def get_refund(conn: AsyncConnection, refund_id: str) -> Refund | None:
    row = (await conn.execute(select(refunds).where(refunds.c.id == refund_id))).mappings().first()
    return refund_from_row(row) if row else None


async def list_events(
    conn: AsyncConnection, portal_id: str, *, after_seq: int, limit: int
) -> Sequence[RowMapping]:
    query = (
        select(events)
        .where(events.c.portal_id == portal_id, events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings())


async def event_seq(conn: AsyncConnection, portal_id: str, event_id: str) -> int | None:
    query = select(events.c.seq).where(events.c.id == event_id, events.c.portal_id == portal_id)
    value = (await conn.execute(query)).scalar()
    return int(value) if value is not None else None


def event_to_public(row: RowMapping) -> dict[str, Any]:
    """An outbox row as the Standard Webhooks body (plus its id) that the portal receives."""
    from payhub.domain.clock import rfc3339

    return {
        "id": row["id"],
        "type": row["type"],
        "timestamp": rfc3339(row["created_at"]),
        "data": json.loads(row["payload"]),
    }
