"""Refund recovery against the in-memory unit of work: a refund whose bank answer was
lost is settled once when its bank can tell, and left to finance staff when it cannot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from payhub.api.schemas import parse_payment_request, parse_refund_request
from payhub.connectors.port import RefundRequest, RefundResult
from payhub.domain.clock import FakeClock
from payhub.errors import BankUnavailable
from payhub.service.payments import PaymentService
from payhub.service.refunds import REFUND_FIRST_QUERY, RefundRecovered, RefundService
from payhub.service.routing import Router
from payhub.service.unit_of_work import UnitOfWork
from tests.factories import payment_body
from tests.fakes import FakeBank, FakeLedger, confirmation


class UnsureBank(FakeBank):
    """Carries out every refund it is sent; its answers can be lost on the way back."""

    def __init__(self, bank: str = "fake") -> None:
        super().__init__(bank)
        self.refunds_made: list[tuple[str, int]] = []
        self.answers_lost = False

    async def refund(self, request: RefundRequest) -> RefundResult:
        if self.down:
            raise BankUnavailable("refused at the door")
        self.refunds_made.append((request.refund_id, request.amount))
        if self.answers_lost:
            raise BankUnavailable("the answer was lost")
        return RefundResult(succeeded=True, bank_refund_id=f"R{len(self.refunds_made)}")


class TellingBank(UnsureBank):
    """Knows its refunds by the hub's refund id, as MoMo does by the refund orderId."""

    async def refund_outcome(self, request: RefundRequest) -> RefundResult | None:
        if self.down:
            raise BankUnavailable("still down")
        for number, (refund_id, _) in enumerate(self.refunds_made, start=1):
            if refund_id == request.refund_id:
                return RefundResult(succeeded=True, bank_refund_id=f"R{number}")
        return await self.refund(request)


class Desk:
    def __init__(self, bank: UnsureBank) -> None:
        self.clock = FakeClock()
        self.ledger = FakeLedger(self.clock)
        self.bank = bank
        connectors: dict[str, Any] = {"fake": bank}
        self.payments = PaymentService(
            ledger=self.ledger,
            connectors=connectors,
            router=Router(connectors, "fake", self.clock),
            clock=self.clock,
        )
        self.refunds = RefundService(ledger=self.ledger, connectors=connectors)
        self.started = self.clock()

    async def paid(self) -> str:
        body = parse_payment_request(payment_body("D-1", bank="fake"), known_banks={"fake"})
        payment = (await self.payments.create("demo", "k", body)).payment
        await self.payments.confirm("fake", confirmation(payment.bank_reference, payment.amount))
        return payment.id

    async def refund(self, payment_id: str, amount: int) -> str:
        body = parse_refund_request({"amount": amount, "reason": "paid twice"})
        outcome = await self.refunds.refund("demo", payment_id, f"r-{amount}", body)
        return outcome.refund.id

    async def at(self, seconds: float) -> list[RefundRecovered]:
        """Recovery rounds at ``seconds`` after the start, until nothing is due."""
        self.clock.now = self.started + timedelta(seconds=seconds)
        done: list[RefundRecovered] = []
        while found := await self.refunds.recover_due(self.clock()):
            done += found
        return done

    def status(self, refund_id: str) -> str:
        return self.ledger.tables.refunds[refund_id].status

    def actions(self) -> list[str]:
        return [entry.action for entry in self.ledger.tables.audit]

    def events(self) -> list[str]:
        return [event["type"] for event in self.ledger.tables.events]


FIRST = REFUND_FIRST_QUERY.total_seconds()


async def test_a_lost_answer_is_settled_by_recovery_and_the_refund_made_once() -> None:
    desk = Desk(TellingBank())
    payment_id = await desk.paid()
    desk.bank.answers_lost = True
    refund_id = await desk.refund(payment_id, 150_000)
    assert desk.status(refund_id) == "pending"
    desk.bank.answers_lost = False

    assert await desk.at(FIRST - 1) == []
    assert await desk.at(FIRST) == [RefundRecovered.SUCCEEDED]

    assert desk.status(refund_id) == "succeeded"
    assert desk.bank.refunds_made == [(refund_id, 150_000)]
    assert desk.ledger.tables.payments[payment_id].refunded_amount == 150_000
    assert desk.events().count("refund.succeeded") == 1
    settled = [e for e in desk.ledger.tables.audit if e.action == "refund.succeeded"]
    assert len(settled) == 1 and settled[0].detail["recovered"] is True
    assert await desk.at(FIRST + 7 * 24 * 3600) == []  # off the schedule for good


async def test_a_refund_that_never_reached_the_bank_is_sent_by_recovery() -> None:
    desk = Desk(TellingBank())
    payment_id = await desk.paid()
    desk.bank.down = True
    refund_id = await desk.refund(payment_id, 150_000)
    assert desk.bank.refunds_made == []

    assert await desk.at(FIRST) == [RefundRecovered.RESCHEDULED]  # still down
    assert await desk.at(FIRST + 9) == []
    desk.bank.down = False
    assert await desk.at(FIRST + 10) == [RefundRecovered.SUCCEEDED]  # 10 s: the first delay
    assert desk.bank.refunds_made == [(refund_id, 150_000)]
    assert desk.events()[-1:] == ["refund.succeeded"]


async def test_a_bank_that_cannot_tell_is_never_sent_the_refund_twice() -> None:
    desk = Desk(UnsureBank())
    payment_id = await desk.paid()
    desk.bank.answers_lost = True
    refund_id = await desk.refund(payment_id, 150_000)
    desk.bank.answers_lost = False

    assert await desk.at(FIRST) == [RefundRecovered.UNRESOLVED]
    assert await desk.at(30 * 24 * 3600) == []

    assert desk.status(refund_id) == "pending"  # for finance staff, from the bank's records
    assert desk.bank.refunds_made == [(refund_id, 150_000)]
    assert desk.actions().count("refund.unresolved") == 1
    assert "refund.succeeded" not in desk.events()
    assert desk.ledger.tables.payments[payment_id].refunded_amount == 0


@pytest.mark.parametrize("bank", [UnsureBank, TellingBank])
async def test_a_refund_answered_at_once_is_never_asked_about(bank: type[UnsureBank]) -> None:
    desk = Desk(bank())
    payment_id = await desk.paid()
    refund_id = await desk.refund(payment_id, 150_000)
    assert desk.status(refund_id) == "succeeded"
    assert await desk.at(FIRST * 100) == []
    assert len(desk.bank.refunds_made) == 1


async def test_a_claim_whose_lease_ran_out_writes_nothing() -> None:
    desk = Desk(UnsureBank())
    payment_id = await desk.paid()
    desk.bank.answers_lost = True
    await desk.refund(payment_id, 150_000)
    now = desk.started + REFUND_FIRST_QUERY
    lease = timedelta(seconds=desk.refunds.policy.lease)

    async def claim(at: Any) -> Any:
        async def unit(work: UnitOfWork) -> Any:
            return await work.refunds.claim_due(at, at + lease, 10)

        return await desk.ledger.run(unit)

    (first,) = await claim(now)
    assert await claim(now + lease / 2) == []  # held by the first claim
    (second,) = await claim(now + lease)  # the first worker died: its lease ended

    async def schedule(attempt: int) -> bool:
        async def unit(work: UnitOfWork) -> bool:
            return await work.refunds.schedule(first.refund.id, attempt, None)

        return await desk.ledger.run(unit)

    assert (first.attempt, second.attempt) == (1, 2)
    assert not await schedule(first.attempt)
    assert await schedule(second.attempt)
