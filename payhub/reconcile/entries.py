"""What any statement is read into: one ``StatementEntry`` per bank transaction.

Every reader (per-bank CSV, MT940, camt.053) yields these, one at a time, so a statement
of a million lines never sits in memory; the connector port hands them out too
(``BankConnector.read_statement``). Amounts are already whole VND: a reader converts
from ``Decimal`` at its edge and refuses a fraction, a negative amount or another
currency, naming the line, which every entry keeps for the person resolving it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import NamedTuple, Protocol

from payhub.domain.reference import find_references
from payhub.errors import StatementError

__all__ = [
    "BankAccount",
    "ByteSource",
    "ReferenceFinder",
    "StatementEntry",
    "StatementReader",
    "reference_in_text",
    "whole_vnd",
]


class StatementEntry(NamedTuple):
    """One transaction on a bank's statement for one business day.

    A named tuple, not a dataclass: a million of them are made per large statement, and
    a tuple is built and staged at a fraction of the cost.
    """

    line: int
    """Where it is in the file (1-based), for every message a person reads."""
    reference: str | None
    """The hub's bank reference (vnp_TxnRef, orderId, MT940 customer reference, …)."""
    amount: int
    settled: bool
    """The bank says the money moved (VNPay 00, MoMo 0, MT940 credit, camt BOOK)."""
    booked_at: datetime | None
    bank_transaction_id: str | None = None
    text: str = ""
    """Remittance text: where a transfer's reference hides when the bank lost the field."""
    fee: int = 0


class ByteSource(Protocol):
    """Anything a statement can be read from: a file, an upload spooled to disk, a hasher."""

    def read(self, size: int = -1, /) -> bytes: ...


class BankAccount(NamedTuple):
    """The account a bank's statement must be for: where ``bank`` collects the money.

    A statement names its account (camt.053 ``Stmt/Acct/Id``, MT940 ``:25:``, the merchant
    column of PayHub's CSV). Reconciling another account's file would settle nothing of
    its own and open an exception for every payment of the day, so a reader refuses it;
    a statement that names no account is refused as well, since it cannot be shown to be
    this bank's (both standards make the account mandatory, and the simulators write it).
    """

    bank: str
    """The configured bank's name, e.g. ``vietqr``."""
    number: str
    """What its statements name: a VNPay terminal code, a MoMo partner code, an account."""

    def matches(self, named: str) -> bool:
        """Spaces and case do not count (an IBAN is printed in groups); a bank code before
        a slash is allowed, as MT940 writes ``:25:970400/0123456789``."""
        found = "".join(named.split()).casefold()
        expected = "".join(self.number.split()).casefold()
        return found == expected or found.endswith("/" + expected)

    def check(self, named: str | None, *, where: str) -> None:
        """Raise ``StatementError`` at ``where`` (``camt line 5``) unless ``named`` is ours."""
        if named is None or not named.strip():
            raise StatementError(
                f"{where}: the statement names no account; bank {self.bank} collects into "
                f"{self.number}, so it cannot be checked"
            )
        if not self.matches(named):
            raise StatementError(
                f"{where}: statement is for account {named.strip()}, bank {self.bank} "
                f"collects into {self.number}"
            )


class StatementReader(Protocol):
    """Reads a binary stream lazily; raises ``StatementError`` naming the line.

    With an ``account``, a statement for another account (or naming none) is refused.
    """

    def __call__(
        self, stream: ByteSource, /, account: BankAccount | None = None
    ) -> Iterator[StatementEntry]: ...


ReferenceFinder = Callable[[str], str | None]
"""Finds one transfer reference in noisy remittance text, or ``None``."""


def reference_in_text(text: str) -> str | None:
    """The one reference in a memo; ``None`` when there is none or more than one.

    The hook for bank transfers (VietQR): a better finder replaces this at merge.
    """
    found = find_references(text)
    return found[0] if len(found) == 1 else None


def whole_vnd(text: str, *, line: int, what: str = "amount") -> int:
    """A statement amount as whole VND: ``10000`` and ``10000.00`` are fine, ``10000.5`` not."""
    cleaned = text.strip()
    if cleaned.isdigit() and cleaned.isascii():
        return int(cleaned)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise StatementError(f"line {line}: {what} {cleaned!r} is not a number") from None
    if not value.is_finite():
        raise StatementError(f"line {line}: {what} {cleaned!r} is not a number")
    if value < 0:
        raise StatementError(f"line {line}: {what} {cleaned} is negative")
    if value != value.to_integral_value():
        raise StatementError(f"line {line}: {what} {cleaned} has a fraction of a dong")
    return int(value)
