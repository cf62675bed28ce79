"""The SQL repositories behind the unit of work, and rows back into domain objects.

Every statement is built once, at import, with bind parameters: building a ``select``
per call costs more than running it on SQLite. Each one is served by an index (the
query-plan tests in ``tests/integration/test_query_plans.py`` keep it so).

A repository reaches the database through its ``Access``: ``reading()`` for the
connection as it is, ``writing()`` for the same connection once the unit's savepoint is
taken, so a unit that writes and then raises is rolled back to where it started.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, Table, Update, bindparam, case, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from payhub.domain.clock import rfc3339
from payhub.domain.payment import Payment, Refund
from payhub.domain.states import PaymentStatus
from payhub.service.unit_of_work import (
    AuditEntry,
    Claim,
    DueQuery,
    DueRefund,
    IdempotencyRecord,
    NewPayment,
    NonceClaim,
    PendingRefund,
)
from payhub.store.prepared import Prepared
from payhub.store.sql import insert_ignore
from payhub.store.tables import events, idempotency_keys, nonces, payments, refunds

OPEN_REFUND_STATUSES = ("pending", "succeeded")


class Access(Protocol):
    """How a repository gets its connection, and where its batched claims go."""

    def reading(self) -> AsyncConnection: ...

    async def writing(self) -> AsyncConnection: ...

    def add_claim(
        self,
        table: Any,
        row: dict[str, Any],
        *,
        then: Sequence[tuple[Any, dict[str, Any]]] = (),
        audit: Sequence[AuditEntry] = (),
        after: Claim | None = None,
    ) -> Claim: ...


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


def payment_row(new: NewPayment) -> dict[str, Any]:
    payment = new.payment
    dossier = payment.dossier
    return {
        "id": payment.id,
        "portal_id": payment.portal_id,
        "dossier_code": dossier["code"],
        "procedure_code": dossier.get("procedure_code"),
        "agency_code": dossier["agency_code"],
        "agency_name": dossier.get("agency_name"),
        "payer_name": new.payer_name,
        "payer_id_number": new.payer_id_number,
        "payer_phone": new.payer_phone,
        "items": json.dumps(payment.items, ensure_ascii=False, separators=(",", ":")),
        "amount": payment.amount,
        "currency": payment.currency,
        "description": payment.description,
        "return_url": new.return_url,
        "bank": payment.bank,
        "bank_reference": payment.bank_reference,
        "bank_transaction_id": payment.bank_transaction_id,
        "payment_url": payment.payment_url,
        "qr": payment.qr,
        "status": payment.status.value,
        "failure_code": payment.failure_code,
        "refunded_amount": payment.refunded_amount,
        "created_at": payment.created_at,
        "expires_at": payment.expires_at,
        "paid_at": payment.paid_at,
        "updated_at": payment.created_at,
        "next_query_at": new.next_query_at,
        "query_attempts": 0,
    }


def refund_from_row(row: Mapping[Any, Any]) -> Refund:
    return Refund(
        id=row["id"],
        payment_id=row["payment_id"],
        amount=int(row["amount"]),
        status=row["status"],
        created_at=row["created_at"],
        reason=row["reason"],
    )


def event_to_public(row: Mapping[Any, Any]) -> dict[str, Any]:
    """An outbox row as the Standard Webhooks body (plus its id) that the portal receives."""
    return {
        "id": row["id"],
        "type": row["type"],
        "timestamp": rfc3339(row["created_at"]),
        "data": json.loads(row["payload"]),
    }


_PAYMENT_ROW = select(payments).where(payments.c.id == bindparam("id"))
_PAYMENT = Prepared(_PAYMENT_ROW)
_PORTAL_PAYMENT_ROW = _PAYMENT_ROW.where(payments.c.portal_id == bindparam("portal"))
_PORTAL_PAYMENT = Prepared(_PORTAL_PAYMENT_ROW)
_PORTAL_PAYMENT_HELD = Prepared(_PORTAL_PAYMENT_ROW.with_for_update())
_BY_REFERENCE = Prepared(
    select(payments).where(
        payments.c.bank_reference == bindparam("reference"), payments.c.bank == bindparam("bank")
    )
)
_DOSSIER = (
    select(payments)
    .where(payments.c.portal_id == bindparam("portal"))
    .where(payments.c.dossier_code == bindparam("code"))
)
_DOSSIER_ORDERED = _DOSSIER.order_by(payments.c.created_at, payments.c.id)
# The overpaid check runs after every success and nearly always finds nothing: the
# payment just paid is left out here, not read back and decoded only to be dropped.
_DOSSIER_OTHERS_SUCCEEDED = Prepared(
    _DOSSIER.where(
        payments.c.status == PaymentStatus.SUCCEEDED.value, payments.c.id != bindparam("paid")
    )
)
# A payment that becomes succeeded, failed or cancelled leaves the recovery schedule at
# once, so no worker claims it only to find it settled; open and expired ones stay on it.
_STILL_QUERIED = tuple(
    s.value for s in (PaymentStatus.PENDING, PaymentStatus.UNKNOWN, PaymentStatus.EXPIRED)
)
_CHANGE_STATUS = Prepared(
    update(payments)
    .where(payments.c.id == bindparam("pid"), payments.c.status == bindparam("seen"))
    .values(
        status=bindparam("status"),
        paid_at=bindparam("paid_at"),
        failure_code=bindparam("failure_code"),
        bank_transaction_id=bindparam("bank_transaction_id"),
        updated_at=bindparam("at"),
        next_query_at=case(
            (bindparam("status").in_(_STILL_QUERIED), payments.c.next_query_at), else_=None
        ),
    )
)
# Recovery: the due payments, oldest due first, by a range scan of ix_payments_next_query_at.


@dataclass(frozen=True)
class _Schedule:
    """The statements of a recovery schedule kept on ``table`` (payments, refunds): rows
    whose ``next_query_at`` is due, their claim (moved to the lease's end, the claim
    counter raised), and the next query set only while a claim still holds."""

    due: Select[Any]
    due_held: Select[Any]
    claim: Update
    schedule: Update

    @classmethod
    def on(cls, table: Table) -> _Schedule:
        due = (
            select(table)
            .where(table.c.next_query_at <= bindparam("now"))
            .order_by(table.c.next_query_at)
            .limit(bindparam("limit"))
        )
        claim = (
            update(table)
            .where(table.c.id.in_(bindparam("ids", expanding=True)))
            .values(
                next_query_at=bindparam("lease_until"),
                query_attempts=table.c.query_attempts + 1,
            )
        )
        schedule = (
            update(table)
            .where(table.c.id == bindparam("row"), table.c.query_attempts == bindparam("attempt"))
            .values(next_query_at=bindparam("next_at"))
        )
        return cls(due, due.with_for_update(skip_locked=True), claim, schedule)

    async def claim_due(
        self, conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int
    ) -> Sequence[RowMapping]:
        """The due rows, claimed until ``lease_until``. PostgreSQL: two workers polling at
        once skip each other's rows; SQLite's write lock (BEGIN IMMEDIATE) makes this claim
        the only writer."""
        query = self.due_held if conn.dialect.name == "postgresql" else self.due
        found = await conn.execute(query, {"now": now, "limit": limit})
        rows: Sequence[RowMapping] = found.mappings().all()
        if rows:
            ids = [row["id"] for row in rows]
            await conn.execute(self.claim, {"ids": ids, "lease_until": lease_until})
        return rows

    async def set_next(
        self, conn: AsyncConnection, row_id: str, attempt: int, at: datetime | None
    ) -> bool:
        result = await conn.execute(
            self.schedule, {"row": row_id, "attempt": attempt, "next_at": at}
        )
        return bool(result.rowcount == 1)


_QUERY_SCHEDULE = _Schedule.on(payments)
_REFUND_SCHEDULE = _Schedule.on(refunds)
_ADD_REFUNDED = (
    update(payments)
    .where(payments.c.id == bindparam("pid"))
    .values(
        refunded_amount=payments.c.refunded_amount
        + bindparam("added", type_=payments.c.amount.type),
        updated_at=bindparam("at"),
    )
)
_KEY = Prepared(
    select(idempotency_keys).where(
        idempotency_keys.c.portal_id == bindparam("portal"),
        idempotency_keys.c.key == bindparam("key"),
    )
)
_REFUND = select(refunds).where(refunds.c.id == bindparam("id"))
_REFUNDS_TAKEN = select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
    refunds.c.payment_id == bindparam("pid"), refunds.c.status.in_(OPEN_REFUND_STATUSES)
)
_SETTLE_REFUND = (
    update(refunds)
    .where(refunds.c.id == bindparam("rid"), refunds.c.status == "pending")
    .values(
        status=bindparam("status"),
        bank_refund_id=bindparam("bank_refund_id"),
        failure_code=bindparam("failure_code"),
        updated_at=bindparam("at"),
        next_query_at=None,
    )
)
_PENDING_REFUNDS = (
    select(refunds, payments.c.bank)
    .join(payments, payments.c.id == refunds.c.payment_id)
    .where(refunds.c.status == "pending")
    .order_by(refunds.c.created_at)
    .limit(bindparam("limit"))
)
_PAYMENTS_BY_ID = select(payments).where(payments.c.id.in_(bindparam("pids", expanding=True)))
_EVENT_POSITION = select(events.c.seq).where(
    events.c.id == bindparam("id"), events.c.portal_id == bindparam("portal")
)
_EVENT_PAGE = (
    select(events.c.id, events.c.type, events.c.created_at, events.c.payload)
    .where(events.c.portal_id == bindparam("portal"), events.c.seq > bindparam("after"))
    .order_by(events.c.seq)
    .limit(bindparam("limit"))
)


class SqlPayments:
    __slots__ = ("_access",)

    def __init__(self, access: Access) -> None:
        self._access = access

    async def get(self, payment_id: str, *, portal_id: str | None = None) -> Payment | None:
        conn = self._access.reading()
        if portal_id is None:
            row = await _PAYMENT.first(conn, {"id": payment_id})
        else:
            row = await _PORTAL_PAYMENT.first(conn, {"id": payment_id, "portal": portal_id})
        return payment_from_row(row) if row else None

    async def for_dossier(self, portal_id: str, dossier_code: str) -> list[Payment]:
        result = await self._access.reading().execute(
            _DOSSIER_ORDERED, {"portal": portal_id, "code": dossier_code}
        )
        return [payment_from_row(r) for r in result.mappings()]

    async def by_reference(self, bank: str, bank_reference: str) -> Payment | None:
        row = await _BY_REFERENCE.first(
            self._access.reading(), {"reference": bank_reference, "bank": bank}
        )
        return payment_from_row(row) if row else None

    async def others_succeeded_for_dossier(
        self, portal_id: str, dossier_code: str, *, besides: str
    ) -> list[Payment]:
        rows = await _DOSSIER_OTHERS_SUCCEEDED.rows(
            self._access.reading(), {"portal": portal_id, "code": dossier_code, "paid": besides}
        )
        return [payment_from_row(r) for r in rows]

    async def get_for_refund(self, payment_id: str, *, portal_id: str) -> Payment | None:
        conn = await self._access.writing()
        # PostgreSQL: refunds of one payment one at a time; SQLite's write lock does it.
        query = _PORTAL_PAYMENT_HELD if conn.dialect.name == "postgresql" else _PORTAL_PAYMENT
        found = await query.first(conn, {"id": payment_id, "portal": portal_id})
        return payment_from_row(found) if found else None

    async def change_status(self, seen: Payment, changed: Payment, *, at: datetime) -> bool:
        conn = await self._access.writing()
        changed_rows = await _CHANGE_STATUS.rowcount(
            conn,
            {
                "pid": seen.id,
                "seen": seen.status.value,
                "status": changed.status.value,
                "paid_at": changed.paid_at,
                "failure_code": changed.failure_code,
                "bank_transaction_id": changed.bank_transaction_id,
                "at": at,
            },
        )
        return changed_rows == 1

    async def add_refunded(self, payment_id: str, amount: int, at: datetime) -> None:
        conn = await self._access.writing()
        await conn.execute(_ADD_REFUNDED, {"pid": payment_id, "added": amount, "at": at})

    async def claim_due_queries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueQuery]:
        conn = await self._access.writing()
        rows = await _QUERY_SCHEDULE.claim_due(conn, now, lease_until, limit)
        return [DueQuery(payment_from_row(row), int(row["query_attempts"]) + 1) for row in rows]

    async def schedule_query(self, payment_id: str, attempt: int, at: datetime | None) -> bool:
        conn = await self._access.writing()
        return await _QUERY_SCHEDULE.set_next(conn, payment_id, attempt, at)


class SqlIdempotencyKeys:
    __slots__ = ("_access",)

    def __init__(self, access: Access) -> None:
        self._access = access

    async def get(self, portal_id: str, key: str) -> IdempotencyRecord | None:
        row = await _KEY.first(self._access.reading(), {"portal": portal_id, "key": key})
        if row is None:
            return None
        return IdempotencyRecord(
            portal_id=row["portal_id"],
            key=row["key"],
            scope=row["scope"],
            fingerprint=row["fingerprint"],
            resource_id=row["resource_id"],
            created_at=row["created_at"],
        )

    def claim(
        self,
        record: IdempotencyRecord,
        *,
        creates: NewPayment,
        audit: Sequence[AuditEntry],
        after: Claim | None = None,
    ) -> Claim:
        return self._access.add_claim(
            idempotency_keys,
            _key_row(record),
            then=[(payments, payment_row(creates))],
            audit=audit,
            after=after,
        )

    async def claim_now(self, record: IdempotencyRecord) -> bool:
        conn = await self._access.writing()
        claimed = await conn.execute(insert_ignore(conn, idempotency_keys), _key_row(record))
        return claimed.first() is not None


def _key_row(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "portal_id": record.portal_id,
        "key": record.key,
        "scope": record.scope,
        "fingerprint": record.fingerprint,
        "resource_id": record.resource_id,
        "created_at": record.created_at,
    }


class SqlRefunds:
    __slots__ = ("_access",)

    def __init__(self, access: Access) -> None:
        self._access = access

    async def get(self, refund_id: str) -> Refund | None:
        row = (await self._access.reading().execute(_REFUND, {"id": refund_id})).mappings().first()
        return refund_from_row(row) if row else None

    async def pending(self, limit: int) -> list[PendingRefund]:
        found = await self._access.reading().execute(_PENDING_REFUNDS, {"limit": limit})
        return [
            PendingRefund(refund_from_row(row), row["bank"], row["portal_id"], row["next_query_at"])
            for row in found.mappings()
        ]

    async def committed_amount(self, payment_id: str) -> int:
        result = await self._access.reading().execute(_REFUNDS_TAKEN, {"pid": payment_id})
        return int(result.scalar_one())

    async def add(self, refund: Refund, *, portal_id: str, query_at: datetime) -> None:
        conn = await self._access.writing()
        await conn.execute(
            refunds.insert(),
            {
                "id": refund.id,
                "payment_id": refund.payment_id,
                "portal_id": portal_id,
                "amount": refund.amount,
                "reason": refund.reason,
                "status": refund.status,
                "created_at": refund.created_at,
                "updated_at": refund.created_at,
                "next_query_at": query_at,
                "query_attempts": 0,
            },
        )

    async def settle(
        self,
        refund_id: str,
        *,
        status: str,
        bank_refund_id: str | None,
        failure_code: str | None,
        at: datetime,
    ) -> bool:
        conn = await self._access.writing()
        result = await conn.execute(
            _SETTLE_REFUND,
            {
                "rid": refund_id,
                "status": status,
                "bank_refund_id": bank_refund_id,
                "failure_code": failure_code,
                "at": at,
            },
        )
        return bool(result.rowcount == 1)

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[DueRefund]:
        conn = await self._access.writing()
        rows = await _REFUND_SCHEDULE.claim_due(conn, now, lease_until, limit)
        if not rows:
            return []
        pids = sorted({row["payment_id"] for row in rows})
        found = (await conn.execute(_PAYMENTS_BY_ID, {"pids": pids})).mappings().all()
        by_id = {row["id"]: payment_from_row(row) for row in found}
        return [
            DueRefund(refund_from_row(row), by_id[row["payment_id"]], row["query_attempts"] + 1)
            for row in rows
        ]

    async def schedule(self, refund_id: str, attempt: int, at: datetime | None) -> bool:
        conn = await self._access.writing()
        return await _REFUND_SCHEDULE.set_next(conn, refund_id, attempt, at)


class SqlEvents:
    __slots__ = ("_access",)

    def __init__(self, access: Access) -> None:
        self._access = access

    async def position(self, portal_id: str, event_id: str) -> int | None:
        result = await self._access.reading().execute(
            _EVENT_POSITION, {"id": event_id, "portal": portal_id}
        )
        value = result.scalar()
        return int(value) if value is not None else None

    async def page(self, portal_id: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        result = await self._access.reading().execute(
            _EVENT_PAGE, {"portal": portal_id, "after": after, "limit": limit}
        )
        return [event_to_public(r) for r in result.mappings()]


class SqlNonces:
    __slots__ = ("_access",)

    def __init__(self, access: Access) -> None:
        self._access = access

    def claim(self, claim: NonceClaim) -> Claim:
        return self._access.add_claim(
            nonces, {"keyid": claim.keyid, "nonce": claim.nonce, "expires_at": claim.expires_at}
        )
