"""Recovery use cases: claim the payments due for a bank query, then settle what it said.

The worker (``payhub.recovery.worker``) asks the bank between the two units, outside any
transaction. ``settle`` re-reads the payment in its own unit, so whatever happened
meanwhile (an IPN applied, a cancel, another worker) is seen before anything changes;
its status changes go through ``transition`` (guarded, audited, with their event), so
each applies at most once however many workers and confirmations race.

What a query's answer does:

- ``succeeded`` / ``failed`` for an open payment: applied, like the bank's confirmation
  (same checks: the amount must match, a failure never follows a success);
- ``succeeded`` for an expired payment: applied (``expired -> succeeded``) and flagged
  ``late`` in the audit detail and the log; the money is never lost;
- not final, an API-request code, the bank down or not knowing the order (``Asked`` with
  no confirmation): nothing changes, the next query is scheduled;
- an open payment past ``expires_at`` with no final answer expires (``payment.expired``)
  and is queried on for the late window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from payhub.connectors.port import Confirmation, ConfirmationStatus
from payhub.domain.payment import Payment
from payhub.domain.states import PaymentStatus, can_transition, is_open
from payhub.recovery.schedule import RecoveryPolicy
from payhub.service.payments import amount_matches, target_status, transition
from payhub.service.unit_of_work import DueQuery, UnitOfWork, UnitRunner

log = structlog.get_logger(__name__)

ACTOR = "recovery"


class Settled(StrEnum):
    """What one recovery step did to its payment (counted by the worker and the demo)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LATE_SUCCESS = "late_success"
    EXPIRED = "expired"
    RESCHEDULED = "rescheduled"
    DONE = "done"
    """Already final (an IPN or a person settled it): taken off the schedule."""
    AMOUNT_MISMATCH = "amount_mismatch"
    STALE = "stale"
    """The claim ran out and another worker holds the payment now: nothing was written."""


@dataclass(frozen=True)
class Asked:
    """What asking the bank gave: a confirmation, or ``None`` (no answer that decides)."""

    confirmation: Confirmation | None
    error: str | None = None


class Recovery:
    """The recovery use cases on a unit runner (the ledger, or the fake one in tests)."""

    def __init__(self, ledger: UnitRunner, policy: RecoveryPolicy) -> None:
        self.ledger = ledger
        self.policy = policy

    async def claim_due(self, now: datetime) -> list[DueQuery]:
        """Claim up to ``policy.batch`` due payments for ``policy.lease``."""
        lease_until = now + timedelta(seconds=self.policy.lease)

        async def claim_unit(work: UnitOfWork) -> list[DueQuery]:
            return await work.payments.claim_due_queries(now, lease_until, self.policy.batch)

        return await self.ledger.run(claim_unit)

    @staticmethod
    def needs_query(payment: Payment) -> bool:
        """Whether a claimed payment is worth a bank call (open, or expired in the window)."""
        return is_open(payment.status) or payment.status is PaymentStatus.EXPIRED

    async def settle(self, due: DueQuery, asked: Asked | None) -> Settled:
        """Apply the bank's answer about ``due`` (``None``: not asked) and schedule next."""
        policy = self.policy

        async def settle_unit(work: UnitOfWork) -> Settled:
            now = work.now()
            payment = await work.payments.get(due.payment.id)
            if payment is None:  # pragma: no cover - payments are never deleted
                return Settled.DONE
            outcome = await _apply(work, payment, asked, now)
            current = await work.payments.get(payment.id) or payment
            if outcome is Settled.RESCHEDULED and is_open(current.status):
                if now >= current.expires_at:
                    current = await transition(
                        work,
                        current,
                        PaymentStatus.EXPIRED,
                        actor=ACTOR,
                        detail={"expires_at": current.expires_at.isoformat()},
                    )
                    outcome = Settled.EXPIRED
            if current.status is PaymentStatus.EXPIRED:
                next_at = policy.next_query(
                    now=now, attempt=due.attempt, expires_at=current.expires_at, still_open=False
                )
            elif is_open(current.status):
                next_at = policy.next_query(
                    now=now, attempt=due.attempt, expires_at=current.expires_at, still_open=True
                )
            else:
                next_at = None
            if not await work.payments.schedule_query(payment.id, due.attempt, next_at):
                if outcome in (Settled.RESCHEDULED, Settled.DONE):
                    return Settled.STALE
            return outcome

        return await self.ledger.run(settle_unit)


async def _apply(work: UnitOfWork, payment: Payment, asked: Asked | None, now: datetime) -> Settled:
    """The confirmation rules of ``PaymentService.confirm``, for an answer to a query."""
    found = asked.confirmation if asked is not None else None
    if not (is_open(payment.status) or payment.status is PaymentStatus.EXPIRED):
        return Settled.DONE
    if found is None or found.status is ConfirmationStatus.PENDING:
        return Settled.RESCHEDULED
    if not amount_matches(work, payment, found, actor=ACTOR, via="query"):
        return Settled.AMOUNT_MISMATCH
    target = target_status(found)
    succeeded = target is PaymentStatus.SUCCEEDED
    if not can_transition(payment.status, target):  # a failure for an expired payment
        return Settled.RESCHEDULED
    late = payment.status is PaymentStatus.EXPIRED
    detail: dict[str, object] = {"via": "query"}
    if found.bank_transaction_id:
        detail["bank_transaction_id"] = found.bank_transaction_id
    if found.failure_code and not succeeded:
        detail["failure_code"] = found.failure_code
    await transition(
        work,
        payment,
        target,
        actor=ACTOR,
        paid_at=(found.paid_at or now) if succeeded else None,
        failure_code=found.failure_code if not succeeded else None,
        bank_transaction_id=found.bank_transaction_id,
        detail=detail,
    )
    if late:
        return Settled.LATE_SUCCESS
    return Settled.SUCCEEDED if succeeded else Settled.FAILED
