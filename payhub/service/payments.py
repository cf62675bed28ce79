"""Use cases on payments: create, read, cancel, confirm.

Each use case does its slow, outside work first (placing the order at the bank), then
hands one unit of work to the unit runner (the group-commit ledger), which commits it
durably before the caller answers. Storage is reached only through the unit of work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog

from payhub.connectors.port import (
    BankConnector,
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    OrderRequest,
    PlacedOrder,
)
from payhub.domain.clock import Clock
from payhub.domain.ids import new_id
from payhub.domain.payment import Payment, dossier_status
from payhub.domain.reference import new_bank_reference
from payhub.domain.requests import PaymentRequest
from payhub.domain.states import EVENT_TYPE, PaymentStatus, can_transition, is_open
from payhub.errors import BankUnavailable, FieldError, PayhubError, ProblemError
from payhub.recovery.schedule import RecoveryPolicy
from payhub.service.routing import Router, RouteRequest
from payhub.service.unit_of_work import (
    Claim,
    IdempotencyRecord,
    LostRace,
    NewPayment,
    NonceClaim,
    Reading,
    UnitOfWork,
    UnitRunner,
)

log = structlog.get_logger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
CREATE_SCOPE = "payments.create"
REPLAYED_NONCE = "This nonce was already used with this key."


@dataclass(frozen=True)
class Created:
    payment: Payment
    replayed: bool


class PaymentService:
    """The payment use cases, wired to the unit runner (the ledger) and the banks."""

    def __init__(
        self,
        *,
        ledger: UnitRunner,
        connectors: dict[str, BankConnector],
        router: Router,
        clock: Clock,
        recovery: RecoveryPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.connectors = connectors
        self.router = router
        self.clock = clock
        self.recovery = recovery or RecoveryPolicy()
        self._in_flight: set[tuple[str, str]] = set()

    # -- create ---------------------------------------------------------------------------

    async def create(
        self,
        portal_id: str,
        idempotency_key: str,
        request: PaymentRequest,
        *,
        nonce: NonceClaim | None = None,
    ) -> Created:
        """Create a payment once per Idempotency-Key; a repeat replays the first answer.

        ``nonce``, the request's signature nonce, is claimed in the same transaction as
        the key and the payment (one durable round per create); a nonce already used
        answers ``401 signature_replayed`` and nothing is stored. When the order goes
        to a bank that is called over the network, the nonce is claimed first, alone,
        because placing the order is already an effect.
        """
        print_ = request.fingerprint()
        slot = (portal_id, idempotency_key)
        if slot in self._in_flight:
            raise ProblemError(
                "idempotency_in_flight", "a request with this Idempotency-Key is being processed"
            )
        self._in_flight.add(slot)
        try:
            outcome = await self._place_and_record(
                portal_id, idempotency_key, print_, request, nonce
            )
        finally:
            self._in_flight.discard(slot)
        if isinstance(outcome, Created):  # replayed before a remote order was placed
            return outcome
        if outcome is None:  # another request (here or in another hub process) took the key
            replay = await self._replay(portal_id, idempotency_key, print_)
            if replay is None:
                raise ProblemError("idempotency_in_flight", "the first request is still running")
            return replay
        return Created(outcome, replayed=False)

    async def _replay(self, portal_id: str, key: str, print_: str) -> Created | None:
        async def read(store: Reading) -> Created | None:
            record = await store.idempotency_keys.get(portal_id, key)
            if record is None:  # keys replay until housekeeping prunes them after 24 h
                return None
            if record.scope != CREATE_SCOPE or record.fingerprint != print_:
                raise ProblemError(
                    "idempotency_conflict",
                    "this Idempotency-Key was used with a different request",
                )
            payment = await store.payments.get(record.resource_id)
            if payment is None:  # pragma: no cover - the key and the payment commit together
                raise PayhubError("idempotency record without its payment")
            return Created(payment, replayed=True)

        return await self.ledger.read(read)

    async def _place_and_record(
        self,
        portal_id: str,
        key: str,
        print_: str,
        request: PaymentRequest,
        nonce: NonceClaim | None,
    ) -> Payment | Created | None:
        canonical = request.canonical()
        now = self.clock()
        payment_id = new_id("pay")
        reference = new_bank_reference()
        expires_at = now + timedelta(seconds=request.expires_in)
        dossier_code = canonical["dossier"]["code"]
        order_info = canonical.get("description") or f"Thanh toán hồ sơ {dossier_code}"
        order = OrderRequest(
            payment_id=payment_id,
            bank_reference=reference,
            amount=request.amount,
            order_info=order_info,
            return_url=request.return_url,
            created_at=now,
            expires_at=expires_at,
        )

        async def before_remote_order() -> Created | None:
            if nonce is not None and not nonce.decided:
                await claim_nonce_alone(self.ledger, nonce)
            # A remote order is a side effect at the bank: never place one for a replay.
            return await self._replay(portal_id, key, print_)

        placed_or_replay = await self._place(order, request, before_remote_order)
        if isinstance(placed_or_replay, Created):
            return placed_or_replay
        bank, placed = placed_or_replay
        status = PaymentStatus.UNKNOWN if placed is None else PaymentStatus.PENDING
        if nonce is not None and nonce.decided:  # claimed before a remote order
            nonce = None
        dossier = canonical["dossier"]
        payer = canonical["payer"]
        payment = Payment(
            id=payment_id,
            portal_id=portal_id,
            dossier={
                "code": dossier["code"],
                "procedure_code": dossier.get("procedure_code"),
                "agency_code": dossier["agency_code"],
                "agency_name": dossier.get("agency_name"),
            },
            items=[dict(item) for item in canonical["items"]],
            amount=request.amount,
            currency="VND",
            bank=bank,
            bank_reference=reference,
            payment_url=placed.payment_url if placed is not None else None,
            qr=placed.qr if placed is not None else None,
            status=status,
            created_at=now,
            expires_at=expires_at,
            paid_at=None,
            refunded_amount=0,
            failure_code=None,
            description=canonical.get("description"),
        )
        new = NewPayment(
            payment=payment,
            payer_name=payer["name"],
            payer_id_number=payer.get("id_number"),
            payer_phone=payer.get("phone"),
            return_url=request.return_url,
            next_query_at=self.recovery.first_query(
                created_at=now, expires_at=expires_at, unknown=placed is None
            ),
        )
        record = IdempotencyRecord(
            portal_id=portal_id,
            key=key,
            scope=CREATE_SCOPE,
            fingerprint=print_,
            resource_id=payment_id,
            created_at=now,
        )

        async def record_unit(work: UnitOfWork) -> tuple[Claim | None, Claim]:
            nonce_claim = work.nonces.claim(nonce) if nonce is not None else None
            created = work.audit_entry(
                actor=f"portal:{portal_id}",
                action="payment.created",
                payment_id=payment_id,
                to_status=status.value,
                detail={"amount": request.amount, "bank": bank, "dossier": dossier["code"]},
            )
            key_claim = work.idempotency_keys.claim(
                record, creates=new, audit=[created], after=nonce_claim
            )
            return nonce_claim, key_claim

        nonce_claim, key_claim = await self.ledger.run(record_unit)
        if nonce is not None and nonce_claim is not None:
            nonce.decided = True
            if not nonce_claim.won:
                raise ProblemError("signature_replayed", REPLAYED_NONCE)
        return payment if key_claim.won else None

    async def _place(
        self,
        order: OrderRequest,
        request: PaymentRequest,
        before_remote_order: Callable[[], Awaitable[Created | None]],
    ) -> tuple[str, PlacedOrder | None] | Created:
        """Place the order at the chosen bank, or at the first routed bank that takes it.

        ``unknown`` or ``503``: a bank that refused the order (connection refused, an
        HTTP 5xx or a refusal code: it answered, and holds nothing) is skipped for the
        next routed bank, and when none is left the create answers ``503
        bank_unavailable`` with nothing stored. A bank that may hold the order (the
        request was sent and the answer timed out or the connection broke before it:
        :func:`order_may_exist`) ends the search: the payment is stored ``unknown`` at
        that bank (``None`` instead of a placed order; ``201`` with status ``unknown``,
        no ``payment_url``) and recovery asks the bank soon. Failing over then could
        leave the payer with two live orders.

        Before the first bank that places orders over the network (an effect outside the
        hub), ``before_remote_order`` runs once: it settles the request's nonce and
        returns the first answer if this is a replay, which is then returned instead.
        Banks that sign orders locally (VNPay) need neither: the create's own unit of
        work claims the nonce and the key.
        """
        chosen = request.bank
        candidates = self.router.candidates(RouteRequest.for_payment(request), chosen)
        if not candidates:
            if chosen is not None:
                connector = self.connectors[chosen]
                raise ProblemError(
                    "validation_failed",
                    f"bank {chosen!r} takes {connector.min_amount:,}–{connector.max_amount:,} VND",
                    errors=[FieldError("bank", "amount outside this bank's limits")],
                )
            raise ProblemError(
                "validation_failed",
                "no configured bank takes this amount",
                errors=[FieldError("amount", "outside every configured bank's limits")],
            )
        guarded = False
        for bank in candidates:
            connector = self.connectors[bank]
            if not connector.places_orders_locally and not guarded:
                guarded = True
                replay = await before_remote_order()
                if replay is not None:
                    return replay
            try:
                placed = await connector.place_order(order)
            except BankUnavailable as exc:
                self.router.record_failure(bank)
                if order_may_exist(exc):
                    log.warning("order_unknown", bank=bank, error=str(exc))
                    return bank, None
                log.warning("bank_unavailable", bank=bank, error=str(exc))
                continue
            self.router.record_success(bank)
            return bank, placed
        raise ProblemError(
            "bank_unavailable",
            "no configured bank could accept the order now; retry with the same Idempotency-Key",
            headers={"Retry-After": "5"},
        )

    # -- read -----------------------------------------------------------------------------

    async def get(self, portal_id: str, payment_id: str) -> Payment:
        async def read(store: Reading) -> Payment | None:
            return await store.payments.get(payment_id, portal_id=portal_id)

        payment = await self.ledger.read(read)
        if payment is None:
            raise ProblemError("not_found", f"no payment {payment_id!r}")
        return payment

    async def list_for_dossier(self, portal_id: str, dossier_code: str) -> list[Payment]:
        async def read(store: Reading) -> list[Payment]:
            return await store.payments.for_dossier(portal_id, dossier_code)

        return await self.ledger.read(read)

    async def dossier(self, portal_id: str, dossier_code: str) -> dict[str, Any]:
        found = await self.list_for_dossier(portal_id, dossier_code)
        if not found:
            raise ProblemError("not_found", f"no payments for dossier {dossier_code!r}")
        return dossier_summary(dossier_code, found)

    # -- cancel ---------------------------------------------------------------------------

    async def cancel(self, portal_id: str, payment_id: str) -> Payment:
        """Cancel a payment that is still ``pending`` or ``unknown``."""

        async def cancel_unit(work: UnitOfWork) -> Payment:
            payment = await work.payments.get(payment_id, portal_id=portal_id)
            if payment is None:
                raise ProblemError("not_found", f"no payment {payment_id!r}")
            if not is_open(payment.status):
                raise ProblemError(
                    "invalid_state", f"a {payment.status.value} payment cannot be cancelled"
                )
            return await transition(
                work, payment, PaymentStatus.CANCELLED, actor=f"portal:{portal_id}"
            )

        return await self.ledger.run(cancel_unit)

    # -- confirmations from banks -------------------------------------------------------

    async def confirm(self, bank: str, confirmation: Confirmation) -> ConfirmationOutcome:
        """Apply a verified bank confirmation exactly once.

        Order of checks (VNPay's): the order exists → the amount matches → the status is
        final → apply. A failure arriving after success is recorded and ignored.
        """

        async def confirm_unit(work: UnitOfWork) -> ConfirmationOutcome:
            payment = await work.payments.by_reference(bank, confirmation.bank_reference)
            if payment is None:
                return ConfirmationOutcome.UNKNOWN_ORDER
            actor = f"bank:{bank}"
            if not amount_matches(work, payment, confirmation, actor=actor):
                return ConfirmationOutcome.AMOUNT_MISMATCH
            if confirmation.status is ConfirmationStatus.PENDING:
                return ConfirmationOutcome.IGNORED
            target = target_status(confirmation)
            if payment.status is target:
                if _another_payment(payment, confirmation):
                    # The payer paid twice (two transfers, two wallet payments): the
                    # payment stays paid once, the second sum is kept for reconciliation.
                    work.audit(
                        actor=actor,
                        action="confirmation.second_payment",
                        payment_id=payment.id,
                        from_status=payment.status.value,
                        detail={
                            "amount": confirmation.amount,
                            "bank_transaction_id": confirmation.bank_transaction_id,
                        },
                    )
                return ConfirmationOutcome.ALREADY_APPLIED
            if not can_transition(payment.status, target):
                work.audit(
                    actor=actor,
                    action="transition.rejected",
                    payment_id=payment.id,
                    from_status=payment.status.value,
                    to_status=target.value,
                    detail={
                        "reason": "illegal transition",
                        "bank_transaction_id": confirmation.bank_transaction_id,
                        "failure_code": confirmation.failure_code,
                    },
                )
                return ConfirmationOutcome.IGNORED
            await transition(
                work,
                payment,
                target,
                actor=actor,
                paid_at=confirmation.paid_at or work.now()
                if target is PaymentStatus.SUCCEEDED
                else None,
                failure_code=confirmation.failure_code if target is PaymentStatus.FAILED else None,
                bank_transaction_id=confirmation.bank_transaction_id,
            )
            return ConfirmationOutcome.APPLIED

        return await self.ledger.run(confirm_unit)


def amount_matches(
    work: UnitOfWork,
    payment: Payment,
    confirmation: Confirmation,
    *,
    actor: str,
    via: str | None = None,
) -> bool:
    """Whether the bank's amount is the payment's; a mismatch is audited, never applied.

    One rule for every way a bank's word arrives (its confirmation, an answer to a query).
    """
    if confirmation.amount == payment.amount:
        return True
    detail: dict[str, Any] = {
        "expected": payment.amount,
        "confirmed": confirmation.amount,
        "status": confirmation.status.value,
    }
    if via is not None:
        detail["via"] = via
    work.audit(
        actor=actor,
        action="confirmation.amount_mismatch",
        payment_id=payment.id,
        from_status=payment.status.value,
        detail=detail,
    )
    return False


def target_status(confirmation: Confirmation) -> PaymentStatus:
    """Where a final confirmation moves a payment."""
    if confirmation.status is ConfirmationStatus.SUCCEEDED:
        return PaymentStatus.SUCCEEDED
    return PaymentStatus.FAILED


def _another_payment(payment: Payment, confirmation: Confirmation) -> bool:
    """A success the bank gives its own transaction id, not the one that paid the payment."""
    return (
        confirmation.status is ConfirmationStatus.SUCCEEDED
        and confirmation.bank_transaction_id is not None
        and payment.bank_transaction_id is not None
        and confirmation.bank_transaction_id != payment.bank_transaction_id
    )


def order_may_exist(exc: BankUnavailable) -> bool:
    """Whether the bank may have taken an order whose placing raised ``exc``.

    Connectors raise ``BankUnavailable`` from the transport error (``raise … from``).
    Never connected (refused, DNS, connect timeout) or answered with an HTTP 5xx or a
    refusal code (no transport error behind it): the bank holds nothing. Sent, and then
    the answer timed out or the connection dropped: the bank may hold the order.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return False
    return isinstance(
        cause,
        TimeoutError
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | aiohttp.ClientPayloadError,
    )


async def claim_nonce_alone(runner: UnitRunner, nonce: NonceClaim) -> None:
    """Use up a request nonce in a round of its own; ``401 signature_replayed`` if used."""

    async def claim_unit(work: UnitOfWork) -> Claim:
        return work.nonces.claim(nonce)

    claim = await runner.run(claim_unit)
    nonce.decided = True
    if not claim.won:
        raise ProblemError("signature_replayed", REPLAYED_NONCE)


async def transition(
    work: UnitOfWork,
    payment: Payment,
    target: PaymentStatus,
    *,
    actor: str,
    paid_at: datetime | None = None,
    failure_code: str | None = None,
    bank_transaction_id: str | None = None,
    detail: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> Payment:
    """Move a payment to ``target`` under a guard, with its audit entry and portal event.

    The ``WHERE status = current`` guard makes the change apply once even when two hub
    processes race; the loser raises ``LostRace`` and the ledger runs its unit again.
    ``source`` names what settled the payment when it is not the bank's confirmation (a
    statement): the portal event then carries it beside the payment object.
    A success for an ``expired`` payment (the payer paid after the hub stopped waiting)
    is applied and flagged ``late: true`` in its audit entry, with a ``late_success`` log
    line, whoever reports it (IPN, recovery query, statement).
    """
    if not can_transition(payment.status, target):  # pragma: no cover - callers check first
        raise PayhubError(f"illegal transition {payment.status} -> {target}")
    updated = replace(
        payment,
        status=target,
        paid_at=paid_at if paid_at is not None else payment.paid_at,
        failure_code=failure_code if failure_code is not None else payment.failure_code,
        bank_transaction_id=bank_transaction_id or payment.bank_transaction_id,
    )
    if not await work.payments.change_status(payment, updated, at=work.now()):
        raise LostRace(payment.id)
    entry = detail or ({"bank_transaction_id": bank_transaction_id} if bank_transaction_id else {})
    if payment.status is PaymentStatus.EXPIRED:  # a late success: applied, and flagged
        entry = {**entry, "late": True}
        log.warning(
            "late_success", payment_id=payment.id, bank=payment.bank, actor=actor, late=True
        )
    work.audit(
        actor=actor,
        action=f"payment.{target.value}",
        payment_id=payment.id,
        from_status=payment.status.value,
        to_status=target.value,
        detail=entry,
    )
    event_type = EVENT_TYPE[target]
    if event_type is not None:
        work.emit(
            portal_id=payment.portal_id,
            type=event_type,
            payment_id=payment.id,
            data=updated.to_public()
            if source is None
            else {**updated.to_public(), "source": source},
        )
    if target is PaymentStatus.SUCCEEDED:
        await _emit_if_overpaid(work, updated)
    return updated


async def _emit_if_overpaid(work: UnitOfWork, paid: Payment) -> None:
    """A second payment covering the same item codes makes the dossier overpaid: tell the portal."""
    code = paid.dossier["code"]
    others = await work.payments.others_succeeded_for_dossier(paid.portal_id, code, besides=paid.id)
    if not others:
        return
    before, _, _ = dossier_status(others)
    everything = [*others, paid]
    after, _, _ = dossier_status(everything)
    if after == "overpaid" and before != "overpaid":
        work.emit(
            portal_id=paid.portal_id,
            type="dossier.overpaid",
            payment_id=paid.id,
            data=dossier_summary(code, everything),
        )


def dossier_summary(code: str, found: list[Payment]) -> dict[str, Any]:
    status, paid, refunded = dossier_status(found)
    return {
        "code": code,
        "payments": [p.to_public() for p in found],
        "paid_amount": paid,
        "refunded_amount": refunded,
        "status": status,
    }
