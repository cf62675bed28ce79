"""The replay store for request nonces, shared by every hub process through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from payhub.service.unit_of_work import Claim, NonceClaim, UnitOfWork
from payhub.store.ledger import Ledger, LedgerUnitOfWork
from payhub.store.tables import nonces


class DatabaseNonceStore:
    """A nonce is claimed by inserting it; the unique key makes the second claim fail.

    A small in-process set answers repeats without a database round trip; the database
    answers for nonces first used by another hub process.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._seen: dict[tuple[str, str], datetime] = {}

    def reserve(self, keyid: str, nonce: str, expires_at: datetime) -> bool:
        """Take the nonce in this process; False if this process has seen it already."""
        slot = (keyid, nonce)
        if slot in self._seen:
            return False
        self._seen[slot] = expires_at
        return True

    def release(self, keyid: str, nonce: str) -> None:
        """Give back a reservation whose request took no effect and claimed nothing."""
        self._seen.pop((keyid, nonce), None)

    async def claim(self, keyid: str, nonce: str, expires_at: datetime) -> bool:
        """Use up the nonce in a ledger round of its own; True only the first time."""
        if not self.reserve(keyid, nonce, expires_at):
            return False
        try:
            return await self.claim_reserved(NonceClaim(keyid, nonce, expires_at))
        except BaseException:
            self.release(keyid, nonce)
            raise

    async def claim_reserved(self, held: NonceClaim) -> bool:
        """Claim in the database a nonce already reserved here; True if it was unused."""

        async def claim_unit(work: UnitOfWork) -> Claim:
            return work.nonces.claim(held)

        won = (await self.ledger.run(claim_unit)).won
        held.decided = True
        return won

    def hold(self) -> HeldNonce:
        """A nonce store for one request whose use case claims the nonce in its own unit."""
        return HeldNonce(self)

    async def prune(self, now: datetime) -> int:
        """Forget nonces whose signatures can no longer be accepted anyway."""
        for slot, expires_at in list(self._seen.items()):
            if expires_at <= now:
                del self._seen[slot]

        async def prune_unit(work: LedgerUnitOfWork) -> int:
            conn = await work.writing()
            result = await conn.execute(delete(nonces).where(nonces.c.expires_at <= now))
            return int(result.rowcount or 0)

        return await self.ledger.run_in_store(prune_unit)


class HeldNonce:
    """One request's nonce: checked in this process at once, claimed with the request's writes.

    ``authenticate`` calls ``claim`` as with any nonce store; a repeat seen by this
    process is refused there and then. Otherwise the nonce is held as ``taken`` and
    handed to the use case, which claims it in the same transaction as its effect (one
    durable round). ``settle`` claims it alone if the use case did not get that far.
    """

    def __init__(self, store: DatabaseNonceStore) -> None:
        self._store = store
        self.taken: NonceClaim | None = None

    async def claim(self, keyid: str, nonce: str, expires_at: datetime) -> bool:
        if not self._store.reserve(keyid, nonce, expires_at):
            return False
        self.taken = NonceClaim(keyid, nonce, expires_at)
        return True

    async def settle(self) -> bool:
        """Claim the nonce alone unless a committed unit decided it; False if it was used."""
        taken = self.taken
        if taken is None or taken.decided:
            return True
        try:
            return await self._store.claim_reserved(taken)
        except BaseException:
            self._store.release(taken.keyid, taken.nonce)
            raise
