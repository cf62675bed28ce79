"""The recovery worker: asks banks about due payments and settles what they answer.

A round claims the due payments (``Recovery.claim_due``: a claim moves the payment's
``next_query_at`` to the end of a lease, so no other worker, in this process or another,
sees it as due meanwhile), asks each one's bank concurrently, and settles each answer in
a unit of its own (``Recovery.settle``). A worker that dies between the two (SIGKILL)
loses nothing: the lease ends and the payment is due again. The clock is injected: what
is due is decided on it, so a test on a ``FakeClock`` moves a day in a few rounds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping

import structlog

from payhub.connectors.port import BankConnector
from payhub.domain.clock import Clock
from payhub.errors import PayhubError
from payhub.service.recovery import Asked, Recovery, Settled
from payhub.service.refunds import RefundRecovered, RefundService
from payhub.service.unit_of_work import DueQuery

CONCURRENCY = 16

log = structlog.get_logger(__name__)


class RecoveryWorker:
    """``recover_due`` is one round, ``recover_all_due`` rounds until nothing is due,
    ``run`` loops forever; ``counts`` adds up what the rounds did to payments (by
    ``Settled``), ``refund_counts`` what they did to pending refunds."""

    def __init__(
        self,
        recovery: Recovery,
        connectors: Mapping[str, BankConnector],
        *,
        clock: Clock,
        refunds: RefundService | None = None,
    ) -> None:
        self.recovery = recovery
        self.connectors = connectors
        self.clock = clock
        self.refunds = refunds
        self.counts: Counter[Settled] = Counter()
        self.refund_counts: Counter[RefundRecovered] = Counter()
        self.queries = 0
        self._slots = asyncio.Semaphore(CONCURRENCY)

    async def recover_due(self) -> int:
        """Claim what is due now (payments, then refunds), ask and settle each; how many
        were claimed."""
        now = self.clock()
        claimed = await self.recovery.claim_due(now)
        if claimed:
            await asyncio.gather(*(self._recover(due) for due in claimed))
        refunds = await self.refunds.recover_due(now) if self.refunds is not None else []
        self.refund_counts.update(refunds)
        return len(claimed) + len(refunds)

    async def recover_all_due(self) -> int:
        """Rounds until nothing is due at the clock's present time (tests, the demo)."""
        total = 0
        while count := await self.recover_due():
            total += count
        return total

    async def run(self, poll_seconds: float) -> None:
        """Forever: a round, then another at once if it claimed anything, else a pause."""
        while True:
            try:
                count = await self.recover_due()
            except Exception:
                log.exception("recovery_round_failed")
                count = 0
            if not count:
                await asyncio.sleep(poll_seconds)

    async def _recover(self, due: DueQuery) -> None:
        asked = await self._ask(due) if self.recovery.needs_query(due.payment) else None
        try:
            outcome = await self.recovery.settle(due, asked)
        except Exception:  # the lease ends and the payment is due again
            log.exception("recovery_settle_failed", payment_id=due.payment.id)
            return
        self.counts[outcome] += 1
        if outcome is not Settled.RESCHEDULED:
            log.info(
                "payment_recovered" if outcome is not Settled.STALE else "recovery_stale",
                payment_id=due.payment.id,
                bank=due.payment.bank,
                outcome=outcome.value,
                attempt=due.attempt,
                error=asked.error if asked is not None else None,
            )

    async def _ask(self, due: DueQuery) -> Asked:
        payment = due.payment
        connector = self.connectors.get(payment.bank)
        if connector is None:
            return Asked(None, f"bank {payment.bank!r} is not configured")
        async with self._slots:
            self.queries += 1
            try:
                found = await connector.query_status(
                    payment.bank_reference, payment.amount, payment.created_at
                )
            except PayhubError as exc:  # bank down, API-request code, answer not verified
                return Asked(None, f"{type(exc).__name__}: {exc}")
        return Asked(found, None if found is not None else "order not known to the bank")
