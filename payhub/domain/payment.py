"""A payment as the hub knows it, and how it is shown to its portal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payhub.domain.clock import rfc3339
from payhub.domain.states import PaymentStatus


@dataclass(frozen=True)
class Payment:
    """One payment request for one dossier, at one bank."""

    id: str
    portal_id: str
    dossier: dict[str, Any]
    items: list[dict[str, Any]]
    amount: int
    currency: str
    bank: str
    bank_reference: str
    payment_url: str | None
    qr: str | None
    status: PaymentStatus
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    refunded_amount: int
    failure_code: str | None
    description: str | None = None
    bank_transaction_id: str | None = None

    def to_public(self) -> dict[str, Any]:
        """The payment object of CONTRACT §3; the payer's id number and phone never leave."""
        return {
            "id": self.id,
            "status": self.status.value,
            "dossier": self.dossier,
            "amount": self.amount,
            "currency": self.currency,
            "items": self.items,
            "bank": self.bank,
            "bank_reference": self.bank_reference,
            "payment_url": self.payment_url,
            "qr": self.qr,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "paid_at": rfc3339(self.paid_at),
            "refunded_amount": self.refunded_amount,
            "failure_code": self.failure_code,
        }


@dataclass(frozen=True)
class Refund:
    id: str
    payment_id: str
    amount: int
    status: str
    created_at: datetime
    reason: str = ""

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "payment_id": self.payment_id,
            "amount": self.amount,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
        }


def dossier_status(payments: list[Payment]) -> tuple[str, int, int]:
    """(status, paid_amount, refunded_amount) of a dossier from its payments.

    ``overpaid`` when more than one succeeded payment covers the same item code;
    ``paid`` when one succeeded; ``pending`` while one is still open; else ``unpaid``.
    """
    succeeded = [p for p in payments if p.status is PaymentStatus.SUCCEEDED]
    paid = sum(p.amount for p in succeeded)
    refunded = sum(p.refunded_amount for p in succeeded)
    seen: set[str] = set()
    overpaid = False
    for payment in succeeded:
        if payment.refunded_amount >= payment.amount:
            continue
        codes = {str(item.get("code")) for item in payment.items}
        if codes & seen:
            overpaid = True
        seen |= codes
    if overpaid:
        return "overpaid", paid, refunded
    if succeeded:
        return "paid", paid, refunded
    if any(p.status in (PaymentStatus.PENDING, PaymentStatus.UNKNOWN) for p in payments):
        return "pending", paid, refunded
    return "unpaid", paid, refunded
