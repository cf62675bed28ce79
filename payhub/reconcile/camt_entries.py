"""camt.053 statements for the matcher, through the hub's streaming camt reader.

The ISO 20022 reader (``payhub.reconcile.camt``) is its own module; this adapter turns its
credits into ``StatementEntry``s (debits are not payments received and are skipped, as
that reader asks). It uses the reader's lean reading (``CamtReader.payments_received``),
which gives what ``to_statement_line`` gives without a ``CamtLine`` per transaction, in a
helper process for a large statement (``camt_worker``).
"""

from __future__ import annotations

from collections.abc import Iterator

from payhub.domain.reference import find_transfer_reference
from payhub.reconcile import camt_worker
from payhub.reconcile.entries import ByteSource, StatementEntry


def read_camt053(stream: ByteSource) -> Iterator[StatementEntry]:
    """Yield one entry per credit transaction of a camt.053 (or camt.054) document."""
    last_text: str | None = None
    reference: str | None = None
    make = tuple.__new__  # StatementEntry's own __new__ is Python: a million calls add up
    for line, amount, booked, booked_at, transaction, text in camt_worker.payments_received(stream):
        if text != last_text:  # a repeated entry repeats its text: read it once
            last_text, reference = text, find_transfer_reference(text)
        yield make(
            StatementEntry, (line, reference, amount, booked, booked_at, transaction, text, 0)
        )
