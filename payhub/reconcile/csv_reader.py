"""The daily CSV of vnpay and momo (BANKS.md "Statements"), read one row at a time.

Both share one shape (gateway reference, merchant reference, amount, status, pay time
``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh, fee); only the header names and the success code
are the bank's own. The file is decoded incrementally, so a wrong encoding is reported at
the line where it appears, and a truncated last row (fewer cells) is an error, not a
silently shorter statement.

Each line names the merchant the statement is for (``vnp_TmnCode``, ``partnerCode``; the
simulators write it). Given the bank's ``BankAccount``, a file without that column, or a
line naming another merchant, is refused; without one the column is optional.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from payhub.domain.clock import VIETNAM
from payhub.errors import StatementError
from payhub.reconcile.entries import BankAccount, ByteSource, StatementEntry, whole_vnd


@dataclass(frozen=True)
class CsvLayout:
    """One bank's column names and its code for a settled payment."""

    name: str
    transaction_id: str
    reference: str
    amount: str
    status: str
    pay_date: str
    fee: str
    settled_code: str
    merchant: str
    """The column naming the merchant account the statement is for."""

    @property
    def columns(self) -> tuple[str, ...]:
        return (
            self.transaction_id,
            self.reference,
            self.amount,
            self.status,
            self.pay_date,
            self.fee,
        )


VNPAY = CsvLayout(
    "VNPay",
    "vnp_TransactionNo",
    "vnp_TxnRef",
    "amount",
    "status",
    "pay_date",
    "fee",
    "00",
    "vnp_TmnCode",
)
MOMO = CsvLayout(
    "MoMo", "transId", "orderId", "amount", "resultCode", "pay_date", "fee", "0", "partnerCode"
)


def _text_lines(stream: ByteSource, name: str) -> Iterator[str]:
    """UTF-8 lines (BOM dropped), decoded as they come; a bad byte names its line."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    number = 0
    pending = ""
    for raw in iter(lambda: stream.read(1 << 16), b""):
        try:
            pending += decoder.decode(raw)
        except UnicodeDecodeError as exc:
            before = pending.count("\n") + raw[: max(exc.start, 0)].count(b"\n")
            raise StatementError(
                f"{name} statement line {number + before + 1}: not UTF-8"
            ) from None
        *complete, pending = pending.split("\n")
        for text in complete:
            number += 1
            yield text + "\n"
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise StatementError(f"{name} statement line {number + 1}: not UTF-8") from None
    if pending:
        yield pending


def read_csv(
    stream: ByteSource, layout: CsvLayout, account: BankAccount | None = None
) -> Iterator[StatementEntry]:
    """Yield the statement's entries; raise ``StatementError`` naming the bad line.

    The loop is written for a million lines a second or so: cells are read by position,
    whole numbers take the ``isdigit`` path, and pay times repeat within a day, so each
    distinct one is parsed once. Entries are made by ``tuple.__new__``: the named
    tuple's own constructor is a Python function, a fifth of the loop's time.
    """
    name = layout.name
    reader = csv.reader(_text_lines(stream, name), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise StatementError(f"{name} statement is empty (no header line)")
        header = [cell.strip() for cell in header]
        missing = [column for column in layout.columns if column not in header]
        if missing:
            raise StatementError(f"{name} statement line 1: lacks columns {', '.join(missing)}")
        at_id, at_ref, at_amount, at_status, at_date, at_fee = (
            header.index(column) for column in layout.columns
        )
        width = len(header)
        at_merchant, merchant = -1, ""
        if account is not None:
            if layout.merchant not in header:
                account.check(None, where=f"{name} statement line 1 (no {layout.merchant} column)")
            at_merchant, merchant = header.index(layout.merchant), account.number
        settled_code = layout.settled_code
        times: dict[str, datetime] = {}
        new_entry = tuple.__new__
        for row in reader:
            line = reader.line_num
            if len(row) != width:
                if not any(cell.strip() for cell in row):
                    continue
                raise StatementError(
                    f"{name} statement line {line}: {len(row)} cells, the header has {width}"
                )
            if at_merchant >= 0 and row[at_merchant] != merchant:
                assert account is not None
                account.check(row[at_merchant], where=f"{name} statement line {line}")
            reference = row[at_ref].strip()
            amount_text = row[at_amount].strip()
            fee_text = row[at_fee].strip() or "0"
            status = row[at_status].strip()
            pay_date = row[at_date].strip()
            if not reference:
                raise StatementError(f"{name} statement line {line}: empty {layout.reference}")
            try:
                amount = (
                    int(amount_text)
                    if amount_text.isdigit() and amount_text.isascii()
                    else whole_vnd(amount_text, line=line)
                )
                fee = (
                    int(fee_text)
                    if fee_text.isdigit() and fee_text.isascii()
                    else whole_vnd(fee_text, line=line, what="fee")
                )
            except StatementError as exc:
                raise StatementError(f"{name} statement {exc}") from None
            if not (status.isdigit() and status.isascii()):
                raise StatementError(
                    f"{name} statement line {line}: status {status!r} is not a code"
                )
            booked_at = times.get(pay_date)
            if booked_at is None and pay_date:
                try:
                    booked_at = times[pay_date] = _pay_time(pay_date)
                except ValueError:
                    raise StatementError(
                        f"{name} statement line {line}: pay_date {pay_date!r} is not yyyyMMddHHmmss"
                    ) from None
            transaction_id = row[at_id].strip() or None
            settled = status == settled_code
            yield new_entry(
                StatementEntry,
                (line, reference, amount, settled, booked_at, transaction_id, "", fee),
            )
    except csv.Error as exc:
        raise StatementError(f"{name} statement line {reader.line_num}: {exc}") from exc


def _pay_time(text: str) -> datetime:
    """``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh; slicing is five times faster than strptime."""
    if len(text) != 14 or not text.isdigit():
        raise ValueError(text)
    return datetime(
        int(text[0:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[8:10]),
        int(text[10:12]),
        int(text[12:14]),
        tzinfo=VIETNAM,
    )


def read_vnpay(stream: ByteSource, account: BankAccount | None = None) -> Iterator[StatementEntry]:
    """VNPay's daily CSV."""
    return read_csv(stream, VNPAY, account)


def read_momo(stream: ByteSource, account: BankAccount | None = None) -> Iterator[StatementEntry]:
    """MoMo's daily CSV."""
    return read_csv(stream, MOMO, account)
