"""Forgetting what no longer protects anything: expired idempotency keys.

An ``Idempotency-Key`` replays its first answer for 24 hours (CONTRACT §3). Until its row
is pruned a key keeps replaying, so a portal is never given a second payment by a key
that merely aged; once pruned, the key is free for a new request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from payhub.store.ledger import Ledger, LedgerUnitOfWork
from payhub.store.tables import idempotency_keys


async def prune_idempotency_keys(ledger: Ledger, before: datetime) -> int:
    """Delete idempotency keys created before ``before``; returns how many."""

    async def prune_unit(work: LedgerUnitOfWork) -> int:
        conn = await work.writing()
        result = await conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.created_at < before)
        )
        return int(result.rowcount or 0)

    return await ledger.run_in_store(prune_unit)
