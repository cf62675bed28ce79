"""The day's statement as a CSV: one line per settled payment that really happened.

vnpay and momo share the shape (BANKS.md "Statements"): the gateway's reference, the
merchant's reference, amount and fee in whole VND, the status code and the pay time
``yyyyMMddHHmmss`` GMT+7, and the merchant the statement is for (last column, on every
line, so reconciliation can refuse another merchant's file); only the header names are
the bank's own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from payhub.domain.clock import to_vietnam

TIME_FORMAT = "%Y%m%d%H%M%S"


@dataclass(frozen=True)
class Settlement:
    """A payment the bank settled, as its books hold it."""

    transaction_id: str
    reference: str
    amount: int
    status: str
    at: datetime
    fee: int = 0


def business_day(moment: datetime) -> date:
    """The Asia/Ho_Chi_Minh day (00:00:00–23:59:59) a moment belongs to."""
    return to_vietnam(moment).date()


def daily_csv(
    header: Sequence[str], settlements: Iterable[Settlement], day: date, merchant: str
) -> str:
    """The CSV of ``day``'s settlements in pay-time order, ``header`` first.

    ``header`` names the six columns, then the merchant column that holds ``merchant``.
    """
    if len(header) != 7:
        raise ValueError(f"a statement has 7 columns, not {len(header)}: {header}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    todays = sorted(
        (s for s in settlements if business_day(s.at) == day),
        key=lambda s: (s.at, s.transaction_id),
    )
    for s in todays:
        writer.writerow(
            (
                s.transaction_id,
                s.reference,
                s.amount,
                s.status,
                to_vietnam(s.at).strftime(TIME_FORMAT),
                s.fee,
                merchant,
            )
        )
    return out.getvalue()
