"""Payment use cases on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.api.schemas import parse_payment_request
from payhub.connectors.port import ConfirmationOutcome
from payhub.domain.clock import system_clock
from payhub.errors import ProblemError
from payhub.service.payments import PaymentService
from payhub.service.routing import Router
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.tables import audit_log, events, payments
from tests.factories import payment_body
from tests.fakes import FakeBank, confirmation


@dataclass
class Desk:
    engine: AsyncEngine
    ledger: Ledger
    service: PaymentService
    bank: FakeBank
    backup: FakeBank


@pytest.fixture(name="desk")
async def _desk(database_url: str) -> AsyncIterator[Desk]:
    engine = create_engine(database_url)
    ledger = Ledger(engine, system_clock)
    await ledger.start()
    bank, backup = FakeBank("fake"), FakeBank("backup")
    connectors = {"fake": bank, "backup": backup}
    service = PaymentService(
        ledger=ledger,
        connectors=connectors,  # type: ignore[arg-type]
        router=Router(connectors, "fake", system_clock),  # type: ignore[arg-type]
        clock=system_clock,
    )
    yield Desk(engine, ledger, service, bank, backup)
    await ledger.close()
    await engine.dispose()


def request(dossier: str = "D-1", **overrides: object):  # type: ignore[no-untyped-def]
    body = payment_body(dossier, bank="fake", **overrides)
    return parse_payment_request(body, known_banks={"fake", "backup"})


async def count(engine: AsyncEngine, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def test_concurrent_duplicates_create_exactly_one_payment(desk: Desk) -> None:
    results = await asyncio.gather(
        *(desk.service.create("demo", "same-key", request()) for _ in range(20)),
        return_exceptions=True,
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ProblemError)]
    assert len(created) + len(refused) == 20
    assert all(r.code == "idempotency_in_flight" for r in refused)
    assert len({c.payment.id for c in created}) == 1
    assert sum(not c.replayed for c in created) == 1
    assert await count(desk.engine, payments) == 1
    assert len(desk.bank.orders) == 1


async def test_replay_returns_the_same_payment_and_a_changed_body_conflicts(desk: Desk) -> None:
    first = await desk.service.create("demo", "k1", request())
    again = await desk.service.create("demo", "k1", request())
    assert again.replayed and again.payment.id == first.payment.id
    with pytest.raises(ProblemError) as conflict:
        await desk.service.create("demo", "k1", request(description="another"))
    assert conflict.value.code == "idempotency_conflict"
    other_portal = await desk.service.create("other", "k1", request())
    assert other_portal.payment.id != first.payment.id and not other_portal.replayed
    assert await count(desk.engine, payments) == 2


async def test_two_ledgers_on_one_database_still_create_once(desk: Desk, database_url: str) -> None:
    """Two hub processes: each has its own ledger and in-flight set, one database."""
    engine = create_engine(database_url)
    ledger = Ledger(engine, system_clock)
    await ledger.start()
    second = PaymentService(
        ledger=ledger,
        connectors=desk.service.connectors,
        router=desk.service.router,
        clock=system_clock,
    )
    try:
        results = await asyncio.gather(
            desk.service.create("demo", "race", request()),
            second.create("demo", "race", request()),
        )
    finally:
        await ledger.close()
        await engine.dispose()
    assert results[0].payment.id == results[1].payment.id
    assert sorted(r.replayed for r in results) == [False, True]
    assert await count(desk.engine, payments) == 1


async def test_confirmation_outcomes_follow_vnpay_order_of_checks(desk: Desk) -> None:
    payment = (await desk.service.create("demo", "k", request())).payment
    ref, amount = payment.bank_reference, payment.amount
    assert (
        await desk.service.confirm("fake", confirmation("PHNOPE", amount))
        == ConfirmationOutcome.UNKNOWN_ORDER
    )
    assert (
        await desk.service.confirm("backup", confirmation(ref, amount))
        == ConfirmationOutcome.UNKNOWN_ORDER
    )
    assert (
        await desk.service.confirm("fake", confirmation(ref, amount + 1))
        == ConfirmationOutcome.AMOUNT_MISMATCH
    )
    assert (
        await desk.service.confirm("fake", confirmation(ref, amount, "pending"))
        == ConfirmationOutcome.IGNORED
    )
    assert (await desk.service.get("demo", payment.id)).status == "pending"
    assert (
        await desk.service.confirm("fake", confirmation(ref, amount)) == ConfirmationOutcome.APPLIED
    )
    assert (
        await desk.service.confirm("fake", confirmation(ref, amount))
        == ConfirmationOutcome.ALREADY_APPLIED
    )
    late_failure = confirmation(ref, amount, "failed", code="24")
    assert await desk.service.confirm("fake", late_failure) == ConfirmationOutcome.IGNORED
    paid = await desk.service.get("demo", payment.id)
    assert paid.status == "succeeded" and paid.failure_code is None
    assert await count(desk.engine, events, events.c.payment_id == payment.id) == 1
    assert await count(desk.engine, audit_log, audit_log.c.action == "transition.rejected") == 1
    assert (
        await count(desk.engine, audit_log, audit_log.c.action == "confirmation.amount_mismatch")
        == 1
    )
    assert (await verify_chain(desk.engine)).ok


async def test_concurrent_confirmations_apply_once(desk: Desk) -> None:
    payment = (await desk.service.create("demo", "k", request())).payment
    outcomes = await asyncio.gather(
        *(
            desk.service.confirm("fake", confirmation(payment.bank_reference, payment.amount))
            for _ in range(10)
        )
    )
    assert outcomes.count(ConfirmationOutcome.APPLIED) == 1
    assert outcomes.count(ConfirmationOutcome.ALREADY_APPLIED) == 9
    assert await count(desk.engine, events, events.c.type == "payment.succeeded") == 1


async def test_cancel_only_open_payments(desk: Desk) -> None:
    payment = (await desk.service.create("demo", "k", request())).payment
    with pytest.raises(ProblemError) as foreign:
        await desk.service.cancel("other", payment.id)
    assert foreign.value.code == "not_found"
    cancelled = await desk.service.cancel("demo", payment.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(ProblemError) as again:
        await desk.service.cancel("demo", payment.id)
    assert again.value.code == "invalid_state"
    outcome = await desk.service.confirm(
        "fake", confirmation(payment.bank_reference, payment.amount)
    )
    assert outcome == ConfirmationOutcome.IGNORED
    assert (await desk.service.get("demo", payment.id)).status == "cancelled"
    async with desk.engine.connect() as conn:
        rows = (await conn.execute(select(events.c.type, events.c.payload))).all()
    assert [r.type for r in rows] == ["payment.cancelled"]
    assert json.loads(rows[0].payload)["status"] == "cancelled"


async def test_failover_to_the_next_bank_and_503_when_none_takes_it(desk: Desk) -> None:
    desk.bank.down = True
    routed = parse_payment_request(payment_body("D-2", bank=None), known_banks={"fake", "backup"})
    created = await desk.service.create("demo", "k2", routed)
    assert created.payment.bank == "backup"
    desk.backup.down = True
    with pytest.raises(ProblemError) as unavailable:
        await desk.service.create("demo", "k3", routed)
    assert unavailable.value.code == "bank_unavailable"
    assert await count(desk.engine, payments) == 1
    desk.bank.down = desk.backup.down = False
    retried = await desk.service.create("demo", "k3", routed)
    assert not retried.replayed


async def test_amount_above_the_chosen_banks_limit_is_refused(desk: Desk) -> None:
    big = request(
        amount=60_000_000,
        items=[{"kind": "tax", "code": "T", "description": "x", "amount": 60_000_000}],
    )
    with pytest.raises(ProblemError) as refused:
        await desk.service.create("demo", "big", big)
    assert refused.value.code == "validation_failed"
    assert await count(desk.engine, payments) == 0


async def test_overpaid_dossier_emits_its_event(desk: Desk) -> None:
    first = (await desk.service.create("demo", "a", request("D-9"))).payment
    second = (await desk.service.create("demo", "b", request("D-9"))).payment
    for p in (first, second):
        await desk.service.confirm("fake", confirmation(p.bank_reference, p.amount))
    summary = await desk.service.dossier("demo", "D-9")
    assert summary["status"] == "overpaid"
    assert summary["paid_amount"] == first.amount + second.amount
    assert await count(desk.engine, events, events.c.type == "dossier.overpaid") == 1


async def test_an_aged_key_replays_until_pruned_then_is_free(desk: Desk) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from payhub.store.housekeeping import prune_idempotency_keys
    from payhub.store.tables import idempotency_keys

    first = await desk.service.create("demo", "old-key", request())
    async with desk.engine.begin() as conn:
        await conn.execute(
            update(idempotency_keys).values(created_at=system_clock() - timedelta(hours=25))
        )
    aged = await desk.service.create("demo", "old-key", request())
    assert aged.replayed and aged.payment.id == first.payment.id
    now = system_clock()
    assert await prune_idempotency_keys(desk.ledger, now - timedelta(hours=24)) == 1
    assert await prune_idempotency_keys(desk.ledger, now - timedelta(hours=24)) == 0
    fresh = await desk.service.create("demo", "old-key", request())
    assert not fresh.replayed and fresh.payment.id != first.payment.id
    assert await count(desk.engine, payments) == 2


async def test_two_processes_confirming_at_once_apply_once(desk: Desk, database_url: str) -> None:
    """The loser of a guarded update re-reads the payment instead of failing (LostRace)."""
    engine = create_engine(database_url)
    ledger = Ledger(engine, system_clock)
    await ledger.start()
    second = PaymentService(
        ledger=ledger, connectors=desk.service.connectors,
        router=desk.service.router, clock=system_clock,
    )  # fmt: skip
    outcomes = []
    try:
        for i in range(20):
            payment = (await desk.service.create("demo", f"k{i}", request(f"D-{i}"))).payment
            paid = confirmation(payment.bank_reference, payment.amount)
            outcomes += await asyncio.gather(
                desk.service.confirm("fake", paid), second.confirm("fake", paid)
            )
    finally:
        await ledger.close()
        await engine.dispose()
    assert outcomes.count(ConfirmationOutcome.APPLIED) == 20
    assert outcomes.count(ConfirmationOutcome.ALREADY_APPLIED) == 20
    assert await count(desk.engine, events, events.c.type == "payment.succeeded") == 20
