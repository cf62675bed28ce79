"""The ledger, the audit chain and the nonce store on a real database (both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.domain.clock import system_clock
from payhub.domain.payment import Refund
from payhub.errors import ProblemError
from payhub.service.unit_of_work import NonceClaim, UnitOfWork
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger, LedgerClosed
from payhub.store.nonces import DatabaseNonceStore
from payhub.store.tables import audit_log, nonces


@pytest.fixture(name="engine")
async def _engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(name="ledger")
async def _ledger(engine: AsyncEngine) -> AsyncIterator[Ledger]:
    ledger = Ledger(engine, system_clock)
    await ledger.start()
    yield ledger
    await ledger.close()


def audited(action: str, payment_id: str = "pay_x"):  # type: ignore[no-untyped-def]
    async def unit(work: UnitOfWork) -> str:
        work.audit(actor="test", action=action, payment_id=payment_id, detail={"n": action})
        return action

    return unit


async def test_many_concurrent_units_share_commits_and_keep_one_chain(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    results = await asyncio.gather(*(ledger.run(audited(f"a{i}")) for i in range(300)))
    assert results == [f"a{i}" for i in range(300)]
    assert ledger.batches < 300  # group commit happened
    report = await verify_chain(engine)
    assert report.ok and report.entries == 300


def refund(refund_id: str) -> Refund:
    return Refund(
        id=refund_id, payment_id="pay_x", amount=1000, status="pending",
        created_at=system_clock(), reason="test",
    )  # fmt: skip


async def test_a_poisoned_unit_fails_alone(ledger: Ledger, engine: AsyncEngine) -> None:
    async def poisoned(work: UnitOfWork) -> None:
        work.audit(actor="test", action="written-then-failed")
        raise RuntimeError("a bug before any write")

    async def declined(work: UnitOfWork) -> None:
        raise ProblemError("not_found", "nothing here")

    outcomes = await asyncio.gather(
        ledger.run(audited("before")),
        ledger.run(poisoned),
        ledger.run(declined),
        ledger.run(audited("after")),
        return_exceptions=True,
    )
    assert outcomes[0] == "before" and outcomes[3] == "after"
    assert isinstance(outcomes[1], Exception) and not isinstance(outcomes[1], ProblemError)
    assert isinstance(outcomes[2], ProblemError)
    async with engine.connect() as conn:
        actions = set((await conn.execute(select(audit_log.c.action))).scalars())
    assert actions == {"before", "after"}
    assert (await verify_chain(engine)).ok


async def test_two_ledgers_extend_one_chain(engine: AsyncEngine, database_url: str) -> None:
    """Two hub processes write audit entries at once: one chain, no fork, no gap."""
    other_engine = create_engine(database_url)
    first, second = Ledger(engine, system_clock), Ledger(other_engine, system_clock)
    await first.start()
    await second.start()
    try:
        await asyncio.gather(
            *(first.run(audited(f"x{i}")) for i in range(60)),
            *(second.run(audited(f"y{i}")) for i in range(60)),
        )
    finally:
        await first.close()
        await second.close()
        await other_engine.dispose()
    report = await verify_chain(engine)
    assert report.ok and report.entries == 120


async def test_audit_verify_finds_tampering_and_gaps(ledger: Ledger, engine: AsyncEngine) -> None:
    for i in range(5):
        await ledger.run(audited(f"e{i}"))
    assert (await verify_chain(engine)).ok
    async with engine.begin() as conn:
        await conn.execute(
            update(audit_log).where(audit_log.c.seq == 3).values(detail='{"n":"forged"}')
        )
    report = await verify_chain(engine)
    assert not report.ok and report.broken_at == 3
    async with engine.begin() as conn:
        await conn.execute(
            update(audit_log).where(audit_log.c.seq == 3).values(detail='{"n":"e2"}')
        )
    assert (await verify_chain(engine)).ok
    async with engine.begin() as conn:
        await conn.execute(audit_log.delete().where(audit_log.c.seq == 5))
    report = await verify_chain(engine)
    assert not report.ok


async def test_nonce_is_accepted_once_across_hub_processes(
    engine: AsyncEngine, database_url: str, ledger: Ledger
) -> None:
    other_engine = create_engine(database_url)
    other_ledger = Ledger(other_engine, system_clock)
    await other_ledger.start()
    try:
        here, there = DatabaseNonceStore(ledger), DatabaseNonceStore(other_ledger)
        expires = datetime.now(UTC) + timedelta(seconds=600)
        claims = await asyncio.gather(
            *(store.claim("demo", "n-1", expires) for store in (here, there, here, there))
        )
        assert sorted(claims) == [False, False, False, True]
        assert await there.claim("other-key", "n-1", expires) is True
    finally:
        await other_ledger.close()
        await other_engine.dispose()


async def test_expired_nonces_are_pruned(ledger: Ledger, engine: AsyncEngine) -> None:
    store = DatabaseNonceStore(ledger)
    now = datetime.now(UTC)
    assert await store.claim("demo", "old", now - timedelta(seconds=1))
    assert await store.claim("demo", "new", now + timedelta(seconds=600))
    assert await store.prune(now) == 1
    async with engine.connect() as conn:
        left = list((await conn.execute(select(nonces.c.nonce))).scalars())
    assert left == ["new"]
    assert await store.claim(
        "demo", "old", now + timedelta(seconds=600)
    )  # forgotten, not replayable


async def test_closed_ledger_refuses_work(engine: AsyncEngine) -> None:
    ledger = Ledger(engine, system_clock)
    await ledger.start()
    await ledger.close()
    with pytest.raises(LedgerClosed):
        await ledger.run(audited("late"))
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(audit_log))).scalar_one() == 0


async def test_a_unit_that_writes_then_raises_leaves_no_trace(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    """Writes, audit entries, events and claims of a raising unit are undone; its batch commits."""
    from payhub.service.unit_of_work import IdempotencyRecord
    from payhub.store.tables import events, idempotency_keys, refunds

    now = system_clock()

    def record(key: str) -> IdempotencyRecord:
        return IdempotencyRecord("demo", key, "test", "f" * 64, "rfd_" + key, now)

    def writer(name: str, failure: Exception | None):  # type: ignore[no-untyped-def]
        async def unit(work: UnitOfWork) -> str:
            await work.refunds.add(refund(f"rfd_{name}"), portal_id="demo", query_at=now)
            assert await work.idempotency_keys.claim_now(record(name))
            work.audit(actor="test", action=f"wrote-{name}")
            work.emit(portal_id="demo", type="refund.succeeded", payment_id=None, data={})
            work.nonces.claim(NonceClaim("demo", f"nonce-{name}", now + timedelta(seconds=60)))
            if failure is not None:
                raise failure
            return name

        return unit

    async def duplicate(work: UnitOfWork) -> None:  # fails on its second write
        await work.refunds.add(refund("rfd_dup"), portal_id="demo", query_at=now)
        work.audit(actor="test", action="wrote-dup")
        await work.refunds.add(refund("rfd_dup"), portal_id="demo", query_at=now)

    outcomes = await asyncio.gather(
        ledger.run(writer("a", None)),
        ledger.run(writer("b", ProblemError("invalid_state", "declined after writing"))),
        ledger.run(writer("c", RuntimeError("a bug after writing"))),
        ledger.run(duplicate),
        ledger.run(writer("d", None)),
        return_exceptions=True,
    )
    assert outcomes[0] == "a" and outcomes[4] == "d"
    assert isinstance(outcomes[1], ProblemError)
    assert isinstance(outcomes[2], RuntimeError)
    assert isinstance(outcomes[3], Exception) and not isinstance(outcomes[3], ProblemError)
    if engine.dialect.name == "sqlite":  # each unit's savepoint: one transaction for all
        assert ledger.batches == 1
    else:  # no savepoints: the batch again without each unit that failed after writing
        assert ledger.batches == 4
    async with engine.connect() as conn:
        stored_refunds = set((await conn.execute(select(refunds.c.id))).scalars())
        keys = set((await conn.execute(select(idempotency_keys.c.key))).scalars())
        actions = set((await conn.execute(select(audit_log.c.action))).scalars())
        stored_nonces = set((await conn.execute(select(nonces.c.nonce))).scalars())
        event_count = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
    assert stored_refunds == {"rfd_a", "rfd_d"}
    assert keys == {"a", "d"}
    assert actions == {"wrote-a", "wrote-d"}
    assert stored_nonces == {"nonce-a", "nonce-d"}
    assert event_count == 2
    assert (await verify_chain(engine)).ok


async def test_concurrent_reads_reuse_the_pools_connections(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    """A read gives its connection back before the next request's read starts (SQLite:
    nothing in between yields), so bursts of reads open no new connections; closing in a
    shielded task, as ``async with engine.connect()`` does, opened ~8 per burst."""
    from sqlalchemy import event

    from payhub.service.unit_of_work import Reading

    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL reads wait on the network and overlap; the pool bounds them")

    async def read(store: Reading) -> object:
        return await store.payments.get("pay_none")

    await asyncio.gather(*(ledger.read(read) for _ in range(64)))  # the pool fills up
    opened: list[object] = []

    def count(*_: object) -> None:
        opened.append(1)

    event.listen(engine.sync_engine, "connect", count)
    try:
        for _ in range(20):
            assert await asyncio.gather(*(ledger.read(read) for _ in range(64))) == [None] * 64
    finally:
        event.remove(engine.sync_engine, "connect", count)
    assert opened == []
