"""The delivery worker as a resource of the hub application (a ``cleanup_ctx``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from payhub import keys
from payhub.domain.clock import Clock
from payhub.notify.worker import DeliveryWorker
from payhub.settings import Settings
from payhub.store.outbox import LedgerOutbox

DELIVERY = web.AppKey("delivery_worker", DeliveryWorker)


def delivery_context(
    settings: Settings, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Start the worker once the ledger runs; stop it (mid-attempt is fine) before it closes.

    An attempt cut short is not lost: its event's lease ends and it is sent again.
    """

    async def delivery(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession()
        worker = DeliveryWorker(
            LedgerOutbox(app[keys.LEDGER]),
            session,
            portals=settings.portals,
            hub_keys=settings.hub_keys,
            clock=clock,
            on_attempt=app[keys.METRICS].webhook_attempt,
        )
        app[DELIVERY] = worker
        task: asyncio.Task[Any] = asyncio.create_task(worker.run(), name="payhub-delivery")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await session.close()

    return delivery
