"""A portal that receives PayHub's webhooks through the SDK, and misbehaves on demand.

``PortalEndpoint`` runs a real HTTP server whose answers a test scripts per request:
``ok`` (the SDK receiver answers), ``500``, ``302``, ``410``, ``timeout`` (no answer in
time, nothing handled), ``lost_ack`` (handled, but the answer comes too late, so the hub
sends it again: the duplicate that the SDK must drop) and ``down`` (connection closed).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.domain.clock import FakeClock
from payhub.notify.signing import jwks
from payhub.notify.worker import DeliveryWorker
from payhub.portal import Webhook, WebhookReceiver
from payhub.service.unit_of_work import UnitOfWork
from payhub.settings import HubKey, PortalSettings
from payhub.store.ledger import Ledger
from payhub.store.outbox import LedgerOutbox
from payhub.store.tables import events, portal_endpoints
from tests.factories import free_port

SLOW = 3.0
"""How long a ``timeout`` / ``lost_ack`` answer takes; workers in tests time out at 1 s."""
WORKER_TIMEOUT = 1.0

Script = Callable[[int, str], str]
"""(index of this request at the endpoint, webhook-id) → the mode of the answer."""


@dataclass
class PortalEndpoint:
    receiver: WebhookReceiver
    script: Script
    port: int
    calls: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    handled: list[Webhook] = field(default_factory=list)
    modes: Counter[str] = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/payhub/events"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        mode = self.script(len(self.calls), webhook_id)
        self.calls.append((webhook_id, dict(request.headers), body))
        self.modes[mode] += 1
        if mode == "down":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=503)
        if mode in ("500", "410"):
            return web.Response(status=int(mode))
        if mode == "302":
            raise web.HTTPFound("http://127.0.0.1:9/elsewhere")
        if mode == "timeout":
            await asyncio.sleep(SLOW)
            return web.Response(status=200)
        response = await self.receiver.handle(request)
        if mode == "lost_ack":
            await asyncio.sleep(SLOW)
        return response


def always(mode: str) -> Script:
    return lambda _index, _id: mode


@asynccontextmanager
async def portal_endpoint(
    script: Script, *, clock: FakeClock, hub_keys: list[HubKey], whsec: str | None = None
) -> AsyncIterator[PortalEndpoint]:
    handled: list[Webhook] = []

    async def on_event(webhook: Webhook) -> None:
        handled.append(webhook)

    receiver = WebhookReceiver(
        on_event,
        jwks=jwks(hub_keys, clock()),
        whsec=whsec,
        clock=lambda: clock().timestamp(),
    )
    endpoint = PortalEndpoint(receiver, script, free_port(), handled=handled)
    app = web.Application()
    app.router.add_post("/payhub/events", endpoint.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", endpoint.port).start()
    try:
        yield endpoint
    finally:
        await runner.cleanup()


def hub_key(kid: str = "hub-test", **extra: Any) -> HubKey:
    return HubKey(kid=kid, private_key=Ed25519PrivateKey.generate(), **extra)


def portal(portal_id: str, url: str, whsec: str | None = None) -> PortalSettings:
    return PortalSettings(id=portal_id, callback_url=url, keys=(), whsec=whsec)


async def emit(
    ledger: Ledger, portal_id: str, count: int, type: str = "payment.succeeded"
) -> list[str]:
    async def unit(tx: UnitOfWork) -> list[str]:
        return [
            tx.emit(
                portal_id=portal_id,
                type=type,
                payment_id=f"pay_{i}",
                data={"id": f"pay_{i}", "status": "succeeded", "amount": 2550000},
            )
            for i in range(count)
        ]

    return await ledger.run(unit)


def worker(
    ledger: Ledger,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    portals: list[PortalSettings],
    hub_keys: list[HubKey],
    seed: int = 7,
) -> DeliveryWorker:
    return DeliveryWorker(
        LedgerOutbox(ledger),
        session,
        portals={p.id: p for p in portals},
        hub_keys=hub_keys,
        clock=clock,
        rng=random.Random(seed),
        timeout=WORKER_TIMEOUT,
    )


async def next_due(engine: AsyncEngine) -> datetime | None:
    """When the next pending event of an enabled endpoint is due."""
    async with engine.connect() as conn:
        value = await conn.scalar(
            select(func.min(events.c.next_attempt_at)).where(
                events.c.delivery_state == "pending",
                events.c.portal_id.not_in(select(portal_endpoints.c.portal_id)),
            )
        )
    return value  # type: ignore[no-any-return]


async def run_until_settled(
    workers: list[DeliveryWorker], engine: AsyncEngine, clock: FakeClock, *, limit: int = 200
) -> None:
    """Deliver, move the fake clock to the next retry, again, until nothing is pending."""
    for _ in range(limit):
        await asyncio.gather(*(w.deliver_all_due() for w in workers))
        due = await next_due(engine)
        if due is None:
            return
        clock.now = max(clock.now, due)
    raise AssertionError("deliveries did not settle")


async def states(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(events.c.id, events.c.delivery_state))
        return {row.id: row.delivery_state for row in rows}
