"""A hub process killed mid-traffic loses nothing it confirmed and applies nothing twice.

The hub runs as a real ``payhub serve`` process; a portal fires creates and IPNs at
it and the process is SIGKILLed while they are in flight. After a restart: every
payment answered ``201`` is there, every IPN answered ``00`` is applied, retrying every
request with its own Idempotency-Key creates nothing twice, and the audit chain holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from payhub.portal.client import PortalClient
from payhub.settings import load_settings
from payhub.setup import init_setup
from payhub.store import migrate
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.tables import payments
from tests.e2e.test_vnpay_ipn import ipn
from tests.factories import free_port, payment_body


@asynccontextmanager
async def hub_process(config: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payhub.cli", "serve", "--config", str(config),
        "--port", str(port), "--simulators",
        env={**os.environ, "PAYHUB_LOG_LEVEL": "error"},
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("hub did not start")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_sigkill_mid_traffic_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    config = init_setup(tmp_path, port=port)
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    await migrate.upgrade(engine)
    key = serialization.load_pem_private_key((tmp_path / "keys" / "demo.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    secret = settings.banks["vnpay"].options["hash_secret"]
    tmn = settings.banks["vnpay"].options["tmn_code"]
    base = f"http://127.0.0.1:{port}"
    requests = [(str(uuid.uuid4()), payment_body(f"CRASH-{i:03d}")) for i in range(120)]
    created: dict[str, dict[str, Any]] = {}
    enough = asyncio.Event()  # some answers are out, others still in flight: time to kill

    async with aiohttp.ClientSession() as session:
        portal = PortalClient(session, base, keyid="demo", key=key)
        async with hub_process(config, port) as process:
            # Some payments exist and are paid before the crash.
            for idem, body in requests[:10]:
                answer = await portal.create_payment(body, idem)
                assert answer.status == 201
                created[idem] = answer.json()
            confirmed: list[str] = []

            async def confirm(payment: dict[str, Any]) -> None:
                params = ipn(payment["bank_reference"], payment["amount"], secret=secret, tmn=tmn)
                try:
                    async with session.get(f"{base}/banks/vnpay/notify", params=params) as r:
                        if (await r.json())["RspCode"] == "00":
                            confirmed.append(payment["id"])
                            if len(created) >= 40 and len(confirmed) >= 5:
                                enough.set()
                except (aiohttp.ClientError, ValueError):
                    pass

            async def create(idem: str, body: dict[str, Any]) -> None:
                try:
                    answer = await portal.create_payment(body, idem)
                except aiohttp.ClientError:
                    return
                if answer.status == 201:
                    created[idem] = answer.json()
                    if len(created) >= 40 and len(confirmed) >= 5:
                        enough.set()

            traffic = [confirm(p) for p in list(created.values())]
            traffic += [create(idem, body) for idem, body in requests[10:]]
            tasks = [asyncio.ensure_future(t) for t in traffic]
            await asyncio.wait_for(enough.wait(), timeout=30)
            process.send_signal(signal.SIGKILL)
            await asyncio.gather(*tasks)
            assert 10 < len(created) < len(requests), "the kill must land mid-traffic"

        async with hub_process(config, port):
            for payment in created.values():
                stored = await portal.get_payment(payment["id"])
                assert stored.status == 200, f"201 was answered but {payment['id']} is gone"
            for payment_id in confirmed:
                assert (await portal.get_payment(payment_id)).json()["status"] == "succeeded"
            for idem, body in requests:  # the portal retries everything it sent
                again = await portal.create_payment(body, idem)
                assert again.status in (200, 201), again.body
                if idem in created:
                    assert again.status == 200 and again.json()["id"] == created[idem]["id"]

    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(payments))).scalar_one()
    assert count == len(requests)
    assert (await verify_chain(engine)).ok
    await engine.dispose()
