"""Recovery workers of two hub processes (two engines, two ledgers) on one database.

Each payment is claimed by one worker at a time (PostgreSQL ``FOR UPDATE SKIP LOCKED``,
SQLite's write lock; a lease on both), so its bank is never asked about it by both at
once and its success is applied and announced once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.api.schemas import parse_payment_request, parse_refund_request
from payhub.connectors.port import (
    Confirmation,
    ConfirmationStatus,
    RefundRequest,
    RefundResult,
)
from payhub.domain.clock import FakeClock, system_clock
from payhub.errors import BankUnavailable
from payhub.recovery.schedule import RecoveryPolicy
from payhub.recovery.worker import RecoveryWorker
from payhub.service.payments import PaymentService
from payhub.service.recovery import Recovery, Settled
from payhub.service.refunds import REFUND_FIRST_QUERY, RefundRecovered, RefundService
from payhub.service.routing import Router
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.tables import events
from tests.factories import payment_body
from tests.fakes import FakeBank

PAYMENTS = 40
POLICY = RecoveryPolicy(batch=8)


class PaidBank(FakeBank):
    """Every order is paid; a query takes a moment, and overlapping ones are noticed."""

    places_orders_locally = True

    def __init__(self, in_flight: set[str], overlaps: list[str], asked: Counter[str]) -> None:
        super().__init__("fake")
        self.in_flight = in_flight
        self.overlaps = overlaps
        self.asked = asked

    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        if bank_reference in self.in_flight:
            self.overlaps.append(bank_reference)
        self.in_flight.add(bank_reference)
        self.asked[bank_reference] += 1
        try:
            await asyncio.sleep(0.005)
        finally:
            self.in_flight.discard(bank_reference)
        return Confirmation(bank_reference, amount, ConfirmationStatus.SUCCEEDED, "T1")


@contextlib.asynccontextmanager
async def two_hubs(
    database_url: str, clock: FakeClock
) -> AsyncIterator[tuple[list[AsyncEngine], list[Ledger]]]:
    """Two hub processes' storage on one database: two engines, two running ledgers."""
    engines = [create_engine(database_url), create_engine(database_url)]
    ledgers = [Ledger(engine, clock) for engine in engines]
    for ledger in ledgers:
        await ledger.start()
    try:
        yield engines, ledgers
    finally:
        for ledger in ledgers:
            await ledger.close()
        for engine in engines:
            await engine.dispose()


async def test_two_workers_never_query_or_settle_one_payment_twice(database_url: str) -> None:
    clock = FakeClock(system_clock())
    in_flight: set[str] = set()
    overlaps: list[str] = []
    asked: Counter[str] = Counter()
    async with two_hubs(database_url, clock) as (engines, ledgers):
        workers = []
        for ledger in ledgers:
            connectors: dict[str, Any] = {"fake": PaidBank(in_flight, overlaps, asked)}
            workers.append(RecoveryWorker(Recovery(ledger, POLICY), connectors, clock=clock))
        connectors = {"fake": PaidBank(in_flight, overlaps, asked)}
        service = PaymentService(
            ledger=ledgers[0],
            connectors=connectors,
            router=Router(connectors, "fake", clock),
            clock=clock,
            recovery=POLICY,
        )
        for i in range(PAYMENTS):
            request = parse_payment_request(
                payment_body(f"TWO-{i}", bank="fake"), known_banks={"fake"}
            )
            await service.create("demo", f"two-{i}", request)
        clock.advance(POLICY.pending_after)

        async def drain(worker: RecoveryWorker) -> None:
            while await worker.recover_due():  # each round awaits the database: they interleave
                continue

        await asyncio.gather(*(drain(worker) for worker in workers))

        assert overlaps == []
        assert sorted(asked.values()) == [1] * PAYMENTS
        settled = [w.counts[Settled.SUCCEEDED] for w in workers]
        assert sum(settled) == PAYMENTS
        async with engines[0].connect() as conn:
            query = select(func.count()).where(events.c.type == "payment.succeeded")
            assert (await conn.execute(query)).scalar_one() == PAYMENTS
        assert (await verify_chain(engines[0])).ok
        clock.advance(timedelta(days=1).total_seconds())
        assert [await w.recover_due() for w in workers] == [0, 0]


REFUNDS = 20


class LostRefundBank(FakeBank):
    """Refund answers are all lost; asking again takes a moment, overlaps are noticed."""

    places_orders_locally = True

    def __init__(self, in_flight: set[str], overlaps: list[str], asked: Counter[str]) -> None:
        super().__init__("fake")
        self.in_flight = in_flight
        self.overlaps = overlaps
        self.asked = asked

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise BankUnavailable("the answer was lost")

    async def refund_outcome(self, request: RefundRequest) -> RefundResult | None:
        if request.refund_id in self.in_flight:
            self.overlaps.append(request.refund_id)
        self.in_flight.add(request.refund_id)
        self.asked[request.refund_id] += 1
        try:
            await asyncio.sleep(0.005)
        finally:
            self.in_flight.discard(request.refund_id)
        return RefundResult(succeeded=True, bank_refund_id=f"R-{request.refund_id}")


async def test_two_workers_never_ask_about_or_settle_one_refund_twice(database_url: str) -> None:
    clock = FakeClock(system_clock())
    in_flight: set[str] = set()
    overlaps: list[str] = []
    asked: Counter[str] = Counter()
    async with two_hubs(database_url, clock) as (engines, ledgers):
        workers = []
        for ledger in ledgers:
            bank: dict[str, Any] = {"fake": LostRefundBank(in_flight, overlaps, asked)}
            refunds = RefundService(ledger=ledger, connectors=bank, policy=POLICY)
            workers.append(
                RecoveryWorker(Recovery(ledger, POLICY), bank, clock=clock, refunds=refunds)
            )
        bank = {"fake": LostRefundBank(in_flight, overlaps, asked)}
        service = PaymentService(
            ledger=ledgers[0], connectors=bank, router=Router(bank, "fake", clock), clock=clock
        )
        desk = RefundService(ledger=ledgers[0], connectors=bank, policy=POLICY)
        for i in range(REFUNDS):
            request = parse_payment_request(
                payment_body(f"RFD-{i}", bank="fake"), known_banks={"fake"}
            )
            payment = (await service.create("demo", f"rfd-{i}", request)).payment
            paid = Confirmation(
                payment.bank_reference, payment.amount, ConfirmationStatus.SUCCEEDED, f"T{i}"
            )
            await service.confirm("fake", paid)
            body = parse_refund_request({"amount": 1000, "reason": "paid twice"})
            assert (
                await desk.refund("demo", payment.id, f"r-{i}", body)
            ).refund.status == "pending"
        clock.advance(REFUND_FIRST_QUERY.total_seconds())

        async def drain(worker: RecoveryWorker) -> None:
            while await worker.recover_due():
                continue

        await asyncio.gather(*(drain(worker) for worker in workers))

        assert overlaps == []
        assert sorted(asked.values()) == [1] * REFUNDS
        assert sum(w.refund_counts[RefundRecovered.SUCCEEDED] for w in workers) == REFUNDS
        async with engines[0].connect() as conn:
            query = select(func.count()).where(events.c.type == "refund.succeeded")
            assert (await conn.execute(query)).scalar_one() == REFUNDS
        assert (await verify_chain(engines[0])).ok
        clock.advance(timedelta(days=1).total_seconds())
        assert [await w.recover_due() for w in workers] == [0, 0]
