"""A hub SIGKILLed while its recovery worker is settling payments loses nothing.

The VNPay simulator runs in the test (it must outlive the hub) with every confirmation
lost and 300 ms per query, so a real ``payhub serve`` process has to recover each payment
by querydr. The process is killed once the first ones are settled; after a restart every
payment is settled exactly once (one ``payment.succeeded`` event each) and the audit
chain holds: claimed payments whose worker died are due again when their lease ends.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import tomlkit
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.app import simulator_factory
from payhub.portal.client import PortalClient
from payhub.settings import load_settings
from payhub.setup import init_setup
from payhub.store import migrate
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.tables import events, payments
from tests.e2e.test_crash import hub_process
from tests.factories import free_port, payment_body

PAYMENTS = 30


def recovery_setup(tmp_path: Path, port: int, sim_url: str) -> Path:
    """``payhub init``, with VNPay only, at ``sim_url``, and a schedule of seconds."""
    config = init_setup(tmp_path, port=port)
    doc = tomlkit.parse(config.read_text(encoding="utf-8"))
    banks: Any = doc["banks"]
    for name in [name for name in banks if name != "vnpay"]:
        del banks[name]
    banks["vnpay"]["base_url"] = sim_url
    doc["hub"]["default_bank"] = "vnpay"  # type: ignore[index]
    doc["recovery"] = {
        "pending_after": 0.5,
        "query_delays": [0.5],
        "lease": 2,
        "poll_seconds": 0.05,
    }
    config.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return config


async def succeeded(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).where(payments.c.status == "succeeded")
        return int((await conn.execute(query)).scalar_one())


async def test_sigkill_mid_recovery_loses_nothing(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    config = recovery_setup(tmp_path, port, sim_url)
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    await migrate.upgrade(engine)
    simulator = simulator_factory("vnpay")(
        settings.banks["vnpay"].options, notify_url=f"http://127.0.0.1:{port}/banks/vnpay/notify"
    )
    runner = web.AppRunner(simulator, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sim_port).start()
    key = serialization.load_pem_private_key((tmp_path / "keys" / "demo.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    try:
        async with aiohttp.ClientSession() as session:
            faults = {"lose_confirmation": 1, "latency_ms": 300}
            async with session.put(f"{sim_url}/_sim/faults", json=faults) as answer:
                assert answer.status == 200
            portal = PortalClient(session, f"http://127.0.0.1:{port}", keyid="demo", key=key)
            async with hub_process(config, port) as process:
                for i in range(PAYMENTS):
                    created = await portal.create_payment(
                        payment_body(f"RCRASH-{i:03d}"), str(uuid.uuid4())
                    )
                    assert created.status == 201, created.body
                    pay = {"reference": created.json()["payment_url"], "outcome": "success"}
                    async with session.post(f"{sim_url}/_sim/pay", json=pay) as answer:
                        assert answer.status == 200, await answer.text()
                for _ in range(400):
                    if await succeeded(engine):
                        break
                    await asyncio.sleep(0.02)
                process.send_signal(signal.SIGKILL)
                await process.wait()
            at_kill = await succeeded(engine)
            assert 0 < at_kill < PAYMENTS, "the kill must land mid-recovery"

            async with hub_process(config, port):
                for _ in range(1000):
                    if await succeeded(engine) == PAYMENTS:
                        break
                    await asyncio.sleep(0.02)
        assert await succeeded(engine) == PAYMENTS
        async with engine.connect() as conn:
            query = (
                select(events.c.payment_id, func.count())
                .where(events.c.type == "payment.succeeded")
                .group_by(events.c.payment_id)
            )
            counts = [int(row[1]) for row in await conn.execute(query)]
        assert counts == [1] * PAYMENTS
        assert (await verify_chain(engine)).ok
    finally:
        await runner.cleanup()
        await engine.dispose()
