"""The delivery worker against a real HTTP portal using the SDK receiver (both backends).

Whatever the portal does, each event ends acknowledged (handled exactly once by the
portal, duplicates dropped by ``webhook-id``) or dead, and every attempt is recorded.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.domain.clock import FakeClock
from payhub.notify.schedule import MAX_ATTEMPTS, RETRY_DELAYS
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.outbox import LedgerOutbox
from payhub.store.tables import delivery_attempts
from tests.webhook_world import (
    always,
    emit,
    hub_key,
    portal,
    portal_endpoint,
    run_until_settled,
    states,
    worker,
)


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="engine")
async def _engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(name="ledger")
async def _ledger(engine: AsyncEngine, clock: FakeClock) -> AsyncIterator[Ledger]:
    ledger = Ledger(engine, clock)
    await ledger.start()
    yield ledger
    await ledger.close()


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def attempts_of(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(delivery_attempts).order_by(delivery_attempts.c.id))
        return [dict(row) for row in rows.mappings()]


async def test_every_failure_mode_ends_with_each_event_handled_once(
    engine: AsyncEngine, ledger: Ledger, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    keys = [hub_key()]
    modes = ["500", "timeout", "302", "lost_ack", "down", "500", "lost_ack"]

    def script(index: int, _webhook_id: str) -> str:
        return modes[index] if index < len(modes) else "ok"

    async with portal_endpoint(script, clock=clock, hub_keys=keys) as endpoint:
        ids = await emit(ledger, "demo", 5)
        delivering = worker(ledger, session, clock, [portal("demo", endpoint.url)], keys)
        await run_until_settled([delivering], engine, clock)

    assert set((await states(engine)).values()) == {"delivered"}
    assert sorted(w.id for w in endpoint.handled) == sorted(ids)  # each exactly once
    assert endpoint.receiver.duplicates >= 2  # the two lost acks came again and were dropped
    assert endpoint.receiver.rejected == 0
    resent = [call[0] for call in endpoint.calls]
    assert len(resent) > len(ids) and set(resent) == set(ids)  # retries kept the webhook-id
    recorded = await attempts_of(engine)
    assert len(recorded) == len(endpoint.calls)  # every attempt recorded
    failed = [a for a in recorded if a["outcome"] == "failed"]
    assert {a["status_code"] for a in failed} == {500, 302, None}
    assert any("within" in str(a["error"]) for a in failed)  # the timeouts say so


async def test_a_portal_down_for_a_day_gets_everything_when_it_is_back(
    engine: AsyncEngine, ledger: Ledger, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    keys = [hub_key()]
    back_at = clock() + timedelta(days=1)

    def script(_index: int, _webhook_id: str) -> str:
        return "down" if clock() < back_at else "ok"

    async with portal_endpoint(script, clock=clock, hub_keys=keys) as endpoint:
        ids = await emit(ledger, "demo", 3)
        delivering = worker(ledger, session, clock, [portal("demo", endpoint.url)], keys)
        await run_until_settled([delivering], engine, clock)

    assert set((await states(engine)).values()) == {"delivered"}
    assert sorted(w.id for w in endpoint.handled) == sorted(ids)
    per_event = [a["attempt"] for a in await attempts_of(engine) if a["outcome"] == "delivered"]
    # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h (≈ 17.6 h) fail; the one 14 h later succeeds.
    assert per_event == [8, 8, 8]


async def test_a_portal_that_never_answers_2xx_ends_dead_on_the_schedule(
    engine: AsyncEngine, ledger: Ledger, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    keys = [hub_key()]
    async with portal_endpoint(always("500"), clock=clock, hub_keys=keys) as endpoint:
        [event_id] = await emit(ledger, "demo", 1)
        delivering = worker(ledger, session, clock, [portal("demo", endpoint.url)], keys)
        await run_until_settled([delivering], engine, clock)

    assert await states(engine) == {event_id: "dead"}
    recorded = await attempts_of(engine)
    assert [a["attempt"] for a in recorded] == list(range(1, MAX_ATTEMPTS + 1))
    gaps = [
        (later["started_at"] - earlier["started_at"]).total_seconds()  # type: ignore[operator]
        for earlier, later in itertools.pairwise(recorded)
    ]
    for gap, base in zip(gaps, RETRY_DELAYS, strict=True):
        assert base * 0.9 <= gap <= base * 1.1
    ratios = {round(gap / base, 4) for gap, base in zip(gaps, RETRY_DELAYS, strict=True)}
    assert len(ratios) > 1  # jittered, not fixed
    assert endpoint.handled == []


async def test_410_disables_the_endpoint_until_an_operator_enables_it(
    engine: AsyncEngine, ledger: Ledger, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    keys = [hub_key()]
    gone = True

    def script(_index: int, _webhook_id: str) -> str:
        return "410" if gone else "ok"

    async with (
        portal_endpoint(script, clock=clock, hub_keys=keys) as leaving,
        portal_endpoint(always("ok"), clock=clock, hub_keys=keys) as staying,
    ):
        portals = [portal("leaving", leaving.url), portal("staying", staying.url)]
        delivering = worker(ledger, session, clock, portals, keys)
        await emit(ledger, "leaving", 1)
        await delivering.deliver_all_due()
        assert len(leaving.calls) == 1
        waiting = await emit(ledger, "leaving", 2)
        kept = await emit(ledger, "staying", 2)
        clock.advance(3 * 86400)
        await delivering.deliver_all_due()
        assert len(leaving.calls) == 1  # nothing more is sent to a disabled endpoint
        assert sorted(w.id for w in staying.handled) == sorted(kept)

        outbox = LedgerOutbox(ledger)
        assert list(await outbox.disabled_endpoints()) == ["leaving"]
        gone = False
        assert await outbox.enable_endpoint("leaving", actor="operator")
        await run_until_settled([delivering], engine, clock)
    assert set(waiting) <= {w.id for w in leaving.handled}
    assert set((await states(engine)).values()) == {"delivered"}
    assert (await verify_chain(engine)).ok  # disabling and enabling are audited


async def test_two_workers_never_send_the_same_attempt(
    engine: AsyncEngine,
    ledger: Ledger,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    database_url: str,
) -> None:
    """Two hub processes (two engines, two ledgers) sharing one outbox."""
    keys = [hub_key()]
    other_engine = create_engine(database_url)
    other_ledger = Ledger(other_engine, clock)
    await other_ledger.start()
    try:
        async with portal_endpoint(always("ok"), clock=clock, hub_keys=keys) as endpoint:
            ids = await emit(ledger, "demo", 300)
            portals = [portal("demo", endpoint.url)]
            first = worker(ledger, session, clock, portals, keys)
            second = worker(other_ledger, session, clock, portals, keys)
            first.batch = second.batch = 16  # many rounds, so that the claims interleave
            await run_until_settled([first, second], engine, clock)
    finally:
        await other_ledger.close()
        await other_engine.dispose()
    sent = [call[0] for call in endpoint.calls]
    assert sorted(sent) == sorted(ids)  # each event sent once, by one of them
    assert first.delivered > 0 and second.delivered > 0
    assert endpoint.receiver.duplicates == 0


async def test_a_dead_event_replayed_is_delivered_with_its_webhook_id(
    engine: AsyncEngine, ledger: Ledger, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    keys = [hub_key()]
    broken = True

    def script(_index: int, _webhook_id: str) -> str:
        return "500" if broken else "ok"

    async with portal_endpoint(script, clock=clock, hub_keys=keys) as endpoint:
        [event_id] = await emit(ledger, "demo", 1)
        delivering = worker(ledger, session, clock, [portal("demo", endpoint.url)], keys)
        await run_until_settled([delivering], engine, clock)
        assert await states(engine) == {event_id: "dead"}

        outbox = LedgerOutbox(ledger)
        broken = False
        report = await outbox.replay(actor="operator:test", dead=True)
        assert report.replayed == [event_id]
        await run_until_settled([delivering], engine, clock)
        summary = await outbox.summary()
    assert await states(engine) == {event_id: "delivered"}
    assert [w.id for w in endpoint.handled] == [event_id]
    assert summary["attempts"] == {"failed": MAX_ATTEMPTS, "delivered": 1}
    assert summary["events"] == {"delivered": 1}
    assert (await verify_chain(engine)).ok
