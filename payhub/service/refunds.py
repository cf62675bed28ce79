"""Refunds: part or all of a succeeded payment goes back to the payer.

A refund is reserved in the ledger first (so two refunds can never together exceed
the payment), then asked of the bank, then settled in the ledger with its portal
event. A bank that does not answer leaves the refund ``pending``: the money may or may
not have moved, and only the bank can say which.

Recovery asks it (``recover_due``, run by the recovery worker): every refund is stored
with a first query time, ``REFUND_FIRST_QUERY`` after it was reserved, which settling
clears. A refund still pending then (the answer was lost, the bank timed out, the hub
stopped between reserving and asking) goes to its bank's ``refund_outcome``, on the
recovery schedule's delays until the bank tells. A bank that cannot tell without risking
a second refund (VNPay's refund API carries no id of the hub's) leaves it pending, with a
``refund.unresolved`` audit entry and a warning: finance staff settle it from the bank.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from payhub.connectors.port import BankConnector, RefundRequest, RefundResult
from payhub.domain.ids import new_id
from payhub.domain.payment import Payment, Refund
from payhub.domain.requests import RefundRequestBody
from payhub.domain.states import PaymentStatus
from payhub.errors import BankError, FieldError, PayhubError, ProblemError
from payhub.recovery.schedule import RecoveryPolicy
from payhub.service.unit_of_work import (
    DueRefund,
    IdempotencyRecord,
    PendingRefund,
    Reading,
    UnitOfWork,
    UnitRunner,
)

log = structlog.get_logger(__name__)

REFUND_FIRST_QUERY = timedelta(seconds=60)
"""When recovery first looks at a refund still pending: well after the longest bank call
(connectors give up within 15 s), so a refund being asked right now is never asked twice."""


class RefundRecovered(StrEnum):
    """What one recovery step did to a pending refund (counted by the worker)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RESCHEDULED = "rescheduled"
    UNRESOLVED = "unresolved"
    """Its bank cannot tell without risking a second refund: left to finance staff."""
    DONE = "done"
    """Settled meanwhile (its first answer arrived): taken off the schedule."""
    STALE = "stale"
    """The claim ran out and another worker holds the refund now: nothing was written."""


@dataclass(frozen=True)
class RefundOutcome:
    refund: Refund
    replayed: bool


class RefundService:
    def __init__(
        self,
        *,
        ledger: UnitRunner,
        connectors: dict[str, BankConnector],
        policy: RecoveryPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.connectors = connectors
        self.policy = policy or RecoveryPolicy()
        self._in_flight: set[tuple[str, str]] = set()

    async def refund(
        self, portal_id: str, payment_id: str, key: str, body: RefundRequestBody
    ) -> RefundOutcome:
        """Refund once per Idempotency-Key; total refunds never exceed the payment."""
        scope = f"refunds.create:{payment_id}"
        print_ = body.fingerprint()
        slot = (portal_id, key)
        if slot in self._in_flight:
            raise ProblemError("idempotency_in_flight", "this refund is still being processed")
        self._in_flight.add(slot)
        try:
            replay = await self._replay(portal_id, key, scope, print_)
            if replay is not None:
                return replay
            reserved = await self.ledger.run(
                lambda work: self._reserve(work, portal_id, payment_id, key, scope, print_, body)
            )
            if reserved is None:
                replay = await self._replay(portal_id, key, scope, print_)
                if replay is None:  # pragma: no cover - the claim and its row commit together
                    raise PayhubError("idempotency claim lost without a record")
                return replay
            refund, payment = reserved
            result = await self._ask_bank(refund, payment)
            if result is None:
                return RefundOutcome(refund, replayed=False)
            settled = await self.ledger.run(
                lambda work: self._settle(work, refund, payment, result)
            )
            return RefundOutcome(settled, replayed=False)
        finally:
            self._in_flight.discard(slot)

    async def _replay(
        self, portal_id: str, key: str, scope: str, print_: str
    ) -> RefundOutcome | None:
        async def read(store: Reading) -> RefundOutcome | None:
            record = await store.idempotency_keys.get(portal_id, key)
            if record is None:  # keys replay until housekeeping prunes them after 24 h
                return None
            if record.scope != scope or record.fingerprint != print_:
                raise ProblemError(
                    "idempotency_conflict", "this Idempotency-Key was used with a different request"
                )
            refund = await store.refunds.get(record.resource_id)
            if refund is None:  # pragma: no cover
                raise PayhubError("idempotency record without its refund")
            return RefundOutcome(refund, replayed=True)

        return await self.ledger.read(read)

    async def _reserve(
        self,
        work: UnitOfWork,
        portal_id: str,
        payment_id: str,
        key: str,
        scope: str,
        print_: str,
        body: RefundRequestBody,
    ) -> tuple[Refund, Payment] | None:
        payment = await work.payments.get_for_refund(payment_id, portal_id=portal_id)
        if payment is None:
            raise ProblemError("not_found", f"no payment {payment_id!r}")
        connector = self.connectors.get(payment.bank)
        if connector is None or not connector.supports_refund:
            raise ProblemError(
                "refund_not_supported", f"bank {payment.bank!r} cannot refund online"
            )
        if payment.status is not PaymentStatus.SUCCEEDED:
            raise ProblemError(
                "invalid_state", f"a {payment.status.value} payment cannot be refunded"
            )
        left = payment.amount - await work.refunds.committed_amount(payment_id)
        if body.amount > left:
            raise ProblemError(
                "validation_failed",
                f"only {left:,} VND of this payment can still be refunded",
                errors=[FieldError("amount", f"at most {left}")],
            )
        now = work.now()
        refund = Refund(
            id=new_id("rfd"),
            payment_id=payment_id,
            amount=body.amount,
            status="pending",
            created_at=now,
            reason=body.reason,
        )
        record = IdempotencyRecord(
            portal_id=portal_id,
            key=key,
            scope=scope,
            fingerprint=print_,
            resource_id=refund.id,
            created_at=now,
        )
        if not await work.idempotency_keys.claim_now(record):
            return None
        await work.refunds.add(refund, portal_id=portal_id, query_at=now + REFUND_FIRST_QUERY)
        work.audit(
            actor=f"portal:{portal_id}",
            action="refund.requested",
            payment_id=payment_id,
            detail={"refund_id": refund.id, "amount": refund.amount},
        )
        return refund, payment

    async def _ask_bank(self, refund: Refund, payment: Payment) -> RefundResult | None:
        connector = self.connectors[payment.bank]
        try:
            return await connector.refund(_bank_request(refund, payment))
        except BankError as exc:
            log.warning("refund_unanswered", refund_id=refund.id, error=str(exc))
            return None

    # --- recovery ---------------------------------------------------------------------

    async def recover_due(self, now: datetime) -> list[RefundRecovered]:
        """Claim the refunds due for a bank query at ``now``, ask and settle each."""
        lease_until = now + timedelta(seconds=self.policy.lease)

        async def claim_unit(work: UnitOfWork) -> list[DueRefund]:
            return await work.refunds.claim_due(now, lease_until, self.policy.batch)

        claimed = await self.ledger.run(claim_unit)
        return list(await asyncio.gather(*(self._recover(due) for due in claimed)))

    async def _recover(self, due: DueRefund) -> RefundRecovered:
        refund, payment = due.refund, due.payment
        connector = self.connectors.get(payment.bank)
        if refund.status != "pending":
            return await self._reschedule(due, None, RefundRecovered.DONE)
        if connector is None or not connector.recovers_refunds:
            log.warning(
                "refund_unresolved",
                refund_id=refund.id,
                payment_id=payment.id,
                bank=payment.bank,
                reason="the bank cannot tell without risking a second refund",
            )
            return await self._reschedule(due, None, RefundRecovered.UNRESOLVED)
        try:
            result = await connector.refund_outcome(_bank_request(refund, payment))
        except PayhubError as exc:  # the bank down or refusing the request: ask later
            log.info("refund_recovery_unanswered", refund_id=refund.id, error=str(exc))
            result = None
        if result is None:
            later = self.policy.delay(due.attempt)
            return await self._reschedule(due, later, RefundRecovered.RESCHEDULED)
        settled = await self.ledger.run(
            lambda work: self._settle(work, refund, payment, result, recovered=True)
        )
        log.info("refund_recovered", refund_id=refund.id, status=settled.status)
        if settled.status == "succeeded":
            return RefundRecovered.SUCCEEDED
        return RefundRecovered.FAILED

    async def _reschedule(
        self, due: DueRefund, later: timedelta | None, outcome: RefundRecovered
    ) -> RefundRecovered:
        async def unit(work: UnitOfWork) -> RefundRecovered:
            next_at = None if later is None else work.now() + later
            if not await work.refunds.schedule(due.refund.id, due.attempt, next_at):
                return RefundRecovered.STALE
            if outcome is RefundRecovered.UNRESOLVED:
                work.audit(
                    actor="recovery",
                    action="refund.unresolved",
                    payment_id=due.payment.id,
                    detail={"refund_id": due.refund.id, "amount": due.refund.amount},
                )
            return outcome

        return await self.ledger.run(unit)

    # --- finance staff -----------------------------------------------------------------

    async def pending(self, limit: int = 1000) -> list[PendingRefund]:
        """Refunds still waiting for their bank's word, oldest first."""
        return await self.ledger.read(lambda store: store.refunds.pending(limit))

    async def settle_by_hand(
        self,
        refund_id: str,
        *,
        succeeded: bool,
        bank_refund_id: str | None,
        note: str,
        actor: str,
    ) -> Refund:
        """Settle a pending refund from the bank's own records (its merchant portal, its
        statement), with the portal's event and an audit entry naming who and why.

        ``not_found`` for an unknown refund, ``invalid_state`` for one already settled
        (recovery or the bank's late answer got there first): nothing changes then.
        """
        if not note.strip():
            raise ProblemError(
                "validation_failed",
                "say where the outcome comes from",
                errors=[FieldError("note", "required")],
            )
        result = RefundResult(
            succeeded=succeeded,
            bank_refund_id=bank_refund_id if succeeded else None,
            failure_code=None if succeeded else "settled_by_hand",
        )

        async def unit(work: UnitOfWork) -> Refund:
            refund = await work.refunds.get(refund_id)
            if refund is None:
                raise ProblemError("not_found", f"no refund {refund_id!r}")
            if refund.status != "pending":
                raise ProblemError("invalid_state", f"refund {refund_id} is {refund.status}")
            payment = await work.payments.get(refund.payment_id)
            if payment is None:  # pragma: no cover - payments are never deleted
                raise PayhubError("refund without its payment")
            return await self._settle(work, refund, payment, result, actor=actor, note=note)

        return await self.ledger.run(unit)

    async def _settle(
        self,
        work: UnitOfWork,
        refund: Refund,
        payment: Payment,
        result: RefundResult,
        *,
        recovered: bool = False,
        actor: str | None = None,
        note: str | None = None,
    ) -> Refund:
        status = "succeeded" if result.succeeded else "failed"
        now = work.now()
        changed = await work.refunds.settle(
            refund.id,
            status=status,
            bank_refund_id=result.bank_refund_id,
            failure_code=result.failure_code,
            at=now,
        )
        if not changed:  # settled meanwhile by another path: report what is stored
            stored = await work.refunds.get(refund.id)
            assert stored is not None
            return stored
        if result.succeeded:
            await work.payments.add_refunded(payment.id, refund.amount, now)
        settled = replace(refund, status=status)
        detail: dict[str, object] = {
            "refund_id": refund.id,
            "amount": refund.amount,
            "code": result.failure_code,
        }
        if recovered:
            detail["recovered"] = True
        if note is not None:
            detail["note"] = note
        work.audit(
            actor=actor or f"bank:{payment.bank}",
            action=f"refund.{status}",
            payment_id=payment.id,
            detail=detail,
        )
        work.emit(
            portal_id=payment.portal_id,
            type=f"refund.{status}",
            payment_id=payment.id,
            data=settled.to_public(),
        )
        return settled


def _bank_request(refund: Refund, payment: Payment) -> RefundRequest:
    return RefundRequest(
        refund_id=refund.id,
        payment_bank_reference=payment.bank_reference,
        bank_transaction_id=payment.bank_transaction_id,
        amount=refund.amount,
        payment_amount=payment.amount,
        paid_at=payment.paid_at,
        reason=refund.reason,
    )
