"""Measuring webhook delivery: throughput from a full outbox, and the time from a bank's
confirmation to the portal's webhook under a payment load.

Kept apart from ``payhub bench`` so that the benchmark can take it as one more scenario
(``deliver``) with one line. Numbers only: nothing here passes or fails a test.

- *Throughput*: ``events`` outbox rows, one worker in this process, the portal a bare
  aiohttp process answering ``204``; events delivered per second.
- *Latency*: a real ``payhub serve --simulators``; ``payments`` dossiers created and
  paid through the VNPay simulator, ``concurrency`` at a time; for each
  ``payment.succeeded`` webhook, its arrival at the portal minus the event's
  ``created_at`` (taken in the same transaction that records the confirmation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from payhub.domain.clock import system_clock
from payhub.notify.worker import DeliveryWorker
from payhub.portal.client import PortalClient
from payhub.service.unit_of_work import UnitOfWork
from payhub.settings import load_settings
from payhub.setup import init_setup
from payhub.store import migrate
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.outbox import LedgerOutbox
from payhub.store.tables import events

PORTAL_SOURCE = """
import sys
from aiohttp import web

async def receive(request):
    await request.read()
    return web.Response(status=204)

app = web.Application()
app.router.add_post("/payhub/events", receive)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
PAYLOAD = {"id": "pay_x", "status": "succeeded", "amount": 2550000, "currency": "VND"}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def delivery_throughput(folder: Path, count: int) -> dict[str, Any]:
    config = init_setup(folder / "throughput", port=_free_port())
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    await migrate.upgrade(engine)
    ledger = Ledger(engine, system_clock)
    await ledger.start()

    async def fill(work: UnitOfWork) -> None:
        for i in range(500):
            work.emit(portal_id="demo", type="payment.succeeded", payment_id=f"p{i}", data=PAYLOAD)

    for _ in range(max(1, count // 500)):
        await ledger.run(fill)
    port = _free_port()
    script = folder / "portal.py"
    script.write_text(PORTAL_SOURCE)
    portal = await asyncio.create_subprocess_exec(sys.executable, str(script), str(port))
    try:
        await _wait_http(f"http://127.0.0.1:{port}/")
        demo = dataclasses.replace(
            settings.portals["demo"], callback_url=f"http://127.0.0.1:{port}/payhub/events"
        )
        async with aiohttp.ClientSession() as session:
            worker = DeliveryWorker(
                LedgerOutbox(ledger),
                session,
                portals={"demo": demo},
                hub_keys=settings.hub_keys,
                clock=system_clock,
            )
            started = time.perf_counter()
            delivered = await worker.deliver_all_due()
            elapsed = time.perf_counter() - started
    finally:
        portal.terminate()
        await portal.wait()
        await ledger.close()
        await engine.dispose()
    return {
        "events": delivered,
        "failed_attempts": worker.failed,
        "seconds": round(elapsed, 3),
        "per_second": round(delivered / elapsed, 1),
    }


async def confirmation_to_webhook(folder: Path, payments: int, concurrency: int) -> dict[str, Any]:
    port, portal_port = _free_port(), _free_port()
    config = init_setup(folder / "latency", port=port)
    text = config.read_text()
    config.write_text(text.replace(f":{port + 1}/payhub/events", f":{portal_port}/payhub/events"))
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    await migrate.upgrade(engine)
    arrived: dict[str, float] = {}
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        arrived.setdefault(request.headers["webhook-id"], time.time())
        if len(arrived) >= payments:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/payhub/events", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", portal_port).start()
    env = {**os.environ, "PAYHUB_LOG_LEVEL": "warning"}
    hub = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payhub.cli", "serve", "--config", str(config),
        "--port", str(port), "--simulators", env=env, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    key = serialization.load_pem_private_key(
        (config.parent / "keys" / "demo.pem").read_bytes(), None
    )
    assert isinstance(key, Ed25519PrivateKey)
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_http(f"{base}/readyz")
        slots = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:
            client = PortalClient(session, base, keyid="demo", key=key)

            async def pay(i: int) -> None:
                async with slots:
                    body = {
                        "dossier": {"code": f"BENCH-{i:06d}", "agency_code": "H29.17"},
                        "payer": {"name": "Nguyễn Văn An"},
                        "items": [
                            {"kind": "fee", "code": "PCD", "description": "Phí", "amount": 150000}
                        ],
                        "amount": 150000,
                        "currency": "VND",
                        "bank": "vnpay",
                        "return_url": "https://portal.example/paid",
                        "expires_in": 900,
                    }
                    created = await client.create_payment(body, str(uuid.uuid4()))
                    reference = created.json()["payment_url"]
                    async with session.post(
                        f"{base}/sim/vnpay/_sim/pay",
                        json={"reference": reference, "outcome": "success"},
                    ) as answer:
                        await answer.read()

            started = time.perf_counter()
            await asyncio.gather(*(pay(i) for i in range(payments)))
            paid_in = time.perf_counter() - started
            await asyncio.wait_for(done.wait(), timeout=120)
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(events.c.id, events.c.created_at).where(events.c.type == "payment.succeeded")
            )
            created_at: dict[str, datetime] = {row.id: row.created_at for row in rows}
            attempts = await conn.scalar(select(func.sum(events.c.attempts)))
    finally:
        hub.terminate()
        await hub.wait()
        await runner.cleanup()
        await engine.dispose()
    latencies: list[float] = sorted(
        (arrived[event_id] - moment.astimezone(UTC).timestamp()) * 1000
        for event_id, moment in created_at.items()
        if event_id in arrived
    )

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "payments": payments,
        "payments_per_second": round(payments / paid_in, 1),
        "webhooks": len(latencies),
        "attempts": int(attempts or 0),
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    }


async def measure_delivery(
    *, events_count: int = 5000, payments: int = 1000, concurrency: int = 32
) -> dict[str, Any]:
    """The ``deliver`` scenario: both measurements on temporary SQLite setups."""
    with tempfile.TemporaryDirectory(prefix="payhub-deliver-") as name:
        folder = Path(name)
        return {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count()},
            "throughput": await delivery_throughput(folder, events_count),
            "confirmation_to_webhook": await confirmation_to_webhook(folder, payments, concurrency),
        }
