"""Use cases on payments: create, read, cancel, confirm.

Each use case does its slow, outside work first (placing the order at the bank), then
hands one unit of work to the ledger, which commits it durably before the caller answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

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
from payhub.service.routing import Router
from payhub.store import repository
from payhub.store.ledger import Claim, Ledger, LostRace, Transaction
from payhub.store.tables import idempotency_keys, payments

log = structlog.get_logger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
CREATE_SCOPE = "payments.create"


@dataclass(frozen=True)
class Created:
    payment: Payment
    replayed: bool


class PaymentService:
    """The payment use cases, wired to the ledger, the read engine and the banks."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        ledger: Ledger,
        connectors: dict[str, BankConnector],
        router: Router,
        clock: Clock,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.connectors = connectors
        self.router = router
        self.clock = clock
        self._in_flight: set[tuple[str, str]] = set()

    # -- create ---------------------------------------------------------------------------

    async def create(
        self, portal_id: str, idempotency_key: str, request: PaymentRequest
    ) -> Created:
        """Create a payment once per Idempotency-Key; a repeat replays the first answer."""
        print_ = request.fingerprint()
        slot = (portal_id, idempotency_key)
        if slot in self._in_flight:
            raise ProblemError(
                "idempotency_in_flight", "a request with this Idempotency-Key is being processed"
            )
        self._in_flight.add(slot)
        try:
            if not self._orders_are_local(request.bank):
                # A remote order is a side effect at the bank: never place one for a replay.
                replay = await self._replay(portal_id, idempotency_key, print_)
                if replay is not None:
                    return replay
            payment = await self._place_and_record(portal_id, idempotency_key, print_, request)
        finally:
            self._in_flight.discard(slot)
        if payment is None:  # another hub process won the race for this key
            replay = await self._replay(portal_id, idempotency_key, print_)
            if replay is None:
                raise ProblemError("idempotency_in_flight", "the first request is still running")
            return replay
        return Created(payment, replayed=False)

    def _orders_are_local(self, chosen: str | None) -> bool:
        """Whether every bank this request may go to places orders without calling out.

        Then a repeated request costs only a signed URL or QR payload thrown away, and
        the idempotency claim in the ledger (not a read before it) decides replays.
        """
        banks = [chosen] if chosen is not None else list(self.connectors)
        return all(self.connectors[bank].places_orders_locally for bank in banks)

    async def _replay(self, portal_id: str, key: str, print_: str) -> Created | None:
        async with self.engine.connect() as conn:
            record = await repository.get_idempotency_record(conn, portal_id, key)
            if record is None:  # keys replay until housekeeping prunes them after 24 h
                return None
            if record["scope"] != CREATE_SCOPE or record["fingerprint"] != print_:
                raise ProblemError(
                    "idempotency_conflict",
                    "this Idempotency-Key was used with a different request",
                )
            payment = await repository.get_payment(conn, record["resource_id"])
        if payment is None:  # pragma: no cover - the key and the payment commit together
            raise PayhubError("idempotency record without its payment")
        return Created(payment, replayed=True)

    async def _place_and_record(
        self, portal_id: str, key: str, print_: str, request: PaymentRequest
    ) -> Payment | None:
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
        bank, placed = await self._place(order, request.bank)
        dossier = canonical["dossier"]
        payer = canonical["payer"]
        row = {
            "id": payment_id,
            "portal_id": portal_id,
            "dossier_code": dossier["code"],
            "procedure_code": dossier.get("procedure_code"),
            "agency_code": dossier["agency_code"],
            "agency_name": dossier.get("agency_name"),
            "payer_name": payer["name"],
            "payer_id_number": payer.get("id_number"),
            "payer_phone": payer.get("phone"),
            "items": json.dumps(canonical["items"], ensure_ascii=False, separators=(",", ":")),
            "amount": request.amount,
            "currency": "VND",
            "description": canonical.get("description"),
            "return_url": request.return_url,
            "bank": bank,
            "bank_reference": reference,
            "payment_url": placed.payment_url,
            "qr": placed.qr,
            "status": PaymentStatus.PENDING.value,
            "refunded_amount": 0,
            "created_at": now,
            "expires_at": expires_at,
            "updated_at": now,
        }
        key_row = {
            "portal_id": portal_id,
            "key": key,
            "scope": CREATE_SCOPE,
            "fingerprint": print_,
            "resource_id": payment_id,
            "created_at": now,
        }

        async def record(tx: Transaction) -> Claim:
            created = tx.audit_entry(
                actor=f"portal:{portal_id}",
                action="payment.created",
                payment_id=payment_id,
                to_status=PaymentStatus.PENDING.value,
                detail={"amount": request.amount, "bank": bank, "dossier": dossier["code"]},
            )
            return tx.claim(idempotency_keys, key_row, then=[(payments, row)], audit=[created])

        if not (await self.ledger.run(record)).won:
            return None
        unset = {"paid_at": None, "failure_code": None, "bank_transaction_id": None}
        return repository.payment_from_row({**row, **unset})

    async def _place(self, order: OrderRequest, chosen: str | None) -> tuple[str, PlacedOrder]:
        """Place the order at the chosen bank, or at the first routed bank that takes it."""
        candidates = self.router.candidates(order.amount, chosen)
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
        for bank in candidates:
            try:
                placed = await self.connectors[bank].place_order(order)
            except BankUnavailable as exc:
                self.router.record_failure(bank)
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
        async with self.engine.connect() as conn:
            payment = await repository.get_payment(conn, payment_id, portal_id=portal_id)
        if payment is None:
            raise ProblemError("not_found", f"no payment {payment_id!r}")
        return payment

    async def list_for_dossier(self, portal_id: str, dossier_code: str) -> list[Payment]:
        async with self.engine.connect() as conn:
            return await repository.list_dossier_payments(conn, portal_id, dossier_code)

    async def dossier(self, portal_id: str, dossier_code: str) -> dict[str, Any]:
        found = await self.list_for_dossier(portal_id, dossier_code)
        if not found:
            raise ProblemError("not_found", f"no payments for dossier {dossier_code!r}")
        return dossier_summary(dossier_code, found)

    # -- cancel ---------------------------------------------------------------------------

    async def cancel(self, portal_id: str, payment_id: str) -> Payment:
        """Cancel a payment that is still ``pending`` or ``unknown``."""

        async def cancel_unit(tx: Transaction) -> Payment:
            row = (
                (
                    await tx.conn.execute(
                        select(payments).where(
                            payments.c.id == payment_id, payments.c.portal_id == portal_id
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise ProblemError("not_found", f"no payment {payment_id!r}")
            payment = repository.payment_from_row(row)
            if not is_open(payment.status):
                raise ProblemError(
                    "invalid_state", f"a {payment.status.value} payment cannot be cancelled"
                )
            return await transition(
                tx, payment, PaymentStatus.CANCELLED, actor=f"portal:{portal_id}"
            )

        return await self.ledger.run(cancel_unit)

    # -- confirmations from banks -------------------------------------------------------

    async def confirm(self, bank: str, confirmation: Confirmation) -> ConfirmationOutcome:
        """Apply a verified bank confirmation exactly once.

        Order of checks (VNPay's): the order exists → the amount matches → the status is
        final → apply. A failure arriving after success is recorded and ignored.
        """

        async def confirm_unit(tx: Transaction) -> ConfirmationOutcome:
            row = (
                (
                    await tx.conn.execute(
                        select(payments).where(
                            payments.c.bank_reference == confirmation.bank_reference,
                            payments.c.bank == bank,
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return ConfirmationOutcome.UNKNOWN_ORDER
            payment = repository.payment_from_row(row)
            actor = f"bank:{bank}"
            if confirmation.amount != payment.amount:
                tx.audit(
                    actor=actor,
                    action="confirmation.amount_mismatch",
                    payment_id=payment.id,
                    from_status=payment.status.value,
                    detail={
                        "expected": payment.amount,
                        "confirmed": confirmation.amount,
                        "status": confirmation.status.value,
                    },
                )
                return ConfirmationOutcome.AMOUNT_MISMATCH
            if confirmation.status is ConfirmationStatus.PENDING:
                return ConfirmationOutcome.IGNORED
            target = (
                PaymentStatus.SUCCEEDED
                if confirmation.status is ConfirmationStatus.SUCCEEDED
                else PaymentStatus.FAILED
            )
            if payment.status is target:
                return ConfirmationOutcome.ALREADY_APPLIED
            if not can_transition(payment.status, target):
                tx.audit(
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
                tx,
                payment,
                target,
                actor=actor,
                paid_at=confirmation.paid_at or tx.clock()
                if target is PaymentStatus.SUCCEEDED
                else None,
                failure_code=confirmation.failure_code if target is PaymentStatus.FAILED else None,
                bank_transaction_id=confirmation.bank_transaction_id,
            )
            return ConfirmationOutcome.APPLIED

        return await self.ledger.run(confirm_unit)


async def transition(
    tx: Transaction,
    payment: Payment,
    target: PaymentStatus,
    *,
    actor: str,
    paid_at: Any = None,
    failure_code: str | None = None,
    bank_transaction_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Payment:
    """Move a payment to ``target`` under a guard, with its audit entry and portal event.

    The ``WHERE status = current`` guard makes the change apply once even when two hub
    processes race; the loser raises ``LostRace`` and the ledger runs its unit again.
    """
    if not can_transition(payment.status, target):  # pragma: no cover - callers check first
        raise PayhubError(f"illegal transition {payment.status} -> {target}")
    now = tx.clock()
    values: dict[str, Any] = {"status": target.value, "updated_at": now}
    if paid_at is not None:
        values["paid_at"] = paid_at
    if failure_code is not None:
        values["failure_code"] = failure_code
    if bank_transaction_id is not None:
        values["bank_transaction_id"] = bank_transaction_id
    result = await tx.conn.execute(
        update(payments)
        .where(payments.c.id == payment.id, payments.c.status == payment.status.value)
        .values(values)
    )
    if result.rowcount != 1:
        raise LostRace(payment.id)
    updated = replace(
        payment,
        status=target,
        paid_at=paid_at if paid_at is not None else payment.paid_at,
        failure_code=failure_code if failure_code is not None else payment.failure_code,
        bank_transaction_id=bank_transaction_id or payment.bank_transaction_id,
    )
    tx.audit(
        actor=actor,
        action=f"payment.{target.value}",
        payment_id=payment.id,
        from_status=payment.status.value,
        to_status=target.value,
        detail=detail
        or ({"bank_transaction_id": bank_transaction_id} if bank_transaction_id else {}),
    )
    event_type = EVENT_TYPE[target]
    if event_type is not None:
        tx.emit(
            portal_id=payment.portal_id,
            type=event_type,
            payment_id=payment.id,
            data=updated.to_public(),
        )
    if target is PaymentStatus.SUCCEEDED:
        await _emit_if_overpaid(tx, updated)
    return updated


async def _emit_if_overpaid(tx: Transaction, paid: Payment) -> None:
    """A second payment covering the same item codes makes the dossier overpaid: tell the portal."""
    code = paid.dossier["code"]
    rows = (
        await tx.conn.execute(
            select(payments).where(
                payments.c.portal_id == paid.portal_id,
                payments.c.dossier_code == code,
                payments.c.status == PaymentStatus.SUCCEEDED.value,
            )
        )
    ).mappings()
    others = [repository.payment_from_row(r) for r in rows if r["id"] != paid.id]
    if not others:
        return
    before, _, _ = dossier_status(others)
    everything = [*others, paid]
    after, _, _ = dossier_status(everything)
    if after == "overpaid" and before != "overpaid":
        tx.emit(
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
