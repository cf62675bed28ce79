"""The daily CSV of vnpay and momo (BANKS.md "Statements"), read one row at a time.

Both share one shape (gateway reference, merchant reference, amount, status, pay time
``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh, fee); only the header names and the success code
are the bank's own. The file is decoded incrementally, so a wrong encoding is reported at
the line where it appears, and a truncated last row (fewer cells) is an error, not a
silently shorter statement.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from payhub.domain.clock import VIETNAM
from payhub.errors import StatementError
from payhub.reconcile.entries import ByteSource, StatementEntry, whole_vnd


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
    "VNPay", "vnp_TransactionNo", "vnp_TxnRef", "amount", "status", "pay_date", "fee", "00"
)
MOMO = CsvLayout("MoMo", "transId", "orderId", "amount", "resultCode", "pay_date", "fee", "0")


def _text_lines(stream: ByteSource, name: str) -> Iterator[str]:
    """UTF-8 lines (BOM dropped), decoded as they come; a bad byte names its line."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    number = 0
    pending = ""
    for raw in iter(lambda: stream.read(1 << 16), b""):
        try:
            pending += decoder.decode(raw)
        except UnicodeDecodeError:
            raise StatementError(
                f"{name} statement line {number + pending.count(chr(10)) + 1}: not UTF-8"
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


def read_csv(stream: ByteSource, layout: CsvLayout) -> Iterator[StatementEntry]:
    """Yield the statement's entries; raise ``StatementError`` naming the bad line."""
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
        at = {column: header.index(column) for column in layout.columns}
        width = len(header)
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != width:
                raise StatementError(
                    f"{name} statement line {line}: {len(row)} cells, the header has {width}"
                )
            yield _entry(row, at, layout, line)
    except csv.Error as exc:
        raise StatementError(f"{name} statement line {reader.line_num}: {exc}") from exc


def _entry(row: list[str], at: dict[str, int], layout: CsvLayout, line: int) -> StatementEntry:
    def cell(column: str) -> str:
        return row[at[column]].strip()

    reference = cell(layout.reference)
    if not reference:
        raise StatementError(f"{layout.name} statement line {line}: empty {layout.reference}")
    try:
        amount = whole_vnd(cell(layout.amount), line=line)
        fee = whole_vnd(cell(layout.fee) or "0", line=line, what="fee")
    except StatementError as exc:
        raise StatementError(f"{layout.name} statement {exc}") from None
    status = cell(layout.status)
    if not status.isdigit():
        raise StatementError(
            f"{layout.name} statement line {line}: status {status!r} is not a code"
        )
    pay_date = cell(layout.pay_date)
    booked_at = None
    if pay_date:
        try:
            booked_at = _pay_time(pay_date)
        except ValueError:
            raise StatementError(
                f"{layout.name} statement line {line}: pay_date {pay_date!r} is not yyyyMMddHHmmss"
            ) from None
    return StatementEntry(
        line=line,
        reference=reference,
        amount=amount,
        settled=status == layout.settled_code,
        booked_at=booked_at,
        bank_transaction_id=cell(layout.transaction_id) or None,
        fee=fee,
    )


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


def read_vnpay(stream: ByteSource) -> Iterator[StatementEntry]:
    """VNPay's daily CSV."""
    return read_csv(stream, VNPAY)


def read_momo(stream: ByteSource) -> Iterator[StatementEntry]:
    """MoMo's daily CSV."""
    return read_csv(stream, MOMO)
