"""camt.053 statements for the matcher, through the hub's streaming camt reader.

The ISO 20022 reader (``payhub.reconcile.camt``) is its own module; this adapter turns its
credits into ``StatementEntry``s (debits are not payments received and are skipped, as
that reader asks). It uses the reader's lean reading (``CamtReader.payments_received``),
which gives what ``to_statement_line`` gives without a ``CamtLine`` per transaction, in a
helper process for a large statement (``camt_worker``).

With a ``BankAccount``, each statement's ``Stmt/Acct/Id`` must name it: checked where the
document is read (in the helper too) as each statement's header is read, before any of
its entries is handed out, and at the end (a statement without entries, a document
without any statement).
"""

from __future__ import annotations

from collections.abc import Iterator

from payhub.domain.reference import find_transfer_reference
from payhub.reconcile import camt_worker
from payhub.reconcile.entries import BankAccount, ByteSource, StatementEntry


def read_camt053(
    stream: ByteSource, account: BankAccount | None = None
) -> Iterator[StatementEntry]:
    """Yield one entry per credit transaction of a camt.053 (or camt.054) document."""
    last_text: str | None = None
    reference: str | None = None
    make = tuple.__new__  # StatementEntry's own __new__ is Python: a million calls add up
    received = camt_worker.payments_received(stream, account)
    for line, amount, booked, booked_at, transaction, text in received:
        if text != last_text:  # a repeated entry repeats its text: read it once
            last_text, reference = text, find_transfer_reference(text)
        yield make(
            StatementEntry, (line, reference, amount, booked, booked_at, transaction, text, 0)
        )
