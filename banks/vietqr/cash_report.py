"""The collecting bank's ISO 20022 documents: camt.054 credit notifications, camt.053 statements.

Written by the simulator, read back by the hub through ``payhub.reconcile.camt`` (which
reads .02 to .08 and later). Version .08 is written, so the status is ``<Sts><Cd>``, each
transaction carries its own ``Amt``, and the references are where a Vietnamese bank puts
them: the bank's own ``AcctSvcrRef`` on the entry and the transaction, the payer bank's
``EndToEndId``, the transfer text in ``RmtInf/Ustrd``. One credit is one entry; a
notification may hold several entries (a batch). Amounts are whole VND, written as digits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from lxml import etree

from payhub.domain.clock import to_vietnam

NOTIFICATION_NS: Final = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"
STATEMENT_NS: Final = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
BOOKED: Final = "BOOK"
PENDING: Final = "PDNG"
INFORMATION: Final = "INFO"
STATUSES: Final = (BOOKED, PENDING, INFORMATION)


@dataclass(frozen=True)
class Credit:
    """Money arriving on the collection account, as the bank's books hold it."""

    transaction_id: str
    """The bank's own reference (``AcctSvcrRef``), stable across resends."""
    end_to_end_id: str
    """The payer's bank's reference for the Napas transfer."""
    amount: int
    text: str
    """The transfer content as it arrived (already mangled by the payer's banking app)."""
    at: datetime
    status: str = BOOKED


@dataclass(frozen=True)
class Account:
    """The collection account: the acquirer BIN and the account number."""

    bin: str
    number: str


def _add(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _stamp(moment: datetime) -> str:
    return to_vietnam(moment).isoformat(timespec="seconds")


def _account(parent: etree._Element, account: Account) -> None:
    acct = _add(parent, "Acct")
    _add(_add(_add(acct, "Id"), "Othr"), "Id", account.number)
    _add(acct, "Ccy", "VND")
    member = _add(_add(_add(acct, "Svcr"), "FinInstnId"), "ClrSysMmbId")
    _add(member, "MmbId", account.bin)


def _entry(parent: etree._Element, credit: Credit, index: int) -> None:
    entry = _add(parent, "Ntry")
    _add(entry, "NtryRef", str(index))
    _add(entry, "Amt", str(credit.amount), Ccy="VND")
    _add(entry, "CdtDbtInd", "CRDT")
    _add(_add(entry, "Sts"), "Cd", credit.status)
    if credit.status == BOOKED:
        _add(_add(entry, "BookgDt"), "DtTm", _stamp(credit.at))
    _add(_add(entry, "ValDt"), "Dt", to_vietnam(credit.at).date().isoformat())
    _add(entry, "AcctSvcrRef", credit.transaction_id)
    domain = _add(_add(entry, "BkTxCd"), "Domn")
    _add(domain, "Cd", "PMNT")
    family = _add(domain, "Fmly")
    _add(family, "Cd", "RCDT")
    _add(family, "SubFmlyCd", "DMCT")
    details = _add(_add(entry, "NtryDtls"), "TxDtls")
    references = _add(details, "Refs")
    _add(references, "AcctSvcrRef", credit.transaction_id)
    _add(references, "EndToEndId", credit.end_to_end_id)
    _add(details, "Amt", str(credit.amount), Ccy="VND")
    _add(details, "CdtDbtInd", "CRDT")
    _add(_add(details, "RmtInf"), "Ustrd", credit.text)


def _document(
    namespace: str,
    message: str,
    record: str,
    message_id: str,
    created_at: datetime,
    account: Account,
    credits: Iterable[Credit],
    *,
    pretty: bool = False,
) -> bytes:
    root = etree.Element("Document", nsmap={None: namespace})
    body = _add(root, message)
    header = _add(body, "GrpHdr")
    _add(header, "MsgId", message_id)
    _add(header, "CreDtTm", _stamp(created_at))
    report = _add(body, record)
    _add(report, "Id", message_id)
    _add(report, "CreDtTm", _stamp(created_at))
    _account(report, account)
    for index, credit in enumerate(credits, start=1):
        _entry(report, credit, index)
    # Elements were made without a namespace: give every one the document's default.
    for element in root.iter():
        element.tag = f"{{{namespace}}}{etree.QName(element).localname}"
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=pretty)
    return data


def notification(
    message_id: str, created_at: datetime, account: Account, credits: Iterable[Credit]
) -> bytes:
    """A camt.054 ``BkToCstmrDbtCdtNtfctn`` of ``credits``, one entry each."""
    return _document(
        NOTIFICATION_NS,
        "BkToCstmrDbtCdtNtfctn",
        "Ntfctn",
        message_id,
        created_at,
        account,
        credits,
    )


def statement(
    statement_id: str, created_at: datetime, account: Account, credits: Iterable[Credit]
) -> bytes:
    """A camt.053 ``BkToCstmrStmt`` of one business day's booked ``credits``.

    One element a line, as banks write their statement files, so that reconciliation's
    errors name a useful line.
    """
    return _document(
        STATEMENT_NS,
        "BkToCstmrStmt",
        "Stmt",
        statement_id,
        created_at,
        account,
        credits,
        pretty=True,
    )
