"""A business day with known faults, for reconciliation tests on both backends.

Payments are written straight into the hub's tables (the state a day of traffic leaves);
the bank's statement is made by the simulators' own statement generator
(``banks.simulation.daily_csv``), so the files are exactly what the simulators serve.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from banks.momo import simulator as momo_simulator
from banks.simulation import Settlement, daily_csv
from banks.vietqr import cash_report
from banks.vnpay import simulator as vnpay_simulator
from payhub.domain.clock import to_vietnam
from payhub.domain.reference import new_bank_reference

DAY = date(2026, 11, 27)
VNPAY_HEADER = vnpay_simulator.STATEMENT_HEADER
MOMO_HEADER = momo_simulator.STATEMENT_HEADER
MERCHANT = "PAYHUB01"
"""The merchant the statements name: the test hub's VNPay terminal (``tests.factories``)."""
COLLECTION_ACCOUNT = "0011223344556"
"""The vietqr collection account the camt.053 statements name."""
NOON = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)  # 12:00 in Hanoi


def payment_row(
    reference: str,
    *,
    amount: int = 2_550_000,
    status: str = "succeeded",
    at: datetime = NOON,
    bank: str = "vnpay",
    agency: str = "H29.17",
) -> dict[str, Any]:
    items = [
        {"kind": "charge", "code": "LPTB", "description": "Lệ phí", "amount": amount - 150_000},
        {"kind": "fee", "code": "PCD", "description": "Phí", "amount": 150_000},
    ]
    return {
        "id": "pay_" + reference.lower(),
        "portal_id": "demo",
        "dossier_code": "D-" + reference,
        "procedure_code": "1.004227",
        "agency_code": agency,
        "agency_name": "UBND",
        "payer_name": "Nguyễn Văn An",
        "payer_id_number": None,
        "payer_phone": None,
        "items": json.dumps(items, ensure_ascii=False),
        "amount": amount,
        "currency": "VND",
        "description": None,
        "return_url": "https://portal.example/paid",
        "bank": bank,
        "bank_reference": reference,
        "bank_transaction_id": None,
        "payment_url": None,
        "qr": None,
        "status": status,
        "failure_code": None,
        "refunded_amount": 0,
        "created_at": at - timedelta(minutes=5),
        "expires_at": at + timedelta(minutes=10),
        "paid_at": at if status == "succeeded" else None,
        "updated_at": at,
    }


@dataclass
class FaultyDay:
    """A day whose statement and ledger disagree in every way CONTRACT §5 names."""

    payments: list[dict[str, Any]] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)

    def pay(self, name: str, *, hub: dict[str, Any] | None, bank: list[Settlement]) -> None:
        if hub is not None:
            self.payments.append(hub)
        self.settlements.extend(bank)

    def csv(
        self, header: tuple[str, ...] = VNPAY_HEADER, status: str = "00", merchant: str = MERCHANT
    ) -> bytes:
        fixed = [
            Settlement(s.transaction_id, s.reference, s.amount, status, s.at, s.fee)
            for s in self.settlements
        ]
        return daily_csv(header, fixed, DAY, merchant).encode()

    def camt(self, account: str = COLLECTION_ACCOUNT) -> bytes:
        """The day as the vietqr simulator's camt.053: each reference in the transfer text."""
        credits = [
            cash_report.Credit(
                s.transaction_id, f"E2E{s.transaction_id}", s.amount,
                f"MBVCB.{s.transaction_id}.{s.reference}.CT tu 0123", s.at,
            )
            for s in sorted(self.settlements, key=lambda s: (s.at, s.transaction_id))
        ]  # fmt: skip
        created = datetime(2026, 11, 27, 17, 30, tzinfo=UTC)
        bank = cash_report.Account("970436", account)
        return cash_report.statement("STMT20261127", created, bank, credits)

    def mt940(self, account: str = COLLECTION_ACCOUNT) -> bytes:
        """The day as a SWIFT MT940 of the collecting bank: credits, references in ``:86:``."""
        lines = [":20:STMT20261127", f":25:970436/{account}", ":28C:1/1", ":60F:C261126VND0,"]
        for s in sorted(self.settlements, key=lambda s: (s.at, s.transaction_id)):
            day = to_vietnam(s.at).strftime("%y%m%d")
            lines.append(f":61:{day}{day[2:]}C{s.amount},NTRFNONREF//{s.transaction_id}")
            lines.append(f":86:MBVCB.{s.transaction_id}.{s.reference}.CT tu 0123")
        lines.append(":62F:C261127VND0,")
        return ("\n".join(lines) + "\n").encode()


def faulty_day(bank: str = "vnpay") -> FaultyDay:
    day = FaultyDay()
    counter = iter(range(14000001, 14100000))

    def ref(name: str) -> str:
        reference = new_bank_reference()
        day.references[name] = reference
        return reference

    def settle(reference: str, amount: int = 2_550_000, at: datetime = NOON) -> Settlement:
        return Settlement(str(next(counter)), reference, amount, "00", at, fee=5_500)

    for i in range(3):  # matched
        r = ref(f"matched{i}")
        day.pay("", hub=payment_row(r, bank=bank), bank=[settle(r)])
    r = ref("lost")  # the confirmation was lost: hub still pending
    day.pay("", hub=payment_row(r, status="pending", bank=bank), bank=[settle(r)])
    r = ref("late")  # the payer paid after the hub expired it
    day.pay("", hub=payment_row(r, status="expired", bank=bank), bank=[settle(r)])
    r = ref("missing")  # hub succeeded, bank has nothing
    day.pay("", hub=payment_row(r, bank=bank), bank=[])
    day.pay("", hub=None, bank=[settle(new_bank_reference())])  # unknown_reference
    r = ref("wrong_amount")
    day.pay("", hub=payment_row(r, bank=bank), bank=[settle(r, amount=2_500_000)])
    r = ref("twice")  # the bank listed it twice
    day.pay("", hub=payment_row(r, bank=bank), bank=[settle(r), settle(r)])
    r = ref("cancelled")  # hub cancelled, the bank took the money
    day.pay("", hub=payment_row(r, status="cancelled", bank=bank), bank=[settle(r)])
    # cut-off crossings: the hub saw these on the 26th / 28th, the bank books them on the 27th
    r = ref("previous")
    day.pay(
        "",
        hub=payment_row(r, at=datetime(2026, 11, 26, 16, 59, 58, tzinfo=UTC), bank=bank),
        bank=[settle(r, at=datetime(2026, 11, 26, 17, 0, 1, tzinfo=UTC))],
    )
    r = ref("next")
    day.pay(
        "",
        hub=payment_row(r, at=datetime(2026, 11, 27, 17, 0, 2, tzinfo=UTC), bank=bank),
        bank=[settle(r, at=datetime(2026, 11, 27, 16, 59, 59, tzinfo=UTC))],
    )
    day.expected = {
        "matched": 4,  # three, plus the first line of the one listed twice
        "settled_by_statement": 2,
        "missing_at_bank": 1,
        "unknown_reference": 1,
        "amount_mismatch": 1,
        "duplicate": 1,
        "status_mismatch": 1,
        "previous_day": 1,
        "next_day": 1,
    }
    return day


async def load(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    from payhub.store.engine import writing_connection
    from payhub.store.tables import payments

    async with writing_connection(engine) as conn, conn.begin():
        await conn.execute(insert(payments), rows)


def stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


async def snapshot(engine: AsyncEngine) -> dict[str, Any]:
    """What a failed run must leave as it was: every payment row, and how many audit
    entries, events (the outbox), exceptions and resolutions there are."""
    from payhub.store import tables

    async with engine.connect() as conn:
        rows = (await conn.execute(select(tables.payments))).all()
        found: dict[str, Any] = {"payments": sorted(tuple(r) for r in rows)}
        for table in (
            tables.audit_log,
            tables.audit_head,
            tables.events,
            tables.reconciliation_items,
            tables.reconciliation_exceptions,
            tables.reconciliation_resolutions,
        ):
            found[table.name] = await conn.scalar(select(func.count()).select_from(table))
    return found
