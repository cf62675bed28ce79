"""Reconciliation on a real database (both backends): classes, effects, idempotency, failures."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.domain.clock import system_clock
from payhub.reconcile.engine import Reconciler, RunRequest
from payhub.store import reconciliation as store
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine, writing_connection
from payhub.store.ledger import Ledger
from payhub.store.tables import audit_log, events, payments
from tests.reconcile_world import DAY, MOMO_HEADER, faulty_day, load, payment_row, stream


@pytest.fixture(name="engine")
async def _engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(name="reconciler")
async def _reconciler(engine: AsyncEngine) -> AsyncIterator[Reconciler]:
    ledger = Ledger(engine, system_clock)
    await ledger.start()
    yield Reconciler(engine, ledger, system_clock)
    await ledger.close()


def request(bank: str = "vnpay", fmt: str = "vnpay-csv") -> RunRequest:
    return RunRequest(bank=bank, business_date=DAY, statement_format=fmt, actor="finance:finance")


async def status_of(engine: AsyncEngine, payment_id: str) -> str:
    async with engine.connect() as conn:
        return str(await conn.scalar(select(payments.c.status).where(payments.c.id == payment_id)))


async def test_a_faulty_day_gives_every_class(engine: AsyncEngine, reconciler: Reconciler) -> None:
    day = faulty_day()
    await load(engine, day.payments)
    run = await reconciler.run(request(), stream(day.csv()))
    assert run["status"] == "completed", run["error"]
    assert run["counts"] == day.expected
    assert run["line_count"] == 12
    assert len(run["statement_sha256"]) == 64
    async with engine.connect() as conn:
        exceptions = await store.list_exceptions(conn, run_id=run["id"])
    assert sorted(e["class"] for e in exceptions) == sorted(
        name
        for name, n in day.expected.items()
        for _ in range(n)
        if name not in ("matched", "settled_by_statement")
    )
    assert run["summary"]["statement"]["lines"] == 12
    assert run["summary"]["by_fee_kind"]["fee"] == 150_000 * 8
    assert run["summary"]["by_agency"]["H29.17"]["count"] == 8
    assert run["totals"]["amount_mismatch"] == 2_500_000
    assert run["totals"]["matched"] == 4 * 2_550_000


async def test_settled_by_statement_goes_through_the_state_machine(
    engine: AsyncEngine, reconciler: Reconciler
) -> None:
    day = faulty_day()
    await load(engine, day.payments)
    run = await reconciler.run(request(), stream(day.csv()))
    for name in ("lost", "late"):
        payment_id = "pay_" + day.references[name].lower()
        assert await status_of(engine, payment_id) == "succeeded"
        async with engine.connect() as conn:
            event = (
                (await conn.execute(select(events).where(events.c.payment_id == payment_id)))
                .mappings()
                .one()
            )
            audit = (
                (
                    await conn.execute(
                        select(audit_log).where(
                            audit_log.c.payment_id == payment_id,
                            audit_log.c.action == "payment.succeeded",
                        )
                    )
                )
                .mappings()
                .one()
            )
        assert event["type"] == "payment.succeeded"
        payload = json.loads(event["payload"])
        assert payload["source"] == {
            "kind": "statement",
            "reconciliation_id": run["id"],
            "bank": "vnpay",
        }
        assert payload["status"] == "succeeded"
        assert json.loads(audit["detail"])["source"]["reconciliation_id"] == run["id"]
        assert audit["actor"] == f"reconciliation:{run['id']}"
    # a cancelled payment the bank settled stays cancelled: a person decides
    assert await status_of(engine, "pay_" + day.references["cancelled"].lower()) == "cancelled"
    assert (await verify_chain(engine)).ok


async def test_the_same_statement_twice_changes_nothing_more(
    engine: AsyncEngine, reconciler: Reconciler
) -> None:
    day = faulty_day()
    await load(engine, day.payments)
    first = await reconciler.run(request(), stream(day.csv()))
    async with engine.connect() as conn:
        events_before = len((await conn.execute(select(events.c.id))).all())
    second = await reconciler.run(request(), stream(day.csv()))
    assert second["id"] == first["id"] and second.get("repeated") is True
    assert second["counts"] == first["counts"]
    async with engine.connect() as conn:
        assert len((await conn.execute(select(events.c.id))).all()) == events_before
        runs = await store.list_runs(conn)
        assert [r["id"] for r in runs] == [first["id"]]


async def test_momo_statement(engine: AsyncEngine, reconciler: Reconciler) -> None:
    day = faulty_day("momo")
    await load(engine, day.payments)
    run = await reconciler.run(request("momo", "momo-csv"), stream(day.csv(MOMO_HEADER, "0")))
    assert run["counts"] == day.expected


async def test_another_banks_payments_are_unknown_here(
    engine: AsyncEngine, reconciler: Reconciler
) -> None:
    day = faulty_day("momo")
    await load(engine, day.payments)
    run = await reconciler.run(request(), stream(day.csv()))
    assert run["counts"]["unknown_reference"] == 11
    assert run["counts"]["duplicate"] == 1
    assert run["counts"]["missing_at_bank"] == 0


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"", "empty"),
        (lambda b: b.rsplit(b",", 3)[0], "cells"),
        (lambda b: b.replace(b",2550000,", b",2550000.5,", 1), "fraction"),
        (lambda b: b.replace(b",2550000,", b",-2550000,", 1), "negative"),
        (lambda b: b.replace(b"vnp_TxnRef", b"TxnRef"), "lacks columns"),
        (lambda b: b + "ph\u1ea1m,x".encode("utf-16"), "not UTF-8"),
        (lambda b: b.replace(b"20261127", b"20261120"), "another day"),
    ],
)
async def test_a_bad_statement_fails_the_run_and_changes_no_payment(
    engine: AsyncEngine, reconciler: Reconciler, mangle: object, message: str
) -> None:
    day = faulty_day()
    await load(engine, day.payments)
    bad = mangle(day.csv())  # type: ignore[operator]
    run = await reconciler.run(request(), stream(bad))
    assert run["status"] == "failed"
    assert message in run["error"]
    if message not in ("empty", "lacks columns"):
        assert "line " in run["error"]
    assert await status_of(engine, "pay_" + day.references["lost"].lower()) == "pending"
    async with engine.connect() as conn:
        assert (await conn.execute(select(events.c.id))).first() is None
        assert await store.list_exceptions(conn) == []


async def test_a_reference_in_the_remittance_text_is_found(
    engine: AsyncEngine, reconciler: Reconciler
) -> None:
    from payhub.domain.reference import new_bank_reference

    reference = new_bank_reference()
    await load(engine, [payment_row(reference, bank="vietqr", status="pending")])
    statement = (
        ":20:STMT1\n:25:970400/0123456789\n:28C:1/1\n:60F:C261126VND0,\n"
        ":61:2611271127C2550000,NTRFNONREF//FT2611270001\n"
        f":86:MBVCB.123.{reference[:5].lower()}-{reference[5:]}.CT tu 0123\n"
        ":62F:C261127VND2550000,\n"
    ).encode()
    run = await reconciler.run(request("vietqr", "mt940"), stream(statement))
    assert run["counts"]["settled_by_statement"] == 1, run


class _HeldStatement:
    """A statement whose reads wait until the test lets them go.

    A read is the reader's own work: if it ran on the event loop, waiting here would
    stop the loop, and the test could never prove anything else ran meanwhile.
    """

    def __init__(self, data: bytes) -> None:
        self._data = stream(data)
        self.reading = threading.Event()
        self.release = threading.Event()

    def read(self, size: int = -1, /) -> bytes:
        self.reading.set()
        if not self.release.wait(timeout=10):
            raise RuntimeError("the statement was never released")
        return self._data.read(size)


async def test_the_event_loop_serves_while_a_statement_is_read(
    engine: AsyncEngine, reconciler: Reconciler
) -> None:
    day = faulty_day()
    await load(engine, day.payments)
    statement = _HeldStatement(day.csv())
    running = asyncio.create_task(reconciler.run(request(), statement))
    assert await asyncio.to_thread(statement.reading.wait, 10)
    # The reader is inside read(), held; the loop still answers another request.
    lost = "pay_" + day.references["lost"].lower()
    assert await status_of(engine, lost) == "pending"
    assert not running.done()
    statement.release.set()
    run = await running
    assert run["status"] == "completed", run["error"]
    assert run["counts"] == day.expected
    assert await status_of(engine, lost) == "succeeded"


class _ConfirmedMeanwhile:
    """The hub's ledger, but the bank's own confirmation of one payment lands just
    before the statement's settlement does."""

    def __init__(self, ledger: Ledger, engine: AsyncEngine, payment_id: str) -> None:
        self.ledger = ledger
        self.engine = engine
        self.payment_id = payment_id
        self.confirmed = False

    async def run(self, unit: Any) -> Any:
        if not self.confirmed:
            self.confirmed = True
            async with writing_connection(self.engine) as conn, conn.begin():
                await conn.execute(
                    update(payments)
                    .where(payments.c.id == self.payment_id)
                    .values(status="succeeded", paid_at=system_clock())
                )
        return await self.ledger.run(unit)


async def test_a_payment_confirmed_meanwhile_is_matched_and_its_duplicate_stays(
    engine: AsyncEngine, reconciler: Reconciler
) -> None:
    day = faulty_day()
    lost = day.references["lost"]
    day.settlements.append(next(s for s in day.settlements if s.reference == lost))
    await load(engine, day.payments)
    meanwhile = _ConfirmedMeanwhile(reconciler.ledger, engine, "pay_" + lost.lower())
    racing = Reconciler(engine, meanwhile, system_clock)  # type: ignore[arg-type]
    run = await racing.run(request(), stream(day.csv()))
    assert run["status"] == "completed", run["error"]
    assert run["counts"] == {
        **day.expected,
        "matched": day.expected["matched"] + 1,
        "settled_by_statement": day.expected["settled_by_statement"] - 1,
        "duplicate": day.expected["duplicate"] + 1,
    }
    async with engine.connect() as conn:
        by_class = dict(
            (
                await conn.execute(
                    select(store.items.c["class"], func.sum(store.items.c.amount))
                    .where(store.items.c.run_id == run["id"])
                    .group_by(store.items.c["class"])
                )
            ).all()
        )
    assert run["totals"] == {name: int(by_class.get(name) or 0) for name in store.CLASSES}
