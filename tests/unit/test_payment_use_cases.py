"""The payment and refund use cases against the in-memory unit of work (no I/O).

The same use cases run against both databases in tests/integration; here every
outcome is checked quickly, including what is audited and emitted and what is not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

from payhub.api.schemas import parse_payment_request, parse_refund_request
from payhub.connectors.port import ConfirmationOutcome
from payhub.domain.clock import FakeClock
from payhub.domain.states import PaymentStatus
from payhub.errors import ProblemError
from payhub.service.events import events_page
from payhub.service.payments import PaymentService
from payhub.service.refunds import RefundService
from payhub.service.routing import Router
from payhub.service.unit_of_work import NonceClaim
from tests.factories import payment_body
from tests.fakes import FakeBank, FakeLedger, MemoryTables, confirmation


class LocalBank(FakeBank):
    """A bank whose orders are signed URLs made in the hub, like VNPay's."""

    places_orders_locally = True


@dataclass
class Desk:
    clock: FakeClock
    ledger: FakeLedger
    payments: PaymentService
    refunds: RefundService
    bank: FakeBank

    @property
    def tables(self) -> MemoryTables:
        return self.ledger.tables


@pytest.fixture(name="desk", params=["remote", "local"])
def _desk(request: pytest.FixtureRequest) -> Desk:
    clock = FakeClock()
    ledger = FakeLedger(clock)
    bank = FakeBank("fake") if request.param == "remote" else LocalBank("fake")
    connectors: dict[str, Any] = {"fake": bank}
    payments = PaymentService(
        ledger=ledger, connectors=connectors, router=Router(connectors, "fake", clock), clock=clock
    )
    refunds = RefundService(ledger=ledger, connectors=connectors)
    return Desk(clock, ledger, payments, refunds, bank)


def request(dossier: str = "D-1", **overrides: object):  # type: ignore[no-untyped-def]
    return parse_payment_request(
        payment_body(dossier, bank="fake", **overrides), known_banks={"fake"}
    )


def nonce(desk: Desk, value: str = "n-1") -> NonceClaim:
    return NonceClaim("demo-key", value, desk.clock() + timedelta(seconds=600))


def actions(desk: Desk) -> list[str]:
    return [entry.action for entry in desk.tables.audit]


def event_types(desk: Desk) -> list[str]:
    return [event["type"] for event in desk.tables.events]


# -- create -------------------------------------------------------------------------------


async def test_create_stores_the_payment_its_key_and_its_audit_entry(desk: Desk) -> None:
    created = await desk.payments.create("demo", "k1", request())
    assert not created.replayed
    payment = created.payment
    assert payment.status is PaymentStatus.PENDING and payment.bank == "fake"
    assert desk.tables.payments == {payment.id: payment}
    assert desk.tables.payers[payment.id].payer_id_number == "001090001234"
    record = desk.tables.idempotency_keys[("demo", "k1")]
    assert record.resource_id == payment.id and record.scope == "payments.create"
    assert actions(desk) == ["payment.created"]
    assert desk.tables.audit[0].to_status == "pending"
    assert event_types(desk) == []  # creation is not a portal event
    assert [o.bank_reference for o in desk.bank.orders] == [payment.bank_reference]


async def test_a_repeated_create_replays_and_a_changed_body_conflicts(desk: Desk) -> None:
    first = await desk.payments.create("demo", "k1", request())
    again = await desk.payments.create("demo", "k1", request())
    assert again.replayed and again.payment == first.payment
    with pytest.raises(ProblemError) as conflict:
        await desk.payments.create("demo", "k1", request(description="another"))
    assert conflict.value.code == "idempotency_conflict"
    other = await desk.payments.create("other", "k1", request())
    assert not other.replayed and other.payment.id != first.payment.id
    assert len(desk.tables.payments) == 2
    assert actions(desk) == ["payment.created", "payment.created"]


async def test_create_claims_its_nonce_with_the_payment(desk: Desk) -> None:
    claim = nonce(desk)
    created = await desk.payments.create("demo", "k1", request(), nonce=claim)
    assert claim.decided and not created.replayed
    assert desk.tables.nonces == {("demo-key", "n-1")}


async def test_a_used_nonce_is_refused_and_stores_nothing(desk: Desk) -> None:
    desk.tables.nonces.add(("demo-key", "n-1"))  # used by another hub process
    with pytest.raises(ProblemError) as replayed:
        await desk.payments.create("demo", "k1", request(), nonce=nonce(desk))
    assert replayed.value.code == "signature_replayed"
    assert desk.tables.payments == {} and desk.tables.idempotency_keys == {}
    assert desk.tables.audit == []


async def test_a_local_order_costs_one_unit_with_its_nonce(desk: Desk) -> None:
    await desk.payments.create("demo", "k1", request(), nonce=nonce(desk))
    remote = not isinstance(desk.bank, LocalBank)
    assert desk.ledger.units == (2 if remote else 1)  # a remote order needs the nonce first


async def test_create_refused_by_the_bank_limits_stores_nothing(desk: Desk) -> None:
    big = request(
        amount=60_000_000,
        items=[{"kind": "fee", "code": "T", "description": "x", "amount": 60_000_000}],
    )
    claim = nonce(desk)
    with pytest.raises(ProblemError) as refused:
        await desk.payments.create("demo", "big", big, nonce=claim)
    assert refused.value.code == "validation_failed"
    assert desk.tables.payments == {} and desk.tables.audit == []
    assert not claim.decided or not isinstance(desk.bank, LocalBank)


# -- cancel -------------------------------------------------------------------------------


async def test_cancel_moves_an_open_payment_once(desk: Desk) -> None:
    payment = (await desk.payments.create("demo", "k1", request())).payment
    with pytest.raises(ProblemError) as foreign:
        await desk.payments.cancel("other", payment.id)
    assert foreign.value.code == "not_found"
    cancelled = await desk.payments.cancel("demo", payment.id)
    assert cancelled.status is PaymentStatus.CANCELLED
    assert desk.tables.payments[payment.id].status is PaymentStatus.CANCELLED
    with pytest.raises(ProblemError) as again:
        await desk.payments.cancel("demo", payment.id)
    assert again.value.code == "invalid_state"
    assert actions(desk) == ["payment.created", "payment.cancelled"]
    assert event_types(desk) == ["payment.cancelled"]
    assert desk.tables.events[0]["data"]["status"] == "cancelled"


async def test_cancel_of_an_unknown_payment_is_not_found(desk: Desk) -> None:
    with pytest.raises(ProblemError) as missing:
        await desk.payments.cancel("demo", "pay_nope")
    assert missing.value.code == "not_found"


# -- confirm ------------------------------------------------------------------------------


async def test_confirmation_outcomes_in_vnpay_order(desk: Desk) -> None:
    payment = (await desk.payments.create("demo", "k", request())).payment
    ref, amount = payment.bank_reference, payment.amount
    confirm = desk.payments.confirm
    assert (
        await confirm("fake", confirmation("PHNOPE", amount)) is ConfirmationOutcome.UNKNOWN_ORDER
    )
    assert await confirm("other", confirmation(ref, amount)) is ConfirmationOutcome.UNKNOWN_ORDER
    assert actions(desk) == ["payment.created"]  # unknown orders leave no audit entry

    mismatch = await confirm("fake", confirmation(ref, amount + 1))
    assert mismatch is ConfirmationOutcome.AMOUNT_MISMATCH
    assert desk.tables.payments[payment.id].status is PaymentStatus.PENDING
    assert actions(desk)[-1] == "confirmation.amount_mismatch"
    assert desk.tables.audit[-1].detail == {
        "expected": amount, "confirmed": amount + 1, "status": "succeeded",
    }  # fmt: skip

    assert (
        await confirm("fake", confirmation(ref, amount, "pending")) is ConfirmationOutcome.IGNORED
    )
    assert await confirm("fake", confirmation(ref, amount)) is ConfirmationOutcome.APPLIED
    paid = desk.tables.payments[payment.id]
    assert paid.status is PaymentStatus.SUCCEEDED and paid.paid_at == desk.clock()
    assert paid.bank_transaction_id == "T1"
    assert event_types(desk) == ["payment.succeeded"]

    again = await confirm("fake", confirmation(ref, amount))
    assert again is ConfirmationOutcome.ALREADY_APPLIED
    late_failure = await confirm("fake", confirmation(ref, amount, "failed", code="24"))
    assert late_failure is ConfirmationOutcome.IGNORED
    rejected = desk.tables.audit[-1]
    assert (rejected.action, rejected.from_status, rejected.to_status) == (
        "transition.rejected", "succeeded", "failed",
    )  # fmt: skip
    assert desk.tables.payments[payment.id].failure_code is None
    assert event_types(desk) == ["payment.succeeded"]
    assert actions(desk) == [
        "payment.created",
        "confirmation.amount_mismatch",
        "payment.succeeded",
        "transition.rejected",
    ]


async def test_a_failed_confirmation_records_its_code(desk: Desk) -> None:
    payment = (await desk.payments.create("demo", "k", request())).payment
    outcome = await desk.payments.confirm(
        "fake", confirmation(payment.bank_reference, payment.amount, "failed", code="24")
    )
    assert outcome is ConfirmationOutcome.APPLIED
    failed = desk.tables.payments[payment.id]
    assert failed.status is PaymentStatus.FAILED and failed.failure_code == "24"
    assert failed.paid_at is None
    assert event_types(desk) == ["payment.failed"]


async def test_a_second_success_for_the_same_items_makes_the_dossier_overpaid(desk: Desk) -> None:
    first = (await desk.payments.create("demo", "a", request("D-9"))).payment
    second = (await desk.payments.create("demo", "b", request("D-9"))).payment
    elsewhere = (await desk.payments.create("demo", "c", request("D-10"))).payment
    for p in (first, elsewhere, second):
        await desk.payments.confirm("fake", confirmation(p.bank_reference, p.amount))
    assert event_types(desk) == [
        "payment.succeeded", "payment.succeeded", "payment.succeeded", "dossier.overpaid",
    ]  # fmt: skip
    overpaid = desk.tables.events[-1]["data"]
    assert overpaid["status"] == "overpaid" and overpaid["code"] == "D-9"
    assert overpaid["paid_amount"] == first.amount + second.amount
    summary = await desk.payments.dossier("demo", "D-9")
    assert summary["status"] == "overpaid"


async def test_a_confirmation_that_lost_a_race_is_decided_again(desk: Desk) -> None:
    """Another hub process cancels between the read and the guarded update: no double effect."""
    payment = (await desk.payments.create("demo", "k", request())).payment

    def cancelled_elsewhere(tables: MemoryTables) -> None:
        stored = tables.payments[payment.id]
        tables.payments[payment.id] = replace(stored, status=PaymentStatus.CANCELLED)

    desk.ledger.race_once = cancelled_elsewhere
    outcome = await desk.payments.confirm(
        "fake", confirmation(payment.bank_reference, payment.amount)
    )
    assert outcome is ConfirmationOutcome.IGNORED  # decided again on the cancelled payment
    assert desk.tables.payments[payment.id].status is PaymentStatus.CANCELLED
    assert event_types(desk) == []
    assert actions(desk) == ["payment.created", "transition.rejected"]


# -- reads and the event feed -----------------------------------------------------------------


async def test_reads_are_scoped_to_the_portal(desk: Desk) -> None:
    payment = (await desk.payments.create("demo", "k", request("D-2"))).payment
    assert await desk.payments.get("demo", payment.id) == payment
    with pytest.raises(ProblemError) as foreign:
        await desk.payments.get("other", payment.id)
    assert foreign.value.code == "not_found"
    assert await desk.payments.list_for_dossier("demo", "D-2") == [payment]
    assert await desk.payments.list_for_dossier("other", "D-2") == []
    with pytest.raises(ProblemError):
        await desk.payments.dossier("demo", "D-404")


async def test_events_page_after_a_known_event(desk: Desk) -> None:
    for i in range(3):
        payment = (await desk.payments.create("demo", f"k{i}", request(f"D-{i}"))).payment
        await desk.payments.cancel("demo", payment.id)
    first, more = await events_page(desk.ledger, "demo", after=None, limit=2)
    assert len(first) == 2 and more
    rest, more = await events_page(desk.ledger, "demo", after=first[-1]["id"], limit=2)
    assert len(rest) == 1 and not more
    assert [e["type"] for e in first + rest] == ["payment.cancelled"] * 3
    with pytest.raises(ProblemError) as unknown:
        await events_page(desk.ledger, "other", after=first[0]["id"], limit=2)
    assert unknown.value.code == "validation_failed"


# -- refunds ------------------------------------------------------------------------------


async def paid_payment(desk: Desk, key: str = "k") -> Any:
    payment = (await desk.payments.create("demo", key, request(f"D-{key}"))).payment
    await desk.payments.confirm("fake", confirmation(payment.bank_reference, payment.amount))
    return desk.tables.payments[payment.id]


def refund_body(amount: int, reason: str = "overpaid"):  # type: ignore[no-untyped-def]
    return parse_refund_request({"amount": amount, "reason": reason})


async def test_refunds_never_exceed_the_payment(desk: Desk) -> None:
    payment = await paid_payment(desk)
    first = await desk.refunds.refund("demo", payment.id, "r1", refund_body(2_000_000))
    assert first.refund.status == "succeeded" and not first.replayed
    assert desk.tables.payments[payment.id].refunded_amount == 2_000_000
    with pytest.raises(ProblemError) as too_much:
        await desk.refunds.refund("demo", payment.id, "r2", refund_body(600_000))
    assert too_much.value.code == "validation_failed"
    assert too_much.value.errors[0].message == "at most 550000"
    assert ("demo", "r2") not in desk.tables.idempotency_keys
    replay = await desk.refunds.refund("demo", payment.id, "r1", refund_body(2_000_000))
    assert replay.replayed and replay.refund.id == first.refund.id
    with pytest.raises(ProblemError) as conflict:
        await desk.refunds.refund("demo", payment.id, "r1", refund_body(1000))
    assert conflict.value.code == "idempotency_conflict"
    assert actions(desk)[-2:] == ["refund.requested", "refund.succeeded"]
    assert event_types(desk)[-1] == "refund.succeeded"


async def test_only_succeeded_payments_are_refunded(desk: Desk) -> None:
    payment = (await desk.payments.create("demo", "k", request())).payment
    with pytest.raises(ProblemError) as pending:
        await desk.refunds.refund("demo", payment.id, "r1", refund_body(1000))
    assert pending.value.code == "invalid_state"
    with pytest.raises(ProblemError) as missing:
        await desk.refunds.refund("demo", "pay_nope", "r2", refund_body(1000))
    assert missing.value.code == "not_found"
    assert desk.tables.refunds == {} and actions(desk) == ["payment.created"]


async def test_a_routed_create_claims_its_nonce_alone_only_before_a_remote_order() -> None:
    clock = FakeClock()
    ledger = FakeLedger(clock)
    local, remote = LocalBank("local"), FakeBank("remote")
    connectors: dict[str, Any] = {"local": local, "remote": remote}
    service = PaymentService(
        ledger=ledger, connectors=connectors, router=Router(connectors, "local", clock), clock=clock
    )
    routed = parse_payment_request(payment_body("D-r", bank=None), known_banks=set(connectors))

    def claim(value: str) -> NonceClaim:
        return NonceClaim("demo-key", value, clock() + timedelta(seconds=600))

    first = await service.create("demo", "k1", routed, nonce=claim("n1"))
    assert first.payment.bank == "local" and ledger.units == 1  # nonce, key, payment: one unit

    local.down = True  # fail over to the bank that is called over the network
    units = ledger.units
    second = await service.create("demo", "k2", routed, nonce=claim("n2"))
    assert second.payment.bank == "remote"
    assert ledger.units - units == 2  # the nonce alone before the remote order, then the create
    assert ("demo-key", "n2") in ledger.tables.nonces

    orders = len(remote.orders)
    again = await service.create("demo", "k2", routed, nonce=claim("n3"))
    assert again.replayed and again.payment.id == second.payment.id
    assert len(remote.orders) == orders  # a replay never places a second remote order
    with pytest.raises(ProblemError) as replayed:
        await service.create("demo", "k3", routed, nonce=claim("n3"))
    assert replayed.value.code == "signature_replayed"
    assert len(remote.orders) == orders and len(ledger.tables.payments) == 2
