"""Random interleavings of creates, confirmations and cancels never apply anything twice.

Hypothesis draws a list of operations; they run concurrently, in waves, through two
ledgers on one database (two hub processes). Afterwards, for the payments of that
example: one payment per Idempotency-Key, one portal event per final state and none
for open payments, no change after success, and an unbroken audit chain.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.api.schemas import parse_payment_request
from payhub.domain.clock import system_clock
from payhub.errors import ProblemError
from payhub.service.payments import PaymentService
from payhub.service.routing import Router
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.tables import events, payments
from tests.factories import payment_body
from tests.fakes import FakeBank, confirmation

EXAMPLES = itertools.count()
FINAL = {"succeeded", "failed", "cancelled"}

operation = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 3), st.integers(0, 1)),
    st.tuples(st.just("confirm"), st.integers(0, 3), st.sampled_from(["succeeded", "failed"])),
    st.tuples(st.just("tamper"), st.integers(0, 3), st.just("")),
    st.tuples(st.just("cancel"), st.integers(0, 3), st.integers(0, 1)),
)


@pytest.fixture(name="services")
async def _services(database_url: str) -> AsyncIterator[tuple[AsyncEngine, list[PaymentService]]]:
    bank = FakeBank("fake")
    connectors: dict[str, Any] = {"fake": bank}
    engines = [create_engine(database_url), create_engine(database_url)]
    ledgers = [Ledger(engine, system_clock) for engine in engines]
    for ledger in ledgers:
        await ledger.start()
    services = [
        PaymentService(
            ledger=ledger,
            connectors=connectors,
            router=Router(connectors, "fake", system_clock),
            clock=system_clock,
        )
        for engine, ledger in zip(engines, ledgers, strict=True)
    ]
    yield engines[0], services
    for ledger in ledgers:
        await ledger.close()
    for engine in engines:
        await engine.dispose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(waves=st.lists(st.lists(operation, min_size=1, max_size=8), min_size=1, max_size=4))
async def test_no_interleaving_applies_twice(
    services: tuple[AsyncEngine, list[PaymentService]], waves: list[list[tuple[str, int, Any]]]
) -> None:
    engine, hubs = services
    portal = f"p{next(EXAMPLES)}"
    created: dict[int, Any] = {}  # key index -> payment
    succeeded_at_some_point: set[str] = set()

    async def run(n: int, op: tuple[str, int, Any]) -> None:
        kind, index, extra = op
        hub = hubs[n % 2]
        if kind == "create":
            body = payment_body(f"D-{index}", bank="fake")
            parsed = parse_payment_request(body, known_banks={"fake"})
            try:
                result = await hub.create(portal, f"key-{index}", parsed)
            except ProblemError as problem:
                assert problem.code == "idempotency_in_flight"
                return
            created.setdefault(index, result.payment)
            assert result.payment.id == created[index].id
            return
        payment = created.get(index)
        if payment is None:
            return
        if kind == "cancel":
            try:
                await hub.cancel(portal, payment.id)
            except ProblemError as problem:
                assert problem.code == "invalid_state"
            return
        amount = payment.amount + (1000 if kind == "tamper" else 0)
        status = "succeeded" if kind == "tamper" else extra
        outcome = await hub.confirm("fake", confirmation(payment.bank_reference, amount, status))
        if outcome.value == "applied" and status == "succeeded":
            succeeded_at_some_point.add(payment.id)

    for wave in waves:
        await asyncio.gather(*(run(n, op) for n, op in enumerate(wave)))

    async with engine.connect() as conn:
        rows = (
            (await conn.execute(select(payments).where(payments.c.portal_id == portal)))
            .mappings()
            .all()
        )
        stored_events = (
            await conn.execute(select(events.c.payment_id, events.c.type, events.c.payload)
                               .where(events.c.portal_id == portal))
        ).all()  # fmt: skip
    assert len(rows) == len(created)  # one payment per key, whatever raced
    by_payment: dict[str, list[str]] = {}
    for payment_id, type_, payload in stored_events:
        by_payment.setdefault(payment_id, []).append(type_)
        assert json.loads(payload)["id"] == payment_id
    for row in rows:
        kinds = [t for t in by_payment.get(row["id"], []) if t.startswith("payment.")]
        if row["status"] in FINAL:
            assert kinds == [f"payment.{row['status']}"]
        else:
            assert kinds == []
        if row["id"] in succeeded_at_some_point:
            assert row["status"] == "succeeded"
    assert (await verify_chain(engine)).ok
