"""Operator commands that write through a ledger of their own, beside any running hub.

Each opens the configured database, refuses one whose schema is not current (a command
must never write into a schema it does not know), and writes through a ``Ledger`` like
the hub's, so its changes are audited, chained and evented exactly as the hub's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from payhub.domain.clock import system_clock
from payhub.domain.payment import Refund
from payhub.errors import ConfigError
from payhub.service.refunds import RefundService
from payhub.service.unit_of_work import PendingRefund
from payhub.settings import Settings
from payhub.store import migrate
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger

OPERATOR = "operator:cli"


@asynccontextmanager
async def operator_ledger(settings: Settings) -> AsyncIterator[Ledger]:
    """A ledger on the configured database, closed (and the engine disposed) on exit."""
    engine = create_engine(settings.database_url)
    try:
        if not await migrate.is_current(engine):
            raise ConfigError(
                "the database schema is not current: run "
                f"`payhub db upgrade --config {settings.config_path}`"
            )
        ledger = Ledger(engine, system_clock)
        await ledger.start()
        try:
            yield ledger
        finally:
            await ledger.close()
    finally:
        await engine.dispose()


async def pending_refunds(settings: Settings) -> list[PendingRefund]:
    async with operator_ledger(settings) as ledger:
        return await RefundService(ledger=ledger, connectors={}).pending()


async def settle_refund(
    settings: Settings,
    refund_id: str,
    *,
    succeeded: bool,
    bank_refund_id: str | None,
    note: str,
) -> Refund:
    async with operator_ledger(settings) as ledger:
        refunds = RefundService(ledger=ledger, connectors={})
        return await refunds.settle_by_hand(
            refund_id,
            succeeded=succeeded,
            bank_refund_id=bank_refund_id,
            note=note,
            actor=OPERATOR,
        )
