"""Reconciliation on a real database (both backends): classes, effects, idempotency, failures."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.domain.clock import system_clock
from payhub.reconcile.engine import Reconciler, RunRequest
from payhub.reconcile.entries import BankAccount
from payhub.store import reconciliation as store
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine, writing_connection
from payhub.store.ledger import Ledger
from payhub.store.tables import audit_log, events, payments
from tests.reconcile_world import (
    COLLECTION_ACCOUNT,
    DAY,
    MERCHANT,
    MOMO_HEADER,
    FaultyDay,
    faulty_day,
    load,
    payment_row,
    snapshot,
    stream,
)

TERMINAL = BankAccount("vnpay", MERCHANT)
COLLECTION = BankAccount("vietqr", COLLECTION_ACCOUNT)


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


def request(
    bank: str = "vnpay", fmt: str = "vnpay-csv", account: BankAccount | None = None
) -> RunRequest:
    return RunRequest(bank, DAY, fmt, "finance:finance", account)


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
        (lambda b: b.replace(b",00,", "Jos\u00e9,00,".encode("latin-1"), 1), "line 2: not UTF-8"),
        (lambda b: b.replace(b"20261127", b"20261120"), "another day"),
        (lambda b: b"garbage\n1,2\n", "line 1: lacks columns"),
        (lambda b: b.replace(b",PAYHUB01\n", b",OTHER002\n"), "line 2: statement is for account"),
    ],
)
async def test_a_bad_statement_fails_the_run_and_changes_no_payment(
    engine: AsyncEngine, reconciler: Reconciler, mangle: object, message: str
) -> None:
    day = faulty_day()
    await load(engine, day.payments)
    before = await snapshot(engine)
    bad = mangle(day.csv())  # type: ignore[operator]
    run = await reconciler.run(request(account=TERMINAL), stream(bad))
    assert run["status"] == "failed"
    assert message in run["error"]
    if message != "empty":
        assert "line " in run["error"]
    assert await status_of(engine, "pay_" + day.references["lost"].lower()) == "pending"
    assert await snapshot(engine) == before
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


@pytest.mark.parametrize("fmt", ["camt.053", "mt940"])
async def test_a_vietqr_day_gives_every_class_from_its_statement(
    engine: AsyncEngine, reconciler: Reconciler, fmt: str
) -> None:
    """The bank listing a transfer twice is a ``duplicate`` line, not an error."""
    day = faulty_day("vietqr")
    await load(engine, day.payments)
    data = day.camt() if fmt == "camt.053" else day.mt940()
    run = await reconciler.run(request("vietqr", fmt, COLLECTION), stream(data))
    assert run["status"] == "completed", run["error"]
    assert run["counts"] == day.expected


async def test_a_line_repeated_word_for_word_is_a_duplicate(
    engine: AsyncEngine, reconciler: Reconciler
) -> None:
    day = faulty_day()
    await load(engine, day.payments)
    lines = day.csv().decode().splitlines(keepends=True)
    repeated = "".join([*lines[:3], lines[2], *lines[3:]]).encode()
    run = await reconciler.run(request(account=TERMINAL), stream(repeated))
    assert run["status"] == "completed", run["error"]
    assert run["counts"]["duplicate"] == day.expected["duplicate"] + 1
    assert run["counts"]["matched"] + run["counts"]["settled_by_statement"] == (
        day.expected["matched"] + day.expected["settled_by_statement"]
    )
    async with engine.connect() as conn:
        exceptions = await store.list_exceptions(conn, run_id=run["id"], kind="duplicate")
    assert 4 in {e["line_no"] for e in exceptions}  # the repeat, named by its own line


def _without_merchant_column(data: bytes) -> bytes:
    return b"".join(line.rsplit(b",", 1)[0] + b"\n" for line in data.splitlines())


@pytest.mark.parametrize(
    ("bank", "fmt", "wrong", "right", "account", "message"),
    [
        (
            "vnpay", "vnpay-csv", lambda d: d.csv(merchant="OTHER002"), FaultyDay.csv, TERMINAL,
            "VNPay statement line 2: statement is for account OTHER002, bank vnpay collects "
            "into PAYHUB01",
        ),
        (
            "vnpay", "vnpay-csv", lambda d: _without_merchant_column(d.csv()), FaultyDay.csv,
            TERMINAL, "VNPay statement line 1 (no vnp_TmnCode column): the statement names no "
            "account; bank vnpay collects into PAYHUB01, so it cannot be checked",
        ),
        (
            "momo", "momo-csv", lambda d: d.csv(MOMO_HEADER, "0", "MOMOTHER"),
            lambda d: d.csv(MOMO_HEADER, "0", "MOMOX"), BankAccount("momo", "MOMOX"),
            "MoMo statement line 2: statement is for account MOMOTHER, bank momo collects into "
            "MOMOX",
        ),
        (
            "vietqr", "camt.053", lambda d: d.camt("0099887766"), FaultyDay.camt, COLLECTION,
            "camt line 8, Stmt/Acct/Id: statement is for account 0099887766, bank vietqr "
            "collects into 0011223344556",
        ),
        (
            "vietqr", "mt940", lambda d: d.mt940("0099887766"), FaultyDay.mt940, COLLECTION,
            "MT940 line 2: statement is for account 970436/0099887766, bank vietqr collects "
            "into 0011223344556",
        ),
    ],
)  # fmt: skip
async def test_a_statement_for_another_account_fails_and_changes_nothing(
    engine: AsyncEngine,
    reconciler: Reconciler,
    bank: str,
    fmt: str,
    wrong: Callable[[FaultyDay], bytes],
    right: Callable[[FaultyDay], bytes],
    account: BankAccount,
    message: str,
) -> None:
    day = faulty_day(bank)
    await load(engine, day.payments)
    before = await snapshot(engine)
    run = await reconciler.run(request(bank, fmt, account), stream(wrong(day)))
    assert run["status"] == "failed"
    assert run["error"] == message
    assert await snapshot(engine) == before
    # the same day from the bank's own account reconciles: only the account was wrong
    run = await reconciler.run(request(bank, fmt, account), stream(right(day)))
    assert run["status"] == "completed", run["error"]
    assert run["counts"] == day.expected


BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE Document [\n'
    + '<!ENTITY l0 "ha">\n'
    + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">\n' for i in range(1, 10))
    + "]>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE Document [<!ENTITY l9 SYSTEM "file:///etc/passwd">]>\n'
)
EXTERNAL_DTD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE Document SYSTEM "http://127.0.0.1:9/camt.dtd">\n'
)


def _prolog(prolog: str) -> Callable[[bytes], bytes]:
    """The statement behind another prolog, with the entity used in a remittance text."""

    def mangle(data: bytes) -> bytes:
        body = data.split(b"\n", 1)[1].replace(b"<Ustrd>", b"<Ustrd>&l9;", 1)
        return prolog.encode() + body

    return mangle


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"", "camt: empty file"),
        (lambda b: b[: len(b) // 2], "not well-formed XML"),
        (lambda b: b.replace(b"</Amt>", b"</Amount>", 1), "not well-formed XML"),
        (lambda b: b.decode().encode("utf-16"), "camt line 1: file is UTF-16"),
        (lambda b: b.replace(b"CT tu", "CT t\u00fa".encode("latin-1"), 1), "not well-formed XML"),
        (
            lambda b: b.replace(b"encoding='UTF-8'", b"encoding='ISO-8859-1'"),
            "camt line 1: file declares encoding ISO-8859-1",
        ),
        (_prolog(BILLION_LAUGHS), "camt line 1: DOCTYPE refused"),
        (_prolog(EXTERNAL_ENTITY), "camt line 1: DOCTYPE refused"),
        (_prolog(EXTERNAL_DTD), "camt line 1: DOCTYPE refused"),
        (lambda b: b.replace(b'Ccy="VND"', b'Ccy="XYZ"'), "currency XYZ where VND is required"),
        (lambda b: b.replace(b">2550000</Amt>", b">2550000.50</Amt>"), "with a fraction"),
        (lambda b: b.replace(b">2550000</Amt>", b">-2550000</Amt>"), "negative amount"),
        (lambda b: b.replace(b"<DtTm>2026-11-27T", b"<DtTm>2026-11-20T"), "another day"),
        (lambda b: b.replace(b"0011223344556", b"0099887766"), "statement is for account"),
    ],
)
async def test_a_bad_camt_statement_fails_the_run_and_changes_nothing(
    engine: AsyncEngine, reconciler: Reconciler, mangle: Callable[[bytes], bytes], message: str
) -> None:
    day = faulty_day("vietqr")
    await load(engine, day.payments)
    before = await snapshot(engine)
    run = await reconciler.run(
        request("vietqr", "camt.053", COLLECTION), stream(mangle(day.camt()))
    )
    assert run["status"] == "failed"
    assert message in run["error"]
    if message != "camt: empty file":
        assert re.search(r"\bline [1-9][0-9]*\b", run["error"]), run["error"]
    assert await snapshot(engine) == before


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"", "MT940 statement is empty"),
        (lambda b: b.split(b"\n:61:", 2)[0] + b"\n:61:26112", "MT940 line 5: cannot be read"),
        (lambda b: b.replace(b"VND", b"XYZ"), "MT940 line 5: currency 'XYZ'"),
        (lambda b: b.replace(b"C2550000,", b"C2550000,5", 1), "MT940 line 5: amount"),
        (lambda b: b.replace(b"\n:61:", "\n:86:Phạm\n:61:".encode("utf-16-le"), 1), "not UTF-8"),
    ],
)
async def test_a_bad_mt940_statement_fails_the_run_and_changes_nothing(
    engine: AsyncEngine, reconciler: Reconciler, mangle: Callable[[bytes], bytes], message: str
) -> None:
    day = faulty_day("vietqr")
    await load(engine, day.payments)
    before = await snapshot(engine)
    run = await reconciler.run(request("vietqr", "mt940", COLLECTION), stream(mangle(day.mt940())))
    assert run["status"] == "failed"
    assert message in run["error"]
    if "empty" not in message:
        assert re.search(r"\bline [1-9][0-9]*\b", run["error"]), run["error"]
    assert await snapshot(engine) == before


async def test_a_run_waits_for_another_writer_without_stopping_the_loop(
    engine: AsyncEngine, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that meets another writer in this process waits for SQLite's lock off the loop.

    Just as the run tunes its connection (``ANALYZE`` writes statistics), a writer on the
    same loop takes the write lock and holds it across an await, as the ledger does. Had
    the run waited for the lock inline, the loop would stand still, the writer could never
    commit, and the run would fail with "database is locked" after the busy timeout.
    """
    import asyncio

    from payhub.store.engine import writing_connection

    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single write lock")
    day = faulty_day()
    await load(engine, day.payments)
    locked = asyncio.Event()
    writers: list[asyncio.Task[None]] = []
    original = store.tune

    async def writer() -> None:
        async with writing_connection(engine) as conn, conn.begin():
            await conn.execute(payments.update().where(payments.c.id == "none").values(status="x"))
            locked.set()
            await asyncio.sleep(0.05)  # holds the lock across an await

    async def tune(conn: object) -> None:
        writers.append(asyncio.create_task(writer()))
        await locked.wait()
        await original(conn)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "tune", tune)
    run = await reconciler.run(request(account=TERMINAL), stream(day.csv()))
    await asyncio.gather(*writers)
    assert run["status"] == "completed", run["error"]
    assert run["counts"] == day.expected


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


async def test_missing_at_bank_reads_the_days_payments_not_every_paid_one(
    engine: AsyncEngine, reconciler: Reconciler, database_url: str
) -> None:
    """The search for payments the statement lacks is bounded by bank and business day.

    Through the status index it would visit every succeeded payment the hub ever stored:
    a run's cost would grow with the hub's history, not with the day.
    """
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's plan is checked; PostgreSQL plans by its statistics")
    from sqlalchemy import event, text

    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO reconciliation_items") and "NOT IN" in statement:
            sent.append((statement, parameters))  # add_missing_at_bank's INSERT … SELECT

    day = faulty_day()
    await load(engine, day.payments)
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        run = await reconciler.run(request(), stream(day.csv()))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert run["counts"]["missing_at_bank"] == day.expected["missing_at_bank"]
    ((statement, parameters),) = sent
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        plan = raw.driver_connection.sqlite.execute(  # type: ignore[union-attr]
            f"EXPLAIN QUERY PLAN {statement}", parameters
        ).fetchall()
        await conn.execute(text("SELECT 1"))
    searched = [row[3] for row in plan if "payments USING" in row[3]]
    assert searched and "ix_payments_bank_paid_at" in searched[0], plan
