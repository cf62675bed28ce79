"""The recovery worker inside ``payhub serve``: a ``cleanup_ctx`` like the delivery worker's.

It starts once the ledger and the bank connectors exist and stops before they close; a
round cut short is not lost (its claims' leases end and the payments are due again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from payhub import keys
from payhub.domain.clock import Clock
from payhub.recovery.schedule import RecoveryPolicy
from payhub.recovery.worker import RecoveryWorker
from payhub.service.recovery import Recovery

RECOVERY = web.AppKey("recovery", RecoveryWorker)


def recovery_context(
    policy: RecoveryPolicy, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def recovery(app: web.Application) -> AsyncIterator[None]:
        connectors = app[keys.CONNECTORS]
        worker = RecoveryWorker(
            Recovery(app[keys.LEDGER], policy), connectors, clock=clock, refunds=app[keys.REFUNDS]
        )
        app[RECOVERY] = worker
        task: asyncio.Task[Any] | None = None
        if policy.enabled:
            task = asyncio.create_task(worker.run(policy.poll_seconds), name="payhub-recovery")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return recovery
