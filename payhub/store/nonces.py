"""The replay store for request nonces, shared by every hub process through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from payhub.store.ledger import Claim, Ledger, Transaction
from payhub.store.tables import nonces


class DatabaseNonceStore:
    """A nonce is claimed by inserting it; the unique key makes the second claim fail.

    A small in-process set answers repeats without a database round trip; the database
    answers for nonces first used by another hub process.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._seen: dict[tuple[str, str], datetime] = {}

    async def claim(self, keyid: str, nonce: str, expires_at: datetime) -> bool:
        slot = (keyid, nonce)
        if slot in self._seen:
            return False
        self._seen[slot] = expires_at

        async def claim_unit(tx: Transaction) -> Claim:
            return tx.claim(nonces, {"keyid": keyid, "nonce": nonce, "expires_at": expires_at})

        try:
            return (await self.ledger.run(claim_unit)).won
        except BaseException:
            self._seen.pop(slot, None)
            raise

    async def prune(self, now: datetime) -> int:
        """Forget nonces whose signatures can no longer be accepted anyway."""
        for slot, expires_at in list(self._seen.items()):
            if expires_at <= now:
                del self._seen[slot]

        async def prune_unit(tx: Transaction) -> int:
            result = await tx.conn.execute(delete(nonces).where(nonces.c.expires_at <= now))
            return int(result.rowcount or 0)

        return await self.ledger.run(prune_unit)
