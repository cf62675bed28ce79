"""Settling payments from a bank's statement: the lost confirmation, recovered.

A statement line that says the bank took the money for a payment the hub still has as
``pending``, ``unknown`` or ``expired`` settles it through the state machine's one door,
``transition``: the same guarded update, audit entry and ``payment.succeeded`` outbox
event as a confirmation, all in one ledger unit. The event and the audit entry name their
source (``{"kind": "statement", "reconciliation_id": …}``) so a portal and an auditor can
tell a statement settlement from a bank's confirmation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from payhub.domain.states import PaymentStatus, can_transition
from payhub.service.payments import transition
from payhub.service.unit_of_work import UnitOfWork, UnitRunner

BATCH = 200
"""Payments settled per ledger unit: one commit covers many, none waits long."""


@dataclass(frozen=True)
class Settled:
    """What became of the payments a statement said were paid."""

    settled: list[str]
    already: list[str]
    """Settled meanwhile by the bank's own confirmation, or no longer settleable."""


async def settle_from_statement(
    ledger: UnitRunner,
    payment_ids: Sequence[str],
    *,
    paid_at: Mapping[str, datetime | None],
    run_id: str,
    bank: str,
    actor: str,
) -> Settled:
    """Mark each payment ``succeeded`` on the statement's word; exactly once each.

    ``paid_at`` is the bank's booking time from the statement, when it gives one.
    """
    source = {"kind": "statement", "reconciliation_id": run_id, "bank": bank}
    settled: list[str] = []
    already: list[str] = []
    for start in range(0, len(payment_ids), BATCH):
        chunk = list(payment_ids[start : start + BATCH])

        async def unit(work: UnitOfWork, chunk: list[str] = chunk) -> tuple[list[str], list[str]]:
            done: list[str] = []
            skipped: list[str] = []
            for payment_id in chunk:
                payment = await work.payments.get(payment_id)
                if payment is None or not can_transition(payment.status, PaymentStatus.SUCCEEDED):
                    skipped.append(payment_id)
                    continue
                await transition(
                    work,
                    payment,
                    PaymentStatus.SUCCEEDED,
                    actor=actor,
                    paid_at=paid_at.get(payment_id) or work.now(),
                    detail={"source": source},
                    source=source,
                )
                done.append(payment_id)
            return done, skipped

        done, skipped = await ledger.run(unit)
        settled += done
        already += skipped
    return Settled(settled=settled, already=already)
