"""A hub process SIGKILLed while its webhooks are in flight loses none of them.

A real ``payhub serve`` delivers to a portal that takes the requests and never answers;
the process is killed mid-delivery. Every event is still in the outbox, pending, its
claim (the lease) ending a minute later; a worker after that sends each one again with
the same ``webhook-id``, and the portal ends with every event.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import select

from payhub.domain.clock import FakeClock, system_clock
from payhub.notify.worker import LEASE, DeliveryWorker
from payhub.service.unit_of_work import UnitOfWork
from payhub.settings import load_settings
from payhub.setup import init_setup
from payhub.store import migrate
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.outbox import LedgerOutbox
from payhub.store.tables import events
from tests.e2e.test_crash import hub_process
from tests.factories import free_port

EVENTS = 20


async def test_sigkill_mid_delivery_loses_no_event(tmp_path: Path, database_url: str) -> None:
    port, portal_port = free_port(), free_port()
    config = init_setup(tmp_path, port=port)
    text = config.read_text().replace('"sqlite:///payhub.db"', json.dumps(database_url))
    config.write_text(text.replace(f":{port + 1}/payhub/events", f":{portal_port}/payhub/events"))
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    await migrate.upgrade(engine)
    ledger = Ledger(engine, system_clock)
    await ledger.start()

    async def emit(tx: UnitOfWork) -> list[str]:
        return [
            tx.emit(portal_id="demo", type="payment.succeeded", payment_id=f"pay_{i}", data={})
            for i in range(EVENTS)
        ]

    ids = await ledger.run(emit)
    await ledger.close()

    arrived: list[str] = []
    all_in_flight = asyncio.Event()
    answering = False

    async def portal(request: web.Request) -> web.Response:
        arrived.append(request.headers["webhook-id"])
        if len(arrived) >= EVENTS:
            all_in_flight.set()
        if not answering:
            await asyncio.sleep(3600)  # takes the webhook, never answers
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/payhub/events", portal)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", portal_port).start()
    try:
        killed_at = system_clock()
        async with hub_process(config, port) as process:
            await asyncio.wait_for(all_in_flight.wait(), timeout=20)
            process.kill()
            await process.wait()
        assert sorted(arrived) == sorted(ids)

        async with engine.connect() as conn:
            rows = (await conn.execute(select(events))).mappings().all()
        assert {row["id"] for row in rows} == set(ids)
        for row in rows:  # claimed once, not finished: pending until the lease ends
            assert (row["delivery_state"], row["attempts"]) == ("pending", 1)
            assert row["next_attempt_at"] > killed_at

        answering = True
        arrived.clear()
        clock = FakeClock(system_clock() + LEASE + timedelta(seconds=1))
        ledger = Ledger(engine, clock)
        await ledger.start()
        async with aiohttp.ClientSession() as session:
            worker = DeliveryWorker(
                LedgerOutbox(ledger),
                session,
                portals=settings.portals,
                hub_keys=settings.hub_keys,
                clock=clock,
                rng=random.Random(1),
            )
            assert await worker.deliver_all_due() == EVENTS
        await ledger.close()
        assert sorted(arrived) == sorted(ids)  # the same webhook-ids again
        async with engine.connect() as conn:
            states = (await conn.execute(select(events.c.delivery_state))).scalars().all()
        assert states == ["delivered"] * EVENTS
    finally:
        await runner.cleanup()
        await engine.dispose()
