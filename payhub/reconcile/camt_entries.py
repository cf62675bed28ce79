"""camt.053 statements for the matcher, through the hub's streaming camt reader.

The ISO 20022 reader (``payhub.reconcile.camt``) is its own module; this adapter turns its
credit lines into ``StatementEntry``s (debits are not payments received and are skipped,
as that reader asks). With a ``BankAccount``, each statement's ``Stmt/Acct/Id`` must name
it: checked from the reader's ``statements`` as each header is read, and at the end (a
statement without entries, a document without any statement).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, cast

from payhub.reconcile import camt
from payhub.reconcile.entries import BankAccount, ByteSource, StatementEntry


def read_camt053(
    stream: ByteSource, account: BankAccount | None = None
) -> Iterator[StatementEntry]:
    """Yield one entry per credit transaction of a camt.053 (or camt.054) document."""
    reader = camt.CamtReader(cast(IO[bytes], stream))  # the reader only calls read()
    checked = 0
    for line in reader:
        if account is not None and len(reader.statements) > checked:
            checked = _check_accounts(account, reader.statements, checked)
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
    if account is not None:
        _check_accounts(account, reader.statements, checked)


def _check_accounts(
    account: BankAccount, statements: list[camt.CamtStatement], checked: int
) -> int:
    """Check the statements' accounts from ``checked`` on; returns how many are checked."""
    if not statements:
        account.check(None, where="camt")
    for statement in statements[checked:]:
        account.check(statement.account, where=f"camt line {statement.line}, Stmt/Acct/Id")
    return len(statements)
