"""The payment state machine of CONTRACT §3, declared once.

``pending`` (order placed, awaiting the payer) and ``unknown`` (the bank did not answer;
the hub is finding out) may move to any final state. ``succeeded`` is final except that
refunds raise ``refunded_amount``. Anything else is an illegal transition: the caller
records it in the audit trail and does not apply it.

One transition out of a final state exists: ``expired -> succeeded``. A payer whose bank
took the money after the hub stopped waiting has paid; the bank's confirmation or the
statement (reconciliation's ``settled_by_statement``) settles the payment. ``failed`` and
``cancelled`` stay final: money arriving for them is a ``status_mismatch`` for a person.
"""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "pending"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


_OPEN = frozenset({PaymentStatus.PENDING, PaymentStatus.UNKNOWN})
_FINAL = frozenset(
    {
        PaymentStatus.SUCCEEDED,
        PaymentStatus.FAILED,
        PaymentStatus.EXPIRED,
        PaymentStatus.CANCELLED,
    }
)

TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: _FINAL | {PaymentStatus.UNKNOWN},
    PaymentStatus.UNKNOWN: _FINAL | {PaymentStatus.PENDING},
    PaymentStatus.SUCCEEDED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.EXPIRED: frozenset({PaymentStatus.SUCCEEDED}),
    PaymentStatus.CANCELLED: frozenset(),
}

# The portal event each state change produces (CONTRACT §4); None: no event.
EVENT_TYPE: dict[PaymentStatus, str | None] = {
    PaymentStatus.PENDING: None,
    PaymentStatus.UNKNOWN: None,
    PaymentStatus.SUCCEEDED: "payment.succeeded",
    PaymentStatus.FAILED: "payment.failed",
    PaymentStatus.EXPIRED: "payment.expired",
    PaymentStatus.CANCELLED: "payment.cancelled",
}


def is_open(status: PaymentStatus) -> bool:
    """Whether the payment still waits for an outcome."""
    return status in _OPEN


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    """Whether ``current -> target`` is a transition the contract allows."""
    return target in TRANSITIONS[current]


def statuses_that_may_become(target: PaymentStatus) -> frozenset[PaymentStatus]:
    """Every status from which ``target`` is reachable in one step (for guarded UPDATEs)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
