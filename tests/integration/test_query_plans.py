"""Every hot-path query is served by an index: its cost does not grow with the tables.

The tables are loaded with tens of thousands of rows, then the use cases run (create
with its nonce, replay, confirm with the overpaid check, read, cancel, list a dossier,
page events, claim a nonce alone, refund, claim due refunds and due recovery queries
and settle one)
while every statement they send is recorded.
Each recorded SELECT, UPDATE and DELETE is then explained with its own parameters:

- SQLite (no statistics, as the hub runs it): no ``SCAN`` of a loaded table in its
  ``EXPLAIN QUERY PLAN``, and, run again, no more than ``MAX_SQLITE_STEPS`` virtual
  machine steps. The second check is what catches a plan that *searches* on a poor
  index (the overpaid check on the status index walked every succeeded payment).
- PostgreSQL, after ``ANALYZE`` (the statistics autovacuum keeps): no ``Seq Scan`` of
  a loaded table in its ``EXPLAIN``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.api.schemas import parse_payment_request, parse_refund_request
from payhub.connectors.port import ConfirmationOutcome
from payhub.domain.clock import system_clock
from payhub.recovery.schedule import RecoveryPolicy
from payhub.service.events import events_page
from payhub.service.payments import PaymentService
from payhub.service.recovery import Recovery, Settled
from payhub.service.refunds import RefundService
from payhub.service.routing import Router
from payhub.service.unit_of_work import NonceClaim
from payhub.store import prepared
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.nonces import DatabaseNonceStore
from payhub.store.tables import audit_head, events, idempotency_keys, nonces, payments, refunds
from tests.factories import payment_body
from tests.fakes import FakeBank, confirmation

ROWS = 20_000
LOADED = ("payments", "events", "idempotency_keys", "nonces", "refunds")
MAX_SQLITE_STEPS = 3_000  # a scan of ROWS rows takes well over ten times as many


class LocalBank(FakeBank):
    places_orders_locally = True


@dataclass(frozen=True)
class Sent:
    statement: str
    parameters: Any


def payment_rows(now: datetime) -> list[dict[str, Any]]:
    statuses = ["succeeded"] * 7 + ["pending"] * 2 + ["failed"]
    return [
        {
            "id": f"pay_load{i:08d}",
            "portal_id": "demo" if i % 10 else "other",
            "dossier_code": f"L-{i // 3}",
            "procedure_code": None,
            "agency_code": "H29",
            "agency_name": None,
            "payer_name": "Nguyễn Văn An",
            "payer_id_number": None,
            "payer_phone": None,
            "items": '[{"code":"LPTB","kind":"charge","description":"x","amount":2550000}]',
            "amount": 2_550_000,
            "currency": "VND",
            "description": None,
            "return_url": "https://portal.example/r",
            "bank": "fake",
            "bank_reference": f"PHLOAD{i:08d}",
            "bank_transaction_id": None,
            "payment_url": None,
            "qr": None,
            "status": statuses[i % len(statuses)],
            "failure_code": None,
            "refunded_amount": 0,
            "created_at": now - timedelta(seconds=ROWS - i),
            "expires_at": now + timedelta(hours=1),
            "paid_at": None,
            "updated_at": now,
            # recovery: a few due now, the other pending ones later, the settled never
            "next_query_at": (
                now - timedelta(seconds=5)
                if i % 2000 == 7
                else now + timedelta(minutes=i % 60 + 1)
                if statuses[i % len(statuses)] == "pending"
                else None
            ),
        }
        for i in range(ROWS)
    ]


async def load(engine: AsyncEngine) -> None:
    now = system_clock()
    async with engine.begin() as conn:
        await conn.execute(insert(payments), payment_rows(now))
        await conn.execute(
            insert(events),
            [
                {
                    "seq": i + 1, "id": f"evt_load{i:08d}",
                    "portal_id": "demo" if i % 10 else "other",
                    "type": "payment.succeeded", "payment_id": f"pay_load{i:08d}", "payload": "{}",
                    "created_at": now, "delivery_state": "pending", "attempts": 0,
                    "next_attempt_at": now,
                }
                for i in range(ROWS)
            ],
        )  # fmt: skip
        await conn.execute(update(audit_head).values(event_seq=ROWS))
        await conn.execute(
            insert(idempotency_keys),
            [
                {
                    "portal_id": "demo", "key": f"load-{i}", "scope": "payments.create",
                    "fingerprint": "0" * 64, "resource_id": f"pay_load{i:08d}", "created_at": now,
                }
                for i in range(ROWS)
            ],
        )  # fmt: skip
        await conn.execute(
            insert(nonces),
            [
                {"keyid": "demo", "nonce": f"load-{i}", "expires_at": now + timedelta(minutes=10)}
                for i in range(ROWS)
            ],
        )
        await conn.execute(
            insert(refunds),
            [
                {
                    "id": f"rfd_load{i:08d}", "payment_id": f"pay_load{i:08d}", "portal_id": "demo",
                    "amount": 1000, "reason": "x", "status": "succeeded", "created_at": now,
                    "updated_at": now,
                }
                for i in range(0, ROWS, 4)
            ],
        )  # fmt: skip
        if engine.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE"))


@pytest.fixture(name="loaded")
async def _loaded(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await load(engine)
    yield engine
    await engine.dispose()


async def run_hot_paths(engine: AsyncEngine) -> list[Sent]:
    """Run every hot path once on the loaded database; the statements they sent."""
    sent: list[Sent] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            sent.append(Sent(statement, parameters))

    ledger = Ledger(engine, system_clock)
    await ledger.start()
    bank = LocalBank("fake")
    connectors: dict[str, Any] = {"fake": bank}
    service = PaymentService(
        ledger=ledger, connectors=connectors,
        router=Router(connectors, "fake", system_clock), clock=system_clock,
    )  # fmt: skip
    refunds_service = RefundService(ledger=ledger, connectors=connectors)
    store = DatabaseNonceStore(ledger)
    later = datetime.now(UTC) + timedelta(minutes=10)

    def body(code: str):  # type: ignore[no-untyped-def]
        return parse_payment_request(payment_body(code, bank="fake"), known_banks={"fake"})

    def record_prepared(statement: str, parameters: Any) -> None:
        record(None, None, statement, tuple(parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    prepared.observers.append(record_prepared)
    try:
        claim = NonceClaim("demo", "fresh-nonce", later)
        first = (await service.create("demo", "hot-1", body("L-9"), nonce=claim)).payment
        assert claim.decided
        assert (await service.create("demo", "hot-1", body("L-9"))).replayed
        second = (await service.create("demo", "hot-2", body("L-9"))).payment
        for paid in (first, second):
            outcome = await service.confirm("fake", confirmation(paid.bank_reference, paid.amount))
            assert outcome is ConfirmationOutcome.APPLIED
        assert (await service.get("demo", first.id)).status == "succeeded"
        assert len(await service.list_for_dossier("demo", "L-9")) == 5
        third = (await service.create("demo", "hot-3", body("L-10"))).payment
        await service.cancel("demo", third.id)
        page, _ = await events_page(ledger, "demo", after="evt_load00000011", limit=100)
        assert len(page) == 100
        assert await store.claim("demo", "alone-nonce", later)
        refund = parse_refund_request({"amount": 1000, "reason": "overpaid"})
        await refunds_service.refund("demo", first.id, "hot-refund", refund)
        assert await refunds_service.recover_due(system_clock() + timedelta(hours=1)) == []
        assert len(await refunds_service.pending(10)) <= 10
        recovery = Recovery(ledger, RecoveryPolicy())
        due = await recovery.claim_due(system_clock())
        assert len(due) == ROWS // 2000
        assert await recovery.settle(due[0], None) is Settled.RESCHEDULED
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        prepared.observers.remove(record_prepared)
        await ledger.close()
    unique = {s.statement: s for s in sent}
    assert len(unique) >= 12, "the hot paths should have sent a dozen kinds of statement"
    assert any("status" in s and "dossier_code" in s for s in unique), "overpaid check missing"
    return list(unique.values())


async def test_every_hot_path_query_uses_an_index(loaded: AsyncEngine) -> None:
    sent = await run_hot_paths(loaded)
    if loaded.dialect.name == "sqlite":
        problems = sqlite_problems(loaded, sent)
    else:
        problems = await postgres_problems(loaded, sent)
    assert problems == []


def sqlite_problems(engine: AsyncEngine, sent: list[Sent]) -> list[str]:
    path = make_url(str(engine.url)).database
    assert path
    problems = []
    with sqlite3.connect(path, isolation_level=None) as db:
        for query in sent:
            explained = db.execute("EXPLAIN QUERY PLAN " + query.statement, query.parameters)
            plan = [row[3] for row in explained]
            if any(step.split()[:2] in (["SCAN", table] for table in LOADED) for step in plan):
                problems.append(f"{query.statement}\n  plan: {plan}")
                continue
            steps = count_steps(db, query)
            if steps > MAX_SQLITE_STEPS:
                problems.append(f"{query.statement}\n  {steps} VM steps, plan: {plan}")
    return problems


def count_steps(db: sqlite3.Connection, query: Sent) -> int:
    """Virtual machine steps the statement takes (run in a transaction rolled back)."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    db.execute("BEGIN")
    db.set_progress_handler(tick, 1)
    try:
        db.execute(query.statement, query.parameters).fetchall()
    finally:
        db.set_progress_handler(None, 1)
        db.execute("ROLLBACK")
    return steps


async def postgres_problems(engine: AsyncEngine, sent: list[Sent]) -> list[str]:
    problems = []
    async with engine.connect() as conn:
        for query in sent:
            result = await conn.exec_driver_sql("EXPLAIN " + query.statement, query.parameters)
            plan = [row[0] for row in result]
            if any(f"Seq Scan on {table}" in line for line in plan for table in LOADED):
                problems.append(f"{query.statement}\n  plan: {plan}")
    return problems
