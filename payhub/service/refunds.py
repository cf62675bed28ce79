"""Refunds: part or all of a succeeded payment goes back to the payer.

A refund is reserved in the ledger first (so two refunds can never together exceed
the payment), then asked of the bank, then settled in the ledger with its portal
event. A bank that does not answer leaves the refund ``pending``: the money may or may
not have moved, and only the bank (a status query, the statement) can say which.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog

from payhub.connectors.port import BankConnector, RefundRequest, RefundResult
from payhub.domain.ids import new_id
from payhub.domain.payment import Payment, Refund
from payhub.domain.requests import RefundRequestBody
from payhub.domain.states import PaymentStatus
from payhub.errors import BankError, FieldError, PayhubError, ProblemError
from payhub.service.unit_of_work import IdempotencyRecord, Reading, UnitOfWork, UnitRunner

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RefundOutcome:
    refund: Refund
    replayed: bool


class RefundService:
    def __init__(self, *, ledger: UnitRunner, connectors: dict[str, BankConnector]) -> None:
        self.ledger = ledger
        self.connectors = connectors
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
        await work.refunds.add(refund, portal_id=portal_id)
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
            return await connector.refund(
                RefundRequest(
                    refund_id=refund.id,
                    payment_bank_reference=payment.bank_reference,
                    bank_transaction_id=payment.bank_transaction_id,
                    amount=refund.amount,
                    payment_amount=payment.amount,
                    paid_at=payment.paid_at,
                    reason=refund.reason,
                )
            )
        except BankError as exc:
            log.warning("refund_unanswered", refund_id=refund.id, error=str(exc))
            return None

    async def _settle(
        self, work: UnitOfWork, refund: Refund, payment: Payment, result: RefundResult
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
        work.audit(
            actor=f"bank:{payment.bank}",
            action=f"refund.{status}",
            payment_id=payment.id,
            detail={"refund_id": refund.id, "amount": refund.amount, "code": result.failure_code},
        )
        work.emit(
            portal_id=payment.portal_id,
            type=f"refund.{status}",
            payment_id=payment.id,
            data=settled.to_public(),
        )
        return settled
