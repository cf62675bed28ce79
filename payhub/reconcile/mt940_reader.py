"""SWIFT MT940 statements, through the maintained ``mt-940`` library, in bounded pieces.

The library parses a whole text at once. To keep memory flat on a large file, the text is
read line by line and handed to the library one statement header plus at most
``BATCH`` transactions (``:61:`` with its ``:86:``) at a time; each transaction keeps the
line number of its ``:61:``. Credits are payments received (settled); a debit is shown
as not settled. Only VND is accepted and amounts must be whole dong.

With a ``BankAccount``, each statement's ``:25:`` (or ``:25P:``) account identification
must name it (``970400/0123456789``: a bank code before the slash is allowed); a statement
without one is refused, as ``:25:`` is mandatory in MT940.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import mt940

from payhub.domain.clock import VIETNAM
from payhub.errors import StatementError
from payhub.reconcile.entries import BankAccount, ByteSource, StatementEntry, whole_vnd

BATCH = 500
NO_REFERENCE = "NONREF"


def read_mt940(stream: ByteSource, account: BankAccount | None = None) -> Iterator[StatementEntry]:
    """Yield the entries of every statement in the file."""
    header: list[str] = []
    batch: list[tuple[int, list[str]]] = []
    seen_any = False
    in_transactions = False
    unchecked: int | None = None  # the current statement's :20: line until its :25: is read
    for number, text in _lines(stream):
        if account is not None:
            if text.startswith((":25:", ":25P:")):
                account.check(text.split(":", 2)[2], where=f"MT940 line {number}")
                unchecked = None
            elif text.startswith((":20:", ":61:")):
                _no_account(account, unchecked)
            if text.startswith(":20:"):
                unchecked = number
        if text.startswith(":20:"):
            if batch:
                yield from _parse(header, batch)
                batch = []
            header = [text]
            in_transactions = False
            seen_any = True
        elif text.startswith(":61:"):
            if not header:
                raise StatementError(f"MT940 line {number}: :61: before any :20: header")
            if len(batch) >= BATCH:
                yield from _parse(header, batch)
                batch = []
            batch.append((number, [text]))
            in_transactions = True
        elif text.startswith(":62") or text.startswith(":64") or text.startswith(":65"):
            in_transactions = False
            if batch:
                batch[-1][1].append(text)
            else:
                header.append(text)
        elif in_transactions and batch:
            batch[-1][1].append(text)
        elif header:
            header.append(text)
    if batch:
        yield from _parse(header, batch)
    if not seen_any:
        raise StatementError("MT940 statement is empty or has no :20: header")
    if account is not None:
        _no_account(account, unchecked)


def _no_account(account: BankAccount, statement_line: int | None) -> None:
    """The statement starting at ``statement_line`` ended or reached a :61: without :25:."""
    if statement_line is not None:
        account.check(None, where=f"MT940 line {statement_line}")


def _lines(stream: ByteSource) -> Iterator[tuple[int, str]]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    number = 0
    pending = ""
    for raw in iter(lambda: stream.read(1 << 16), b""):
        try:
            pending += decoder.decode(raw)
        except UnicodeDecodeError as exc:
            before = pending.count("\n") + raw[: max(exc.start, 0)].count(b"\n")
            raise StatementError(f"MT940 line {number + before + 1}: not UTF-8") from None
        *complete, pending = pending.split("\n")
        for text in complete:
            number += 1
            yield number, text.rstrip("\r")
    if pending.strip():
        yield number + 1, pending.rstrip("\r")


def _parse(header: list[str], batch: list[tuple[int, list[str]]]) -> Iterator[StatementEntry]:
    text = "\n".join([*header, *(line for _, lines in batch for line in lines)]) + "\n"
    transactions = mt940.models.Transactions()
    try:
        transactions.parse(text)
    except Exception as exc:  # the library raises bare exceptions on malformed tags
        first = batch[0][0]
        raise StatementError(f"MT940 line {first}: cannot be read ({exc})") from exc
    parsed = list(transactions)
    if len(parsed) != len(batch):
        first = batch[0][0]
        raise StatementError(
            f"MT940 line {first}: {len(batch)} :61: lines but {len(parsed)} transactions read"
        )
    for (number, _), transaction in zip(batch, parsed, strict=True):
        yield _entry(number, transaction.data)


def _entry(number: int, data: dict[str, Any]) -> StatementEntry:
    amount = data.get("amount")
    currency = getattr(amount, "currency", None) or data.get("currency")
    if currency != "VND":
        raise StatementError(f"MT940 line {number}: currency {currency!r}, only VND is reconciled")
    value: Decimal = abs(amount.amount) if amount is not None else Decimal(-1)
    try:
        vnd = whole_vnd(str(value), line=number)
    except StatementError as exc:
        raise StatementError(f"MT940 {exc}") from None
    credit = data.get("status") in ("C", "RD")
    reference = data.get("customer_reference") or None
    if reference == NO_REFERENCE:
        reference = None
    day = data.get("entry_date") or data.get("date")
    booked_at = (
        datetime.combine(date(day.year, day.month, day.day), time(), tzinfo=VIETNAM)
        if day is not None
        else None
    )
    bank_reference = data.get("bank_reference") or None
    return StatementEntry(
        line=number,
        reference=reference,
        amount=vnd,
        settled=credit,
        booked_at=booked_at,
        bank_transaction_id=bank_reference,
        text=str(data.get("transaction_details") or ""),
    )
