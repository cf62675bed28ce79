"""camt.053 statements for the matcher, through the hub's streaming camt reader.

The ISO 20022 reader (``payhub.reconcile.camt``) is its own module; this adapter turns its
credit lines into ``StatementEntry``s (debits are not payments received and are skipped,
as that reader asks).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, cast

from payhub.reconcile import camt
from payhub.reconcile.entries import ByteSource, StatementEntry


def read_camt053(stream: ByteSource) -> Iterator[StatementEntry]:
    """Yield one entry per credit transaction of a camt.053 (or camt.054) document."""
    for line in camt.read_camt(cast(IO[bytes], stream)):  # the reader only calls read()
        if line.direction is not camt.CreditDebit.CREDIT:
            continue
        port_line = camt.to_statement_line(line)
        yield StatementEntry(
            line.line,
            port_line.bank_reference,
            port_line.amount,
            bool(line.booked),
            port_line.booked_at,
            port_line.bank_transaction_id,
            port_line.text,
            0,
        )
